"""Pool-level pieces of the fast kernel: routing a request to a replica, binding its prefix
chain to what that replica holds, releasing finished requests to the router, and a replica's
reset and failure. The event loop itself is :func:`capacitor.engine._kernel.fleet_kernel`.

Prefix nodes per replica: request ``i`` is node ``i``; shared segment ``g`` has one copy per
replica, so a bound chain never crosses replicas::

    node ids:  [0 .. n)  requests | [n + rep * S + g]  replica rep's copy of segment g
"""

from __future__ import annotations

import math

import numba

from capacitor.engine._kernel_util import _heap_push, _respond
from capacitor.engine._state import (
    ACTIVE,
    CPU_HEAD,
    CPU_TAIL,
    CUTOFF_S,
    F_DEC,
    F_FREE_STACK,
    F_NEXT,
    F_REQ,
    F_RING_NEXT,
    F_RING_PREV,
    FREE_UNCACHED,
    LAST_TOKEN_S,
    LRU_HEAD,
    LRU_TAIL,
    MAX_USED_BLOCKS,
    NEXT_SEQ,
    NOW_S,
    NUM_FREE_SLOTS,
    NUM_PENDING_FINISH,
    NUM_WAITING,
    RR_CURSOR,
    RUN_HEAD,
    RUN_TAIL,
    STEP,
    WAIT_HEAD,
    WAIT_TAIL,
)
from capacitor.engine.codes import ROUTE_LEAST_OUTSTANDING, ROUTE_POWER_OF_TWO, ROUTE_ROUND_ROBIN
from capacitor.engine.status import S_LOST


@numba.njit(cache=True, error_model="numpy", inline="always")
def _route(i, pool, router, outstanding_tokens, down_until_s, now_s):
    """The replica for request ``i``, skipping replicas down at ``now_s``; -1 if none is up.
    (``pool.pick2`` has a row per request only when there is a choice: more than one
    replica.)"""
    num_replicas = pool.num_replicas
    if num_replicas == 1:
        return 0 if down_until_s[0] <= now_s else -1
    policy = pool.policy
    pick2 = pool.pick2
    if policy == ROUTE_LEAST_OUTSTANDING:
        # ties go to the first replica after a random offset, as real routers break them at
        # random (a fixed order would load low-numbered replicas more)
        best = -1
        rep = pick2[i, 0] % num_replicas
        for _ in range(num_replicas):
            if down_until_s[rep] <= now_s and (
                best < 0 or outstanding_tokens[rep] < outstanding_tokens[best]
            ):
                best = rep
            rep = rep + 1 if rep + 1 < num_replicas else 0
        return best
    if policy == ROUTE_ROUND_ROBIN:
        first = router[RR_CURSOR] % num_replicas
        router[RR_CURSOR] += 1
    elif policy == ROUTE_POWER_OF_TWO:
        a = pick2[i, 0]  # drawn in [0, R) (a division per request is worth avoiding)
        b = pick2[i, 1]
        if a >= num_replicas or b >= num_replicas:
            a %= num_replicas
            b %= num_replicas
        if down_until_s[a] > now_s or (
            down_until_s[b] <= now_s
            and (
                outstanding_tokens[b] < outstanding_tokens[a]
                or (outstanding_tokens[b] == outstanding_tokens[a] and b < a)
            )
        ):
            a = b
        first = a
    else:
        first = pool.route_key[i] % num_replicas
    rep = first
    for _ in range(num_replicas):  # the first choice, or the next replica that is up
        if down_until_s[rep] <= now_s:
            return rep
        rep = rep + 1 if rep + 1 < num_replicas else 0
    return -1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _bind_source(i, rep, num_requests, prefix, block_size):
    """Point request ``i``'s prefix at what replica ``rep`` can hold: its own copy of a
    shared segment, or the nearest ancestor request that ran there."""
    parent = prefix.parent
    prefix_len = prefix.prefix_len
    node_replica = prefix.node_replica
    s = parent[i]
    length = prefix_len[i]
    while 0 <= s < num_requests and node_replica[s] >= 0 and node_replica[s] != rep:
        length = min(length, prefix_len[s])
        s = parent[s]
    if s >= num_requests:
        s = num_requests + rep * prefix.num_segments + (s - num_requests)
    if s < 0 or length // block_size == 0:
        prefix.bound_parent[i] = -1
        prefix.bound_start_block[i] = 0
    else:
        prefix.bound_parent[i] = s
        prefix.bound_start_block[i] = length // block_size
    node_replica[i] = rep


@numba.njit(cache=True, error_model="numpy", inline="always")
def _flush_finished(rep_id, rep, fleet, requests):
    """The router learns of a step's finished requests (``rep.pending_finish``) when the
    step ends."""
    sched = rep.sched
    tenant = requests.tenant
    for j in range(sched[NUM_PENDING_FINISH]):
        r = rep.pending_finish[j]
        fleet.inflight[tenant[r] if tenant.shape[0] > 1 else 0] -= 1
        fleet.outstanding_tokens[rep_id] -= requests.prompt_len[r] + requests.output_len[r]
    sched[NUM_PENDING_FINISH] = 0


@numba.njit(cache=True, error_model="numpy")
def _reset_replica(sched, slots, finish_ring, num_by_phase, num_by_class, num_gpu_blocks):
    """An empty replica: no running or waiting request, every KV block free, empty cache
    lists. Step and admission counters and the active flag are kept."""
    for k in range(sched.shape[0]):
        if k not in (STEP, MAX_USED_BLOCKS, NEXT_SEQ, ACTIVE):
            sched[k] = 0
    sched[FREE_UNCACHED] = num_gpu_blocks
    for k in (LRU_HEAD, LRU_TAIL, RUN_HEAD, RUN_TAIL, CPU_HEAD, CPU_TAIL, WAIT_HEAD, WAIT_TAIL):
        sched[k] = -1
    num_slots = slots.shape[1]
    sched[NUM_FREE_SLOTS] = num_slots
    for s in range(num_slots):
        slots[F_REQ, s] = -1
        slots[F_DEC, s] = 0
        slots[F_RING_PREV, s] = -1
        slots[F_RING_NEXT, s] = -1
        slots[F_FREE_STACK, s] = num_slots - 1 - s
    finish_ring[:] = -1
    num_by_phase[:] = 0
    num_by_class[:] = 0


@numba.njit(cache=True, error_model="numpy")
def _fail_replica(rep_id, now_s, fleet, kv, requests, releases, outputs, engine):
    """Replica ``rep_id`` fails at ``now_s``: its running requests are lost (their clients
    get an error at once), its waiting requests go back to the router, its KV cache is
    gone."""
    sched = fleet.sched[rep_id]
    slots = fleet.slots[rep_id]
    tenant = requests.tenant
    inflight = fleet.inflight
    s = sched[RUN_HEAD]
    while s >= 0:
        r = slots[F_REQ, s]
        node = r
        while node >= 0:  # the request's whole prefix chain lived on this replica
            kv.cached[node] = 0
            kv.pins[node] = 0
            if kv.cpu_cached.shape[0] > 1:
                kv.cpu_cached[node] = 0
            node = kv.parent[node]
        outputs.status[r] = S_LOST
        inflight[tenant[r] if tenant.shape[0] > 1 else 0] -= 1
        outputs.finish_s[r] = now_s
        _respond(r, False, now_s, requests.arrival_s, outputs.send_s, engine.ingress_s, releases,
                 fleet.router, fleet.releases)
        s = slots[F_NEXT, s]
    node = sched[LRU_HEAD]
    while node >= 0:
        kv.cached[node] = 0
        node = kv.lru_next[node]
    node = sched[CPU_HEAD]
    while node >= 0:
        kv.cpu_cached[node] = 0
        node = kv.cpu_next[node]
    i = sched[WAIT_HEAD]
    for _ in range(sched[NUM_WAITING]):
        nxt = fleet.wait_next[i]
        inflight[tenant[i] if tenant.shape[0] > 1 else 0] -= 1  # counted again when re-routed
        _heap_push(fleet.releases, now_s, i)  # re-sent to the router at once
        i = nxt
    _reset_replica(sched, slots, fleet.finish_ring[rep_id], fleet.num_by_phase[rep_id],
                   fleet.num_by_class[rep_id], engine.num_gpu_blocks)
    clock = fleet.clock[rep_id]
    clock[NOW_S] = now_s
    clock[LAST_TOKEN_S] = now_s
    clock[CUTOFF_S] = math.inf
