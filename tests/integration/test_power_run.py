"""Power in a run: a replica's draw follows what it does, and a site's cap binds (the fleet
runs power-capped, with slower steps) instead of being refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capacitor.scenario import parse_scenario, power_warnings
from capacitor.simulate import run_scenario
from capacitor.simulate.summary import timeline

_LOAD = """
name: load
sites:
  - {name: s, power_cap_mw: 10.0, pue: 1.0, server_overhead_factor: 1.0, gpus: {H100: 2}}
deployments:
  - {name: quiet, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s,
     precision: BF16, replicas: 1}
  - {name: loaded, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s,
     precision: BF16, replicas: 1}
tenants:
  - {name: t, tier: 0, slo: {ttft_p99_ms: 100000, e2e_p99_ms: 600000}}
workloads:
  - {name: a, tenant: t, deployment: quiet, arrival: {kind: constant, rate_rps: 7},
     lengths: {kind: fixed, input_tokens: 500, output_tokens: 200}}
  - {name: b, tenant: t, deployment: loaded, arrival: {kind: constant, rate_rps: 34},
     lengths: {kind: fixed, input_tokens: 500, output_tokens: 200}}
simulation: {window: {duration_s: 240, warmup_s: 60}, seed: 1, fidelity: exact}
"""

_CAP = """
name: cap
sites:
  - {name: s, power_cap_mw: CAP_MW, pue: 1.0, server_overhead_factor: 1.0, gpus: {H100: 2}}
deployments:
  - {name: d, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s, precision: BF16,
     replicas: 2}
tenants:
  - {name: t, tier: 0, slo: {ttft_p99_ms: 100000, e2e_p99_ms: 600000}}
workloads:
  - {name: a, tenant: t, deployment: d, arrival: {kind: constant, rate_rps: 20},
     lengths: {kind: fixed, input_tokens: 2000, output_tokens: 100}}
simulation: {window: {duration_s: 240, warmup_s: 60}, seed: 1, fidelity: exact}
"""


def test_a_replica_at_1pct_occupancy_draws_less_than_one_at_25pct() -> None:
    run = run_scenario(parse_scenario(_LOAD), keep_pools=False)
    quiet, loaded = run.summary.deployments["quiet"], run.summary.deployments["loaded"]
    # both replicas step all the time; what differs is what their steps do
    assert quiet.utilization == loaded.utilization == 1.0
    assert 0.005 < quiet.batch_occupancy < 0.02
    assert 0.15 < loaded.batch_occupancy < 0.4
    # H100 (700 W): a fully busy GPU draws at least the stalled 0.281 x 700 = 196.7 W and at
    # most its TDP; batch ~10 decodes stream the weights with little GEMM work, batch ~250
    # adds the GEMM FLOPs of 25x the tokens: more than 100 W apart
    assert 196.7 <= quiet.gpu_power_w_mean < loaded.gpu_power_w_mean - 100.0
    assert loaded.gpu_power_w_mean <= 700.0
    # energy per output token falls with the batch
    assert loaded.joules_per_output_token < quiet.joules_per_output_token
    # the site's draw is the two GPUs' (overhead 1, PUE 1): 2 GPUs' mean W, per minute
    warm = 1  # 60 s warm-up = minute 0
    site_mw = timeline(run)["power_mw"][warm:]
    assert site_mw.mean() * 1e6 == pytest.approx(
        quiet.gpu_power_w_mean + loaded.gpu_power_w_mean, rel=1e-3)


def _peak_fraction(run) -> float:
    """The busiest minute's draw per GPU, fraction of the H100's 700 W (2 GPUs, overhead 1,
    PUE 1)."""
    return float(np.max(timeline(run)["power_mw"])) * 1e6 / (2 * 700.0)


def test_a_cap_at_80pct_of_the_busy_draw_runs_capped_with_slower_steps() -> None:
    uncapped = run_scenario(parse_scenario(_CAP.replace("CAP_MW", "10")), keep_pools=False)
    p = _peak_fraction(uncapped)
    # both replicas busy every minute with 2,000-token prefills: 0.930 of TDP per GPU
    # (1,302 W for the site)
    assert uncapped.summary.deployments["d"].utilization == 1.0
    assert p == pytest.approx(0.930, abs=0.005)
    cap_mw = 0.8 * p * 2 * 700.0 / 1e6  # 80 % of the busy draw: 0.8 x 1,302 W = 1,041.6 W
    scenario = parse_scenario(_CAP.replace("CAP_MW", repr(cap_mw)))  # runs, not refused
    assert len(power_warnings(scenario)) == 1  # nameplate 1,400 W > the cap: a warning
    capped = run_scenario(scenario, keep_pools=False)
    site = capped.summary.sites["s"]
    dep = capped.summary.deployments["d"]
    # Hand arithmetic. Every minute is fully busy, so the site draws min(p_minute, L) x
    # 1,400 W and the cap binds at the busiest minute: L = 0.8 x p = 0.8 x 0.930 = 0.744.
    # Compute-bound work (it draws the whole TDP) slows by (1 / 0.744) ** (ln 1.3 / ln 2)
    # = exp(0.3785 x ln 1.344) = exp(0.3785 x 0.2957) = exp(0.1119) = 1.118; memory-bound
    # work draws 0.281 + 0.223 = 0.504 < 0.744 of TDP and keeps its pace (x1.000).
    assert capped.power_limits["s"] == pytest.approx(0.8 * p, abs=1e-5)
    assert site.gpu_power_limit_pct == pytest.approx(74.4, abs=0.4)
    assert dep.step_slowdown_compute == pytest.approx(1.118, abs=0.003)
    assert dep.step_slowdown_memory == 1.0
    assert site.at_cap and site.uncapped_power_mw_peak is not None
    # the capped run holds every minute to the cap (bisection tolerance 1e-6 of TDP)
    assert np.max(timeline(capped)["power_mw"]) <= cap_mw * (1 + 1e-5)
    # slower steps: every latency percentile the tenant sees is longer; the verdict says so
    before, after = uncapped.summary.tenants["t"], capped.summary.tenants["t"]
    assert after.ttft_ms.p99 > before.ttft_ms.p99
    assert after.itl_ms.p99 > before.itl_ms.p99
    assert after.e2e_ms.p99 > before.e2e_ms.p99
    cost = capped.summary.power_cap.tenants["t"]
    assert cost.ttft_p99_ms_uncapped == before.ttft_ms.p99
    assert cost.ttft_p99_ms == after.ttft_ms.p99
    assert "power-capped" in capped.summary.verdict.text
    assert uncapped.summary.power_cap is None
    assert math.isclose(dep.gpu_power_w_mean, 700.0 * 0.8 * p, rel_tol=1e-3)
