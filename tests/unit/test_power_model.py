"""The per-GPU power model and the power cap's slowdown against public measurements
(fleet/power.py), and the per-minute spreading of decode work (simulate/activity.py)."""

from __future__ import annotations

import collections
import csv
import statistics

import numpy as np
import pytest

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.fleet import power as P
from capacitor.perf.coefficients import build_coefficients
from capacitor.perf.step_time import step_time_s
from capacitor.simulate.activity import spread_by_minute
from tests.conftest import require_data


def _splitwise() -> list[dict]:
    with require_data("published", "splitwise_static_batches.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _static_batch_draw(coeffs, curve, tp_e2e_s: float, prompt: int, batch: int,
                       output: int) -> float:
    """Modelled draw (fraction of TDP) of a static batch that ran ``tp_e2e_s`` seconds: one
    prefill of ``batch`` prompts, then ``output`` decode steps of ``batch`` sequences."""
    mem_s, comp_s = P.roofline_seconds(
        coeffs, steps=output, tokens=batch * (prompt + output),
        prefill_pairs=batch * prompt * (prompt + 1) / 2,
        decode_ctx_tokens=batch * (output * prompt + output * (output + 1) / 2))
    return float(curve.stepping(min(mem_s / tp_e2e_s, 1.0), min(comp_s / tp_e2e_s, 1.0)))


def test_a100_power_within_15pct_of_the_splitwise_rows() -> None:
    """Every Llama-2-70B A100 configuration of the Splitwise static batches that carries
    power and has a prompt of at most 2,048 tokens (27 configurations, 165 rows: TP 2/4/8,
    prompt 128-2048, batch 1-16, 128 output tokens): the modelled draw over the measured
    e2e time is within 15 % of the mean ``average_power`` of its repeats (the curve was
    fitted on them; the worst is 7.5 %)."""
    groups = collections.defaultdict(list)
    for r in _splitwise():
        if r["hardware"] == "a100-80gb" and r["model"] == "llama2-70b" \
                and float(r["average_power"]) > 0 and int(r["prompt_size_tokens"]) <= 2048:
            key = tuple(int(r[k]) for k in ("tensor_parallel", "prompt_size_tokens",
                                            "batch_size", "token_size_tokens"))
            groups[key].append(r)
    assert len(groups) == 27 and sum(map(len, groups.values())) == 165
    model, gpu = resolve_model("meta-llama/Llama-2-70b-hf"), get_gpu("A100")
    curve = P.power_curve("A100")
    errors = []
    for (tp, prompt, batch, output), rows in groups.items():
        coeffs = build_coefficients(model, gpu, tp=tp)
        e2e_s = float(rows[0]["e2e_time_ms"]) / 1e3
        measured = statistics.mean(float(r["average_power"]) for r in rows)
        modelled = _static_batch_draw(coeffs, curve, e2e_s, prompt, batch, output)
        errors.append(abs(modelled - measured) / measured)
    assert max(errors) < 0.15, max(errors)


def _steady_draw_w(model_id: str, gpu_id: str, tp: int, batch: int, prompt: int, output: int,
                   precision: str | None = None) -> float:
    """Modelled draw, W, of a GPU in steady serving at ``batch`` running sequences: each step
    ``batch`` decodes and ``batch / output`` prompts' prefill; the decodes' mean context is
    ``prompt + output / 2`` (how the Hopper curve was solved)."""
    coeffs = build_coefficients(resolve_model(model_id), get_gpu(gpu_id), tp=tp,
                                precision=precision)
    prefill_tokens = batch * prompt / output
    tokens = batch + prefill_tokens
    pairs = batch / output * prompt * (prompt + 1) / 2
    ctx = batch * (prompt + output / 2)
    step_s = step_time_s(coeffs, tokens, batch, batch / output, pairs, ctx)
    mem_s, comp_s = P.roofline_seconds(coeffs, steps=1.0, tokens=tokens, prefill_pairs=pairs,
                                       decode_ctx_tokens=ctx)
    curve = P.power_curve(gpu_id)
    return get_gpu(gpu_id).tdp_w * float(curve.stepping(min(mem_s / step_s, 1.0),
                                                        min(comp_s / step_s, 1.0)))


@pytest.mark.parametrize(
    ("gpu", "model", "tp", "precision", "batch", "prompt", "output", "measured_w"),
    [
        # Hopper anchors the curve was solved from (Llama-3.3-70B FP8, TP 4, vLLM):
        # gist lhl/bf81a9c7dfc4244c974335e1605dcf22: 480 W at 64, 520 W at 128 concurrent;
        # ML.ENERGY v3.0 H100-SXM5 batch 1: ~300 W
        ("H100", "meta-llama/Llama-3.3-70B-Instruct", 4, "FP8", 64, 220, 200, 480.0),
        ("H100", "meta-llama/Llama-3.3-70B-Instruct", 4, "FP8", 128, 220, 200, 520.0),
        ("H100", "meta-llama/Llama-3.3-70B-Instruct", 4, "FP8", 1, 220, 200, 300.0),
        # not fitted: Llama-3.1-8B BF16 on one B200 at 2,043 running sequences, 396 output
        # tokens: 691 W (leadgreen green-token-index); Blackwell uses the Hopper curve
        ("B200", "meta-llama/Llama-3.1-8B-Instruct", 1, None, 2043, 220, 396, 691.0),
    ],
)
def test_hopper_and_blackwell_power_within_15pct(gpu, model, tp, precision, batch, prompt,
                                                 output, measured_w) -> None:
    modelled = _steady_draw_w(model, gpu, tp, batch, prompt, output, precision)
    assert modelled == pytest.approx(measured_w, rel=0.15)


def test_cap_slowdown_matches_the_splitwise_power_capped_h100() -> None:
    """The power-capped H100 rows (each GPU at 50 % of TDP) against the uncapped H100 rows
    of the same 76 configurations: prompt (compute-bound) 1.30x, token (memory-bound)
    1.00x."""
    by = collections.defaultdict(dict)
    for r in _splitwise():
        if r["hardware"] in ("h100-80gb", "h100-80gb-pcap"):
            key = tuple(r[k] for k in ("model", "tensor_parallel", "prompt_size_tokens",
                                       "batch_size", "token_size_tokens"))
            by[key].setdefault(r["hardware"], []).append(r)
    pairs = [v for v in by.values() if len(v) == 2]
    assert len(pairs) == 76
    for v in pairs:
        for col, ratio in (("prompt_time_ms", 1.30), ("token_time_ms", 1.00)):
            capped = statistics.mean(float(r[col]) for r in v["h100-80gb-pcap"])
            uncapped = statistics.mean(float(r[col]) for r in v["h100-80gb"])
            assert capped / uncapped == pytest.approx(ratio, rel=1e-3)
    # compute-bound work draws the whole TDP: under a 50 % limit, 1.30x as long
    assert P.cap_slowdown(1.0, 0.5) == pytest.approx(1.30, rel=1e-12)
    compute, memory = P.step_slowdowns(P.power_curve("H100"), 0.5)
    assert compute == pytest.approx(1.30, rel=1e-12)
    # memory-bound decode draws 0.281 + 0.223 = 0.504 of TDP: (0.504 / 0.5) ** 0.3785
    # = 1.0030, within 0.5 % of the measured 1.00
    assert memory == pytest.approx(1.0, abs=0.005)
    # a limit above what the work draws costs nothing; a lower one costs more
    assert P.cap_slowdown(0.4, 0.5) == 1.0
    assert P.cap_slowdown(1.0, 0.25) == pytest.approx(1.3 ** 2, rel=1e-12)


def test_power_limit_for_cap_bisects_a_monotone_draw() -> None:
    # a site of 100 GPUs x 700 W that draws min(0.9, limit) of TDP: 63 kW uncapped; a cap of
    # 49 kW needs limit 49,000 / 70,000 = 0.7
    def draw(limit: float) -> np.ndarray:
        return np.array([100 * 700.0 * min(0.9, limit), 100 * 700.0 * min(0.5, limit)])

    assert P.power_limit_for_cap(draw, 63_000.0) is None
    assert P.power_limit_for_cap(draw, 49_000.0) == pytest.approx(0.7, abs=1e-5)
    # below the driver's minimum (200 W of 700 W): the minimum
    assert P.power_limit_for_cap(draw, 1_000.0) == P.MIN_POWER_LIMIT_FRACTION


def test_spread_by_minute() -> None:
    # 120 tokens from t=30 s to t=150 s: 1 token/s -> 30 in minute 0, 60 in minute 1, 30 in
    # minute 2; 10 tokens at once at t=200 s (an empty interval) -> minute 3; 60 tokens from
    # t=230 s to t=290 s, past the last of 4 minutes (which ends at 240 s) -> all in minute 3
    out = spread_by_minute(np.array([30.0, 200.0, 230.0]), np.array([150.0, 200.0, 290.0]),
                           np.array([120.0, 10.0, 60.0]), 4, 60.0)
    np.testing.assert_allclose(out, [30.0, 60.0, 30.0, 70.0])


def test_down_replicas_draw_nothing() -> None:
    """Two H100 replicas of 8 GPUs, steps with no HBM or tensor-core share (so a stepping GPU
    draws the Hopper curve's stalled 0.281 of TDP, an idle one 0.15), site overhead and PUE 1.

    * Minute 0, both up, 60 of 120 replica-seconds busy: busy share 0.5, per GPU
      700 x (0.15 x 0.5 + 0.281 x 0.5) = 150.85 W; 16 GPUs: 2,413.6 W.
    * Minute 1, one replica down all minute, the other busy all of it: per up GPU
      700 x 0.281 = 196.7 W; 8 up GPUs: 1,573.6 W (the 8 down GPUs draw nothing).
    """
    from types import SimpleNamespace

    from capacitor.simulate.site_power import pool_facility_w, pool_gpu_power_w

    pool = SimpleNamespace(gpu="H100", replicas=2, simulated_replicas=2, gpus_per_replica=8,
                           busy_s=np.array([60.0, 60.0]), memory_s=np.zeros(2),
                           compute_s=np.zeros(2), down_s=np.array([0.0, 60.0]))
    site = SimpleNamespace(pue=1.0, overhead_factor=lambda gpu: 1.0)
    np.testing.assert_allclose(pool_gpu_power_w(pool), [150.85, 196.7])
    np.testing.assert_allclose(pool_facility_w(site, pool), [2413.6, 1573.6])
