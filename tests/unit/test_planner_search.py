"""The plan's choice under inventory and power caps (capacitor.planner.search) and the
command's answers to impossible requests."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from capacitor.cli import app
from capacitor.errors import PlanError
from capacitor.planner.search import Candidate, candidates, choose
from capacitor.scenario import parse_scenario

SITE = """
name: choose
sites:
  - name: s
    power_cap_mw: CAP
    pue: 1.2
    gpus: {H100: H100_N, H200: H200_N}
deployments:
  - {name: a, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s, replicas: 1}
  - {name: b, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s, replicas: 1}
tenants:
  - {name: t, tier: 0, slo: {ttft_p99_ms: TTFT}}
workloads:
  - {name: wa, tenant: t, deployment: a, arrival: {kind: poisson, rate_rps: 1},
     lengths: {kind: fixed, input_tokens: 100, output_tokens: 10}}
  - {name: wb, tenant: t, deployment: b, arrival: {kind: poisson, rate_rps: 1},
     lengths: {kind: fixed, input_tokens: 100, output_tokens: 10}}
simulation:
  window: {duration_s: 60}
"""


def scenario(h100=100, h200=100, cap=10, ttft=1000):
    text = SITE.replace("H100_N", str(h100)).replace("H200_N", str(h200))
    return parse_scenario(text.replace("CAP", str(cap)).replace("TTFT", str(ttft)),
                          origin="choose")


def cand(dep, gpu, gpus, cost, mw=0.1):
    return Candidate(dep, "s", gpu, 1, 1, None, None, capacity_rps=1.0, replicas=gpus,
                     gpus=gpus, power_mw=mw, cost_usd_per_month=cost, cell_replicas=1)


def sized():
    return {"a": [cand("a", "H100", 60, 60.0), cand("a", "H200", 30, 90.0, mw=2.0)],
            "b": [cand("b", "H100", 50, 50.0), cand("b", "H200", 40, 120.0, mw=2.0)]}


def test_cheapest_combination_that_fits_the_inventory():
    # a1 + b1 (cost 110) needs 110 H100 > 100; a1 + b2 costs 180, a2 + b1 140, a2 + b2 210
    chosen, _ = choose(scenario(), sized(), "cost")
    assert (chosen["a"].gpu, chosen["b"].gpu) == ("H200", "H100")
    # with 200 H100 the cheapest pair fits
    chosen, _ = choose(scenario(h100=200), sized(), "cost")
    assert (chosen["a"].gpu, chosen["b"].gpu) == ("H100", "H100")
    # fewest GPUs: a2 + b2 = 70 (70 H200 fit); a2 + b1 = 80, a1 + b2 = 100
    chosen, _ = choose(scenario(), sized(), "gpus")
    assert (chosen["a"].gpu, chosen["b"].gpu) == ("H200", "H200")


def test_power_cap_binds():
    # a2 + b2 draw 4.0 MW: over a 3 MW cap; a2 + b1 = 2.1 MW fits
    chosen, _ = choose(scenario(cap=3), sized(), "gpus")
    assert (chosen["a"].gpu, chosen["b"].gpu) == ("H200", "H100")


def test_nothing_fits_says_why():
    # a needs 60 H100 or 30 H200; b 50 H100 or 40 H200: 40 H100 and 50 H200 fit no pair
    with pytest.raises(PlanError, match="fits alone but not all together") as err:
        choose(scenario(h100=40, h200=50), sized(), "cost")
    assert "40 H100 at s" in str(err.value) and "50 H200 at s" in str(err.value)
    # with 20 H100 and 20 H200, a (60 H100 or 30 H200) fits nowhere: named
    with pytest.raises(PlanError, match="deployment 'a': no shape") as err:
        choose(scenario(h100=20, h200=20), sized(), "cost")
    assert "deployment 'b'" in str(err.value)


def test_candidates_cover_the_inventory():
    got = candidates(scenario(), "a")
    # 2 GPU types x 4 tp x 2 pp x 2 max_num_seqs = 32
    assert len(got) == 32 and {c.gpu for c in got} == {"H100", "H200"}


def test_plan_command_answers_an_slo_below_the_hardware_floor(tmp_path):
    path = tmp_path / "floor.yaml"
    path.write_text(SITE.replace("H100_N", "8").replace("H200_N", "8").replace("CAP", "10")
                    .replace("TTFT", "0.001"), encoding="utf-8")
    result = CliRunner().invoke(app, ["plan", str(path), "--runway", "--cache-dir",
                                      str(tmp_path / "cache")])
    assert result.exit_code == 1, (result.output, result.exception)
    assert "below what this hardware can do" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--objective", "speed"], ["--growth", "base=x"],
                                  ["--what-if", "sunny_day"],
                                  ["--what-if", "site_outage:site=mars,start=2026-09"]])
def test_plan_command_bad_flags_are_one_line_exit_2(args):
    result = CliRunner().invoke(app, ["plan", "--runway", *args])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and args[1] in lines[0]


ONE = """
name: at-limit
sites:
  - {name: s, power_cap_mw: 10, pue: 1.2, gpus: {H100: 10}}
deployments:
  - {name: a, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s, replicas: 1}
tenants:
  - {name: t, tier: 0, slo: {ttft_p99_ms: 1000}}
workloads:
  - {name: wa, tenant: t, deployment: a, arrival: {kind: poisson, rate_rps: 10},
     lengths: {kind: fixed, input_tokens: 100, output_tokens: 10}}
simulation:
  window: {duration_s: 60}
"""


class Bracket:
    """A capacity of ``low`` req/s per replica seen to meet and ``high`` seen to miss, for
    every shape and cell."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, scenario, deployment, cell, hint):
        return self.low

    def find(self, scenario, deployment, cell, hint):
        from capacitor.planner.capacity import Capacity

        return Capacity(deployment, cell, self.low, self.high, 0, 0.0, True, "")


def test_a_plan_inside_the_band_is_at_the_limit():
    from capacitor.planner.search import plan

    spec = parse_scenario(ONE, origin="at-limit")
    # meeting rate 0.96: ceil(10 / 0.96) = 11 one-GPU replicas > 10 H100: none for sure;
    # the band's top 1.0 (no failures: nothing in repair): ceil(10 / 1.0) = 10 fit
    result = plan(spec, "gpus", Bracket(0.96, 1.0))
    assert result.at_limit
    assert (result.chosen["a"].tp, result.chosen["a"].replicas) == (1, 10)
    # with the meeting rate at 1.0 the same plan is certain
    sure = plan(spec, "gpus", Bracket(1.0, 1.05))
    assert not sure.at_limit and sure.chosen["a"].replicas == 10
    # the band's top 0.99: ceil(10 / 0.99) = 11 > 10 even at the limit: infeasible
    with pytest.raises(PlanError, match="no shape serves its peak"):
        plan(spec, "gpus", Bracket(0.96, 0.99))


def test_pareto_front_of_cost_against_ttft():
    from dataclasses import replace

    from capacitor.planner.search import pareto

    base = cand("a", "H100", 10, 0.0)
    cs = [replace(base, tp=1, cost_usd_per_month=100.0, ttft_p99_ms=900.0),
          replace(base, tp=2, cost_usd_per_month=120.0, ttft_p99_ms=950.0),  # dominated
          replace(base, tp=4, cost_usd_per_month=150.0, ttft_p99_ms=400.0),
          replace(base, tp=8, cost_usd_per_month=300.0, ttft_p99_ms=400.0),  # ties, dearer
          replace(base, pp=2, cost_usd_per_month=90.0, ttft_p99_ms=None)]  # not recorded
    # by cost: 100/900, then 150/400 (faster); 120/950 is beaten by 100/900, 300/400 by 150/400
    assert [c.tp for c in pareto(cs, "cost")] == [1, 4]


def test_capacity_search_records_the_ttft_at_its_meeting_end(tmp_path):
    from capacitor.planner.capacity import Met, replica_capacity

    spec = parse_scenario(ONE, origin="at-limit")
    # meets below 3.7 req/s; the TTFT reported is 100 x the rate: at the meeting end
    # 2**(60/32) = 3.668 it is 366.8 ms
    out = replica_capacity(spec, "a", cache_dir=tmp_path, hint_rps=1.0,
                           meets=lambda d: Met(d["workloads"][0]["arrival"]["rate_rps"] <= 3.7,
                                               100.0 * d["workloads"][0]["arrival"]["rate_rps"]))
    assert out.rate_rps == pytest.approx(2 ** (60 / 32))
    assert out.ttft_p99_ms == pytest.approx(100.0 * 2 ** (60 / 32))
    again = replica_capacity(spec, "a", cache_dir=tmp_path, hint_rps=1.0,
                             meets=lambda d: Met(False))
    assert again.cached and again.ttft_p99_ms == pytest.approx(out.ttft_p99_ms)


def test_a_plan_at_the_limit_keeps_why_none_serves_for_sure():
    from capacitor.planner.search import plan

    result = plan(parse_scenario(ONE, origin="at-limit"), "gpus", Bracket(0.96, 1.0))
    assert result.at_limit and len(result.reasons) == 1
    # the closest shape for sure: 11 one-H100 replicas of 0.96 req/s for 10 req/s
    assert "needs 11 replicas = 11 H100" in result.reasons[0]
