"""Disaggregated prefill/decode: the fast kernel against its plain-Python reference
(engine/reference_disagg.py), request by request, and a hand-computed oracle."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine import reference_disagg
from capacitor.engine.disaggregated import simulate_disaggregated
from capacitor.engine.requests import RequestBatch
from capacitor.engine.status import S_COMPLETED, S_REJECTED
from capacitor.errors import ConfigError
from capacitor.perf.step_time import (
    C_ATTN_DECODE_S_PER_TOKEN,
    C_ATTN_PREFILL_S_PER_PAIR,
    C_FIXED_S,
    C_GEMM_HALF_TOKENS,
    C_GEMM_S_PER_TOKEN,
    C_PER_PREFILL_SEQ_S,
    C_PER_SEQ_S,
    C_PREFILL_STEP_S,
    C_WEIGHT_S,
    NUM_COEFFS,
)
from tests.engine_cases import (
    assert_same_results,
    coeffs_8b_like,
    coeffs_moe_like,
    config,
    make_requests,
)

SYNC_ASYNC = pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])


def _compare(batch, prefill, decode, transfer):
    """Run both; every per-request field and every counter must be identical."""
    ref = reference_disagg.simulate_disaggregated(batch, prefill, decode, transfer)
    fast = simulate_disaggregated(batch, prefill, decode, transfer)
    assert_same_results(fast, ref, (
        "status", "replica", "decode_replica", "send_s", "first_token_s", "finish_s",
        "kv_arrival_s", "num_preemptions", "num_cached_tokens"))
    return ref


@SYNC_ASYNC
def test_pools_match_the_reference_with_prefix_hits_and_decode_preemption(async_scheduling):
    # 2 prefill replicas (shared system prompts: prefix hits there), 3 decode replicas with
    # few KV blocks (preemption there), a different step model on each pool
    n = 300
    batch = make_requests(n, rate_rps=80.0, num_segments=3, segment_len=64)
    cfg_p = config(max_num_seqs=8, max_num_batched_tokens=512, num_gpu_blocks=400,
                   async_scheduling=async_scheduling, ingress_s=0.001, egress_s=0.002)
    cfg_d = config(max_num_seqs=32, max_num_batched_tokens=64, num_gpu_blocks=120,
                   async_scheduling=async_scheduling, egress_s=0.002)
    transfer = 0.004 + batch.prompt_len * 1e-6
    ref = _compare(batch, (cfg_p, coeffs_8b_like(), 2), (cfg_d, coeffs_moe_like(), 3),
                   transfer)
    assert np.all(ref.status == S_COMPLETED)
    assert ref.num_cached_tokens.sum() > 0 and ref.num_preemptions.sum() > 0
    np.testing.assert_array_equal(ref.replica, np.arange(n) % 2)
    many = batch.output_len > 1
    np.testing.assert_array_equal(ref.decode_replica[~many], -1)
    assert set(ref.decode_replica[many]) == {0, 1, 2}
    # the first token reaches the client once the KV has arrived and a decode replica ran
    # a step for the request
    assert np.all(ref.first_token_s[many] > ref.kv_arrival_s[many] + 0.002)


@SYNC_ASYNC
def test_closed_loop_clients_and_rejections_match(async_scheduling):
    # closed loop: each decode finish sends the client's next request to the prefill pool;
    # two requests too long for the decode pool are refused at once
    n = 120
    batch = make_requests(n, rate_rps=1e6, output=(1, 120))
    batch.concurrency = 6
    batch.prompt_len[[10, 50]] = 6000
    cfg_p = config(num_gpu_blocks=800, async_scheduling=async_scheduling)
    cfg_d = config(num_gpu_blocks=300, async_scheduling=async_scheduling)
    ref = _compare(batch, (cfg_p, coeffs_8b_like(), 1), (cfg_d, coeffs_8b_like(), 2),
                   np.full(n, 0.003))
    assert list(np.nonzero(ref.status == S_REJECTED)[0]) == [10, 50]
    ok = ref.status == S_COMPLETED
    assert ok.sum() == n - 2
    # never more than 6 clients' requests between send and answer
    events = sorted([(t, 1) for t in ref.send_s] + [(t, -1) for t in ref.finish_s])
    assert max(np.cumsum([e[1] for e in events])) <= 6


@SYNC_ASYNC
def test_mtp_pools_match_the_reference(async_scheduling):
    # MTP speculative decoding on both pools: a transferred request's first step on the
    # decode pool is a one-token decode (its drafts from the next step), in both twins
    n = 150
    batch = make_requests(n, rate_rps=60.0)
    draft = tuple(float(x) for x in coeffs_moe_like() / 20.0)
    mtp = dict(num_speculative_tokens=2, mtp_acceptance_rate=0.7, draft_coeffs=draft,
               async_scheduling=async_scheduling)
    cfg_p = config(max_num_seqs=8, max_num_batched_tokens=512, num_gpu_blocks=800, **mtp)
    cfg_d = config(max_num_seqs=32, max_num_batched_tokens=128, num_gpu_blocks=200, **mtp)
    ref = _compare(batch, (cfg_p, coeffs_8b_like(), 1), (cfg_d, coeffs_moe_like(), 2),
                   np.full(n, 0.003))
    assert np.all(ref.status == S_COMPLETED)


def _oracle_coeffs():
    c = np.zeros(NUM_COEFFS)
    c[C_FIXED_S] = 0.002
    c[C_PER_SEQ_S] = 1e-4
    c[C_WEIGHT_S] = 0.01
    c[C_GEMM_S_PER_TOKEN] = 1e-5
    c[C_GEMM_HALF_TOKENS] = 0.0
    c[C_ATTN_PREFILL_S_PER_PAIR] = 1e-9
    c[C_ATTN_DECODE_S_PER_TOKEN] = 1e-7
    return c


def test_one_request_on_idle_pools_matches_hand_computed_times():
    """One request (prompt 1000, output 4) on an idle pair of pools.

    Step time (capacitor.perf.step_time, these coefficients) for a step of T tokens, S
    sequences, N prefill chunks, P prefill pairs, C decode context:
        0.002 + 1e-4 S + 0.003 N + (0.005 if N > 0) + max(0.01 weights, 1e-5 T)
        + 1e-9 P + 1e-7 C
    (T <= 1000 here, so the dense term is the weights' 0.01 every step).

    Prefill pool (budget 2048): one step of the whole prompt, T = 1000, S = N = 1,
    P = 1000 * 1001 / 2 = 500500 pairs:
        0.002 + 0.0001 + 0.003 + 0.005 + 0.01 + 0.0005005 = 0.0206005 s
    The prefill worker samples the first token then; its KV transfer takes 0.05 s: the KV
    reaches the decode pool at 0.0706005, which takes the request at once.
    Decode pool, first step: a decode for it (N = 0: no per-chunk 0.003, no eager 0.005,
    no prefill pairs), S = 1, T = 1, context C = 1000 + 1 (the first token's position):
        0.002 + 0.0001 + 0.01 + 1e-7 * 1001 = 0.0122001 s -> tokens 1 and 2 reach the
    client together: TTFT = 0.0706005 + 0.0122001 = 0.0828006 s (prefill + transfer +
    first decode step).
    Then two decode steps, S = 1, C = 1002 and 1003 (context including the new token):
        0.0121 + 1e-7 * 1002 = 0.0122002
        0.0121 + 1e-7 * 1003 = 0.0122003
    E2E = 0.0828006 + 0.0122002 + 0.0122003 = 0.1072011 s
    """
    batch = RequestBatch.simple(np.zeros(1), np.array([1000], np.int32),
                                np.array([4], np.int32))
    cfg = config(max_num_batched_tokens=2048, num_gpu_blocks=200)
    c = _oracle_coeffs()
    c[C_PER_PREFILL_SEQ_S] = 0.003
    c[C_PREFILL_STEP_S] = 0.005
    res = simulate_disaggregated(batch, (cfg, c, 1), (cfg, c, 1), np.array([0.05]))
    assert res.kv_arrival_s[0] == pytest.approx(0.0706005, rel=1e-12)
    assert res.first_token_s[0] == pytest.approx(0.0828006, rel=1e-12)
    assert res.finish_s[0] == pytest.approx(0.1072011, rel=1e-12)
    assert res.num_steps == 4
    # ITL gaps: tokens 1 and 2 come together (no gap), then the two decode steps,
    # 0.0122002 + 0.0122003 = 0.0244005
    assert res.itl_count[0] == 2
    assert res.itl_sum_s[0] == pytest.approx(0.0244005, rel=1e-12)
    ref = reference_disagg.simulate_disaggregated(batch, (cfg, c, 1), (cfg, c, 1),
                                                  np.array([0.05]))
    assert ref.first_token_s[0] == res.first_token_s[0]
    assert ref.finish_s[0] == res.finish_s[0]
    assert ref.itl_count[0] == 2 and ref.itl_sum_s[0] == res.itl_sum_s[0]


def test_pools_one_engine_cannot_form_are_refused():
    cfg = config()
    batch = make_requests(4)
    with pytest.raises(ConfigError, match="block_size"):
        simulate_disaggregated(batch, (cfg, coeffs_8b_like(), 1),
                               (config(block_size=32), coeffs_8b_like(), 1), np.zeros(4))
    with pytest.raises(ConfigError, match="kv_transfer_s"):
        simulate_disaggregated(batch, (cfg, coeffs_8b_like(), 1),
                               (cfg, coeffs_8b_like(), 1), np.full(4, -1.0))
