"""Analytic oracles for the replica simulator: hand-worked step times for a request alone,
an underloaded replica, and the direction of each engine knob."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine import EngineConfig, simulate
from capacitor.engine.requests import RequestBatch
from capacitor.errors import ConfigError
from capacitor.perf.step_time import C_PREFILL_STEP_S, NUM_COEFFS
from tests.engine_cases import coeffs_8b_like, config, make_requests


def _hand_coeffs():
    # fixed 2 ms, 0.1 ms per sequence, weights 4 ms, GEMM 10 us/token (half-efficiency 0),
    # prefill attention 1 ns per pair, decode attention 1 us per context token
    c = np.zeros(NUM_COEFFS)
    c[[0, 1, 3, 4, 5, 6, 7]] = [0.002, 0.0001, 0.004, 1e-5, 0.0, 1e-9, 1e-6]
    return c


def _one(prompt, output, budget):
    batch = RequestBatch.simple(np.array([1.0]), np.array([prompt]), np.array([output]))
    cfg = EngineConfig(
        max_num_seqs=4,
        max_num_batched_tokens=budget,
        block_size=16,
        num_gpu_blocks=100,
        ingress_s=0.01,
        egress_s=0.005,
    )
    return simulate(batch, cfg, _hand_coeffs())


def test_single_request_matches_hand_computed_steps():
    # prefill 100 tokens: 2.1 ms overhead + max(4 ms, 1 ms) + 5050 pairs * 1 ns = 6.10505 ms
    # decode at context 101: 2.1 + 4 + 0.101 = 6.201 ms; at 102: 6.202 ms
    r = _one(100, 3, 2048)
    assert r.send_s[0] == 1.0
    assert r.first_token_s[0] == pytest.approx(1.0 + 0.010 + 0.00610505 + 0.005, abs=1e-12)
    assert r.finish_s[0] == pytest.approx(1.03350805, abs=1e-12)
    assert r.itl_count[0] == 2
    assert r.itl_mean_s() == pytest.approx((0.006201 + 0.006202) / 2, abs=1e-12)
    assert r.num_steps == 3


def test_chunked_prefill_of_a_single_request():
    # budget 64: chunk of 64 (2080 pairs) then 36 after 64 (36*64 + 666 = 2970 pairs)
    r = _one(100, 2, 64)
    expected_first = 1.0 + 0.010 + 0.00610208 + 0.00610297 + 0.005
    assert r.first_token_s[0] == pytest.approx(expected_first, abs=1e-12)
    assert r.num_steps == 3


def test_underloaded_replica_behaves_like_isolated_requests():
    # A request alone (300 prompt tokens, 50 output), by hand:
    #   prefill 300: 2.1 ms overhead + max(4 ms weights, 300 x 10 us GEMM = 3 ms)
    #                + 300 * 301 / 2 = 45150 pairs x 1 ns              = 6.14515 ms
    #   49 decodes at context 300 + k (k = 1..49): 49 x 6.1 ms + (49 x 300 + 1225) us
    #                                              = 298.9 + 15.925     = 314.825 ms
    #   + ingress 10 ms + egress 5 ms                          W = 335.97015 ms
    isolated_e2e = 0.33597015
    alone = _one(300, 50, 2048)
    assert alone.finish_s[0] - alone.send_s[0] == pytest.approx(isolated_e2e, abs=1e-12)
    # one request every 2 s (lambda = 0.5 /s), each takes ~0.34 s: never overlapping
    n = 200
    batch = RequestBatch.simple(np.arange(n) * 2.0 + 1.0, np.full(n, 300), np.full(n, 50))
    cfg = EngineConfig(
        max_num_seqs=4,
        max_num_batched_tokens=2048,
        block_size=16,
        num_gpu_blocks=100,
        ingress_s=0.01,
        egress_s=0.005,
    )
    r = simulate(batch, cfg, _hand_coeffs())
    e2e = r.finish_s - r.send_s
    np.testing.assert_allclose(e2e, isolated_e2e, rtol=1e-9)
    # Little's law, L = lambda * W: the number in system, sampled every 1 ms over the 400 s
    # the arrivals span, against the arrival rate the batch was built with (0.5 /s) times the
    # hand-computed time in system: 0.5 x 0.33597015 = 0.167985 requests on average
    grid = np.arange(1.0, 1.0 + 2.0 * n, 0.001)
    in_system = np.searchsorted(np.sort(r.send_s), grid, side="right") - np.searchsorted(
        np.sort(r.finish_s), grid, side="right"
    )
    assert in_system.max() == 1  # never two at once
    assert in_system.mean() == pytest.approx(0.5 * isolated_e2e, rel=1e-2)


def _mean_ttft(batch, cfg):
    r = simulate(batch, cfg, coeffs_8b_like())
    return float(np.mean(r.first_token_s - r.send_s)), r


def test_max_num_seqs_limits_the_batch():
    batch = make_requests(600, rate_rps=40.0, prompt=(100, 300), output=(50, 200))
    few, _ = _mean_ttft(batch, config(max_num_seqs=4, num_gpu_blocks=4000))
    many, _ = _mean_ttft(batch, config(max_num_seqs=64, num_gpu_blocks=4000))
    assert few > 2 * many


def test_smaller_token_budget_means_more_steps_and_later_first_tokens():
    batch = make_requests(200, rate_rps=5.0, prompt=(1500, 3000), output=(5, 20))
    small_t, small = _mean_ttft(batch, config(max_num_batched_tokens=256, num_gpu_blocks=4000))
    big_t, big = _mean_ttft(batch, config(max_num_batched_tokens=4096, num_gpu_blocks=4000))
    assert small.num_steps > big.num_steps
    assert small_t > big_t


def test_prefix_caching_reuses_shared_system_prompts():
    batch = make_requests(
        400, rate_rps=20.0, prompt=(520, 560), output=(5, 20), num_segments=2, segment_len=512
    )
    on_t, on = _mean_ttft(batch, config(enable_prefix_caching=True, num_gpu_blocks=2000))
    off_t, off = _mean_ttft(batch, config(enable_prefix_caching=False, num_gpu_blocks=2000))
    assert on.num_cached_tokens.mean() > 400
    assert off.num_cached_tokens.sum() == 0
    assert on_t < off_t


def test_less_kv_memory_means_preemption():
    batch = make_requests(300, rate_rps=50.0, prompt=(200, 400), output=(100, 300))
    _, roomy = _mean_ttft(batch, config(num_gpu_blocks=5000, max_num_seqs=64))
    _, tight = _mean_ttft(batch, config(num_gpu_blocks=120, max_num_seqs=64))
    assert roomy.num_preemptions.sum() == 0
    assert tight.num_preemptions.sum() > 0
    assert tight.max_blocks_used <= 120


def test_engine_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="max_num_batched_tokens"):
        EngineConfig(max_num_seqs=256, max_num_batched_tokens=128, block_size=16, num_gpu_blocks=10)
    with pytest.raises(ConfigError, match="max_model_len"):
        EngineConfig(
            max_num_seqs=1,
            max_num_batched_tokens=8,
            block_size=16,
            num_gpu_blocks=10,
            max_model_len=1000,
        )


def test_requests_longer_than_max_model_len_are_rejected_not_lost():
    batch = RequestBatch.simple(np.array([0.0, 0.1]), np.array([100, 1000]), np.array([10, 10]))
    cfg = EngineConfig(
        max_num_seqs=4,
        max_num_batched_tokens=64,
        block_size=16,
        num_gpu_blocks=100,
        max_model_len=512,
    )
    r = simulate(batch, cfg, coeffs_8b_like())
    assert r.completed.tolist() == [True, False]
    assert r.finish_s[1] == r.send_s[1] == 0.1
    assert np.isnan(r.first_token_s[1])


@pytest.mark.parametrize("twin", ["kernel", "reference"])
def test_eager_prefill_step_cost_is_paid_by_prefill_steps_only(twin):
    # _hand_coeffs plus 50 ms per step that computes prompt tokens (C_PREFILL_STEP_S).
    # 100 prompt tokens in 64-token chunks: both prefill steps pay it, the decode step
    # does not. By hand: chunk 1 = 6.10208 + 50 ms, chunk 2 = 6.10297 + 50 ms; then one
    # decode at context 101: 2.1 + 4 + 0.101 = 6.201 ms.
    from capacitor.engine import reference

    c = _hand_coeffs()
    c[C_PREFILL_STEP_S] = 0.05
    batch = RequestBatch.simple(np.array([1.0]), np.array([100]), np.array([2]))
    cfg = EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, block_size=16,
                       num_gpu_blocks=100, ingress_s=0.01, egress_s=0.005)
    run = simulate if twin == "kernel" else reference.simulate
    r = run(batch, cfg, c)
    first = 1.0 + 0.010 + 0.05610208 + 0.05610297 + 0.005
    assert r.first_token_s[0] == pytest.approx(first, abs=1e-12)
    assert r.finish_s[0] == pytest.approx(first + 0.006201, abs=1e-12)
