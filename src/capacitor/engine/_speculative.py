"""MTP speculative decoding in the fast kernel: decode positions, blocks and the step's cost.

With speculative decoding on (``engine.spec_tokens`` = k > 0) every decoder of a replica emits
``pos(G + 1) - pos(G)`` tokens in step ``G``, ``pos(G) = (G * spec_fp) >> SPEC_FP_BITS``
(:mod:`capacitor.perf.speculative`); off, ``pos(G) = G``. A decoding slot stores its *decode
position* at entry in ``F_STEP0``, so the kernel's per-step O(1) bookkeeping holds unchanged
with ``pos`` in place of the step::

    context at step G:     F_CTX0 + pos(G) - F_STEP0
    blocks held before G:  cdiv(context + k, block_size)       (k draft slots reserved)
    new blocks in step G:  one per multiple of block_size in [c + k, c + k + e),
                           e = pos(G + 1) - pos(G): the phase keys (F_CTX0 - F_STEP0) % bs
                           equal to -(pos(G) + k + j) % bs for j < e

The decode-only stretch (:mod:`capacitor.engine._decode`, one token per step) is not used with
speculative decoding on; the general path runs every step.
"""

from __future__ import annotations

import numba

from capacitor.engine._kernel_util import _cdiv
from capacitor.engine._state import (
    F_NUM_COMPUTED,
    F_REQ,
    NUM_DECODING,
    STEP,
    SUM_CTX0_MINUS_STEP0,
)
from capacitor.perf.speculative import SPEC_FP_BITS, spec_step_time_s


@numba.njit(cache=True, error_model="numpy", inline="always")
def _decode_pos(step, spec_fp):
    """Tokens a decoder has emitted by step ``step``, up to a per-slot constant: ``step``
    with speculative decoding off (``spec_fp`` 0), else ``floor(step L)``."""
    if spec_fp == 0:
        return step
    return (step * spec_fp) >> SPEC_FP_BITS


@numba.njit(cache=True, error_model="numpy", inline="always")
def _spec_join(step, remaining, spec_fp):
    """``(pos0, last)`` of a decoder joining at step ``step`` owing ``remaining`` tokens: its
    decode position and the first step ``G`` with ``pos(G + 1) - pos0 >= remaining``."""
    pos0 = (step * spec_fp) >> SPEC_FP_BITS
    return pos0, _cdiv((pos0 + remaining) << SPEC_FP_BITS, spec_fp) - 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _spec_decode_need(num_by_phase, step, spec_fp, spec_tokens, block_size):
    """New KV blocks the decoders need in step ``step`` (see the module docstring)."""
    pos = _decode_pos(step, spec_fp)
    emitted = _decode_pos(step + 1, spec_fp) - pos
    need = 0
    for j in range(emitted):
        need += num_by_phase[(-(pos + spec_tokens + j)) % block_size]
    return need


@numba.njit(cache=True, error_model="numpy", inline="always")
def _spec_slot_need(ctx, step, engine):
    """New KV blocks one decoder of context ``ctx`` needs in step ``step`` (0 when its
    whole request was reserved at admission)."""
    if engine.reserve_full_request:
        return 0
    k = engine.spec_tokens
    emitted = _decode_pos(step + 1, engine.spec_fp) - _decode_pos(step, engine.spec_fp)
    return _cdiv(ctx + emitted + k, engine.block_size) - _cdiv(ctx + k, engine.block_size)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _spec_step_duration_s(rep, num_prefill, loaded_blocks, fleet, engine):
    """:func:`capacitor.engine._step._step_duration_s` with speculative decoding: each
    decoder verifies ``1 + k`` tokens over its context plus ``1 + k``, and the MTP draft
    passes follow (:func:`capacitor.perf.speculative.spec_step_time_s`)."""
    sched = rep.sched
    slots = rep.slots
    k = engine.spec_tokens
    num_decoding = sched[NUM_DECODING]
    num_tokens = num_decoding * (1 + k)
    pairs = 0
    first_ctx = 0
    num_first = 0
    for i in range(num_prefill):
        q = fleet.prefill_tokens[i]
        num_tokens += q
        c = slots[F_NUM_COMPUTED, fleet.prefill_slot[i]]
        if engine.kv_from_prefill and fleet.generated[slots[F_REQ, fleet.prefill_slot[i]]] == 1:
            # a transferred request's first step: a decode of its one token, its drafts
            # from the next step (see capacitor.engine._step._is_kv_first_step)
            num_first += 1
            first_ctx += c + 1
        else:
            pairs += q * c + q * (q + 1) // 2
    pos = _decode_pos(sched[STEP], engine.spec_fp)
    decode_ctx = sched[SUM_CTX0_MINUS_STEP0] + num_decoding * (pos + 1 + k) + first_ctx
    duration_s = spec_step_time_s(
        engine.coeffs, engine.draft_coeffs, k, float(num_tokens), float(num_decoding),
        float(num_decoding + num_prefill),
        float(num_prefill - num_first), float(pairs), float(decode_ctx),
    )
    return duration_s + loaded_blocks * engine.cpu_load_s_per_block
