"""Disaggregated prefill/decode: the fast kernel against its plain-Python reference
(engine/reference_disagg.py), request by request, and a hand-computed oracle."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine import reference_disagg
from capacitor.engine.disaggregated import simulate_disaggregated
from capacitor.engine.requests import RequestBatch
from capacitor.engine.status import S_COMPLETED, S_LOST, S_REJECTED, S_SHED
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


def _compare(batch, prefill, decode, transfer, failures=None):
    """Run both; every per-request field and every counter must be identical."""
    ref = reference_disagg.simulate_disaggregated(batch, prefill, decode, transfer,
                                                  failures=failures)
    fast = simulate_disaggregated(batch, prefill, decode, transfer, failures=failures)
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


@SYNC_ASYNC
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_worker_failures_match_the_reference(seed, async_scheduling):
    # random failures of prefill and decode workers (2 prefill, 3 decode: global ids 0-1
    # prefill, 2-4 decode), some overlapping, some while every worker of a pool is down;
    # closed-loop clients in one case (a lost request's client sends its next one then)
    rng = np.random.default_rng(seed)
    n = 250
    batch = make_requests(n, rate_rps=70.0, seed=seed)
    if seed == 3:
        batch.concurrency = 12
    cfg_p = config(max_num_seqs=8, max_num_batched_tokens=512, num_gpu_blocks=400,
                   async_scheduling=async_scheduling, ingress_s=0.001, egress_s=0.002)
    cfg_d = config(max_num_seqs=16, max_num_batched_tokens=64, num_gpu_blocks=150,
                   async_scheduling=async_scheduling, egress_s=0.002)
    k = 8
    failures = (rng.uniform(0.2, 3.0, k), rng.integers(0, 5, k), rng.uniform(0.05, 0.6, k))
    if seed == 2:  # the single decode-pool outage: every decode worker at once
        failures = (np.r_[failures[0], 1.0, 1.0, 1.0], np.r_[failures[1], 2, 3, 4],
                    np.r_[failures[2], 0.3, 0.3, 0.3])
    transfer = 0.004 + batch.prompt_len * 1e-6
    ref = _compare(batch, (cfg_p, coeffs_8b_like(), 2), (cfg_d, coeffs_moe_like(), 3),
                   transfer, failures)
    lost = ref.status == S_LOST
    assert lost.sum() > 3
    assert np.all(ref.finish_s[lost] >= np.min(failures[0]))
    # lost on both sides: before the decode pool (no decode replica) and on it
    assert (lost & (ref.decode_replica >= 0)).any()


def test_a_failure_with_no_worker_up_sheds_at_the_prefill_router():
    # one prefill worker, down from the end of its step in progress at 0.5 s for 1 s: the
    # requests sent then are shed, and so are those waiting there at 0.5 s (re-routed to
    # a pool with no worker up)
    n = 200
    batch = make_requests(n, rate_rps=100.0)
    cfg = config(num_gpu_blocks=800)
    failures = (np.array([0.5]), np.array([0]), np.array([1.0]))
    ref = _compare(batch, (cfg, coeffs_8b_like(), 1), (cfg, coeffs_8b_like(), 2),
                   np.full(n, 0.003), failures)
    shed = ref.status == S_SHED
    assert shed.sum() > 50
    assert np.all(ref.send_s[shed] < 1.6)
    assert np.all(shed[(ref.send_s > 0.6) & (ref.send_s < 1.4)])
    assert (shed & (ref.send_s < 0.5)).any()


def test_a_decode_worker_failing_mid_request_loses_it_and_the_next_waits_for_repair():
    """One prefill and one decode worker; request 0 (prompt 1000, output 100) decodes, the
    decode worker fails at 0.2 s and is repaired 0.5 s later; request 1 (prompt 1000,
    output 4) is sent at 0.3 s.

    Step times as in the test above (0.002 + 1e-4 S + max(0.01, 1e-5 T) + 1e-9 P + 1e-7 C).
    Request 0: prefill step 0.0126005 s, KV arrives at 0.0126005 + 0.05 = 0.0626005; its
    first decode step (a decoder at context 1000 + 1: no prefill pairs) 0.0121 + 1e-7 * 1001
    = 0.0122001 -> 0.0748006; then decode steps of 0.0121 + 1e-7 C s, C = 1002, 1003, ...
    (about 0.0122 s each): the step in progress at 0.2 s starts at
    0.0748006 + sum_{C=1002..1011} (0.0121 + 1e-7 C) = 0.0748006 + 0.121 + 1e-7 * 10065
    = 0.1968071 and ends 0.0121 + 1e-7 * 1012 = 0.0122012 later, at 0.2090083: request 0
    is lost then, the worker down until 0.2090083 + 0.5 = 0.7090083.
    Request 1: prefill 0.3 -> 0.3126005 (same step as request 0's), KV arrives at
    0.3626005 with the decode worker down: with no decode worker up it is lost then.
    Request 2 (prompt 1000, output 4), sent at 0.7: KV arrives at 0.7626005, after the
    repair; the decode worker takes it at once: steps 0.0122001, 0.0122002, 0.0122003
    (as the test above): finish 0.7626005 + 0.0366006 = 0.7992011.
    """
    batch = RequestBatch.simple(np.array([0.0, 0.3, 0.7]), np.array([1000, 1000, 1000],
                                                                      np.int32),
                                np.array([100, 4, 4], np.int32))
    cfg = config(max_num_batched_tokens=2048, num_gpu_blocks=200)
    c = _oracle_coeffs()
    failures = (np.array([0.2]), np.array([1]), np.array([0.5]))
    res = simulate_disaggregated(batch, (cfg, c, 1), (cfg, c, 1), np.full(3, 0.05),
                                 failures=failures)
    assert list(res.status) == [S_LOST, S_LOST, S_COMPLETED]
    assert res.finish_s[0] == pytest.approx(0.2090083, rel=1e-9)
    assert res.finish_s[1] == pytest.approx(0.3626005, rel=1e-9)
    assert res.finish_s[2] == pytest.approx(0.7992011, rel=1e-9)
    ref = reference_disagg.simulate_disaggregated(batch, (cfg, c, 1), (cfg, c, 1),
                                                  np.full(3, 0.05), failures=failures)
    np.testing.assert_array_equal(ref.status, res.status)
    np.testing.assert_array_equal(ref.finish_s, res.finish_s)
