"""Request status codes: one place for the codes the kernel writes, the reference twin
writes, and the fleet layer, digests and reports read.

A request's status is an ``int8`` in ``status[i]``. The engine sets the first five; the
fleet layer adds :data:`THROTTLED` for requests its tenant limits refused before routing.
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

__all__ = ["REFUSED", "STATUS_NAMES", "RequestStatus", "S_COMPLETED", "S_LOST", "S_PENDING",
           "S_REJECTED", "S_SHED", "S_THROTTLED"]
