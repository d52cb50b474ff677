"""Routing-policy and kernel return codes: the integers the fast kernel branches on.

Request status codes are :mod:`capacitor.engine.status`. The numba kernel reads these
module-level ints as compile-time constants; Python code names a router by the keys of
:data:`ROUTERS`.
"""

from __future__ import annotations

from enum import IntEnum


class Route(IntEnum):
    """How a pool's router picks a replica for a request."""

    ROUND_ROBIN = 0
    LEAST_OUTSTANDING = 1  # fewest prompt + output tokens of unfinished requests
    POWER_OF_TWO = 2  # the less loaded of two replicas drawn at random
    KEY = 3  # route_key % num_replicas (session or prefix affinity)


ROUTE_ROUND_ROBIN = int(Route.ROUND_ROBIN)
ROUTE_LEAST_OUTSTANDING = int(Route.LEAST_OUTSTANDING)
ROUTE_POWER_OF_TWO = int(Route.POWER_OF_TWO)
ROUTE_KEY = int(Route.KEY)

#: Routing policies of a pool, by name. ``session_affinity`` and ``prefix_affinity`` send
#: a request to ``route_key % num_replicas``; the caller gives the key: the session (its
#: first request) or the prefix (the shared segment or first request its prompt's prefix
#: chain leads back to; :meth:`capacitor.fleet.demand.Demand.route_key`).
ROUTERS: dict[str, int] = {
    "round_robin": ROUTE_ROUND_ROBIN,
    "least_outstanding_tokens": ROUTE_LEAST_OUTSTANDING,
    "power_of_two": ROUTE_POWER_OF_TWO,
    "session_affinity": ROUTE_KEY,
    "prefix_affinity": ROUTE_KEY,
}

#: What the kernel returns: every request finished, or a waiting request can never be
#: scheduled (it needs more KV blocks than the replica has).
KERNEL_OK = 0
KERNEL_STALLED = 1

__all__ = ["KERNEL_OK", "KERNEL_STALLED", "ROUTERS", "ROUTE_KEY", "ROUTE_LEAST_OUTSTANDING",
           "ROUTE_POWER_OF_TWO", "ROUTE_ROUND_ROBIN", "Route"]
