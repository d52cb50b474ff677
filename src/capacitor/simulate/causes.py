"""Why a tier missed: the binding cause of each SLO miss of a run's verdict.

A miss is attributed by counterfactuals the run already has or makes, in this order:

1. ``rate_limit`` / ``quota`` / ``rate_limit_or_quota`` — a ``refused_pct`` miss whose
   refusals are mostly *throttled*: the tenant's own limits refused its traffic before any
   replica saw it (which of the two is named by what the tenant configures; the run does not
   count them apart);
2. ``power_cap`` — the site ran power-capped and the uncapped pass
   (:mod:`capacitor.simulate.power_cap`) met the target;
3. ``failures`` — the same window simulated without replica failures and site outages
   (:func:`capacitor.simulate.run.run_scenario` makes that pass only when a verdict misses
   and a tenant's deployment sits at a site with failures) met the target;
4. ``capacity`` — none of the above: the replicas are too few, or too slow, for the demand
   (for a ``refused_pct`` miss, admission control shed it: queues full, or the tenant's
   concurrency cap, which the text names when the tenant has one).

The first counterfactual that meets the target names the cause; the text gives the
counterfactual's value beside the run's, so a reader sees how much each lever moves it.
"""

from __future__ import annotations

from capacitor.simulate.summary_model import Miss, RunSummary

#: The causes a miss may be given, in the order they are tested.
CAUSES: tuple[str, ...] = ("rate_limit", "quota", "rate_limit_or_quota", "power_cap",
                           "failures", "capacity")


def _metric_value(summary: RunSummary | None, miss: Miss) -> float | None:
    """The missed metric's value for the miss's tenant in another pass's summary."""
    if summary is None or miss.tenant not in summary.tenants:
        return None
    t = summary.tenants[miss.tenant]
    if miss.metric == "refused_pct":
        return t.refused_pct
    if miss.metric.startswith("workflow_"):  # tenants.<t>.workflows: e2e_p90_s, failed_pct...
        flows = t.workflows
        return None if flows is None else getattr(flows, miss.metric.removeprefix("workflow_"))
    return getattr(t, miss.metric.removesuffix("_p99_ms") + "_ms").p99


def _met(summary: RunSummary | None, miss: Miss) -> float | None:
    """The metric's value in ``summary`` when it meets the miss's target, else None."""
    value = _metric_value(summary, miss)
    return value if value is not None and value <= miss.target else None


def _throttle_cause(tenant) -> str:
    rate = tenant.rate_limits.requests_per_min is not None or \
        tenant.rate_limits.tokens_per_min is not None
    quota = tenant.quotas.tokens_per_month is not None
    return "rate_limit_or_quota" if rate and quota else "quota" if quota else "rate_limit"


def _has_concurrency_cap(scenario, tenant) -> bool:
    return tenant.rate_limits.max_concurrent is not None or \
        tenant.quotas.max_share_pct is not None or any(
            t.quotas.guaranteed_share_pct for t in scenario.tenants if t.name != tenant.name)


def miss_cause(miss: Miss, scenario, refusals, *, uncapped: RunSummary | None,
               failure_free: RunSummary | None) -> tuple[str, str]:
    """``(cause, why)`` of one miss (see the module docstring); ``refusals`` is the tenant's
    :class:`~capacitor.simulate.summary_model.Refusals` in the run."""
    tenant = next(t for t in scenario.tenants if t.name == miss.tenant)
    unit = {"refused_pct": "%", "workflow_failed_pct": "%", "workflow_e2e_p90_s": " s",
            "workflow_e2e_p99_s": " s"}.get(miss.metric, " ms")
    if miss.metric == "refused_pct" and (refusals.throttled or 0.0) >= (refusals.shed or 0.0):
        cause = _throttle_cause(tenant)
        return cause, (f"{refusals.throttled_pct}% of its requests throttled by its "
                       f"{cause.replace('_or_', ' or ').replace('_', ' ')}")
    value = _met(uncapped, miss)
    if value is not None:
        return "power_cap", f"uncapped it would be {value}{unit}"
    value = _met(failure_free, miss)
    if value is not None:
        return "failures", f"without replica failures it would be {value}{unit}"
    if miss.metric == "refused_pct":
        cap = " or its concurrency cap" if _has_concurrency_cap(scenario, tenant) else ""
        return "capacity", f"{refusals.shed_pct}% of its requests shed by admission control{cap}"
    extra = []
    if failure_free is not None:
        extra.append(f"{_metric_value(failure_free, miss)}{unit} without failures")
    if uncapped is not None:
        extra.append(f"{_metric_value(uncapped, miss)}{unit} uncapped")
    return "capacity", "too few or too slow replicas for the demand" + (
        f" ({', '.join(extra)})" if extra else "")


def attribute(misses: list[Miss], scenario, tenants, *, uncapped: RunSummary | None,
              failure_free: RunSummary | None) -> list[Miss]:
    """The misses with ``cause`` and ``why`` set (``tenants``: name -> TenantSummary)."""
    out = []
    for m in misses:
        cause, why = miss_cause(m, scenario, tenants[m.tenant].refusals, uncapped=uncapped,
                                failure_free=failure_free)
        out.append(m.model_copy(update={"cause": cause, "why": why}))
    return out


def failures_possible(scenario, misses: list[Miss]) -> bool:
    """True when a missing tenant has a deployment at a site with failures or outages (so a
    failure-free pass could change its verdict)."""
    tenants = {m.tenant for m in misses}
    deps = {w.deployment for w in scenario.workloads if w.tenant in tenants}
    sites = {d.site for d in scenario.deployments if d.name in deps}
    for s in scenario.sites:
        f = s.failures
        if s.name in sites and (f.gpu_mtbf_hours or f.node_mtbf_hours or f.outages):
            return True
    return False


__all__ = ["CAUSES", "attribute", "failures_possible", "miss_cause"]
