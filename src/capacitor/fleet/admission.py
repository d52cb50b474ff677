"""Tenant admission in front of a deployment: rate limits, volume quotas and concurrency caps.

A tenant's limits are fleet-wide; a deployment enforces its part of them. That part is
``scale`` per tenant: the sampling share ``k / R`` times the tenant's share of its own
expected demand that goes to this deployment (so a tenant served by two deployments does not
get its limit twice). The split is fixed before the run and each deployment has its own
buckets (no shared bucket): more demand on one deployment moves part of the limits to it and
away from the tenant's other deployments, and traffic that differs from the expectation
meets a part sized for the expectation. The run's summary reports the split and the
requests throttled per deployment (``tenants.<t>.limit_shares``). Requests refused here are
*throttled* (answered at once, like an HTTP 429) and never reach a replica.

* ``requests_per_min`` / ``tokens_per_min``: token buckets refilled at the rate, holding
  ``bucket_depth_s`` seconds of it;
* ``quotas.tokens_per_month``: the simulated span gets the pro-rata allowance
  ``quota x span / seconds in the month``; once it is used up the tenant is throttled;
* ``max_concurrent``, ``quotas.max_share_pct`` and the other tenants'
  ``quotas.guaranteed_share_pct`` cap the tenant's requests in flight (routed and unfinished)
  in the pool; :func:`concurrency_caps` turns them into the per-tenant limits the router
  enforces (a request over its cap is shed, status 3).
"""

from __future__ import annotations

import calendar
import math

import numba
import numpy as np

from capacitor.fleet.demand import Demand

MEAN_MONTH_S = 365.25 / 12.0 * 86400.0  # a month when the scenario names none


def month_seconds(month: str | None) -> float:
    """Seconds in the month ``'YYYY-MM'`` (a mean month when None)."""
    if month is None:
        return MEAN_MONTH_S
    year, mon = (int(x) for x in month.split("-"))
    return calendar.monthrange(year, mon)[1] * 86400.0


@numba.njit(cache=True)
def _token_buckets(t, tenant, cost, rate_per_s, depth, throttled):
    """Per tenant, a bucket of ``depth[k]`` refilled at ``rate_per_s[k]``: a request that
    finds fewer than ``cost`` units is throttled (and takes none). inf rate = no limit;
    requests already throttled (by an earlier limit) take nothing."""
    level = depth.copy()
    last = np.zeros(depth.shape[0])
    for i in range(t.shape[0]):
        k = tenant[i]
        if rate_per_s[k] == np.inf or throttled[i]:
            continue
        level[k] = min(depth[k], level[k] + (t[i] - last[k]) * rate_per_s[k])
        last[k] = t[i]
        if level[k] >= cost[i]:
            level[k] -= cost[i]
        else:
            throttled[i] = True


def throttle(demand: Demand, tenants, bucket_depth_s: float, scale: np.ndarray,
             span_s: float, month_s: float) -> np.ndarray:
    """Requests refused by their tenant's requests/min and tokens/min limits and its monthly
    token quota, in that order (a request refused by one limit uses none of the next).

    ``scale[j]`` is tenant ``j``'s part of its limits in this deployment; ``span_s`` the
    simulated seconds (warm-up included) and ``month_s`` the seconds of the window's month,
    which set the quota's pro-rata allowance.
    """
    n = len(demand.batch)
    throttled = np.zeros(n, np.bool_)
    t = demand.batch.arrival_s
    tenant = demand.tenant.astype(np.int64)
    tokens = demand.batch.prompt_len.astype(np.float64) + demand.batch.output_len
    for field, cost in (("requests_per_min", np.ones(n)), ("tokens_per_min", tokens)):
        rate = np.full(len(tenants), np.inf)
        for j, ten in enumerate(tenants):
            value = getattr(ten.rate_limits, field, None) if ten.rate_limits else None
            if value:
                rate[j] = value / 60.0 * scale[j]
        if not np.all(np.isinf(rate)):
            depth = np.where(np.isinf(rate), 0.0, rate * bucket_depth_s)
            _token_buckets(t, tenant, cost, rate, depth, throttled)
    rate = np.full(len(tenants), np.inf)
    depth = np.zeros(len(tenants))
    for j, ten in enumerate(tenants):
        quota = ten.quotas.tokens_per_month if ten.quotas else None
        if quota:
            rate[j] = 0.0  # no refill inside the window: an allowance, not a rate
            depth[j] = quota * span_s / month_s * scale[j]
    if not np.all(np.isinf(rate)):
        _token_buckets(t, tenant, tokens, rate, depth, throttled)
    return throttled


def concurrency_caps(tenants, scale: np.ndarray, present: np.ndarray, num_replicas: int,
                     max_num_seqs: int) -> np.ndarray:
    """Per tenant, the most requests it may have in flight in a pool of ``num_replicas``
    (0 = no cap): the smallest of its ``max_concurrent`` times ``scale``, ``max_share_pct``
    of the pool's running-sequence slots, and the slots the *other* tenants present in the
    pool (``present``) do not hold guaranteed (``guaranteed_share_pct``). At least 1."""
    slots = num_replicas * max_num_seqs
    guaranteed = np.array([
        (t.quotas.guaranteed_share_pct or 0.0) if t.quotas else 0.0 for t in tenants
    ]) * present
    caps = np.zeros(max(len(tenants), 1), np.int64)
    for j, ten in enumerate(tenants):
        limits = []
        if ten.rate_limits and ten.rate_limits.max_concurrent:
            limits.append(math.ceil(ten.rate_limits.max_concurrent * scale[j]))
        if ten.quotas and ten.quotas.max_share_pct:
            limits.append(math.floor(ten.quotas.max_share_pct / 100.0 * slots))
        others = guaranteed.sum() - guaranteed[j]
        if others > 0:
            limits.append(math.floor((1.0 - others / 100.0) * slots))
        if limits:
            caps[j] = max(1, min(limits))
    return caps


__all__ = ["MEAN_MONTH_S", "concurrency_caps", "month_seconds", "throttle"]
