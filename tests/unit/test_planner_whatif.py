"""What-ifs on the runway (capacitor.planner.whatif): a contract exit, a site outage, a power
cap change and an agentic demand shift on a two-site scenario at a known capacity (10 req/s
per replica, no failures), each against hand-computed months, GPUs and fees; bad what-ifs
are one line naming the field, the value and what is valid."""

from __future__ import annotations

import pytest

from capacitor.errors import PlanError
from capacitor.planner.runway import runway, scenario_shapes
from capacitor.planner.whatif import effects, select
from capacitor.scenario import parse_scenario

SCENARIO = """
name: whatif
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    server_overhead_factor: 1.5
    gpus: {H100: 100}
  - name: t
    power_cap_mw: 10
    pue: 1.2
    gpus: {H100: 50}
deployments:
  - {name: d, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s, replicas: 10}
  - {name: e, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: t, replicas: 5}
tenants:
  - {name: t0, tier: 0, slo: {ttft_p99_ms: 1000}}
  - {name: t1, tier: 1, slo: {ttft_p99_ms: 1000}}
workloads:
  - name: w
    tenant: t0
    deployment: d
    arrival: {kind: poisson, rate_rps: 80}
    lengths: {kind: fixed, input_tokens: 900, output_tokens: 100}
  - name: v
    tenant: t1
    deployment: e
    arrival: {kind: poisson, rate_rps: 30}
    lengths: {kind: fixed, input_tokens: 900, output_tokens: 100}
economics:
  contracts:
    - {name: lease_s, site: s, price_usd_per_month: 1000000, start: "2026-01", end: "2027-01",
       notice_days: 60}
    - {name: lease_t, site: t, price_usd_per_month: 500000, start: "2026-01", end: "2027-01"}
simulation:
  window: {month: "2026-01", duration_s: 60}
"""


def walk(item: str) -> dict:
    spec = parse_scenario(SCENARIO, origin="whatif")
    shapes = scenario_shapes(spec, lambda name, cell: 10.0)  # 10 req/s per replica
    (w,) = select(spec, [item])
    out = runway(spec, shapes, {"flat": 1.0}, effects(spec, w, shapes, lambda _: None))
    return out["growth"]["flat"]


def row(g: dict, month: str, dep: str) -> dict:
    return next(r for r in g["rows"] if r["month"] == month and r["deployment"] == dep)


def test_base_case_lasts_the_term():
    spec = parse_scenario(SCENARIO, origin="whatif")
    g = runway(spec, scenario_shapes(spec, lambda n, c: 10.0), {"flat": 1.0})["growth"]["flat"]
    # d: 10 replicas x 10 = 100 >= 80; e: 5 x 10 = 50 >= 30, every month
    assert all(t["lasts_the_term"] for t in g["tiers"].values())


def test_contract_exit_removes_the_site_from_notice_plus_notice_days():
    g = walk("contract_exit:contract=lease_s,notice_month=2026-03")
    # notice 2026-03-01 + 60 days = 2026-04-30, the first day not billed: the capacity is
    # gone in 2026-04 (a month counts without it if it leaves during it)
    assert g["tiers"]["0"]["first_failing_month"] == "2026-04"
    assert g["tiers"]["0"]["months_of_headroom"] == 3  # 2026-01 .. 2026-03
    assert g["tiers"]["1"]["lasts_the_term"]  # site t keeps its lease
    assert row(g, "2026-03", "d")["replicas"] == 10
    apr = row(g, "2026-04", "d")
    assert apr["replicas"] == 0 and apr["capacity_rps"] == 0
    assert apr["add_gpus"] == 8  # ceil(80 / 10) replicas of one H100, all to replace
    fees = {m["month"]: m["contract_fee_usd"] for m in g["monthly"]}
    # April billed 29 of 30 days of lease_s, plus lease_t
    assert fees["2026-04"] == pytest.approx(1_000_000 * 29 / 30 + 500_000)
    assert fees["2026-05"] == pytest.approx(500_000)
    assert fees["2026-03"] == pytest.approx(1_500_000)


def test_site_outage_for_two_months():
    g = walk("site_outage:site=t,start=2026-02,months=2,lost_share=0.5")
    # e keeps floor(5 x 0.5) = 2 replicas = 20 req/s < 30 in 2026-02 and 2026-03
    assert g["tiers"]["1"]["first_failing_month"] == "2026-02"
    assert row(g, "2026-02", "e")["replicas"] == 2
    assert row(g, "2026-03", "e")["status"] == "fails"
    assert row(g, "2026-04", "e")["status"] == "ok"
    assert row(g, "2026-02", "e")["add_gpus"] == 1  # ceil(30 / 10) - 2
    assert g["tiers"]["0"]["lasts_the_term"]


def test_power_cap_change_powers_replicas_down():
    # d's 10 H100 at TDP: 10 x 700 W x 1.5 x PUE 1.2 = 12,600 W = 0.0126 MW; a cap of
    # 0.00882 MW keeps 0.7 of them: 7 replicas = 70 req/s < 80 from 2026-06
    g = walk("power_cap:site=s,power_cap_mw=0.00882,start=2026-06")
    assert g["tiers"]["0"]["first_failing_month"] == "2026-06"
    assert row(g, "2026-05", "d")["replicas"] == 10
    assert row(g, "2026-06", "d")["replicas"] == 7
    assert row(g, "2026-06", "d")["add_gpus"] == 1  # ceil(80 / 10) - 7
    assert row(g, "2026-06", "e")["replicas"] == 5  # the other site is not capped


def test_agentic_shift_moves_requests_between_deployments():
    g = walk("agentic_shift:from_workload=w,to_workload=v,share_pct=30,start=2026-03")
    # 30 % of w's 80 req/s = 24 move to v: d 56 (ok), e 30 + 24 = 54 > 50 from 2026-03
    assert row(g, "2026-03", "d")["demand_rps"] == pytest.approx(56.0)
    assert row(g, "2026-03", "e")["demand_rps"] == pytest.approx(54.0)
    assert row(g, "2026-02", "e")["demand_rps"] == pytest.approx(30.0)
    assert g["tiers"]["1"]["first_failing_month"] == "2026-03"
    assert g["tiers"]["0"]["lasts_the_term"]


def test_a_scenario_what_if_is_selected_by_name_and_walked():
    text = SCENARIO + """what_if:
  - {name: t_dark, kind: site_outage, site: t, start: "2026-05"}
"""
    spec = parse_scenario(text, origin="whatif")
    assert select(spec, []) == select(spec, ["t_dark"]) == spec.what_if
    shapes = scenario_shapes(spec, lambda n, c: 10.0)
    g = runway(spec, shapes, {"flat": 1.0}, effects(spec, spec.what_if[0], shapes,
                                                     lambda _: None))["growth"]["flat"]
    assert g["tiers"]["1"]["first_failing_month"] == "2026-05"
    assert row(g, "2026-06", "e")["status"] == "ok"  # one month by default


def test_a_bad_what_if_in_the_scenario_is_one_line():
    from capacitor.errors import ScenarioError

    text = SCENARIO + """what_if:
  - {kind: contract_exit, contract: lease_x, notice_month: "2026-05"}
"""
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, origin="whatif")
    assert err.value.problems == (
        "whatif: what_if[0].contract = 'lease_x': no such name; valid: lease_s, lease_t",)


@pytest.mark.parametrize("item, message", [
    ("nope", "--what-if 'nope': no what-if of that name"),
    ("site_outage:site=x,start=2026-02", "site = 'x': no such name; valid: s, t"),
    ("site_outage:site=s,start=2026-13", "start = '2026-13': expected a month"),
    ("site_outage:site=s,start=2026-02,lost_share=2", "lost_share = 2: input should be less"),
    ("outage:site=s", "kind = 'outage': unknown kind; valid: 'contract_exit'"),
    ("contract_exit:contract=lease_s,notice_month=2026-03,by=me",
     "by = 'me': unknown key; valid fields of contract_exit: name, contract, notice_month"),
    ("agentic_shift:from_workload=w,to_workload=w,share_pct=5,start=2026-02",
     "to_workload = 'w': the same as from_workload"),
])
def test_bad_what_ifs_are_one_line_naming_field_value_and_valid(item, message):
    spec = parse_scenario(SCENARIO, origin="whatif")
    with pytest.raises(PlanError) as err:
        select(spec, [item])
    assert len(err.value.problems) == 1
    assert message in err.value.problems[0]
