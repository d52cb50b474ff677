"""Hand-computed oracles for MTP speculative decoding: one request alone on a replica, at
acceptance 0 (every step emits one token but pays the verify and draft passes) and at
acceptance 1 (every step emits 1 + k tokens)."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine import EngineConfig, reference, simulate
from capacitor.engine.requests import RequestBatch
from capacitor.errors import ConfigError
from capacitor.perf.speculative import expected_tokens_per_step, tokens_per_step_fp
from capacitor.perf.step_time import NUM_COEFFS


def _hand_coeffs():
    # target: fixed 2 ms, 0.1 ms per sequence, weights 4 ms, GEMM 10 us/token (half 0),
    # prefill attention 1 ns per pair, decode attention 1 us per context token
    c = np.zeros(NUM_COEFFS)
    c[[0, 1, 3, 4, 5, 6, 7]] = [0.002, 0.0001, 0.004, 1e-5, 0.0, 1e-9, 1e-6]
    return c


def _draft_coeffs():
    # one MTP draft pass: fixed 0.5 ms + weights 1 ms = 1.5 ms whatever its tokens
    c = np.zeros(NUM_COEFFS)
    c[[0, 3]] = [0.0005, 0.001]
    return tuple(c)


def _one(acceptance, k=2, prompt=100, output=7, fast=True):
    batch = RequestBatch.simple(np.array([1.0]), np.array([prompt]), np.array([output]))
    cfg = EngineConfig(
        max_num_seqs=4, max_num_batched_tokens=2048, block_size=16, num_gpu_blocks=100,
        ingress_s=0.01, egress_s=0.005, num_speculative_tokens=k,
        mtp_acceptance_rate=acceptance, draft_coeffs=_draft_coeffs(),
    )
    run = simulate if fast else reference.simulate
    return run(batch, cfg, _hand_coeffs())


# prefill step (100 tokens): target 2 + 0.1 + max(4, 100 x 0.01) ms + 5050 pairs x 1 ns
#   = 6.10505 ms; + the draft extend pass over the prompt 1.5 ms          = 7.60505 ms
PREFILL_S = 0.00760505
FIRST_S = 1.0 + 0.010 + PREFILL_S + 0.005


def _decode_step_s(computed):
    # verify of 1 + k = 3 tokens: 2 + 0.1 + max(4, 3 x 0.01) ms + attention over
    # computed + 3 positions x 1 us; + draft extend 1.5 ms + (k - 1) = 1 draft decode 1.5 ms
    return 0.0021 + 0.004 + (computed + 3) * 1e-6 + 0.003


@pytest.mark.parametrize("fast", [True, False], ids=["kernel", "reference"])
def test_acceptance_zero_emits_one_token_per_step_at_the_verify_cost(fast):
    r = _one(0.0, fast=fast)
    assert r.first_token_s[0] == pytest.approx(FIRST_S, abs=1e-12)
    # 6 more tokens, one per step, computed 100..105 before each:
    #   6 x 9.1 ms + (103 + ... + 108) us = 54.6 + 0.633 = 55.233 ms
    assert sum(_decode_step_s(c) for c in range(100, 106)) == pytest.approx(0.055233)
    assert r.finish_s[0] == pytest.approx(FIRST_S + 0.055233, abs=1e-12)
    assert r.num_steps == 1 + 6
    assert r.itl_count[0] == 6
    # KV: the prefill holds cdiv(100 + 2 draft slots, 16) = 7 blocks; the decodes reach
    # cdiv(105 + 1 + 2, 16) = 7
    assert r.max_blocks_used == 7


@pytest.mark.parametrize("fast", [True, False], ids=["kernel", "reference"])
def test_acceptance_one_emits_one_plus_k_tokens_per_step(fast):
    r = _one(1.0, fast=fast)
    assert r.first_token_s[0] == pytest.approx(FIRST_S, abs=1e-12)
    # 6 more tokens, 3 per step: two steps, computed 100 then 103 before them:
    #   9.203 + 9.206 = 18.409 ms; two inter-token gaps (one per chunk of 3 tokens)
    assert r.finish_s[0] == pytest.approx(FIRST_S + 0.018409, abs=1e-12)
    assert r.num_steps == 1 + 2
    assert r.itl_count[0] == 2
    assert r.itl_mean_s() == pytest.approx((0.009203 + 0.009206) / 2, abs=1e-12)
    # TPOT as the data measure it: (E2E - TTFT) / (output - 1) = 18.409 ms / 6
    tpot_s = (r.finish_s[0] - r.first_token_s[0]) / 6
    assert tpot_s == pytest.approx(0.018409 / 6, abs=1e-12)


@pytest.mark.parametrize("fast", [True, False], ids=["kernel", "reference"])
def test_the_last_step_emits_only_what_is_owed(fast):
    # output 6: 5 after the first token, 3 per step -> two steps (3, then the last 2)
    r = _one(1.0, output=6, fast=fast)
    assert r.num_steps == 1 + 2
    assert r.finish_s[0] == pytest.approx(FIRST_S + 0.018409, abs=1e-12)


def test_expected_tokens_per_step_is_the_geometric_chain():
    # k = 3 at p = 0.85: 1 + 0.85 + 0.7225 + 0.614125 = 3.186625
    assert expected_tokens_per_step(3, 0.85) == pytest.approx(3.186625, abs=1e-12)
    assert expected_tokens_per_step(2, 0.0) == 1.0
    assert tokens_per_step_fp(2, 1.0) == 3 << 16


def test_mtp_needs_its_draft_pass_and_a_budget_for_every_verify():
    with pytest.raises(ConfigError, match="draft_coeffs"):
        EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, block_size=16,
                     num_gpu_blocks=10, num_speculative_tokens=2, mtp_acceptance_rate=0.5)
    with pytest.raises(ConfigError, match="max_num_batched_tokens=8 is below"):
        EngineConfig(max_num_seqs=4, max_num_batched_tokens=8, block_size=16,
                     num_gpu_blocks=10, num_speculative_tokens=2, mtp_acceptance_rate=0.5,
                     draft_coeffs=_draft_coeffs())
