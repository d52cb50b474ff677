"""The numba fast path: many replicas of one pool behind a router, one event loop.

Semantics per replica are :mod:`capacitor.engine.reference`'s (the simulator with one replica
reproduces it exactly). Data layout, chosen so that no step touches decoding requests one
by one:

* Running requests live in ``max_num_seqs`` *slots* per replica (``slots[rep, field, s]``,
  :mod:`capacitor.engine._state`), linked in admission order. At most one running request
  is mid-prefill, and it is the tail (a partial prefill takes the whole remaining token
  budget, so nothing is admitted after it).
* A decoding slot stores only where it started: context ``ctx0`` at step ``step0``. Its
  context at step ``G`` is ``ctx0 + G - step0``, so the batch's summed context is the
  running total ``sum(ctx0 - step0) + num_decoding * (G + 1)``. It needs a new KV block at
  step ``G`` iff ``(ctx0 - step0) % block_size == (-G) % block_size``: a count per phase key
  gives the number of new blocks per step in O(1). Its last step ``step0 + remaining - 1``
  is known at entry; slots are kept in a ring of per-step doubly linked buckets.
* Only when blocks run out does a step walk the running list (to preempt exactly as vLLM
  does); otherwise a decode-only step is O(1) plus O(1) per finishing request.
* Prefix-cache state is per node (cached block count, pin count, LRU links), never per block.
  Each replica has its own copy of every shared segment (node ``n + rep * S + s``); a
  request whose source ran on another replica shares only what that replica also holds.

The event loop (:func:`fleet_kernel`) takes, in time order, either the next *release* (a
request sent: from the pre-sorted initial list or the heap of dynamic releases — session
rounds, closed-loop clients) which the router assigns to a replica, or the next *replica
event* (a replica whose clock is earliest runs scheduling iterations,
:func:`capacitor.engine._step._iterate`), or a replica *failure*. Releases at the same
time go first, as a single engine pulls every arrival due before it schedules. When the
router's candidates for every release are known in advance (lookahead,
:mod:`capacitor.engine._lookahead`) there is no replica heap: before a release is routed,
each replica it may reach runs up to it, and after the last release every replica runs to
the end.

The arguments are the named records of :mod:`capacitor.engine._records`; every function
takes records, arrays and scalars only (no globals but constants), so numba's on-disk cache
stays valid when configuration changes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from capacitor.engine._kernel_util import _heap_pop, _heap_push, _respond
from capacitor.engine._pool import (
    _bind_source,
    _fail_replica,
    _flush_finished,
    _reset_replica,
    _route,
)
from capacitor.engine._records import Fleet, Heap, KVCache
from capacitor.engine._slots import _release_unreleased, _wait_insert_once, _wait_push_back
from capacitor.engine._state import (
    ACTIVE,
    BUSY_S,
    CUTOFF_S,
    MAX_USED_BLOCKS,
    NEXT_CLOSED,
    NEXT_FAILURE,
    NEXT_INITIAL,
    NOW_S,
    NUM_CLOCK,
    NUM_ROUTER,
    NUM_RUNNING,
    NUM_SCHED,
    NUM_SLOT_FIELDS,
    NUM_WAITING,
    STEP,
    WAIT_HEAD,
)
from capacitor.engine._step import (
    _iterate,
    _next_failure_s,
    _replica_view,
    _replica_yields,
    _stop_s,
)
from capacitor.engine.codes import KERNEL_OK
from capacitor.engine.status import S_REJECTED, S_SHED
from capacitor.perf.step_time import C_MOE_TOPK_FRACTION, moe_touched_fraction


@numba.njit(cache=True, error_model="numpy")
def _touched_table(engine):
    """MoE experts touched by a step of T tokens, by T (a power per step is costly); the
    same expression as step_time_s, so the same floating-point values."""
    coeffs = engine.coeffs
    size = engine.max_num_batched_tokens + 1 if coeffs[C_MOE_TOPK_FRACTION] > 0.0 else 0
    touched = np.zeros(size)
    for num_tokens in range(size):
        touched[num_tokens] = moe_touched_fraction(coeffs, float(num_tokens))
    return touched


@numba.njit(cache=True, error_model="numpy")
def _reset_replicas(sched, slots, finish_ring, num_by_phase, num_by_class, num_gpu_blocks):
    """:func:`capacitor.engine._pool._reset_replica` for every replica (its argument types
    those of the kernel's own call, so it compiles once)."""
    for rep in range(sched.shape[0]):
        _reset_replica(sched[rep], slots[rep], finish_ring[rep], num_by_phase[rep],
                       num_by_class[rep], num_gpu_blocks)


# NOTE: for compile time, _new_fleet and _new_kv_cache are plain Python (numpy allocations
# only, once per simulation): compiled, building the records' two dozen arrays took numba
# ~9 s of the first run's compile.
def _new_fleet(requests, releases, engine, pool, num_itl_classes):
    """The event loop's state: every replica empty, no release taken."""
    n = requests.prompt_len.shape[0]
    num_replicas = pool.num_replicas
    max_num_seqs = engine.max_num_seqs
    router = np.zeros(NUM_ROUTER, np.int64)
    router[NEXT_CLOSED] = releases.concurrency
    sched = np.zeros((num_replicas, NUM_SCHED), np.int64)
    clock = np.zeros((num_replicas, NUM_CLOCK), np.float64)
    clock[:, CUTOFF_S] = math.inf
    # indexed [rep, field, slot] but laid out slot by slot: a slot's fields share a cache line.
    # NOTE: for compile time, at least two replica rows and two slot columns (the spare ones
    # unused, the columns sliced off): one replica's transposed block is Fortran-contiguous
    # and one slot's C-contiguous, and numba would compile fleet_kernel again for either
    # layout; this way the layout is "A" for every pool size and max_num_seqs.
    slots = np.zeros((max(num_replicas, 2), max(max_num_seqs, 2), NUM_SLOT_FIELDS),
                     np.int64)[:, :max_num_seqs, :].transpose(0, 2, 1)
    finish_ring = np.empty((num_replicas, engine.ring_size), np.int32)
    num_by_phase = np.empty((num_replicas, engine.block_size), np.int64)
    num_by_class = np.empty((num_replicas, num_itl_classes), np.int64)
    _reset_replicas(sched, slots, finish_ring, num_by_phase, num_by_class,
                    engine.num_gpu_blocks)
    touched = _touched_table(engine)
    heap_size = releases.heap_capacity + 1
    # async scheduling: finished in the last step, released once the next is decided
    num_unreleased = max_num_seqs if engine.async_scheduling else 1
    return Fleet(
        router=router,
        sched=sched,
        clock=clock,
        slots=slots,
        finish_ring=finish_ring,
        num_by_phase=num_by_phase,
        num_by_class=num_by_class,
        unreleased=np.zeros((num_replicas, 3, num_unreleased), np.int64),
        pending_finish=np.zeros((num_replicas, max_num_seqs), np.int64),
        outstanding_tokens=np.zeros(num_replicas, np.int64),
        inflight=np.zeros(pool.max_concurrent.shape[0], np.int64),
        down_until_s=np.full(num_replicas, -math.inf),
        gap_bin=np.ones(num_replicas, np.int64),
        gap_lo_s=np.full(num_replicas, math.inf),
        gap_hi_s=np.full(num_replicas, -math.inf),
        next_release=pool.look_first.copy(),
        releases=Heap(np.zeros(heap_size), np.zeros(heap_size, np.int32), np.zeros(1, np.int64)),
        events=Heap(
            np.zeros(num_replicas + 1), np.zeros(num_replicas + 1, np.int32),
            np.zeros(1, np.int64),
        ),
        # NOTE: per-request state is int32, for memory (ten million requests)
        generated=np.zeros(n, np.int32),
        wait_next=np.full(n, -1, np.int32),
        touched=touched,
        prefill_slot=np.zeros(max_num_seqs, np.int64),
        prefill_tokens=np.zeros(max_num_seqs, np.int64),
        finishing=np.zeros(max_num_seqs, np.int64),
    )


def _new_kv_cache(num_requests, prefix, engine, num_replicas):
    """Empty prefix caches: every node of every replica uncached and unpinned. NOTE:
    per-node state is int32, for memory (~100 bytes per request in all)."""
    num_nodes = num_requests + num_replicas * prefix.num_segments
    num_cpu_nodes = num_nodes if engine.num_cpu_blocks > 0 else 1
    return KVCache(
        parent=prefix.bound_parent,
        start_block=prefix.bound_start_block,
        cached=np.zeros(num_nodes, np.int32),
        pins=np.zeros(num_nodes, np.int32),
        lru_prev=np.full(num_nodes, -1, np.int32),
        lru_next=np.full(num_nodes, -1, np.int32),
        cpu_cached=np.zeros(num_cpu_nodes, np.int32),
        cpu_prev=np.full(num_cpu_nodes, -1, np.int32),
        cpu_next=np.full(num_cpu_nodes, -1, np.int32),
        chain=np.zeros(prefix.max_depth + 2, np.int64),
        block_size=engine.block_size,
        enable_caching=engine.enable_prefix_caching,
        num_cpu_blocks=engine.num_cpu_blocks,
    )


@numba.njit(cache=True, error_model="numpy", inline="always")
def _next_release(fleet, releases, send_s, ingress_s):
    """``(time_s, request, from_heap)`` of the next release: the pre-sorted initial requests
    merged with the dynamic heap (ties by request id); request -1 when none is left."""
    release_s = math.inf
    i = -1
    pos = fleet.router[NEXT_INITIAL]
    if pos < releases.num_initial:
        i = pos if releases.init_identity else releases.init_order[pos]
        release_s = send_s[i] + ingress_s
    from_heap = False
    heap = fleet.releases
    if heap.size[0] > 0:
        heap_s = heap.time_s[0]
        heap_i = heap.index[0]
        if heap_s < release_s or (heap_s == release_s and heap_i < i):
            release_s = heap_s
            i = heap_i
            from_heap = True
    return release_s, i, from_heap


@numba.njit(cache=True, error_model="numpy", inline="always")
def _lookahead_replica(i, release_s, end_pos, fleet, pool):
    """Lookahead: the replica to run before release ``i`` is routed (a candidate of it
    whose clock is behind it), or after the last release the next replica with work;
    ``(-1, end_pos)`` when there is none. Returns ``(replica, end_pos)``."""
    sched = fleet.sched
    if i >= 0:
        pos = fleet.router[NEXT_INITIAL]
        for k in range(2):
            c = pool.look_cand[pos, k]
            if c >= 0 and sched[c, ACTIVE] and fleet.clock[c, NOW_S] < release_s:
                return c, end_pos
        return -1, end_pos
    while end_pos < pool.num_replicas and not sched[end_pos, ACTIVE]:
        end_pos += 1
    if end_pos < pool.num_replicas:
        return end_pos, end_pos
    return -1, end_pos


@numba.njit(cache=True, error_model="numpy", inline="always")
def _take_release(from_heap, fleet, releases, pool):
    """Remove the release :func:`_next_release` returned."""
    if from_heap:
        _heap_pop(fleet.releases)
        return
    pos = fleet.router[NEXT_INITIAL]
    if pool.lookahead:  # its candidates' next release is the one after it
        for k in range(2):
            c = pool.look_cand[pos, k]
            if c >= 0:
                fleet.next_release[c] = pool.look_next[pos, k]
    fleet.router[NEXT_INITIAL] = pos + 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _admission_status(i, rep_id, release_s, tenant_id, fleet, requests, pool):
    """Admission control at the router for request ``i`` routed to ``rep_id`` (-1: every
    replica down): 0 to admit, or S_SHED when the replica's queue is full, the tenant is
    at its concurrency cap or the predicted TTFT is over the limit."""
    if rep_id < 0:
        return S_SHED
    sched = fleet.sched[rep_id]
    if pool.max_queue > 0 and sched[NUM_WAITING] >= pool.max_queue:
        return S_SHED
    if 0 < pool.max_concurrent[tenant_id] <= fleet.inflight[tenant_id]:
        return S_SHED  # the tenant's concurrent-request limit
    if pool.max_predicted_ttft_s > 0:
        # predicted TTFT: the prompts waiting ahead (and this one) at the replica's
        # prefill rate, after the step in progress
        prompt_len = requests.prompt_len
        queued = float(prompt_len[i])
        j = sched[WAIT_HEAD]
        for _ in range(sched[NUM_WAITING]):
            queued += prompt_len[j] + fleet.generated[j]
            j = fleet.wait_next[j]
        predicted_s = queued / pool.prefill_tokens_per_s + max(
            fleet.clock[rep_id, NOW_S] - release_s, 0.0
        )
        if predicted_s > pool.max_predicted_ttft_s:
            return S_SHED
    return 0


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _refuse(i, status, arrival_s, outputs, ingress_s, releases, router, heap):
    """Request ``i`` is refused at the router (``status``): answered at once (compiled
    once, not inlined: the common path admits)."""
    send_s = outputs.send_s
    outputs.status[i] = status
    outputs.finish_s[i] = send_s[i]
    _respond(i, False, send_s[i], arrival_s, send_s, ingress_s, releases, router, heap)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _route_release(i, release_s, fleet, requests, releases, prefix, engine, pool, outputs):
    """Release ``i`` reaches the router at ``release_s``: refused (too long, or by
    admission control: answered at once) or queued at a replica, which wakes if idle."""
    if releases.joins and releases.pending[i] < 0:  # cancelled: a gate of it failed
        _respond(i, False, release_s, requests.arrival_s, outputs.send_s, engine.ingress_s,
                 releases, fleet.router, fleet.releases)
        return
    status = S_REJECTED if requests.rejected[i] else 0  # too long: HTTP 400 at once
    rep_id = -1
    tenant_id = 0
    if not status:
        rep_id = _route(i, pool, fleet.router, fleet.outstanding_tokens, fleet.down_until_s,
                        release_s)
        outputs.replica[i] = rep_id
        tenant_id = requests.tenant[i] if requests.tenant.shape[0] > 1 else 0
        status = _admission_status(i, rep_id, release_s, tenant_id, fleet, requests, pool)
    send_s = outputs.send_s
    if status:
        _refuse(i, status, requests.arrival_s, outputs, engine.ingress_s, releases,
                fleet.router, fleet.releases)
        return
    if pool.num_replicas > 1:
        _bind_source(i, rep_id, requests.prompt_len.shape[0], prefix, engine.block_size)
    fleet.outstanding_tokens[rep_id] += requests.prompt_len[i] + requests.output_len[i]
    sched = fleet.sched[rep_id]
    clock = fleet.clock[rep_id]
    if engine.by_priority:
        _wait_insert_once(sched, fleet.wait_next, i, requests.priority, send_s,
                          engine.ingress_s)
    else:
        _wait_push_back(sched, fleet.wait_next, i)
    fleet.inflight[tenant_id] += 1
    if sched[NUM_RUNNING] == 0 and sched[NUM_WAITING] == 1 and release_s > clock[NOW_S]:
        clock[NOW_S] = release_s  # an idle replica wakes at the arrival
    if sched[ACTIVE] == 0:
        sched[ACTIVE] = 1
        if release_s > clock[NOW_S]:
            clock[NOW_S] = release_s
        if not pool.lookahead:
            _heap_push(fleet.events, clock[NOW_S], rep_id)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _replica_fails(k, fleet, kv, requests, releases, outputs, engine, pool):
    """Failure ``k``: the replica's step in progress completes, then its running requests
    are lost, its waiting ones re-routed; it takes nothing until repaired."""
    rep_id = pool.fail_replica[k]
    now_s = pool.fail_at_s[k]
    rep = _replica_view(fleet, rep_id)
    if rep.sched[ACTIVE] and rep.clock[NOW_S] > now_s:
        now_s = rep.clock[NOW_S]  # the step in progress completes first
    _flush_finished(rep_id, rep, fleet, requests)
    _release_unreleased(rep, requests.shareable, kv)
    _fail_replica(rep_id, now_s, fleet, kv, requests, releases, outputs, engine)
    fleet.outstanding_tokens[rep_id] = 0
    fleet.down_until_s[rep_id] = now_s + pool.fail_repair_s[k]


def run_kernel(requests, releases, prefix, engine, pool, outputs, telemetry):
    """Run a pool of ``pool.num_replicas`` identical replicas to completion.

    Per-request results go to ``outputs`` and aggregates to ``telemetry``, in place
    (:mod:`capacitor.engine._records`). Returns KERNEL_OK, or KERNEL_STALLED when a waiting
    request can never be scheduled."""
    fleet = _new_fleet(requests, releases, engine, pool, telemetry.itl_hist.shape[0])
    kv = _new_kv_cache(requests.prompt_len.shape[0], prefix, engine, pool.num_replicas)
    return fleet_kernel(requests, releases, prefix, engine, pool, outputs, telemetry, fleet, kv)


# NOTE: for performance, compiled without numba's reference counting (``_nrt=False``): the
# records are tuples of arrays, and numba increfs and decrefs every array of a tuple each
# time a phase function binds it (an atomic operation each; ten times the cost of the
# steps). Nothing here allocates: the state comes in from :func:`run_kernel`, and every
# array outlives the call.
@numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
def fleet_kernel(requests, releases, prefix, engine, pool, outputs, telemetry, fleet, kv):
    """The event loop of :func:`run_kernel` over state from :func:`_new_fleet` and
    :func:`_new_kv_cache`."""
    events = fleet.events
    send_s = outputs.send_s
    end_pos = 0  # lookahead, after the last release: replicas run to the end in order
    while True:
        release_s, i, from_heap = _next_release(fleet, releases, send_s, engine.ingress_s)
        event_s = events.time_s[0] if events.size[0] > 0 else math.inf
        look_rep = -1
        if pool.lookahead:
            look_rep, end_pos = _lookahead_replica(i, release_s, end_pos, fleet, pool)
            if look_rep >= 0:
                event_s = -math.inf
        failure_s = _next_failure_s(fleet, pool)
        if failure_s < release_s and failure_s <= event_s:
            k = fleet.router[NEXT_FAILURE]
            fleet.router[NEXT_FAILURE] = k + 1
            _replica_fails(k, fleet, kv, requests, releases, outputs, engine, pool)
            continue
        if i >= 0 and release_s <= event_s:
            _take_release(from_heap, fleet, releases, pool)
            _route_release(i, release_s, fleet, requests, releases, prefix, engine, pool,
                           outputs)
            continue
        if look_rep >= 0:
            rep_id = look_rep
        else:
            if events.size[0] == 0:
                break
            popped_s = events.time_s[0]
            rep_id = _heap_pop(events)
            if fleet.clock[rep_id, NOW_S] > popped_s:  # its clock moved on: requeue
                _heap_push(events, fleet.clock[rep_id, NOW_S], rep_id)
                continue
        # scheduling iterations of the replica, for as long as it holds the earliest event.
        # NOTE: for compile time, this loop is written here rather than in a function
        # inlined here: numba copies an inlined function's IR at every level it is inlined
        # through, in time quadratic in its size, and _iterate is most of the kernel.
        rep = _replica_view(fleet, rep_id)
        while True:
            _flush_finished(rep_id, rep, fleet, requests)
            until_s = _stop_s(rep_id, fleet, releases, outputs, engine, pool)
            code = _iterate(rep_id, rep, until_s, fleet, kv, requests, releases, outputs,
                            engine, telemetry)
            if code != KERNEL_OK:
                return code
            if _replica_yields(rep_id, rep, fleet, releases, outputs, engine, pool):
                break

    stats = telemetry.stats
    for rep_id in range(pool.num_replicas):
        stats[0] += fleet.sched[rep_id, STEP]
        stats[1] = max(stats[1], fleet.sched[rep_id, MAX_USED_BLOCKS])
        stats[2] += fleet.clock[rep_id, BUSY_S]
    return KERNEL_OK


__all__ = ["run_kernel"]
