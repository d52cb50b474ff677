"""Runway: how many months a fleet's capacity lasts as demand grows, month by month to the
end of its contracts.

For each growth scenario and each month from the window month to the end of the latest
contract's term (36 months when there is no contract; ASSUMPTION), per deployment:

- **peak demand**, requests/s: the sum over its workloads of the peak rate in the window
  month (:func:`capacitor.planner.capacity.peak_rate_rps` x the scenario's growth to the
  window month) grown to the month: by the workload's own ``monthly_growth_pct`` (growth
  scenario ``scenario``, through :func:`capacitor.scenario.io.growth_factor`), or by a
  factor per year ``f`` as ``f ** (months / 12)`` (compound, the same every month);
- **capacity**, requests/s: replicas up (less the long-run share down for repair,
  :func:`capacitor.planner.capacity.down_share`) x the per-replica goodput capacity
  (:func:`capacitor.planner.capacity.replica_capacity`, found once per deployment shape in a
  routing cell of ``min(replicas, simulation.shard_replicas)`` replicas and reused for every
  month: the shape and the mix do not change, only the volume);
- **headroom** = capacity / demand - 1; the deployment *fails* in the first month its demand
  exceeds its capacity (an SLO is missed, or demand must be throttled to keep it);
- **to add**: replicas ``ceil(demand / per-replica capacity) - replicas`` (when positive),
  their GPUs and facility MW at TDP (:func:`capacitor.fleet.power.facility_power_mw` with
  the site's PUE and server overhead factor).

Per tier (the tenants of that tier, the deployments their workloads use): the first failing
month and the months of headroom before it. Per month: the contracts' fee
(:func:`capacitor.economics.contracts.monthly_cost`), the cost of the added GPUs, and $/M
tokens of the month's demand. ASSUMPTION: an added GPU costs
``economics.gpu_hour_usd[gpu]`` x hours in the month when the scenario prices that GPU,
otherwise its site's full monthly contract fee / the site's GPU inventory (the contract's
average price per GPU-month). Tokens per request are the workload's mean input + output
tokens (:func:`mean_tokens`); without a closed-form mean (traces, shared-prefix
conversations) $/M tokens is not given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from capacitor.economics.contracts import (
    days_in_month,
    month_index,
    month_name,
    monthly_cost,
)
from capacitor.errors import PlanError

#: Growth scenarios as demand factors per year. Base 4x and aggressive 7x: Google's monthly
#: tokens grew about 7x from May 2025 to May 2026 (as quoted in the planning request;
#: ASSUMPTION that a frontier lab's demand grows within 2-10x a year).
DEFAULT_GROWTH: dict[str, float] = {"conservative": 2.0, "base": 4.0, "aggressive": 7.0,
                                    "stress": 10.0}
SCENARIO_GROWTH = "scenario"  # each workload's own monthly_growth_pct
DEFAULT_MONTHS = 36  # ASSUMPTION: the horizon when the scenario has no contract


# ---- pure arithmetic ---------------------------------------------------------------------


def grown(rate: float, factor_per_year: float, months: int) -> float:
    """``rate`` after ``months`` of compound growth at ``factor_per_year``."""
    return rate * factor_per_year ** (months / 12.0)


def first_over(demand: list[float], capacity: float) -> int | None:
    """Index of the first month whose ``demand`` exceeds ``capacity``; None if none does."""
    for i, d in enumerate(demand):
        if d > capacity:
            return i
    return None


def replicas_needed(demand_rps: float, per_replica_rps: float) -> int:
    """Replicas whose capacity covers ``demand_rps``."""
    return max(1, math.ceil(demand_rps / per_replica_rps - 1e-9))


# ---- inputs from a scenario ------------------------------------------------------------


def mean_tokens(lengths: Any) -> float | None:
    """Mean input + output tokens per request of a workload's length model; None for
    traces and conversations (no closed form)."""
    def dist(d: Any) -> float:
        return d.mean_tokens if d.kind == "lognormal" else (d.min_tokens + d.max_tokens) / 2.0

    if lengths.kind == "fixed":
        return float(lengths.input_tokens + lengths.output_tokens)
    if lengths.kind == "distribution":
        return dist(lengths.input) + dist(lengths.output)
    return None


def horizon(scenario: Any) -> list[str]:
    """The months walked: from the window month (else the first contract's start, else the
    current base) to the end of the latest contract's term, exclusive."""
    contracts = [c.terms() for c in scenario.economics.contracts]
    first = scenario.simulation.window.month
    if first is None:
        if not contracts:
            raise PlanError("the runway needs a month to start from: set "
                            "simulation.window.month or a contract")
        first = min(contracts, key=lambda c: month_index(c.start)).start
    start = month_index(first)
    end = max((month_index(c.end) for c in contracts), default=start + DEFAULT_MONTHS)
    if end <= start:
        raise PlanError(f"simulation.window.month = {first}: after the contracts' end "
                        f"({month_name(end)}); no month left to walk")
    return [month_name(i) for i in range(start, end)]


def _at_month(scenario: Any, month: str) -> Any:
    sim = scenario.simulation
    return scenario.model_copy(update={"simulation": sim.model_copy(update={
        "window": sim.window.model_copy(update={"month": month})})})


def growth_curves(scenario: Any, months: list[str], growth: float | None
                  ) -> dict[str, list[float]]:
    """Per workload, its demand multiplier over the window month, month by month (a
    workload without ``base_month`` grows from the first month walked)."""
    from capacitor.scenario.io import growth_factor

    if growth is not None:
        return {w.name: [grown(1.0, growth, i) for i in range(len(months))]
                for w in scenario.workloads}
    at = [_at_month(scenario, m) for m in months]
    out = {}
    for w in scenario.workloads:
        arrival = w.arrival
        if arrival is not None and arrival.base_month is None:  # rates of the window month
            arrival = arrival.model_copy(update={"base_month": months[0]})
        g0 = growth_factor(scenario, arrival) if arrival is not None else 1.0
        out[w.name] = [growth_factor(s, arrival) / g0 for s in at]
    return out


@dataclass(frozen=True)
class Shape:
    """What the runway needs of a deployment: its size and per-replica capacity."""

    name: str
    site: str
    gpu: str
    gpus_per_replica: int
    replicas: int
    capacity_rps: float  # per replica
    mw_per_gpu: float  # facility MW per GPU at TDP
    usd_per_gpu_month: float | None  # ASSUMPTION (module docstring); None = not priced
    down_share: float = 0.0  # replicas down for repair, long-run share

    @property
    def up_capacity_rps(self) -> float:
        """Per replica, counting the share down for repair."""
        return self.capacity_rps * (1.0 - self.down_share)


def runway(scenario: Any, shapes: Mapping[str, Shape],
           growths: Mapping[str, float | None]) -> dict[str, Any]:
    """The runway of ``scenario`` (see the module docstring) for ``growths`` (name -> factor
    per year, None = the scenario's own growth) given each deployment's :class:`Shape`."""
    from capacitor.planner.capacity import workload_peak_rps

    months = horizon(scenario)
    contracts = [c.terms() for c in scenario.economics.contracts]
    workloads = [w for w in scenario.workloads if w.deployment in shapes]
    peak0 = {w.name: workload_peak_rps(scenario, w) for w in workloads}
    # requests/s over the month (ASSUMPTION: stages and traces at their peak all month)
    mean0 = {w.name: workload_peak_rps(scenario, w, mean=True) for w in workloads}
    tokens = {w.name: mean_tokens(w.lengths) for w in workloads}
    tenant_tier = {t.name: t.tier for t in scenario.tenants}
    tiers: dict[int, set[str]] = {}
    for w in workloads:
        tiers.setdefault(tenant_tier[w.tenant], set()).add(w.deployment)
    fees = [sum(monthly_cost(c, m) for c in contracts) for m in months]
    out: dict[str, Any] = {"months": months, "growth": {}, "deployments": {
        n: {"replicas": s.replicas, "gpu": s.gpu, "gpus_per_replica": s.gpus_per_replica,
            "capacity_rps_per_replica": s.capacity_rps, "down_share": s.down_share,
            "capacity_rps": s.replicas * s.up_capacity_rps} for n, s in shapes.items()}}
    for gname, factor in growths.items():
        curves = growth_curves(scenario, months, factor)
        rows, first_fail = [], {}
        for name, s in shapes.items():
            ws = [w for w in workloads if w.deployment == name]
            demand = [sum(peak0[w.name] * curves[w.name][i] for w in ws)
                      for i in range(len(months))]
            cap = s.replicas * s.up_capacity_rps
            first_fail[name] = first_over(demand, cap)
            for i, m in enumerate(months):
                add = max(replicas_needed(demand[i], s.up_capacity_rps) - s.replicas, 0) \
                    if demand[i] > 0 else 0
                gpus = add * s.gpus_per_replica
                rows.append({"month": m, "deployment": name, "demand_rps": demand[i],
                             "capacity_rps": cap,
                             "headroom_pct": 100.0 * (cap / demand[i] - 1.0) if demand[i]
                             else None,
                             "add_replicas": add, "add_gpus": gpus,
                             "add_mw": gpus * s.mw_per_gpu,
                             "add_usd": gpus * s.usd_per_gpu_month
                             if s.usd_per_gpu_month is not None else None})
        monthly = []
        for i, m in enumerate(months):
            mine = [r for r in rows if r["month"] == m]
            add_usd = sum(r["add_usd"] or 0.0 for r in mine)
            cost = fees[i] + add_usd
            month_s = days_in_month(m) * 86400.0
            if all(tokens[w.name] is not None for w in workloads):
                mtok = sum(mean0[w.name] * curves[w.name][i] * month_s * tokens[w.name]
                           for w in workloads) / 1e6
                per_m = cost / mtok if mtok > 0 and cost > 0 else None
            else:
                mtok, per_m = None, None
            monthly.append({"month": m, "contract_fee_usd": fees[i], "add_gpus": sum(
                r["add_gpus"] for r in mine), "add_mw": sum(r["add_mw"] for r in mine),
                "add_gpu_cost_usd": add_usd, "cost_usd": cost, "million_tokens": mtok,
                "usd_per_million_tokens": per_m})
        tier_out = {}
        for tier, deps in sorted(tiers.items()):
            fails = [first_fail[d] for d in deps if first_fail[d] is not None]
            k = min(fails) if fails else None
            tier_out[str(tier)] = {
                "deployments": sorted(deps),
                "first_failing_month": months[k] if k is not None else None,
                "months_of_headroom": k if k is not None else len(months),
                "lasts_the_term": k is None}
        out["growth"][gname] = {
            "factor_per_year": factor, "tiers": tier_out,
            "first_failing_month": {d: months[k] if k is not None else None
                                    for d, k in first_fail.items()},
            "monthly": monthly, "rows": rows}
    return out


def scenario_shapes(scenario: Any, capacity: Callable[[str, int], float]) -> dict[str, Shape]:
    """Every deployment's :class:`Shape`; ``capacity(deployment, cell_replicas)`` gives its
    per-replica capacity."""
    from capacitor.fleet.power import facility_power_mw
    from capacitor.planner.capacity import down_share
    from capacitor.scenario.checks import resolve_replicas

    counts = resolve_replicas(scenario)
    served = {w.deployment for w in scenario.workloads}
    out = {}
    for d in scenario.deployments:
        if d.name not in served or counts[d.name] < 1:
            continue
        site = scenario.site(d.site)
        mw = facility_power_mw({d.gpu: 1}, pue=site.pue,
                               server_overhead_factor={d.gpu: site.overhead_factor(d.gpu)})
        cell = min(counts[d.name], scenario.simulation.shard_replicas)
        out[d.name] = Shape(name=d.name, site=d.site, gpu=d.gpu,
                            gpus_per_replica=d.gpus_per_replica, replicas=counts[d.name],
                            capacity_rps=capacity(d.name, cell), mw_per_gpu=mw,
                            usd_per_gpu_month=gpu_month_usd(scenario, d.site, d.gpu),
                            down_share=down_share(scenario, d.site, d.gpu, d.gpus_per_replica))
    return out


def gpu_month_usd(scenario: Any, site_name: str, gpu: str) -> float | None:
    econ = scenario.economics
    if gpu in econ.gpu_hour_usd:
        return econ.gpu_hour_usd[gpu] * 730.0  # 8,760 h / 12: an average month
    site = scenario.site(site_name)
    for c in econ.contracts:
        if c.site in (None, site_name):
            gpus = sum(site.gpus.values()) if c.site is not None else sum(
                sum(s.gpus.values()) for s in scenario.sites)
            return c.price_usd_per_month / gpus
    return None


def parse_growth(items: list[str]) -> dict[str, float | None]:
    """``NAME=FACTOR_PER_YEAR`` overrides (or additions) to the default growth scenarios."""
    out: dict[str, float | None] = {SCENARIO_GROWTH: None, **DEFAULT_GROWTH}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if not sep or not name.strip() or not (factor > 0 and math.isfinite(factor)):
            raise PlanError(f"--growth {item!r}: expected NAME=FACTOR_PER_YEAR with a factor "
                            "> 0 (e.g. base=4 for 4x a year)")
        out[name.strip()] = factor
    return out


__all__ = ["DEFAULT_GROWTH", "SCENARIO_GROWTH", "Shape", "first_over", "grown", "horizon",
           "mean_tokens", "parse_growth", "replicas_needed", "runway", "scenario_shapes"]
