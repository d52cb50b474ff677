"""The contract and the month in the summary: each contract's term total, month fee and ramp,
months left, exit under notice and $/GPU-hour; unit costs per deployment and tier over the
window and, estimated from the demand profile, over the month. Hand arithmetic in comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from capacitor.scenario import load_scenario, month_scale, parse_scenario
from capacitor.simulate.economics import economics_summary


def test_the_default_contract_term_total_is_the_sum_of_its_monthly_fees():
    scenario = load_scenario(None)  # colossus.yaml
    energy = {s.name: 0.0 for s in scenario.sites}
    c = economics_summary(scenario, 3600.0, 0.0, energy).contracts["colossus1_lease"]
    # colossus.yaml: $1,250,000,000 a month, start 2026-05, end 2029-05 (exclusive): 36
    # months; ramp: May 2026 half price, June 2026 a quarter off.
    #   36 x 1.25e9                     = 45,000,000,000
    #   - 0.5 x 1.25e9   (2026-05)      =   -625,000,000
    #   - 0.25 x 1.25e9  (2026-06)      =   -312,500,000
    #                                   = 44,062,500,000
    assert c.term_total_usd == 44_062_500_000.0
    # the window's month, July 2026: full price, no discount; months left July 2026 to
    # April 2029 = 6 (2026) + 24 (2027-28) + 4 (2029) = 34
    assert c.month == "2026-07"
    assert c.month_fee_usd == 1_250_000_000.0 and c.month_ramp_discount == 0.0
    assert c.months_left == 34
    # notice on 2026-07-01 + 90 days: July 1 + 30 = July 31, + 31 = Aug 31, + 29 = Sept 29
    assert (c.notice_given, c.earliest_exit) == ("2026-07-01", "2026-09-29")
    # billed July (1.25e9) + August (1.25e9) + Sept 1-28 (28/30 x 1.25e9 = 1,166,666,666.67)
    assert c.exit_cost_usd == 3_666_666_666.67
    # 220,000 GPUs x 31 days x 24 h = 163,680,000 GPU-h; 1.25e9 / 163,680,000 = 7.63685
    assert c.gpus == 220_000 and c.usd_per_gpu_hour == 7.637


def test_in_a_ramp_month_the_fee_carries_its_discount():
    scenario = load_scenario(None).model_copy(deep=True)
    scenario.simulation.window.month = "2026-06"
    energy = {s.name: 0.0 for s in scenario.sites}
    c = economics_summary(scenario, 3600.0, 0.0, energy).contracts["colossus1_lease"]
    # June 2026: a quarter off 1.25e9 = 937,500,000; months left June 2026 to April 2029 = 35
    assert (c.month_fee_usd, c.month_ramp_discount, c.months_left) == (937_500_000.0, 0.25, 35)
    # notice 2026-06-01 + 90 days: June 1 + 29 = June 30, + 31 = July 31, + 30 = Aug 30;
    # billed June (937,500,000) + July (1.25e9) + Aug 1-29 (29/31 x 1.25e9 = 1,169,354,838.71)
    assert c.earliest_exit == "2026-08-30"
    assert c.exit_cost_usd == 3_356_854_838.71
    assert c.term_total_usd == 44_062_500_000.0  # the term's total does not depend on the month


BASE = """
name: unit
sites:
  - {name: east, power_cap_mw: 1.0, pue: 1.2, gpus: {H100: 64}}
deployments:
  - {name: d1, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: east, replicas: 16}
  - {name: d2, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: east, replicas: 48}
tenants: [{name: t0, tier: 0}, {name: t1, tier: 1}]
workloads:
  - {name: w0, tenant: t0, deployment: d1, arrival: {kind: constant, rate_rps: 1},
     lengths: {kind: fixed, input_tokens: 100, output_tokens: 10}}
  - {name: w1, tenant: t1, deployment: d1, arrival: {kind: constant, rate_rps: 1},
     lengths: {kind: fixed, input_tokens: 100, output_tokens: 10}}
  - {name: w2, tenant: t1, deployment: d2, arrival: {kind: poisson, rate_rps: 1},
     lengths: {kind: fixed, input_tokens: 100, output_tokens: 10}}
economics:
  gpu_hour_usd: {H100: 2.0}
simulation:
  window: {month: "2026-08", duration_s: 600, warmup_s: 60}
"""
#: window tokens per workload (input, output), as a run would hand them over
TOKENS = np.array([[1e6, 1e5], [3e6, 1e5], [2e6, 2e6]])


def test_unit_costs_per_deployment_and_tier_in_the_window_and_the_month():
    scenario = parse_scenario(BASE, origin="<unit>")
    eco = economics_summary(scenario, 600.0, float(TOKENS[:, 1].sum()), {"east": 0.0}, TOKENS)
    # window: 64 GPUs x $2 x 600/3600 h = $21.333; d1 holds 16 of the 64 GPUs: $5.333
    d1 = eco.deployments["d1"].window
    assert d1.cost_usd == 5.33
    # d1 tokens: in 1e6 + 3e6 = 4e6, out 2e5: $5.333 / 4 = 1.333 per M in; / 0.2 = 26.667
    # per M out; / 4.2 = 1.270 per M total
    assert (d1.usd_per_million_input_tokens, d1.usd_per_million_output_tokens,
            d1.usd_per_million_total_tokens) == (1.333, 26.667, 1.27)
    # tier 0 carries w0's share of d1 by tokens: 1.1 / 4.2 x 5.333 = $1.3968, over 1e5 out
    t0 = eco.tiers["0"].window
    assert t0.cost_usd == 1.4 and t0.usd_per_million_output_tokens == 13.968
    # tier 1: 3.1 / 4.2 x 5.333 + d2's 48/64 x 21.333 = 3.9365 + 16 = $19.9365 over
    # 5e6 in + 2.1e6 out = 7.1e6: 2.808 per M total
    t1 = eco.tiers["1"].window
    assert t1.cost_usd == 19.94 and t1.usd_per_million_total_tokens == 2.808
    # month: August, 31 x 24 = 744 h: 64 x 2 x 744 = $95,232; constant and Poisson demand
    # holds its rate all month (x 2,678,400 / 600 = 4,464), so with hourly prices the month's
    # unit costs equal the window's
    assert eco.month_estimate.cost_usd == 95_232.0
    assert eco.month_estimate.output_tokens == 2.2e6 * 4464
    m1 = eco.deployments["d1"].month_estimate
    assert m1.cost_usd == 23_808.0 and m1.usd_per_million_input_tokens == 1.333
    assert eco.tiers["1"].month_estimate.usd_per_million_total_tokens == 2.808


def test_a_diurnal_peak_hour_with_a_flat_fee_costs_more_per_token_over_the_month():
    data = yaml.safe_load(BASE)
    data["economics"] = {"contracts": [{"name": "lease", "price_usd_per_month": 1_000_000,
                                        "start": "2026-01", "end": "2027-01"}]}
    data["workloads"] = [{"name": "w", "tenant": "t0", "deployment": "d1",
                          "arrival": {"kind": "diurnal", "mean_rate_rps": 10,
                                      "peak_to_mean": 1.5, "peak_hour": 17},
                          "lengths": {"kind": "fixed", "input_tokens": 100,
                                      "output_tokens": 10}}]
    data["simulation"]["window"] = {"month": "2026-07", "hour": 17, "duration_s": 3600,
                                    "warmup_s": 0}
    scenario = parse_scenario(yaml.safe_dump(data), origin="<diurnal>")
    month_s = 31 * 86400.0
    # window 17:00-18:00, peak mid-hour at 17.5: the cosine's integral over the hour is
    # 2 sin(pi/24) / (pi/12) x 3600 s = 0.261052 / 0.261799 x 3600 = 3589.73 s, so the hour
    # expects 10 x (3600 + 0.5 x 3589.73) = 53,948.7 requests; the month 10 x 2,678,400 =
    # 26,784,000: scale 26,784,000 / 53,948.65 = 496.4735 (not the 744 hours of the month)
    scale = month_scale(scenario, month_s)["w"]
    swing = 2 * math.sin(math.pi / 24) / (math.pi / 12) * 3600
    assert scale == pytest.approx(month_s / (3600 + 0.5 * swing), rel=1e-12)
    assert scale == pytest.approx(496.47, abs=0.01)
    tokens = np.array([[1e8, 1e7]])
    eco = economics_summary(scenario, 3600.0, 1e7, {"east": 0.0}, tokens)
    # window: the fee's share of the hour, 1e6 x 3600 / 2,678,400 = $1,344.09, over 1e7 out
    # = $134.409 per M; month: $1e6 over 1e7 x 496.4735 = 4,964.735 M tokens = $201.421 per
    # M (x 744 / 496.4735 = 1.4986 the window's)
    assert eco.window.usd_per_million_output_tokens == 134.409
    assert eco.month_estimate.usd_per_million_output_tokens == 201.421
    assert eco.month_estimate.cost_usd == 1_000_000.0
    # a peak-hour figure is the cheaper one: the month's off-peak hours pay the same fee
    assert eco.month_estimate.usd_per_million_output_tokens \
        > eco.window.usd_per_million_output_tokens
