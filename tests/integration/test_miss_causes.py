"""The verdict names the binding cause of each miss (capacitor.simulate.causes): the tenant's
own limits, a power cap, replica failures, or capacity."""

from __future__ import annotations

import pytest

from capacitor.scenario import parse_scenario
from capacitor.simulate import run_scenario
from tests.factories import make_scenario
from tests.integration.test_power_run import _CAP


def _miss(run, tenant: str, metric: str):
    found = [m for m in run.summary.verdict.misses if (m.tenant, m.metric) == (tenant, metric)]
    assert found, run.summary.verdict.text
    return found[0]


def test_a_rate_limited_tenant_misses_by_its_rate_limit() -> None:
    # bronze sends 30 requests/s against 600 requests/min = 10/s: about 2/3 throttled
    run = run_scenario(make_scenario(**{"tenants.1.rate_limits": {"requests_per_min": 600}}),
                       keep_pools=False)
    miss = _miss(run, "bronze", "refused_pct")
    assert miss.cause == "rate_limit"
    assert 60.0 < run.summary.tenants["bronze"].refusals.throttled_pct < 73.0
    assert "throttled by its rate limit" in miss.why
    assert "rate_limit" in run.summary.verdict.text
    assert run.failure_free_summary is None  # no failures at the site: no second pass


def test_a_quota_tenant_is_named_quota() -> None:
    # a monthly quota small enough to run out within the 70 s span
    run = run_scenario(make_scenario(**{"tenants.1.quotas": {"tokens_per_month": 1.0e8}}),
                       keep_pools=False)
    assert _miss(run, "bronze", "refused_pct").cause == "quota"


def test_a_site_outage_misses_by_failures() -> None:
    # the site is down for 30 of the 60 measured seconds: every request sent then is shed
    # (no replica up), about half of bronze's, against max_throttled_pct 5
    run = run_scenario(make_scenario(**{"sites.0.failures": {
        "outages": [{"start_s": 20, "duration_s": 30}]}}), keep_pools=False)
    miss = _miss(run, "bronze", "refused_pct")
    assert run.summary.tenants["bronze"].refusals.shed_pct > 40.0
    assert miss.cause == "failures"
    assert run.failure_free_summary is not None
    assert run.failure_free_summary.tenants["bronze"].refused_pct <= 5.0
    assert "without replica failures it would be" in miss.why


def test_an_overloaded_fleet_misses_by_capacity() -> None:
    # 8 replicas at 20x the demand they serve within 1 s TTFT; an outage is on too, but the
    # fleet misses gold's TTFT without it as well: capacity, with the failure-free value
    run = run_scenario(make_scenario(**{
        "workloads.0.arrival.rate_rps": 600, "workloads.1.arrival.rate_rps": 600,
        "sites.0.failures": {"outages": [{"start_s": 20, "duration_s": 5}]}}),
        keep_pools=False)
    miss = _miss(run, "gold", "ttft_p99_ms")
    assert miss.cause == "capacity"
    assert run.failure_free_summary.tenants["gold"].ttft_ms.p99 > 1000.0
    assert "without failures" in miss.why


def test_a_power_cap_that_binds_is_named() -> None:
    uncapped = run_scenario(parse_scenario(_CAP.replace("CAP_MW", "10")), keep_pools=False)
    cap_mw = 0.8 * 1302.0 / 1e6  # 80% of the busy draw (see test_power_run)
    capped = run_scenario(parse_scenario(_CAP.replace("CAP_MW", repr(cap_mw))),
                          keep_pools=False)
    before = uncapped.summary.tenants["t"].itl_ms.p99
    after = capped.summary.tenants["t"].itl_ms.p99
    assert after > before
    # an ITL target between the two: the uncapped pass meets it, the capped run does not
    target = round((before + after) / 2, 3)
    text = _CAP.replace("CAP_MW", repr(cap_mw)).replace(
        "slo: {ttft_p99_ms: 100000", f"slo: {{itl_p99_ms: {target}, ttft_p99_ms: 100000")
    run = run_scenario(parse_scenario(text), keep_pools=False)
    miss = _miss(run, "t", "itl_p99_ms")
    assert miss.cause == "power_cap"
    assert miss.why == f"uncapped it would be {before} ms"


@pytest.mark.parametrize("explain", [True, False])
def test_the_second_pass_changes_nothing_else(explain: bool) -> None:
    scenario = make_scenario(**{"sites.0.failures": {
        "outages": [{"start_s": 20, "duration_s": 30}]}})
    run = run_scenario(scenario, keep_pools=False, explain_misses=explain)
    base = run_scenario(scenario, keep_pools=False, explain_misses=False)
    a = run.summary.model_dump()
    b = base.summary.model_dump()
    for m in a["verdict"]["misses"] + b["verdict"]["misses"]:
        m.pop("cause"), m.pop("why")
    a["verdict"].pop("text"), b["verdict"].pop("text")
    assert a == b
