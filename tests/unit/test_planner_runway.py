"""Runway (capacitor.planner.runway): month-by-month arithmetic against hand-computed numbers,
and the first failing month against direct simulations of that month and the one before."""

from __future__ import annotations

import pytest

from capacitor.errors import PlanError
from capacitor.planner.runway import Shape, first_over, parse_growth, runway
from capacitor.scenario import parse_scenario

SCENARIO = """
name: runway
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    server_overhead_factor: 1.5
    gpus: {H100: 100}
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    replicas: 10
tenants:
  - name: t
    tier: 0
    slo: {ttft_p99_ms: 1000}
workloads:
  - name: w
    tenant: t
    deployment: d
    arrival: {kind: poisson, rate_rps: 80, monthly_growth_pct: 10}
    lengths: {kind: fixed, input_tokens: 900, output_tokens: 100}
economics:
  contracts:
    - name: lease
      site: s
      price_usd_per_month: 1000000
      start: "2026-01"
      end: "2027-01"
      ramp_discounts: {"2026-01": 0.5}
simulation:
  window: {month: "2026-01", duration_s: 60}
"""


def test_first_over():
    assert first_over([1.0, 2.0, 3.0], 2.0) == 2  # 2.0 is not over 2.0
    assert first_over([1.0, 2.0], 5.0) is None


def test_runway_months_hand_computed():
    spec = parse_scenario(SCENARIO, origin="runway")
    # 10 replicas x 10 req/s = 100 req/s of capacity; peak demand 80 req/s in 2026-01
    shape = Shape(name="d", site="s", gpu="H100", gpus_per_replica=1, replicas=10,
                  capacity_rps=10.0, mw_per_gpu=700 * 1.5 * 1.2 / 1e6,
                  usd_per_gpu_month=1_000_000 / 100)
    out = runway(spec, {"d": shape}, {"base": 4.0, "scenario": None})
    assert out["months"][0] == "2026-01" and out["months"][-1] == "2026-12"  # to the term end
    base = out["growth"]["base"]
    # 4x a year: 80 x 4**(1/12) = 89.8 (k=1), 80 x 4**(2/12) = 100.8 > 100 (k=2): 2026-03
    assert base["tiers"]["0"]["first_failing_month"] == "2026-03"
    assert base["tiers"]["0"]["months_of_headroom"] == 2
    mar = [r for r in base["rows"] if r["month"] == "2026-03"][0]
    assert mar["demand_rps"] == pytest.approx(100.794, abs=1e-3)
    # ceil(100.8 / 10) = 11 replicas: one more, one H100 of 700 W x 1.5 x PUE 1.2 = 1,260 W
    assert mar["add_replicas"] == 1 and mar["add_gpus"] == 1
    assert mar["add_mw"] == pytest.approx(0.00126)
    dec = [r for r in base["rows"] if r["month"] == "2026-12"][0]
    # 80 x 4**(11/12) = 285.1 -> 29 replicas, 19 to add
    assert dec["add_replicas"] == 19
    monthly = {m["month"]: m for m in base["monthly"]}
    assert monthly["2026-01"]["contract_fee_usd"] == 500_000  # half-price ramp month
    # full fee + one GPU at 1,000,000 / 100 GPUs per month
    assert monthly["2026-03"]["cost_usd"] == pytest.approx(1_010_000)
    # January: 80 req/s x 31 days x 86,400 s x 1,000 tokens = 214,272 M tokens;
    # 500,000 USD / 214,272 = 2.3335 USD per M tokens
    assert monthly["2026-01"]["usd_per_million_tokens"] == pytest.approx(2.3335, abs=1e-4)
    own = out["growth"]["scenario"]
    # 10 %/month: 80 x 1.1**2 = 96.8 (k=2), 80 x 1.1**3 = 106.5 > 100 (k=3): 2026-04
    assert own["tiers"]["0"]["first_failing_month"] == "2026-04"


def test_growth_flags():
    g = parse_growth(["base=3", "doom=20"])
    assert g["base"] == 3.0 and g["doom"] == 20.0 and g["scenario"] is None
    assert g["stress"] == 10.0
    for bad in ("base", "base=x", "=2", "base=-1"):
        with pytest.raises(PlanError, match="NAME=FACTOR_PER_YEAR"):
            parse_growth([bad])


FAST = """
name: runway-direct
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    gpus: {H100: 2}
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    replicas: 2
tenants:
  - name: t
    tier: 0
    slo: {ttft_p99_ms: 400, itl_p99_ms: 40}
workloads:
  - name: w
    tenant: t
    deployment: d
    arrival: {kind: poisson, rate_rps: 1, monthly_growth_pct: 40, base_month: "2026-01"}
    lengths: {kind: fixed, input_tokens: 2000, output_tokens: 200}
simulation:
  window: {month: "2026-01", duration_s: 120, warmup_s: 30}
  fidelity: exact
  shard_replicas: 2
"""


def test_first_failing_month_matches_direct_runs(tmp_path):
    """The runway's first failing month misses an SLO when the scenario itself is run in
    that month, and the month before meets every SLO. (Measured: 1.48 req/s per replica in
    the cell of 2, so 2.95 req/s; 1 req/s x 1.4**3 = 2.74 in 2026-04, x 1.4**4 = 3.84 in
    2026-05: the first failing month is 2026-05, 7 % and 30 % either side of the knee.)"""
    from capacitor.planner.capacity import replica_capacity
    from capacitor.planner.runway import scenario_shapes
    from capacitor.simulate import run_scenario

    spec = parse_scenario(FAST, origin="runway-direct")

    def capacity(name: str, cell: int) -> float:
        return replica_capacity(spec, name, cell_replicas=cell, duration_s=120.0,
                                warmup_s=30.0, cache_dir=tmp_path, hint_rps=2.0).rate_rps

    out = runway(spec, scenario_shapes(spec, capacity), {"scenario": None})
    first = out["growth"]["scenario"]["tiers"]["0"]["first_failing_month"]
    assert first == "2026-05"
    before = out["months"][out["months"].index(first) - 1]

    def verdict(month: str) -> bool:
        text = FAST.replace('month: "2026-01", duration_s', f'month: "{month}", duration_s')
        return run_scenario(parse_scenario(text, origin=month), keep_pools=False
                            ).summary.verdict.ok

    assert verdict(before)
    assert not verdict(first)


def test_a_month_inside_the_bracket_is_at_the_limit_not_failing():
    """Capacity 10 req/s per replica seen to meet, 10.5 seen to miss (the search's bracket),
    no failures: 10 replicas serve 100 req/s for sure and maybe 105."""
    from capacitor.planner.capacity import Capacity
    from capacitor.planner.runway import scenario_shapes, status

    assert status(100.0, 100.0, 105.0) == "ok"
    assert status(100.1, 100.0, 105.0) == "at_limit"
    assert status(105.1, 100.0, 105.0) == "fails"
    spec = parse_scenario(SCENARIO, origin="runway")

    def capacity(name: str, cell: int) -> Capacity:
        return Capacity(deployment=name, cell_replicas=cell, rate_rps=10.0, miss_rps=10.5,
                        runs=0, seconds=0.0, cached=True, key="")

    shapes = scenario_shapes(spec, capacity)
    assert shapes["d"].down_share == 0.0  # the site has no failures
    out = runway(spec, shapes, {"base": 4.0})
    tier = out["growth"]["base"]["tiers"]["0"]
    # 4x a year from 80 req/s: 2026-02 89.8 (ok), 2026-03 80 x 4**(2/12) = 100.8 (inside
    # 100 .. 105: at the limit), 2026-04 80 x 4**(3/12) = 113.1 > 105 (fails)
    assert tier["first_at_limit_month"] == "2026-03"
    assert tier["first_failing_month"] == "2026-04"
    assert tier["months_of_headroom"] == 3
    mar = [r for r in out["growth"]["base"]["rows"] if r["month"] == "2026-03"][0]
    assert mar["status"] == "at_limit"
    assert mar["capacity_high_rps"] == pytest.approx(105.0)
    assert mar["add_replicas"] == 1  # sized on the rate seen to meet: ceil(100.8 / 10) - 10


def test_down_share_low_is_two_sigmas_below_the_expectation():
    from capacitor.planner.capacity import down_share_low

    # 5,000 GB200 replicas of 4 GPUs in NVL72 racks: 20,000 / 72 = 277.8 racks;
    # sigma = sqrt(0.035 x 0.965 / 277.8) = 0.011027; 0.035 - 2 x 0.011027 = 0.012946
    assert down_share_low(0.035, 5000, 4, 72) == pytest.approx(0.012946, abs=1e-6)
    # a failure per replica (a server holds one replica of 8 GPUs): 100 units;
    # sigma = sqrt(0.1 x 0.9 / 100) = 0.03; 0.1 - 0.06 = 0.04
    assert down_share_low(0.1, 100, 8, 8) == pytest.approx(0.04)
    assert down_share_low(0.01, 4, 1, 8) == 0.0  # never below zero
