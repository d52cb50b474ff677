"""Pool-level pieces of the fast kernel: routing a request to a replica, binding its prefix
chain to what that replica holds, releasing finished requests to the router, and a replica's
reset and failure. The event loop itself is :func:`capacitor.engine._kernel.fleet_kernel`."""

from __future__ import annotations

import math

import numba

from capacitor.engine._kernel_util import _heap_push, _respond
from capacitor.engine._state import (
    _ACTIVE,
    _CPU_HEAD,
    _CPU_TAIL,
    _CUTOFF,
    _FREE_UNCACHED,
    _G,
    _LAST_CLIENT_T,
    _LRU_HEAD,
    _LRU_TAIL,
    _MAX_USED,
    _NUM_FREE_SLOTS,
    _PEND_N,
    _RR,
    _RUN_HEAD,
    _RUN_TAIL,
    _SEQ,
    _T,
    _WAIT_COUNT,
    _WAIT_HEAD,
    _WAIT_TAIL,
    F_BNEXT,
    F_BPREV,
    F_DEC,
    F_FREE,
    F_NEXT,
    F_REQ,
    S_LOST,
)

ROUTE_ROUND_ROBIN = 0
ROUTE_LEAST_OUTSTANDING = 1
ROUTE_POWER_OF_TWO = 2
ROUTE_KEY = 3


@numba.njit(cache=True, error_model="numpy", inline="always")
def _route(i, policy, num_replicas, gst, outstanding, route_key, pick2, down_until, now):
    """The replica for request ``i``, skipping replicas down at ``now``; -1 if none is up.
    (``pick2`` has a row per request only when there is a choice: more than one replica.)"""
    R = num_replicas
    if R == 1:
        return 0 if down_until[0] <= now else -1
    if policy == ROUTE_LEAST_OUTSTANDING:
        # ties go to the first replica after a random offset, as real routers break them at
        # random (a fixed order would load low-numbered replicas more)
        best = -1
        rep = pick2[i, 0] % R
        for _ in range(R):
            if down_until[rep] <= now and (best < 0 or outstanding[rep] < outstanding[best]):
                best = rep
            rep = rep + 1 if rep + 1 < R else 0
        return best
    if policy == ROUTE_ROUND_ROBIN:
        first = gst[_RR] % R
        gst[_RR] += 1
    elif policy == ROUTE_POWER_OF_TWO:
        a = pick2[i, 0]  # drawn in [0, R) (a division per request is worth avoiding)
        b = pick2[i, 1]
        if a >= R or b >= R:
            a %= R
            b %= R
        if down_until[a] > now or (
            down_until[b] <= now
            and (outstanding[b] < outstanding[a] or (outstanding[b] == outstanding[a] and b < a))
        ):
            a = b
        first = a
    else:
        first = route_key[i] % R
    rep = first
    for _ in range(R):  # the first choice, or the next replica that is up
        if down_until[rep] <= now:
            return rep
        rep = rep + 1 if rep + 1 < R else 0
    return -1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _bind_source(i, rep, n, num_segments, bs, orig_src, orig_plen, node_rep, src, start):
    """Point request ``i``'s prefix at what replica ``rep`` can hold: its own copy of a
    shared segment, or the nearest ancestor request that ran there."""
    s = orig_src[i]
    length = orig_plen[i]
    while 0 <= s < n and node_rep[s] >= 0 and node_rep[s] != rep:
        length = min(length, orig_plen[s])
        s = orig_src[s]
    if s >= n:
        s = n + rep * num_segments + (s - n)
    if s < 0 or length // bs == 0:
        src[i] = -1
        start[i] = 0
    else:
        src[i] = s
        start[i] = length // bs
    node_rep[i] = rep


@numba.njit(cache=True, error_model="numpy", inline="always")
def _flush_finished(sr, pend, rep, tenant, inflight, outstanding, prompt, output):
    """The router learns of a step's finished requests (``pend[rep]``) when the step ends."""
    for j in range(sr[_PEND_N]):
        r = pend[rep, j]
        inflight[tenant[r] if tenant.shape[0] > 1 else 0] -= 1
        outstanding[rep] -= prompt[r] + output[r]
    sr[_PEND_N] = 0


@numba.njit(cache=True, error_model="numpy")
def _reset_replica(sr, sl, bk, kc, dc, num_blocks):
    """An empty replica: no running or waiting request, every KV block free, empty cache
    lists. Step and admission counters and heap membership are kept."""
    for k in range(sr.shape[0]):
        if k not in (_G, _MAX_USED, _SEQ, _ACTIVE):
            sr[k] = 0
    sr[_FREE_UNCACHED] = num_blocks
    for k in (
        _LRU_HEAD,
        _LRU_TAIL,
        _RUN_HEAD,
        _RUN_TAIL,
        _CPU_HEAD,
        _CPU_TAIL,
        _WAIT_HEAD,
        _WAIT_TAIL,
    ):
        sr[k] = -1
    S = sl.shape[1]
    sr[_NUM_FREE_SLOTS] = S
    for s in range(S):
        sl[F_REQ, s] = -1
        sl[F_DEC, s] = 0
        sl[F_BPREV, s] = -1
        sl[F_BNEXT, s] = -1
        sl[F_FREE, s] = S - 1 - s
    bk[:] = -1
    kc[:] = 0
    dc[:] = 0


@numba.njit(cache=True, error_model="numpy")
def _fail_replica(
    rep,
    now,
    sr,
    sf,
    sl,
    bk,
    kc,
    dc,
    src,
    cached,
    pins,
    lru_next,
    cpu_cached,
    cpu_next,
    wait_next,
    status,
    finish,
    n,
    arrival,
    send,
    ingress,
    child_gate,
    child_idx,
    conc,
    gst,
    heap_t,
    heap_i,
    num_blocks,
    tenant,
    inflight,
):
    """Replica ``rep`` fails at ``now``: its running requests are lost (their clients get an
    error at once), its waiting requests go back to the router, its KV cache is gone."""
    s = sr[_RUN_HEAD]
    while s >= 0:
        r = sl[F_REQ, s]
        node = r
        while node >= 0:  # the request's whole prefix chain lived on this replica
            cached[node] = 0
            pins[node] = 0
            if cpu_cached.shape[0] > 1:
                cpu_cached[node] = 0
            node = src[node]
        status[r] = S_LOST
        inflight[tenant[r] if tenant.shape[0] > 1 else 0] -= 1
        finish[r] = now
        _respond(
            r, now, n, arrival, send, ingress, child_gate, child_idx, conc, gst, heap_t, heap_i
        )
        s = sl[F_NEXT, s]
    node = sr[_LRU_HEAD]
    while node >= 0:
        cached[node] = 0
        node = lru_next[node]
    node = sr[_CPU_HEAD]
    while node >= 0:
        cpu_cached[node] = 0
        node = cpu_next[node]
    i = sr[_WAIT_HEAD]
    for _ in range(sr[_WAIT_COUNT]):
        nxt = wait_next[i]
        inflight[tenant[i] if tenant.shape[0] > 1 else 0] -= 1  # counted again when re-routed
        _heap_push(heap_t, heap_i, gst, now, i)  # re-sent to the router at once
        i = nxt
    _reset_replica(sr, sl, bk, kc, dc, num_blocks)
    sf[_T] = now
    sf[_LAST_CLIENT_T] = now
    sf[_CUTOFF] = math.inf
