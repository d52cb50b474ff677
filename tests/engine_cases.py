"""Small, real request streams and coefficient vectors shared by the engine tests."""

from __future__ import annotations

import numpy as np

from capacitor.engine.config import EngineConfig
from capacitor.engine.requests import RequestBatch
from capacitor.perf.step_time import (
    C_ATTN_DECODE_S_PER_TOKEN,
    C_ATTN_PREFILL_S_PER_PAIR,
    C_FIXED_S,
    C_GEMM_HALF_TOKENS,
    C_GEMM_S_PER_TOKEN,
    C_MOE_GEMM_S_PER_TOKEN,
    C_MOE_TOPK_FRACTION,
    C_MOE_WEIGHT_S,
    C_PER_SEQ_S,
    C_WEIGHT_S,
    NUM_COEFFS,
)


def coeffs_8b_like() -> np.ndarray:
    """A plausible single-GPU 8B-class step model (seconds), fixed for the tests."""
    c = np.zeros(NUM_COEFFS)
    c[C_FIXED_S] = 0.003
    c[C_PER_SEQ_S] = 1e-5
    c[C_WEIGHT_S] = 0.005
    c[C_GEMM_S_PER_TOKEN] = 2e-6
    c[C_GEMM_HALF_TOKENS] = 100.0
    c[C_ATTN_PREFILL_S_PER_PAIR] = 1e-10
    c[C_ATTN_DECODE_S_PER_TOKEN] = 5e-8
    return c


def coeffs_moe_like() -> np.ndarray:
    """:func:`coeffs_8b_like` plus routed experts (top-2 of 16) that dominate small batches."""
    c = coeffs_8b_like()
    c[C_MOE_WEIGHT_S] = 0.02
    c[C_MOE_TOPK_FRACTION] = 2 / 16
    c[C_MOE_GEMM_S_PER_TOKEN] = 4e-6
    return c


def make_requests(
    n: int,
    *,
    seed: int = 0,
    rate_rps: float = 20.0,
    prompt: tuple[int, int] = (20, 600),
    output: tuple[int, int] = (1, 200),
    num_segments: int = 0,
    segment_len: int = 40,
    sessions: int = 0,
    repeat_every: int = 0,
) -> RequestBatch:
    """Poisson-ish arrivals with optional shared system prompts (segments), user
    sessions (request i waits for i - sessions and extends its whole sequence) and repeated
    prompts (request i >= repeat_every sends request i - repeat_every's prompt again, sharing
    all of it, with no gate: the earlier send may still be running)."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0.0, n / rate_rps, n))
    p = rng.integers(prompt[0], prompt[1] + 1, n).astype(np.int32)
    o = rng.integers(output[0], output[1] + 1, n).astype(np.int32)
    batch = RequestBatch.simple(arrival, p, o)
    if num_segments:
        batch.segment_len = np.full(num_segments, segment_len, np.int32)
        batch.prefix_src[:] = n + (np.arange(n) % num_segments)
        batch.prefix_len[:] = segment_len
        batch.prompt_len[:] = np.maximum(batch.prompt_len, segment_len + 1)
    if sessions:
        for i in range(sessions, n):
            prev = i - sessions
            batch.gate[i] = prev
            batch.prefix_src[i] = prev
            batch.prefix_len[i] = batch.prompt_len[prev] + batch.output_len[prev]
            batch.prompt_len[i] = batch.prefix_len[i] + rng.integers(5, 50)
    if repeat_every:
        for i in range(repeat_every, n):
            prev = i - repeat_every
            batch.prompt_len[i] = batch.prompt_len[prev]
            batch.prefix_src[i] = prev
            batch.prefix_len[i] = batch.prompt_len[prev]
    return batch


def config(**overrides) -> EngineConfig:
    base = dict(max_num_seqs=16, max_num_batched_tokens=256, block_size=16, num_gpu_blocks=400)
    base.update(overrides)
    return EngineConfig(**base)


def assert_same_results(fast, ref, fields: tuple[str, ...]) -> None:
    """The kernel's result ``fast`` equals the reference's ``ref``: every per-request field
    in ``fields`` exactly, the step and block counters, the ITL histogram and counts exactly,
    the ITL sums and busy time to float rounding."""
    for name in fields:
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    assert (fast.num_steps, fast.max_blocks_used) == (ref.num_steps, ref.max_blocks_used)
    np.testing.assert_array_equal(fast.itl_hist, ref.itl_hist)
    np.testing.assert_array_equal(fast.itl_count, ref.itl_count)
    np.testing.assert_allclose(fast.itl_sum_s, ref.itl_sum_s, rtol=1e-9)
    np.testing.assert_allclose(fast.busy_s, ref.busy_s, rtol=1e-9)
