"""Hypothesis invariants of the replica simulator: conservation, KV bounds, causality,
determinism, and agreement with the reference twin on random small cases."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacitor.engine import reference, simulate
from tests.engine_cases import coeffs_8b_like, config, make_requests

cases = st.fixed_dictionaries(
    {
        "n": st.integers(1, 60),
        "seed": st.integers(0, 10_000),
        "rate_rps": st.floats(1.0, 200.0),
        "num_segments": st.integers(0, 3),
        "sessions": st.sampled_from([0, 0, 3, 7]),
        "max_num_seqs": st.integers(1, 12),
        "budget_extra": st.integers(0, 300),
        "block_size": st.sampled_from([1, 4, 16]),
        "spare_blocks": st.integers(0, 200),
        "caching": st.booleans(),
        "concurrency": st.sampled_from([0, 0, 1, 5]),
        "cpu_blocks": st.sampled_from([0, 0, 10, 200]),
        "reservation": st.sampled_from(["on_demand", "on_demand", "full_request"]),
        "policy": st.sampled_from(["fcfs", "fcfs", "priority"]),
        "async_scheduling": st.booleans(),
    }
)


def _build(c):
    batch = make_requests(
        c["n"],
        seed=c["seed"],
        rate_rps=c["rate_rps"],
        prompt=(1, 120),
        output=(1, 50),
        num_segments=c["num_segments"],
        segment_len=24,
        sessions=c["sessions"] if c["n"] > 8 else 0,
    )
    if c["concurrency"]:
        batch.gate[:] = -1
        batch.arrival_s[:] = 0.0
        batch.concurrency = c["concurrency"]
    bs = c["block_size"]
    longest = int((batch.prompt_len + batch.output_len).max())
    # KV for the longest request, plus slack: preemption stays possible but never deadlocks
    blocks = -(-longest // bs) + c["spare_blocks"]
    cfg = config(
        max_num_seqs=c["max_num_seqs"],
        max_num_batched_tokens=c["max_num_seqs"] + c["budget_extra"],
        block_size=bs,
        num_gpu_blocks=blocks,
        enable_prefix_caching=c["caching"],
        num_cpu_blocks=c["cpu_blocks"],
        cpu_load_s_per_block=1e-4,
        kv_reservation=c["reservation"],
        scheduling_policy=c["policy"],
        async_scheduling=c["async_scheduling"],
    )
    return batch, cfg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_invariants_and_reference_agreement(c):
    batch, cfg = _build(c)
    coeffs = coeffs_8b_like()
    prio = (np.arange(len(batch)) * 7 % 3).astype(np.int16)
    fast = simulate(batch, cfg, coeffs, priority=prio)
    ok = ~batch.rejected & (batch.prompt_len + batch.output_len <= cfg.effective_max_model_len)
    # conservation: every request is answered exactly once; served ones complete
    assert np.array_equal(fast.completed, ok)
    assert np.all(np.isfinite(fast.finish_s)) and np.all(np.isfinite(fast.send_s))
    # token conservation: each completed request produced output_len tokens -> output_len-1 gaps
    assert int(fast.itl_count.sum()) == int((batch.output_len[ok] - 1).sum())
    # KV never over-allocated
    assert fast.max_blocks_used <= cfg.num_gpu_blocks
    if cfg.kv_reservation == "full_request":
        assert fast.num_preemptions.sum() == 0
    # causality and monotone time
    assert np.all(fast.send_s >= batch.arrival_s)
    assert np.all(fast.first_token_s[ok] > fast.send_s[ok])
    assert np.all(fast.finish_s[ok] >= fast.first_token_s[ok])
    gated = batch.gate >= 0
    assert np.all(fast.send_s[gated] >= fast.finish_s[batch.gate[gated]])
    assert np.all(fast.num_cached_tokens <= batch.prompt_len)
    # determinism
    again = simulate(batch, cfg, coeffs, priority=prio)
    assert np.array_equal(again.finish_s, fast.finish_s, equal_nan=True)
    # the plain-Python twin agrees exactly
    ref = reference.simulate(batch, cfg, coeffs, priority=prio)
    np.testing.assert_array_equal(fast.first_token_s, ref.first_token_s)
    np.testing.assert_array_equal(fast.finish_s, ref.finish_s)
    np.testing.assert_array_equal(fast.num_preemptions, ref.num_preemptions)
    np.testing.assert_array_equal(fast.num_cached_tokens, ref.num_cached_tokens)
