"""Admission fields act as their descriptions say, end to end (small, fast scenarios):
``max_predicted_ttft_ms: null`` is the tenants' TTFT SLO, and ``max_queue`` bounds the queues
under ``token_bucket``."""

from __future__ import annotations

from capacitor.simulate import run_scenario
from tests.factories import SMALL, make_scenario, scenario_dict

#: The small test scenario overloaded (2 x 400 req/s on 8 replicas), both tenants with a 1 s
#: TTFT target and loose throttling SLOs.
OVERLOADED = scenario_dict(SMALL)
OVERLOADED["simulation"]["window"] = {"duration_s": 20, "warmup_s": 5}
for _w in OVERLOADED["workloads"]:
    _w["arrival"] = {"kind": "poisson", "rate_rps": 400}
for _t in OVERLOADED["tenants"]:
    _t["slo"] = {"ttft_p99_ms": 1000, "max_throttled_pct": 100}


def _summary(admission: dict):
    return run_scenario(make_scenario(OVERLOADED, origin="<admission>",
                                      admission=admission)).summary


def test_a_null_predicted_ttft_limit_is_the_tenants_ttft_slo():
    null = _summary({"policy": "predicted_ttft"})
    explicit = _summary({"policy": "predicted_ttft", "max_predicted_ttft_ms": 1000})
    assert null.to_json() == explicit.to_json()
    assert null.tenants["gold"].refused_pct > 10  # it sheds: the limit is not "never"
    unlimited = _summary({"policy": "token_bucket"})
    assert unlimited.tenants["gold"].refused_pct < null.tenants["gold"].refused_pct


def test_max_queue_bounds_the_queues_under_token_bucket():
    unbounded = _summary({"policy": "token_bucket"})
    bounded = _summary({"policy": "token_bucket", "max_queue": 2})
    assert bounded.tenants["gold"].refused_pct > unbounded.tenants["gold"].refused_pct + 10
    # and the queues it bounds shorten the wait for the first token
    assert bounded.tenants["gold"].ttft_ms.p99 < unbounded.tenants["gold"].ttft_ms.p99
