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
- **status**, by the uncertainty band of the capacity: ``capacity_rps`` = replicas x the
  per-replica rate seen to meet every SLO x (1 - the expected share down), and
  ``capacity_high_rps`` = replicas x the rate seen to miss one (the top of the search's
  bracket, 2.2 % above by default) x (1 - the low end of an hour's share down,
  :func:`capacitor.planner.capacity.down_share_low`: two standard deviations fewer
  replicas down than expected). ``ok`` when demand <= capacity; ``at_limit`` (within
  tolerance: a run of that hour may meet or miss, by the search's resolution and the
  hour's failure draw) when capacity < demand <= the high end; ``fails`` above it (an SLO
  is missed, or demand must be throttled to keep it, whatever the hour's draw). The first
  failing month is the first ``fails``; the first ``at_limit`` one is reported beside it.
  A sampled ``capacitor run`` sees the same load per replica up as the fleet: its sample
  gets the deployment's demand per replica up in the hour's failure draw
  (:func:`capacitor.simulate.deployment.sample_share`);
- **headroom** = capacity / demand - 1 (``headroom_high_pct``: of the bracket's high end);
- **to add**: replicas ``ceil(demand / per-replica capacity) - replicas`` (when positive;
  the capacity seen to meet, so an ``at_limit`` month already asks for replicas),
  their GPUs and facility MW at TDP (:func:`capacitor.fleet.power.facility_power_mw` with
  the site's PUE and server overhead factor).

Per tier (the tenants of that tier, the deployments their workloads use): the first failing
month, the months of headroom before it, the first month at the limit, and the most GPUs
to add in any month (and which). Per month: the contracts' fee
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
    capacity_rps: float  # per replica: the bracket's low end (seen to meet every SLO)
    mw_per_gpu: float  # facility MW per GPU at TDP
    usd_per_gpu_month: float | None  # ASSUMPTION (module docstring); None = not priced
    down_share: float = 0.0  # replicas down for repair, long-run share
    capacity_miss_rps: float | None = None  # per replica: the bracket's high end (seen to
    # miss an SLO); None = no bracket (the capacity is exact)
    down_share_low: float | None = None  # the low end of an hour's share down
    # (capacity.down_share_low); None = down_share

    @property
    def up_capacity_rps(self) -> float:
        """Per replica, counting the share down for repair."""
        return self.capacity_rps * (1.0 - self.down_share)

    @property
    def up_capacity_high_rps(self) -> float:
        """Per replica, the bracket's high end, counting the low end of an hour's share down
        for repair."""
        high = self.capacity_miss_rps if self.capacity_miss_rps is not None \
            else self.capacity_rps
        low = self.down_share_low if self.down_share_low is not None else self.down_share
        return high * (1.0 - low)


def status(demand_rps: float, capacity_rps: float, capacity_high_rps: float) -> str:
    """``ok`` when ``demand_rps`` is within the capacity seen to meet every SLO, ``at_limit``
    when it lies inside the search's bracket (up to the rate seen to miss one: within its
    tolerance, the simulations cannot tell), ``fails`` above the bracket."""
    if demand_rps <= capacity_rps:
        return "ok"
    return "at_limit" if demand_rps <= capacity_high_rps else "fails"


def runway(scenario: Any, shapes: Mapping[str, Shape],
           growths: Mapping[str, float | None], effects: Any = None) -> dict[str, Any]:
    """The runway of ``scenario`` (see the module docstring) for ``growths`` (name -> factor
    per year, None = the scenario's own growth) given each deployment's :class:`Shape`;
    ``effects`` (:class:`capacitor.planner.whatif.Effects`) change the shapes, demand and
    fees month by month (a what-if)."""
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
    fees = [sum(monthly_cost(c, m) for c in contracts) for m in months] if effects is None \
        else effects.fees(months)
    by_month = {n: [s] * len(months) for n, s in shapes.items()} if effects is None \
        else effects.shapes(months)
    out: dict[str, Any] = {"months": months, "growth": {}, "deployments": {
        n: {"replicas": s.replicas, "gpu": s.gpu, "gpus_per_replica": s.gpus_per_replica,
            "capacity_rps_per_replica": s.capacity_rps,
            "capacity_miss_rps_per_replica": s.capacity_miss_rps, "down_share": s.down_share,
            "down_share_low": s.down_share_low,
            "capacity_rps": s.replicas * s.up_capacity_rps,
            "capacity_high_rps": s.replicas * s.up_capacity_high_rps}
        for n, s in shapes.items()}}
    for gname, factor in growths.items():
        curves = growth_curves(scenario, months, factor)
        peak = {w.name: [peak0[w.name] * curves[w.name][i] for i in range(len(months))]
                for w in workloads}
        mean = {w.name: [mean0[w.name] * curves[w.name][i] for i in range(len(months))]
                for w in workloads}
        if effects is not None:
            peak, mean = effects.demand(months, peak), effects.demand(months, mean)
        rows, first_fail, first_limit = [], {}, {}
        for name in shapes:
            ws = [w for w in workloads if w.deployment == name]
            demand = [sum(peak[w.name][i] for w in ws) for i in range(len(months))]
            first_fail[name] = first_limit[name] = None
            for i, m in enumerate(months):
                s = by_month[name][i]
                cap, high = s.replicas * s.up_capacity_rps, s.replicas * s.up_capacity_high_rps
                state = status(demand[i], cap, high)
                if state != "ok" and first_limit[name] is None:
                    first_limit[name] = i
                if state == "fails" and first_fail[name] is None:
                    first_fail[name] = i
                add = max(replicas_needed(demand[i], s.up_capacity_rps) - s.replicas, 0) \
                    if demand[i] > 0 else 0
                gpus = add * s.gpus_per_replica
                rows.append({"month": m, "deployment": name, "demand_rps": demand[i],
                             "replicas": s.replicas, "gpu": s.gpu,
                             "capacity_rps": cap, "capacity_high_rps": high, "status": state,
                             "headroom_pct": 100.0 * (cap / demand[i] - 1.0) if demand[i]
                             else None,
                             "headroom_high_pct": 100.0 * (high / demand[i] - 1.0)
                             if demand[i] else None,
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
                mtok = sum(mean[w.name][i] * month_s * tokens[w.name]
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
            limits = [first_limit[d] for d in deps if first_limit[d] is not None]
            k = min(fails) if fails else None
            j = min(limits) if limits else None
            need = [(sum(r["add_gpus"] for r in rows if r["month"] == m
                         and r["deployment"] in deps), m) for m in months]
            most = max(need, key=lambda x: x[0])
            tier_out[str(tier)] = {
                "deployments": sorted(deps),
                "first_failing_month": months[k] if k is not None else None,
                "first_at_limit_month": months[j] if j is not None else None,
                "months_of_headroom": k if k is not None else len(months),
                "lasts_the_term": k is None,
                "max_add_gpus": most[0], "max_add_gpus_month": most[1] if most[0] else None}
        out["growth"][gname] = {
            "factor_per_year": factor, "tiers": tier_out,
            "first_failing_month": {d: months[k] if k is not None else None
                                    for d, k in first_fail.items()},
            "first_at_limit_month": {d: months[k] if k is not None else None
                                     for d, k in first_limit.items()},
            "monthly": monthly, "rows": rows}
    return out


def scenario_shapes(scenario: Any, capacity: Callable[[str, int], Any]) -> dict[str, Shape]:
    """Every deployment's :class:`Shape`; ``capacity(deployment, cell_replicas)`` gives its
    per-replica capacity: a :class:`capacitor.planner.capacity.Capacity` (its bracket) or
    a number (exact)."""
    from capacitor.fleet.power import facility_power_mw
    from capacitor.planner.capacity import down_share, down_share_low, failure_unit_gpus
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
        share = down_share(scenario, d.site, d.gpu, d.gpus_per_replica)
        found = capacity(d.name, cell)
        low, high = (found.rate_rps, found.miss_rps) if hasattr(found, "miss_rps") \
            else (float(found), None)
        out[d.name] = Shape(name=d.name, site=d.site, gpu=d.gpu,
                            gpus_per_replica=d.gpus_per_replica, replicas=counts[d.name],
                            capacity_rps=low, capacity_miss_rps=high, mw_per_gpu=mw,
                            usd_per_gpu_month=gpu_month_usd(scenario, d.site, d.gpu),
                            down_share=share, down_share_low=down_share_low(
                                share, counts[d.name], d.gpus_per_replica,
                                failure_unit_gpus(scenario, d.site, d.gpu)))
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
           "mean_tokens", "parse_growth", "replicas_needed", "runway", "scenario_shapes",
           "status"]
