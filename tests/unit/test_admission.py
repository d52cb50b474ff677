"""Tenant admission: rate limits, monthly token quotas and concurrency caps, on cases small
enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine.requests import RequestBatch
from capacitor.fleet.admission import concurrency_caps, month_seconds, throttle
from capacitor.fleet.demand import Demand
from capacitor.scenario.models import Quotas, RateLimits, Tenant


def _demand(times, tenant, prompt=500, output=100) -> Demand:
    n = len(times)
    batch = RequestBatch(
        arrival_s=np.asarray(times, float), prompt_len=np.full(n, prompt, np.int32),
        output_len=np.full(n, output, np.int32), prefix_src=np.full(n, -1, np.int32),
        prefix_len=np.zeros(n, np.int32), gate=np.full(n, -1, np.int32),
        rejected=np.zeros(n, np.bool_))
    return Demand(batch=batch, tenant=np.asarray(tenant, np.int16),
                  workload=np.zeros(n, np.int16), session=np.arange(n, dtype=np.int64))


def _tenant(name="t", **kw) -> Tenant:
    limits = {k: kw.pop(k) for k in list(kw) if k in RateLimits.model_fields}
    return Tenant(name=name, tier=0, rate_limits=RateLimits(**limits), quotas=Quotas(**kw))


def test_month_seconds_counts_the_calendar():
    assert month_seconds("2026-02") == 28 * 86400
    assert month_seconds("2028-02") == 29 * 86400
    assert month_seconds("2026-07") == 31 * 86400
    assert month_seconds(None) == pytest.approx(30.4375 * 86400)


def test_monthly_token_quota_admits_exactly_the_pro_rata_allowance():
    # 1,000 requests of 600 tokens over 100 s; July has 2,678,400 s, so a quota of
    # 300,000 x 26,784 tokens/month leaves this 100 s span 300,000 tokens = 500 requests.
    demand = _demand(np.arange(1000) * 0.1, np.zeros(1000))
    quota = 300_000 * 2_678_400 / 100
    out = throttle(demand, [_tenant(tokens_per_month=quota)], 60.0, np.ones(1), 100.0,
                   month_seconds("2026-07"))
    assert out.sum() == 500
    assert not out[:500].any() and out[500:].all()  # first come, first served
    # half the tenant's demand goes elsewhere: half the allowance here
    out = throttle(demand, [_tenant(tokens_per_month=quota)], 60.0, np.array([0.5]), 100.0,
                   month_seconds("2026-07"))
    assert out.sum() == 750


def test_a_request_refused_by_the_rate_limit_uses_none_of_the_quota():
    # 10 requests at t=0: a bucket of 4 requests admits 4; the quota (6 requests' tokens)
    # would have refused 4 of them had the refused ones consumed it.
    demand = _demand(np.zeros(10), np.zeros(10))
    ten = _tenant(requests_per_min=60, tokens_per_month=6 * 600 * 1000.0)
    out = throttle(demand, [ten], 4.0, np.ones(1), 1000.0, 1000.0)
    assert out.sum() == 6 and not out[:4].any()


def test_limits_apply_per_tenant():
    demand = _demand(np.zeros(6), [0, 1, 0, 1, 0, 1])
    tenants = [_tenant("a", requests_per_min=60), _tenant("b")]
    out = throttle(demand, tenants, 2.0, np.ones(2), 10.0, 1e6)
    assert out.tolist() == [False, False, False, False, True, False]


def test_concurrency_caps_combine_max_concurrent_shares_and_guarantees():
    tenants = [
        _tenant("gold", guaranteed_share_pct=25),
        _tenant("silver", max_concurrent=1000, max_share_pct=50),
        _tenant("bronze"),
    ]
    present = np.ones(3)
    # 4 replicas x 64 seqs = 256 slots
    caps = concurrency_caps(tenants, np.array([1.0, 0.1, 1.0]), present, 4, 64)
    assert caps[0] == 0  # no limit of its own, nobody else guarantees anything
    assert caps[1] == 100  # min(1000 x 0.1, 50% of 256 = 128, 75% of 256 = 192)
    assert caps[2] == 192  # the 25% gold holds
    # gold has no workload here: its guarantee does not bind
    caps = concurrency_caps(tenants, np.ones(3), np.array([0.0, 1.0, 1.0]), 4, 64)
    assert caps[2] == 0
    assert caps[1] == 128
