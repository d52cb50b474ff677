"""Which replicas a release can reach, known before the run: lets a replica run ahead.

A replica's state is read by the router only when a request may be routed to it. With round
robin, power of two choices and key (session / prefix) routing, the candidates of every
initial release are known in advance — the round-robin counter over the releases that are
routed, the two pre-drawn choices, the key — so while nothing else couples the replicas (no
dynamic releases such as session rounds or closed-loop clients, no failures, no tenant
concurrency caps, which read every replica's finishes) a replica can step on until the next
release that may reach it instead of the next release anywhere. Per-request results are
identical (tests compare the kernel with the reference twin); only the order in which the
event loop visits replicas changes, which is what makes pools of many lightly loaded replicas
cheap: a replica no longer stops at every other replica's arrivals.
"""

from __future__ import annotations

import numba
import numpy as np

from capacitor.engine.codes import ROUTE_KEY, ROUTE_POWER_OF_TWO, ROUTE_ROUND_ROBIN


@numba.njit(cache=True)
def _plan(policy, num_replicas, num_init, identity, init_order, rejected, pick2, route_key,
          cand, nxt, first):
    rr = 0
    for p in range(num_init):
        i = p if identity else init_order[p]
        cand[p, 0] = -1
        cand[p, 1] = -1
        if rejected[i]:  # answered at once, never routed
            continue
        if policy == ROUTE_ROUND_ROBIN:
            cand[p, 0] = rr % num_replicas
            rr += 1
        elif policy == ROUTE_POWER_OF_TWO:
            cand[p, 0] = pick2[i, 0] % num_replicas
            cand[p, 1] = pick2[i, 1] % num_replicas
        else:
            cand[p, 0] = route_key[i] % num_replicas
    last = np.full(num_replicas, num_init, np.int64)
    for p in range(num_init - 1, -1, -1):
        for s in range(2):
            c = cand[p, s]
            if c >= 0:
                nxt[p, s] = last[c]
        for s in range(2):
            c = cand[p, s]
            if c >= 0:
                last[c] = p
    first[:] = last


def lookahead_plan(policy: int, num_replicas: int, init_order: np.ndarray, identity: bool,
                   num_init: int, rejected: np.ndarray, pick2: np.ndarray,
                   route_key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(cand, nxt, first)``: per release position its candidate replicas (-1: none) and,
    per candidate, the next position that may reach the same replica (``num_init``: none);
    per replica its first such position. None when the policy's choice is not known in
    advance (least outstanding tokens)."""
    if policy not in (ROUTE_ROUND_ROBIN, ROUTE_POWER_OF_TWO, ROUTE_KEY):
        return None
    cand = np.empty((num_init, 2), np.int32)
    nxt = np.full((num_init, 2), num_init, np.int32)
    first = np.empty(num_replicas, np.int64)
    _plan(policy, num_replicas, num_init, identity, init_order, rejected, pick2, route_key,
          cand, nxt, first)
    return cand, nxt, first


__all__ = ["lookahead_plan"]
