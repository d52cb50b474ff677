"""The decode-only stretch of the fast kernel: steps in which nothing can join, leave or be
preempted, run in a tight loop.

While the running batch is all decoders, no request can be admitted, no release is due and
no decoder emits its last token, a step is O(1): its duration depends only on the batch's
summed context, which grows by ``num_decoding`` per step, and the KV blocks it needs are the
decoders whose context reaches a block boundary — a count per phase key::

    decoder context at step G:   ctx0 + G - step0
    needs a block at step G iff  (ctx0 - step0) % block_size == (-G) % block_size
                                  \\____ its phase key ____/    \\__ the step's __/

The step's fixed terms are taken once
(:func:`capacitor.perf.step_time.step_time_head_touched_s`; the same floating-point sum as
the general path), and inter-token gaps that share a histogram bin are added as one run.
NOTE: identical arithmetic to :mod:`capacitor.engine._step`, for performance only.
"""

from __future__ import annotations

import math

import numba

from capacitor.engine._kernel_cache import _allocate
from capacitor.engine._kernel_util import _add_gap_run, _itl_bin_interior, _itl_bin_near
from capacitor.engine._schedule import _polls
from capacitor.engine._slots import _release_unreleased
from capacitor.engine._state import (
    ADP_WAIT,
    BUSY_S,
    CUTOFF_S,
    EVICTABLE,
    FREE_UNCACHED,
    LAST_TOKEN_S,
    MAX_USED_BLOCKS,
    NOW_S,
    NUM_DECODING,
    NUM_RUNNING,
    NUM_UNRELEASED,
    NUM_WAITING,
    RECV_COUNT,
    RECV_S,
    STEP,
    SUM_CTX0_MINUS_STEP0,
    WAIT_HEAD,
)
from capacitor.perf.step_time import (
    moe_touched_lookup,
    step_time_attention_s,
    step_time_comm_s,
    step_time_head_touched_s,
)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _decode_stretch(rep_id, rep, until_s, fleet, kv, requests, outputs, engine, telemetry):
    """Run decode-only steps of replica ``rep_id`` from its clock until a release is due
    (``until_s``), a decoder finishes, a waiting request may join, or blocks run out. The
    caller has checked that the running batch is all decoders and that none finishes in the
    first step (and, with attention-DP balancing, that nothing waits). State is written back
    only if a step ran."""
    sched = rep.sched
    clock = rep.clock
    ring = rep.finish_ring
    mask = ring.shape[0] - 1
    num_by_phase = rep.num_by_phase
    block_size = engine.block_size
    coeffs = engine.coeffs
    send_s = outputs.send_s
    itl_hist = telemetry.itl_hist
    itl_sum_s = telemetry.itl_sum_s
    itl_count = telemetry.itl_count
    itl_edges_s = telemetry.itl_edges_s
    busy_bins = telemetry.busy_bins
    seq_bins = telemetry.seq_bins
    inv_bin = 1.0 / telemetry.bin_s
    last_bin = busy_bins.shape[1] - 1

    t = clock[NOW_S]
    step = sched[STEP]
    step_in = step
    num_decoding = sched[NUM_DECODING]
    last_token_s = clock[LAST_TOKEN_S]
    busy_s = clock[BUSY_S]
    max_used = sched[MAX_USED_BLOCKS]
    cutoff_s = clock[CUTOFF_S]
    recv_interval = engine.recv_interval
    recv_count = sched[RECV_COUNT]
    recv_s = clock[RECV_S]
    adp_timeout = engine.adp_timeout_iters
    adp_wait = sched[ADP_WAIT]
    free_uncached = sched[FREE_UNCACHED]
    evictable = sched[EVICTABLE]
    phase = (-step) % block_size
    decode_ctx = sched[SUM_CTX0_MINUS_STEP0] + num_decoding * (step + 1)
    # when the first waiting request may take a seat (it joins once a step is decided
    # after its arrival); nothing is routed here, so this holds until the last step's
    # finishes leave
    join_s = math.inf
    if (
        sched[NUM_WAITING] > 0
        and sched[NUM_RUNNING] + sched[NUM_UNRELEASED] < engine.max_num_seqs
    ):
        join_s = send_s[sched[WAIT_HEAD]] + engine.ingress_s
    # ITL: a run of steps whose gaps share a histogram bin is added at once
    gap_bin = fleet.gap_bin[rep_id]
    gap_lo = fleet.gap_lo_s[rep_id]
    gap_hi = fleet.gap_hi_s[rep_id]
    run_steps = 0
    run_sum_s = 0.0
    # the batch's shape is fixed: only its context grows (same arithmetic as step_time_s:
    # head + attention + communication)
    touched = moe_touched_lookup(fleet.touched, coeffs, num_decoding)
    head_s = step_time_head_touched_s(
        coeffs, float(num_decoding), float(num_decoding), 0.0, touched
    )
    comm_s = step_time_comm_s(coeffs, float(num_decoding))
    unreleased = sched[NUM_UNRELEASED]
    while True:
        if join_s <= cutoff_s:
            break  # someone may join: the general path decides
        need = num_by_phase[phase]
        if free_uncached >= need:
            free_uncached -= need
        else:
            sched[FREE_UNCACHED] = free_uncached
            ok = _allocate(sched, need, kv)
            free_uncached = sched[FREE_UNCACHED]
            evictable = sched[EVICTABLE]
            if not ok:
                break
        if unreleased > 0:  # decided: the last step's finishes leave
            unreleased = 0
            sched[FREE_UNCACHED] = free_uncached
            _release_unreleased(rep, requests.shareable, kv)
            free_uncached = sched[FREE_UNCACHED]
            evictable = sched[EVICTABLE]
            if sched[NUM_WAITING] > 0 and sched[NUM_RUNNING] < engine.max_num_seqs:
                join_s = send_s[sched[WAIT_HEAD]] + engine.ingress_s
        if adp_timeout > 0:  # attention-DP balancing counts this decision (nothing waits)
            adp_wait += 1
            if adp_wait >= adp_timeout or num_decoding < engine.adp_ranks:
                adp_wait = 0
        d = head_s + step_time_attention_s(coeffs, 0.0, float(decode_ctx)) + comm_s
        t_end = t + d
        busy_s += d
        b = min(int(t * inv_bin), last_bin)
        busy_bins[rep_id, b] += d
        seq_bins[rep_id, b] += d * num_decoding
        client_s = t_end + engine.egress_s
        gap = client_s - last_token_s
        if not (gap_lo < gap < gap_hi):
            if run_steps > 0:
                _add_gap_run(
                    itl_hist, itl_sum_s, itl_count, rep.num_by_class, gap_bin, run_steps,
                    run_sum_s,
                )
            gap_bin = _itl_bin_near(gap, gap_bin, itl_edges_s)
            gap_lo, gap_hi = _itl_bin_interior(gap_bin, itl_edges_s)
            run_steps = 0
            run_sum_s = 0.0
        run_steps += 1
        run_sum_s += gap
        last_token_s = client_s
        # what the next decision sees (same rule as _poll_after_step)
        polled, recv_count = _polls(recv_count, False, recv_interval)
        if polled:
            recv_s = t if engine.async_scheduling else t_end
            cutoff_s = t if engine.async_scheduling else math.inf
        else:
            cutoff_s = recv_s
        t = t_end
        step += 1
        decode_ctx += num_decoding
        phase = phase - 1 if phase > 0 else block_size - 1
        if until_s <= t or ring[step & mask] >= 0:
            break
    sched[FREE_UNCACHED] = free_uncached
    if step > step_in:
        # blocks in use only grow after the first step's releases
        used = engine.num_gpu_blocks - free_uncached - evictable
        if used > max_used:
            max_used = used
        if run_steps > 0:
            _add_gap_run(
                itl_hist, itl_sum_s, itl_count, rep.num_by_class, gap_bin, run_steps, run_sum_s
            )
        fleet.gap_bin[rep_id] = gap_bin
        fleet.gap_lo_s[rep_id] = gap_lo
        fleet.gap_hi_s[rep_id] = gap_hi
        clock[CUTOFF_S] = cutoff_s
        clock[RECV_S] = recv_s
        sched[RECV_COUNT] = recv_count
        sched[ADP_WAIT] = adp_wait
        clock[NOW_S] = t
        clock[LAST_TOKEN_S] = last_token_s
        clock[BUSY_S] = busy_s
        sched[MAX_USED_BLOCKS] = max_used
        sched[STEP] = step
