"""What a run costs: the window's bill, each contract's standing in the window's month, and unit
costs ($ per million input, output and total tokens) of the fleet, each deployment and each
tier, over the window and, as an estimate, over the window's month.

Window. The cost is each contract's share of its fee for the window's month (the contract's
first month when the window names none), plus the GPU-hours priced in ``gpu_hour_usd`` of the
GPUs at sites no contract pays for, plus the energy of the sites no ``includes_energy``
contract pays for, at ``energy_usd_per_mwh``. A contract pays for its ``site`` (every site
when it names none) in the months of its term.

Month (an ESTIMATE from the demand profile). The bill is the month's contract fees, the
month's hours of rented GPUs, and the energy no contract includes at the window's mean power
all month (ASSUMPTION: an upper bound when the window is the peak hour). The tokens are the
window's completed tokens of each workload times its month / window expected arrivals
(:func:`capacitor.scenario.month_scale`), which assumes the month's requests complete as the
window's did. A peak-hour window divides a month's flat fee by the month's busiest hour; the
month estimate divides it by the month's traffic.

Allocation. A site's cost (its contracts, a fleet-wide contract split by installed GPUs, its
rented GPUs, its energy) is spread over its installed GPUs; a deployment carries its GPUs'
share (GPUs no deployment uses carry theirs unallocated); a deployment's cost is split
between tiers in proportion to their tokens (input + output) on it (ASSUMPTION: a token costs
the same whoever sends it).
"""

from __future__ import annotations

import math

import numpy as np

from capacitor.economics.contracts import days_in_month, in_term, monthly_cost, standing
from capacitor.economics.costs import (
    SECONDS_PER_HOUR,
    effective_usd_per_gpu_hour,
    energy_cost_usd,
    gpu_hour_cost_usd,
    usd_per_million_tokens,
    window_cost_usd,
)
from capacitor.fleet.admission import month_seconds
from capacitor.scenario import month_scale, resolve_replicas
from capacitor.simulate.summary_model import ContractCost, CostBasis, EconomicsSummary, UnitCosts


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _contracts_of(scenario, site: str) -> list:
    """The contracts that pay for ``site`` in the billed month: those naming it, and
    fleet-wide ones, in their term."""
    month = scenario.simulation.window.month
    return [c for c in scenario.economics.contracts if c.site in (None, site)
            and in_term(c.terms(), month or c.start)]


def _site_costs(scenario, window_s: float, energy_mwh_by_site: dict[str, float],
                month_s: float) -> tuple[dict[str, float], dict[str, float]]:
    """Per site, the window's cost and the month's (see the module docstring)."""
    eco = scenario.economics
    window_month = scenario.simulation.window.month
    gpus = {s.name: float(sum(s.gpus.values())) for s in scenario.sites}
    window = dict.fromkeys(gpus, 0.0)
    month = dict.fromkeys(gpus, 0.0)
    for c in eco.contracts:
        billed = window_month or c.start
        paid = [s for s in gpus if c.site in (None, s)]
        total = sum(gpus[s] for s in paid)
        for s in paid:
            share = gpus[s] / total if total else 1.0 / len(paid)
            window[s] += share * window_cost_usd(c.terms(), billed, window_s)
            month[s] += share * monthly_cost(c.terms(), billed)
    for site in scenario.sites:
        if not _contracts_of(scenario, site.name):
            for gpu, price in eco.gpu_hour_usd.items():
                count = site.gpus.get(gpu, 0)
                window[site.name] += gpu_hour_cost_usd(count, window_s / SECONDS_PER_HOUR, price)
                month[site.name] += gpu_hour_cost_usd(count, month_s / SECONDS_PER_HOUR, price)
        if eco.energy_usd_per_mwh is not None and not any(
                c.includes_energy for c in _contracts_of(scenario, site.name)):
            usd = energy_cost_usd(energy_mwh_by_site[site.name], eco.energy_usd_per_mwh)
            window[site.name] += usd
            month[site.name] += usd * month_s / window_s
    return window, month


def _unit(cost: float, tokens_in: float, tokens_out: float) -> UnitCosts:
    def per_m(tokens: float) -> float | None:
        return _r(usd_per_million_tokens(cost, tokens)) if tokens > 0 else None

    return UnitCosts(cost_usd=_r(cost, 2), input_tokens=_r(tokens_in, 1),
                     output_tokens=_r(tokens_out, 1),
                     usd_per_million_input_tokens=per_m(tokens_in),
                     usd_per_million_output_tokens=per_m(tokens_out),
                     usd_per_million_total_tokens=per_m(tokens_in + tokens_out))


def _unit_costs(scenario, window_site: dict[str, float], month_site: dict[str, float],
                tokens: np.ndarray, scale: np.ndarray
                ) -> tuple[UnitCosts, UnitCosts, dict[str, CostBasis], dict[str, CostBasis]]:
    """Fleet, per deployment and per tier unit costs from per-site costs and per-workload
    window ``tokens`` (``[W, 2]``: input, output) scaled to the month by ``scale[W]``."""
    replicas = resolve_replicas(scenario)
    site_gpus = {s.name: float(sum(s.gpus.values())) for s in scenario.sites}
    month_tokens = tokens * scale[:, None]
    tiers = sorted({t.tier for t in scenario.tenants})
    tier_of = {t.name: t.tier for t in scenario.tenants}
    # per basis (0 window, 1 month): cost and tokens per deployment and per tier
    tier_cost = np.zeros((2, len(tiers)))
    tier_tok = np.zeros((2, len(tiers), 2))
    deployments = {}
    for dep in scenario.deployments:
        gpus = replicas[dep.name] * dep.gpus_per_replica
        share = gpus / site_gpus[dep.site] if site_gpus[dep.site] else 0.0
        cost = (window_site[dep.site] * share, month_site[dep.site] * share)
        mine = [i for i, w in enumerate(scenario.workloads) if w.deployment == dep.name]
        per_basis = []
        for b, tok in enumerate((tokens, month_tokens)):
            dep_tok = tok[mine].sum(axis=0) if mine else np.zeros(2)
            per_basis.append(_unit(cost[b], float(dep_tok[0]), float(dep_tok[1])))
            total = float(dep_tok.sum())
            for i in mine:
                k = tiers.index(tier_of[scenario.workloads[i].tenant])
                tier_tok[b, k] += tok[i]
                if total > 0:
                    tier_cost[b, k] += cost[b] * float(tok[i].sum()) / total
        deployments[dep.name] = CostBasis(window=per_basis[0], month_estimate=per_basis[1])
    tier_costs = {str(t): CostBasis(
        window=_unit(tier_cost[0, k], *map(float, tier_tok[0, k])),
        month_estimate=_unit(tier_cost[1, k], *map(float, tier_tok[1, k])))
        for k, t in enumerate(tiers)}
    fleet_window = _unit(sum(window_site.values()), *map(float, tokens.sum(axis=0)))
    fleet_month = _unit(sum(month_site.values()), *map(float, month_tokens.sum(axis=0)))
    return fleet_window, fleet_month, deployments, tier_costs


def _contract(scenario, c, window_s: float) -> ContractCost:
    terms = c.terms()
    month = scenario.simulation.window.month or c.start
    now = standing(terms, month)
    gpus = int(sum(sum(s.gpus.values()) for s in scenario.sites if c.site in (None, s.name)))
    hours = days_in_month(month) * 24.0
    return ContractCost(
        window_cost_usd=_r(window_cost_usd(terms, month, window_s), 2), month=month,
        term_total_usd=_r(now.term_total_usd, 2), month_fee_usd=_r(now.month_fee_usd, 2),
        month_ramp_discount=_r(now.ramp_discount, 4), months_left=now.months_left,
        notice_given=now.notice_given.isoformat(), earliest_exit=now.earliest_exit.isoformat(),
        exit_cost_usd=_r(now.exit_cost_usd, 2), gpus=gpus,
        usd_per_gpu_hour=_r(effective_usd_per_gpu_hour(now.month_fee_usd, gpus, hours))
        if gpus else None)


def economics_summary(scenario, window_s: float, output_tokens: float,
                      energy_mwh_by_site: dict[str, float],
                      workload_tokens: np.ndarray | None = None) -> EconomicsSummary:
    """What a window of ``window_s`` seconds costs, what that comes to per million
    ``output_tokens`` and per installed GPU-hour, each contract's standing, and the unit costs
    of the fleet, its deployments and tiers (see the module docstring).
    ``energy_mwh_by_site``: the sites' facility energy over the window; ``workload_tokens``:
    per workload of the scenario, the window's completed input and output tokens (``[W, 2]``,
    scaled to the fleet; none when not given)."""
    eco = scenario.economics
    window = scenario.simulation.window
    cost = 0.0
    contracts = {}
    for c in eco.contracts:
        contracts[c.name] = _contract(scenario, c, window_s)
        cost += window_cost_usd(c.terms(), window.month or c.start, window_s)
    hours = window_s / SECONDS_PER_HOUR
    rented = [s for s in scenario.sites if not _contracts_of(scenario, s.name)]
    for gpu, price in eco.gpu_hour_usd.items():  # only GPUs no contract pays for
        count = sum(s.gpus.get(gpu, 0) for s in rented)
        cost += gpu_hour_cost_usd(count, hours, price)
    energy_total_mwh = 0.0
    for site in scenario.sites:
        energy_total_mwh += energy_mwh_by_site[site.name]
    energy_usd = energy_cost_usd(energy_total_mwh, eco.energy_usd_per_mwh) \
        if eco.energy_usd_per_mwh is not None else None
    if energy_usd is not None:  # electricity no contract's price includes is paid on top
        billed_mwh = sum(energy_mwh_by_site[s.name] for s in scenario.sites
                         if not any(c.includes_energy for c in _contracts_of(scenario, s.name)))
        cost += energy_cost_usd(billed_mwh, eco.energy_usd_per_mwh)
    gpus_total = sum(int(sum(s.gpus.values())) for s in scenario.sites)
    month_s = month_seconds(window.month)
    window_site, month_site = _site_costs(scenario, window_s, energy_mwh_by_site, month_s)
    tokens = np.zeros((len(scenario.workloads), 2)) if workload_tokens is None \
        else np.asarray(workload_tokens, np.float64)
    scale = month_scale(scenario, month_s)
    fleet_window, fleet_month, deployments, tiers = _unit_costs(
        scenario, window_site, month_site, tokens,
        np.array([scale[w.name] for w in scenario.workloads]))
    return EconomicsSummary(
        window_cost_usd=_r(cost, 2), contracts=contracts,
        usd_per_million_output_tokens=_r(usd_per_million_tokens(cost, output_tokens))
        if output_tokens else None,
        usd_per_gpu_hour_effective=_r(effective_usd_per_gpu_hour(cost, gpus_total, hours))
        if gpus_total else None,
        energy_mwh=_r(energy_total_mwh),
        energy_cost_usd=_r(energy_usd, 2) if energy_usd is not None else None,
        month_estimate=fleet_month, window=fleet_window, deployments=deployments, tiers=tiers,
    )


__all__ = ["economics_summary"]
