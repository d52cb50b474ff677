"""One replica's scheduling iterations in the fast kernel, phase by phase.

The event loop (:func:`capacitor.engine._kernel.fleet_kernel`) runs iterations of one replica
from its clock for as long as it holds the earliest event (:func:`_stop_s`,
:func:`_replica_yields`). An iteration (:func:`_iterate`) is:

1. a decode-only stretch when it applies (:mod:`capacitor.engine._decode`);
2. the scheduling decision: running requests, then waiting ones
   (:mod:`capacitor.engine._schedule`);
3. the step's duration from the batch's shape (:func:`_step_duration_s`);
4. its tokens: one per decoder, prefill chunks' progress and first tokens
   (:func:`_emit_tokens`);
5. its finishes, freed in admission order (:func:`_finish_requests`).

Each phase is ``inline="always"``: the event loop is one compiled function (a call with this
many arrays costs more than the steps it runs -- NOTE: for performance only), while the
source reads phase by phase. Rare paths (preemption, failures, refusals, the host tier,
async releases, closed-loop answers, priority queueing) are ordinary compiled functions
instead (``_nrt=False`` like the kernel): inlined, they made the first compile (empty numba
cache) half as long again and its peak memory half as large again, for no speed.
"""

from __future__ import annotations

import math

import numba

from capacitor.engine._decode import _decode_stretch
from capacitor.engine._kernel_cache import _transfer
from capacitor.engine._kernel_util import _add_decode_gaps, _heap_push, _itl_bin, _respond_once
from capacitor.engine._records import Replica
from capacitor.engine._schedule import (
    _admit_waiting,
    _adp_holds_prompts,
    _poll_after_step,
    _schedule_running,
)
from capacitor.engine._slots import (
    _decoder_join,
    _decoder_leave,
    _release,
    _release_unreleased,
    _run_remove,
    _slot_free,
    _slot_progress,
)
from capacitor.engine._speculative import _decode_pos, _spec_step_duration_s
from capacitor.engine._state import (
    ACTIVE,
    BUSY_S,
    CUTOFF_S,
    EVICTABLE,
    F_DEC,
    F_HIT_BLOCKS,
    F_NUM_COMPUTED,
    F_PRIVATE_BLOCKS,
    F_REQ,
    F_RING_NEXT,
    F_SEQ,
    FREE_UNCACHED,
    LAST_TOKEN_S,
    MAX_USED_BLOCKS,
    NEXT_FAILURE,
    NEXT_INITIAL,
    NOW_S,
    NUM_DECODING,
    NUM_PENDING_FINISH,
    NUM_RUNNING,
    NUM_UNRELEASED,
    NUM_WAITING,
    RUN_TAIL,
    STEP,
    SUM_CTX0_MINUS_STEP0,
    U_COMPUTED,
    U_PRIVATE,
    U_REQ,
)
from capacitor.engine.codes import KERNEL_OK, KERNEL_STALLED
from capacitor.engine.status import S_COMPLETED
from capacitor.perf.step_time import moe_touched_lookup, step_time_touched_s


@numba.njit(cache=True, error_model="numpy", inline="always")
def _replica_view(fleet, rep_id):
    """Replica ``rep_id``'s rows of the fleet state, as a :class:`Replica` of views."""
    return Replica(
        fleet.sched[rep_id],
        fleet.clock[rep_id],
        fleet.slots[rep_id],
        fleet.finish_ring[rep_id],
        fleet.num_by_phase[rep_id],
        fleet.num_by_class[rep_id],
        fleet.unreleased[rep_id],
        fleet.pending_finish[rep_id],
    )


@numba.njit(cache=True, error_model="numpy", inline="always")
def _next_release_s(rep_id, fleet, releases, send_s, lookahead, ingress_s):
    """When the next release reaches the engines: anywhere, or with ``lookahead`` the next
    that may reach replica ``rep_id``; inf if none."""
    next_s = math.inf
    if lookahead:
        pos = fleet.next_release[rep_id]
        if pos < releases.num_initial:
            next_s = send_s[pos if releases.init_identity else releases.init_order[pos]]
            next_s += ingress_s
        return next_s
    pos = fleet.router[NEXT_INITIAL]
    if pos < releases.num_initial:
        next_s = send_s[pos if releases.init_identity else releases.init_order[pos]]
        next_s += ingress_s
    heap = fleet.releases
    if heap.size[0] > 0 and heap.time_s[0] < next_s:
        next_s = heap.time_s[0]
    return next_s


@numba.njit(cache=True, error_model="numpy", inline="always")
def _next_failure_s(fleet, pool):
    """When the next replica failure is due (anywhere); inf if none is left."""
    k = fleet.router[NEXT_FAILURE]
    return pool.fail_at_s[k] if k < pool.fail_at_s.shape[0] else math.inf


@numba.njit(cache=True, error_model="numpy", inline="always")
def _is_kv_first_step(s, slots, fleet, engine):
    """Whether slot ``s`` runs the first step of a request whose prompt's KV came from the
    prefill pool (disaggregated decode pool, :mod:`capacitor.engine._disagg`): its one new
    token is the first token's, over the transferred prompt. The step is a decode step for
    it (SGLang's decode worker merges the transferred request into its running decode batch
    as a "prebuilt" batch, without a prefill forward; TensorRT-LLM's generation-only
    workers skip the context phase): it is costed as a decoder, not as a prefill chunk."""
    return engine.kv_from_prefill and fleet.generated[slots[F_REQ, s]] == 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _step_duration_s(rep, num_prefill, loaded_blocks, fleet, engine):
    """The step's duration from its shape: tokens, sequences, prefill attention pairs
    (each chunk's ``q`` new tokens against its ``c`` computed ones: ``q c + q (q + 1) / 2``)
    and summed decode context, plus host-tier block loads."""
    sched = rep.sched
    slots = rep.slots
    num_decoding = sched[NUM_DECODING]
    num_tokens = num_decoding
    pairs = 0
    first_ctx = 0
    num_first = 0
    for k in range(num_prefill):
        q = fleet.prefill_tokens[k]
        num_tokens += q
        c = slots[F_NUM_COMPUTED, fleet.prefill_slot[k]]
        if _is_kv_first_step(fleet.prefill_slot[k], slots, fleet, engine):
            num_first += 1  # a decode of its first token over the transferred prompt
            first_ctx += c + 1
        else:
            pairs += q * c + q * (q + 1) // 2
    decode_ctx = sched[SUM_CTX0_MINUS_STEP0] + num_decoding * (sched[STEP] + 1) + first_ctx
    coeffs = engine.coeffs
    touched = moe_touched_lookup(fleet.touched, coeffs, num_tokens)
    duration_s = step_time_touched_s(
        coeffs,
        float(num_tokens),
        float(num_decoding + num_prefill),
        float(num_prefill - num_first),
        float(pairs),
        float(decode_ctx),
        touched,
    )
    duration_s += loaded_blocks * engine.cpu_load_s_per_block
    return duration_s


@numba.njit(cache=True, error_model="numpy", inline="always")
def _emit_tokens(rep, client_s, num_prefill, fleet, kv, requests, outputs, engine, telemetry):
    """The step's tokens reach the client at ``client_s``: one per decoder (all with the
    same gap), and a first or next token per prefill chunk that completes its prompt. A
    finished prefill becomes a decoder from the next step. Returns how many slots finish
    (listed in ``fleet.finishing``)."""
    sched = rep.sched
    slots = rep.slots
    ring = rep.finish_ring
    step = sched[STEP]
    block_size = engine.block_size
    generated = fleet.generated
    finishing = fleet.finishing
    itl_class = requests.itl_class
    if sched[NUM_DECODING] > 0:
        _add_decode_gaps(telemetry.itl_hist, telemetry.itl_sum_s, telemetry.itl_count,
                         rep.num_by_class, client_s - rep.clock[LAST_TOKEN_S])
    num_finishing = 0
    s = ring[step & (ring.shape[0] - 1)]
    while s >= 0:
        finishing[num_finishing] = s
        num_finishing += 1
        s = slots[F_RING_NEXT, s]
    # prefill chunks: progress, cache transfer, first tokens
    for k in range(num_prefill):
        s = fleet.prefill_slot[k]
        r = slots[F_REQ, s]
        old = slots[F_NUM_COMPUTED, s]
        new = old + fleet.prefill_tokens[k]
        slots[F_NUM_COMPUTED, s] = new
        if engine.enable_prefix_caching and old < kv.start_block[r] * block_size:
            moved = _transfer(r, old, new, sched, kv)
            slots[F_PRIVATE_BLOCKS, s] -= moved
            slots[F_HIT_BLOCKS, s] += moved
        if new < requests.prompt_len[r] + generated[r]:
            continue
        kv_first = engine.kv_from_prefill and generated[r] == 1
        generated[r] += 1
        if generated[r] == 1 or kv_first:
            # (a transferred request's first token, sampled by the prefill pool, reaches
            # the client with its second, at the end of its first decode step)
            outputs.first_token_s[r] = client_s
        elif itl_class[r] >= 0:
            gap = client_s - outputs.finish_s[r]
            c = itl_class[r]
            telemetry.itl_hist[c, _itl_bin(gap)] += 1
            telemetry.itl_sum_s[c] += gap
            telemetry.itl_count[c] += 1
        outputs.finish_s[r] = client_s
        if generated[r] == requests.output_len[r]:
            finishing[num_finishing] = s
            num_finishing += 1
            continue
        _decoder_join(s, r, step + 1, rep, itl_class, generated[r], requests.output_len[r],
                      block_size, engine.reserve_full_request, engine.spec_fp)
    return num_finishing


@numba.njit(cache=True, error_model="numpy", inline="always")
def _finish_requests(rep, client_s, num_finishing, fleet, kv, requests, releases, outputs,
                     engine):
    """The step's finished requests leave, in admission order (as vLLM frees them): their
    blocks are released (after the next decision under async scheduling), the router hears
    of them at the step's end, and whoever waits on their answer is released."""
    sched = rep.sched
    slots = rep.slots
    step = sched[STEP]
    finishing = fleet.finishing
    # insertion sort by admission sequence (few finish per step; no allocation)
    for a in range(1, num_finishing):
        x = finishing[a]
        j = a - 1
        while j >= 0 and slots[F_SEQ, finishing[j]] > slots[F_SEQ, x]:
            finishing[j + 1] = finishing[j]
            j -= 1
        finishing[j + 1] = x
    for k in range(num_finishing):
        s = finishing[k]
        r = slots[F_REQ, s]
        if slots[F_DEC, s]:
            num_computed, private, gen = _slot_progress(
                s, slots, _decode_pos(step + 1, engine.spec_fp), engine.block_size,
                engine.reserve_full_request, engine.spec_tokens,
            )
            if gen > requests.output_len[r]:  # MTP: its last step emitted only what it owed
                num_computed -= gen - requests.output_len[r]
                gen = requests.output_len[r]
            fleet.generated[r] = gen
            _decoder_leave(s, r, rep, requests.itl_class, engine.block_size,
                           engine.reserve_full_request)
        else:
            num_computed = slots[F_NUM_COMPUTED, s]
            private = slots[F_PRIVATE_BLOCKS, s]
        if engine.async_scheduling:  # released once the next step is decided
            u = sched[NUM_UNRELEASED]
            rep.unreleased[U_REQ, u] = r
            rep.unreleased[U_COMPUTED, u] = num_computed
            rep.unreleased[U_PRIVATE, u] = private
            sched[NUM_UNRELEASED] = u + 1
        else:
            _release(r, num_computed, private, requests.shareable[r], sched, kv)
        _run_remove(sched, slots, s)
        _slot_free(sched, slots, s)
        outputs.finish_s[r] = client_s
        outputs.status[r] = S_COMPLETED
        # the router sees the finish at the step's end, not its start
        rep.pending_finish[sched[NUM_PENDING_FINISH]] = r
        sched[NUM_PENDING_FINISH] += 1
        if releases.concurrency > 0 or releases.child_gate.shape[0] > 0:  # someone may wait
            _respond_once(r, True, client_s, requests.arrival_s, outputs.send_s, engine.ingress_s,
                          releases, fleet.router, fleet.releases)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _iterate(rep_id, rep, until_s, fleet, kv, requests, releases, outputs, engine, telemetry):
    """One scheduling iteration of replica ``rep_id`` (or a decode-only stretch of them,
    stopping at ``until_s``). Returns KERNEL_STALLED if a waiting request can never run."""
    sched = rep.sched
    clock = rep.clock
    slots = rep.slots
    ring = rep.finish_ring
    tail = sched[RUN_TAIL]
    if (
        tail >= 0
        and engine.spec_tokens == 0  # (one token per decoder per step)
        and slots[F_DEC, tail]
        and until_s > clock[NOW_S]
        and ring[sched[STEP] & (ring.shape[0] - 1)] < 0
        and (engine.adp_timeout_iters == 0 or sched[NUM_WAITING] == 0)
    ):
        _decode_stretch(rep_id, rep, until_s, fleet, kv, requests, outputs, engine, telemetry)
        if until_s <= clock[NOW_S]:
            return KERNEL_OK

    token_budget, num_prefill, preempted_any = _schedule_running(
        rep, fleet, kv, requests, outputs, engine
    )
    loaded_blocks = 0
    held = engine.adp_timeout_iters > 0 and _adp_holds_prompts(rep, fleet, outputs, engine)
    if not preempted_any and not held:  # waiting requests, unless something was preempted
        num_prefill, loaded_blocks = _admit_waiting(
            rep, token_budget, num_prefill, fleet, kv, requests, outputs, engine
        )
    # the last step's finishes leave once this step is decided (async scheduling)
    _release_unreleased(rep, requests.shareable, kv)
    if sched[NUM_DECODING] == 0 and num_prefill == 0:
        if (
            sched[NUM_RUNNING] == 0
            and sched[NUM_WAITING] > 0
            and not preempted_any
            and clock[CUTOFF_S] == math.inf
        ):
            return KERNEL_STALLED
        clock[CUTOFF_S] = math.inf  # nothing in flight: the next decision sees all
        return KERNEL_OK

    used = engine.num_gpu_blocks - sched[FREE_UNCACHED] - sched[EVICTABLE]
    if used > sched[MAX_USED_BLOCKS]:
        sched[MAX_USED_BLOCKS] = used
    if engine.spec_tokens:
        duration_s = _spec_step_duration_s(rep, num_prefill, loaded_blocks, fleet, engine)
    else:
        duration_s = _step_duration_s(rep, num_prefill, loaded_blocks, fleet, engine)
    t = clock[NOW_S]
    t_end = t + duration_s
    _poll_after_step(sched, clock, t, t_end, num_prefill > 0, engine)
    clock[BUSY_S] += duration_s
    busy_bins = telemetry.busy_bins
    b = min(int(t * (1.0 / telemetry.bin_s)), busy_bins.shape[1] - 1)
    busy_bins[rep_id, b] += duration_s
    telemetry.seq_bins[rep_id, b] += duration_s * (sched[NUM_DECODING] + num_prefill)
    client_s = t_end + engine.egress_s
    num_finishing = _emit_tokens(
        rep, client_s, num_prefill, fleet, kv, requests, outputs, engine, telemetry
    )
    _finish_requests(rep, client_s, num_finishing, fleet, kv, requests, releases, outputs,
                     engine)
    clock[LAST_TOKEN_S] = client_s
    clock[NOW_S] = t_end
    sched[STEP] += 1
    return KERNEL_OK


@numba.njit(cache=True, error_model="numpy", inline="always")
def _stop_s(rep_id, fleet, releases, outputs, engine, pool):
    """When replica ``rep_id``'s iterations stop: its next release or the next failure
    (either may change what it runs)."""
    return min(
        _next_release_s(rep_id, fleet, releases, outputs.send_s, pool.lookahead,
                        engine.ingress_s),
        _next_failure_s(fleet, pool),
    )


@numba.njit(cache=True, error_model="numpy", inline="always")
def _replica_yields(rep_id, rep, fleet, releases, outputs, engine, pool):
    """After an iteration of replica ``rep_id``: True when it stops running, for as long as
    it holds the earliest event. Idle, it leaves the event loop; in lockstep it stops at the
    next release anywhere or another replica's earlier event (and re-enters the replica
    heap); with lookahead, at the next release that may reach it (run again before that
    release is routed)."""
    sched = rep.sched
    if sched[NUM_RUNNING] == 0 and sched[NUM_WAITING] == 0 and sched[NUM_PENDING_FINISH] == 0:
        sched[ACTIVE] = 0
        return True
    now_s = rep.clock[NOW_S]
    next_s = _stop_s(rep_id, fleet, releases, outputs, engine, pool)
    if pool.lookahead:  # nothing else couples the replicas: stop only at its releases
        return next_s <= now_s
    events = fleet.events
    if next_s <= now_s or (
        events.size[0] > 0
        and (
            events.time_s[0] < now_s
            or (events.time_s[0] == now_s and events.index[0] < rep_id)
        )
    ):
        _heap_push(events, now_s, rep_id)
        return True
    return False
