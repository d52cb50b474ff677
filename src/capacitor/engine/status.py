"""Request status codes: one place for the codes the kernel writes, the reference twin
writes, and the fleet layer, digests and reports read.

A request's status is an ``int8`` in ``status[i]``. The engine sets the first five; the
fleet layer adds :data:`THROTTLED` for requests its tenant limits refused before routing.
Every refusal has one cause (:data:`REFUSAL_CAUSES`): throttled, shed, invalid or failed.
The numba kernel reads the module-level ints (globals are compile-time constants to
numba); Python code uses :class:`RequestStatus`.
"""

from __future__ import annotations

from enum import IntEnum


class RequestStatus(IntEnum):
    """Where a request ended. Ordered: every code above ``COMPLETED`` is a refusal."""

    PENDING = 0  # not finished (only before the simulation ends)
    COMPLETED = 1  # every output token reached the client
    REJECTED = 2  # prompt + output longer than max_model_len (HTTP 400 at once)
    SHED = 3  # refused by admission control at the router
    LOST = 4  # in flight on a replica that failed
    THROTTLED = 5  # refused by the tenant's rate limits before routing (HTTP 429)

    @property
    def is_refused(self) -> bool:
        """True for every status in which the client got no answer."""
        return self >= RequestStatus.REJECTED

    @property
    def refusal_cause(self) -> str | None:
        """Why the client got no answer (:data:`REFUSAL_CAUSES`); None when it did, or has
        not yet."""
        return _CAUSE_OF.get(self)

    @property
    def fleet_chose(self) -> bool:
        """True for a refusal the fleet chose (throttled by the tenant's limits, shed by
        admission control): what an SLO's ``max_throttled_pct`` judges. An invalid request
        (over ``max_model_len``) is the client's error; a failed one was lost to hardware."""
        return self in (RequestStatus.THROTTLED, RequestStatus.SHED)


#: Refusal causes, in the order summaries and timelines list them: ``throttled`` (the
#: tenant's rate limit or quota, HTTP 429), ``shed`` (admission control at the router: queue
#: full, concurrency cap, predicted TTFT, or every replica of the cell down), ``invalid``
#: (prompt + output over ``max_model_len``: a client error, HTTP 400), ``failed`` (in flight
#: on a replica that failed).
REFUSAL_CAUSES: tuple[str, ...] = ("throttled", "shed", "invalid", "failed")
_CAUSE_OF = {RequestStatus.THROTTLED: "throttled", RequestStatus.SHED: "shed",
             RequestStatus.REJECTED: "invalid", RequestStatus.LOST: "failed"}


S_PENDING = int(RequestStatus.PENDING)
S_COMPLETED = int(RequestStatus.COMPLETED)
S_REJECTED = int(RequestStatus.REJECTED)
S_SHED = int(RequestStatus.SHED)
S_LOST = int(RequestStatus.LOST)
S_THROTTLED = int(RequestStatus.THROTTLED)

#: Status code -> the name reports and ``requests.parquet`` use.
STATUS_NAMES: dict[int, str] = {int(s): s.name.lower() for s in RequestStatus}
#: The codes of requests the client got no answer for.
REFUSED: tuple[int, ...] = tuple(int(s) for s in RequestStatus if s.is_refused)
#: Per status code, 1 + the index of its refusal cause in :data:`REFUSAL_CAUSES` (0: not
#: refused): ``CAUSE_NUMBER[status]`` numbers ``("none", *REFUSAL_CAUSES)``.
CAUSE_NUMBER: tuple[int, ...] = tuple(
    REFUSAL_CAUSES.index(s.refusal_cause) + 1 if s.refusal_cause else 0 for s in RequestStatus)
#: The causes of refusals the fleet chose (what the SLO verdict judges): throttled, shed.
FLEET_CAUSES: tuple[str, ...] = tuple(s.refusal_cause for s in RequestStatus if s.fleet_chose)

__all__ = ["CAUSE_NUMBER", "FLEET_CAUSES", "REFUSAL_CAUSES", "REFUSED", "STATUS_NAMES",
           "RequestStatus", "S_COMPLETED", "S_LOST", "S_PENDING", "S_REJECTED", "S_SHED",
           "S_THROTTLED"]
