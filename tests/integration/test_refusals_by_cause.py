"""Refusals by cause: throttled, shed, invalid and failed are counted apart in the summary,
requests.parquet and the timeline, and the SLO verdict judges only what the fleet chose to
refuse (throttled + shed), naming the invalid and failed requests it does not judge."""

from __future__ import annotations

import numpy as np

from capacitor.simulate import run_scenario
from capacitor.simulate.outputs import requests_table
from capacitor.simulate.summary import timeline
from tests.factories import make_scenario

#: gold sends, besides its 30 requests/s, 5 requests/s of 200,000-token prompts: over
#: Llama-3.1-8B's 131,072-token max_model_len, so each is invalid (HTTP 400 at once).
LONG = {"name": "g_long", "tenant": "gold", "deployment": "d",
        "arrival": {"kind": "constant", "rate_rps": 5},
        "lengths": {"kind": "fixed", "input_tokens": 200_000, "output_tokens": 10}}


def _scenario(**changes):
    base = make_scenario()
    workloads = [w.model_dump() for w in base.workloads] + [LONG]
    return make_scenario(**{"workloads": workloads,
                            # bronze limited to 15 requests/s of its 30: about half throttled
                            "tenants.1.rate_limits": {"requests_per_min": 900}, **changes})


def test_invalid_requests_are_counted_apart_and_not_judged():
    run = run_scenario(_scenario())
    s = run.summary
    gold, bronze = s.tenants["gold"], s.tenants["bronze"]
    # constant 5 requests/s sent at t = 0, 0.2, ...; counted from t = 10 s over the 60 s
    # window: 60 x 5 = 300 invalid requests, all of gold's
    assert gold.refusals.invalid == 300.0
    assert bronze.refusals.invalid == 0.0
    assert s.verdict.invalid_requests == 300.0
    assert "300 invalid requests" in s.verdict.text
    # 300 of gold's ~2,100 requests (~14%) are invalid, far over its 1% max_throttled_pct,
    # yet the fleet refused none of them by choice: gold does not miss refused_pct
    assert gold.refusals.invalid_pct > 10.0
    assert gold.refused_pct == 0.0
    assert ("gold", "refused_pct") not in {(m.tenant, m.metric) for m in s.verdict.misses}
    # bronze's limit throttles about half its 30 requests/s: judged, and missed (5% allowed)
    assert 40.0 < bronze.refusals.throttled_pct < 60.0
    assert bronze.refused_pct == round(bronze.refusals.throttled_pct
                                       + bronze.refusals.shed_pct, 3)
    assert ("bronze", "refused_pct") in {(m.tenant, m.metric) for m in s.verdict.misses}
    # the four causes and the completed requests account for every counted request
    for t in (gold, bronze):
        r = t.refusals
        assert abs(r.throttled + r.shed + r.invalid + r.failed + t.completed
                   - t.requests) <= 1.0

    # the timeline counts by send minute over the whole 70 s span (warm-up included):
    # 70 s x 5 requests/s = 350 invalid; throttled matches requests.parquet
    tl = timeline(run)
    assert tl["invalid"].sum() == 350.0
    table = requests_table(run)
    refusal = np.array(table["refusal"].to_pylist())
    status = np.array(table["status"].to_pylist())
    assert (refusal == "invalid").sum() == 350
    assert np.array_equal(refusal == "invalid", status == "rejected")
    assert np.array_equal(refusal == "throttled", status == "throttled")
    assert np.array_equal(refusal == "shed", status == "shed")
    assert tl["throttled"].sum() == (refusal == "throttled").sum() > 0
    assert set(refusal[status == "completed"]) == {"none"}


def test_requests_lost_to_a_failure_are_failed_and_named_in_the_verdict():
    s = run_scenario(_scenario(**{"sites.0.failures": {
        "outages": [{"start_s": 30, "duration_s": 20}]}})).summary
    failed = sum(t.refusals.failed for t in s.tenants.values())
    assert failed > 0 and s.verdict.failed_requests == round(failed, 1)
    assert "lost to replica failures" in s.verdict.text
    # during the outage every replica is down: arrivals are shed (the fleet's refusal)
    assert s.tenants["gold"].refusals.shed > 0
    assert np.isclose(s.tenants["gold"].refused_pct,
                      s.tenants["gold"].refusals.throttled_pct
                      + s.tenants["gold"].refusals.shed_pct, atol=2e-3)
