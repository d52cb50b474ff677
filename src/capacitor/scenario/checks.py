"""Cross-section checks of a parsed scenario, one line per problem naming the YAML path:
unique names, GPU ids and inventories, facility power against the cap (each GPU's TDP x its
server overhead x PUE; a warning, not an error: :func:`power_warnings`), model and replica
fit in memory, "fill the site" plans, tenants, workloads, policies and contracts. Also what
the checks compute and the simulation reuses: the replica spec of a deployment and the
resolved replica counts.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.engine.replica import build_replica
from capacitor.errors import CapacitorError, ConfigError, MemoryFitError, ScenarioError
from capacitor.fleet.power import facility_power_mw as fleet_facility_power_mw
from capacitor.perf.profile import PerfProfile, load_profile
from capacitor.scenario.disagg import check_disaggregated, check_kv_link, check_pools_of
from capacitor.scenario.models import Deployment, Scenario, TraceLengths, WorkflowLengths
from capacitor.scenario.specs import replica_spec
from capacitor.scenario.whatif import check_what_ifs
from capacitor.textio import read_text


def check_scenario(scenario: Scenario, *, base_dir: Path | None = None) -> list[str]:
    """Cross-section checks of a parsed scenario; returns the problems (one line each).

    Also normalises in place: GPU ids to canonical ids, relative paths to absolute ones.
    """
    problems: list[str] = []
    _check_names(scenario, problems)
    bad_sites = _check_sites(scenario, problems)
    profile = _check_profile(scenario, base_dir, problems)
    if _check_deployments(scenario, base_dir, profile, bad_sites, problems):
        counts, fill_problems = _fill_plan(scenario)
        problems.extend(fill_problems)
        for i, dep in enumerate(scenario.deployments):
            if dep.disaggregated is not None and counts.get(dep.name) and not fill_problems:
                units = max(cell_sizes(scenario.simulation, counts[dep.name]))
                check_kv_link(dep, f"deployments[{i}]", units, problems)
    _check_tenants_and_workloads(scenario, base_dir, problems)
    _check_policies_and_economics(scenario, problems)
    check_disaggregated(scenario, problems)
    problems.extend(check_what_ifs(scenario))
    return problems


def _check_names(scenario: Scenario, problems: list[str]) -> None:
    for section in ("sites", "deployments", "tenants", "workloads"):
        seen: dict[str, int] = {}
        for i, item in enumerate(getattr(scenario, section)):
            if item.name in seen:
                problems.append(f"{section}[{i}].name = {item.name!r}: duplicate of "
                                f"{section}[{seen[item.name]}]; names must be unique")
            seen.setdefault(item.name, i)


def _canonical_gpu_keys(mapping: dict[str, Any], path: str, problems: list[str],
                        allowed: set[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        try:
            gpu = get_gpu(key).name
        except CapacitorError as err:
            problems.append(f"{path}.{key}: {err}")
            continue
        if gpu in out:
            problems.append(f"{path}.{key}: names GPU {gpu} twice (ids and aliases match "
                            "case-insensitively)")
        elif allowed is not None and gpu not in allowed:
            problems.append(f"{path}.{key}: GPU {gpu} is not in the site's inventory "
                            f"(gpus: {', '.join(sorted(allowed))})")
        out[gpu] = value
    return out


def _check_sites(scenario: Scenario, problems: list[str]) -> set[str]:
    """GPU ids, inventories and power of every site; returns the sites whose inventory names
    an unknown GPU (checks that depend on it are skipped)."""
    bad: set[str] = set()
    for i, site in enumerate(scenario.sites):
        p = f"sites[{i}]"
        before = len(problems)
        site.gpus = _canonical_gpu_keys(site.gpus, f"{p}.gpus", problems)
        have: set[str] | None = set(site.gpus)
        if len(problems) > before:
            bad.add(site.name)
            have = None
        site.server_overhead_factor_by_gpu = _canonical_gpu_keys(
            site.server_overhead_factor_by_gpu, f"{p}.server_overhead_factor_by_gpu",
            problems, have)
        f = site.failures
        f.gpu_mtbf_hours = _canonical_gpu_keys(f.gpu_mtbf_hours,
                                               f"{p}.failures.gpu_mtbf_hours", problems, have)
        f.gpus_per_node = _canonical_gpu_keys(f.gpus_per_node, f"{p}.failures.gpus_per_node",
                                              problems, have)
        if site.name in bad:
            continue
        try:
            facility_power_mw(site)
        except CapacitorError as err:
            problems.append(f"{p}: {err}")
            continue
    return bad


def power_warnings(scenario: Scenario) -> list[str]:
    """One line per site whose inventory at full TDP needs more facility power than its
    ``power_cap_mw``: not an error, the site runs power-capped if its draw reaches the cap
    (:mod:`capacitor.simulate.power_cap`)."""
    out = []
    for i, site in enumerate(scenario.sites):
        power = facility_power_mw(site)
        if power > site.power_cap_mw:
            out.append(
                f"sites[{i}].power_cap_mw = {site.power_cap_mw:g}: the inventory's nameplate is "
                f"{power:.4g} MW of facility power ({power_breakdown(site)}), above the cap; "
                "the site runs power-capped (GPU power limits, slower steps) in the minutes "
                "its draw would exceed it")
    return out


def facility_power_mw(site: Any) -> float:
    """Facility power of a site's whole inventory at TDP, MW:
    sum(count x tdp_w x server_overhead_factor) x pue / 1e6 (:mod:`capacitor.fleet.power`
    with the site's factor per GPU)."""
    factors = {g: site.overhead_factor(get_gpu(g).name) for g in site.gpus}
    return fleet_facility_power_mw(site.gpus, pue=site.pue, server_overhead_factor=factors)


def power_breakdown(site: Any) -> str:
    """``150000 x H100 700 W x 1.52 + ... = 245.8 MW IT x PUE 1.2`` for messages."""
    terms, it_w = [], 0.0
    for g, n in site.gpus.items():
        gpu = get_gpu(g)
        factor = site.overhead_factor(gpu.name)
        terms.append(f"{n} x {gpu.name} {gpu.tdp_w:g} W x server_overhead_factor {factor:g}")
        it_w += n * gpu.tdp_w * factor
    return f"{' + '.join(terms)} = {it_w / 1e6:.4g} MW IT x pue {site.pue:g}"


def _check_profile(scenario: Scenario, base_dir: Path | None,
                   problems: list[str]) -> PerfProfile | None:
    sim = scenario.simulation
    if sim.profile is None:
        return None
    path = _resolve_path(sim.profile, base_dir)
    sim.profile = str(path)
    try:
        return load_profile(path)
    except CapacitorError as err:
        problems.append(f"simulation.profile = {str(path)!r}: {err}")
        return None


def _resolve_path(value: str, base_dir: Path | None) -> Path:
    p = Path(value).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


def _check_deployments(scenario: Scenario, base_dir: Path | None,
                       profile: PerfProfile | None, bad_sites: set[str],
                       problems: list[str]) -> bool:
    """Site, GPU and model references and memory fit; True when every deployment names a
    site that has its GPU (so the inventory can be checked)."""
    sites = {s.name: s for s in scenario.sites}
    ok = True
    for i, dep in enumerate(scenario.deployments):
        p = f"deployments[{i}]"
        site = sites.get(dep.site)
        if site is None:
            problems.append(f"{p}.site = {dep.site!r}: no such site; sites: "
                            f"{', '.join(sites)}")
            ok = False
        try:
            dep.gpu = get_gpu(dep.gpu).name
        except CapacitorError as err:
            problems.append(f"{p}.gpu = {dep.gpu!r}: {err}")
            ok = False
            try:  # the model can still be checked
                resolve_model(str(_resolve_path(dep.model, base_dir)) if base_dir and
                              _resolve_path(dep.model, base_dir).exists() else dep.model)
            except CapacitorError as merr:
                problems.append(f"{p}.model = {dep.model!r}: {merr}")
            continue
        if site is not None and site.name in bad_sites:
            ok = False
        elif site is not None and dep.gpu not in site.gpus:
            problems.append(f"{p}.gpu = {dep.gpu!r}: site {site.name!r} has no {dep.gpu} "
                            f"(its gpus: {', '.join(site.gpus)})")
            ok = False
        _check_replica(dep, p, base_dir, profile, problems)
    return ok


def _check_replica(dep: Deployment, p: str, base_dir: Path | None,
                   profile: PerfProfile | None, problems: list[str]) -> None:
    """The model resolves and fits the replica (build_replica succeeds)."""
    local = _resolve_path(dep.model, base_dir)
    if base_dir is not None and (
        (dep.model.endswith(".json") and local.is_file()) or (local / "config.json").is_file()
    ):
        dep.model = str(local)
    try:
        spec = replica_spec(dep)
    except CapacitorError as err:
        problems.append(f"{p}.model = {dep.model!r}: {err}")
        return
    if dep.disaggregated is not None:
        check_pools_of(dep, p, profile, problems)
        return
    try:
        build_replica(spec, profile)
    except MemoryFitError as err:
        problems.append(f"{p} ({dep.name}): the model does not fit the replica: {err}")
    except ConfigError as err:
        # build_replica's messages start with "field=value: ..." or "engine 'x' ..."
        m = re.match(r"(\w+)[= ]", str(err))
        where = f"{p}.{m.group(1)}" if m and m.group(1) in Deployment.model_fields else p
        problems.append(f"{where} ({dep.name}): {err}")
    except CapacitorError as err:
        problems.append(f"{p} ({dep.name}): {err}")


def _fill_plan(scenario: Scenario) -> tuple[dict[str, int], list[str]]:
    """Replicas per deployment and the inventory problems."""
    problems: list[str] = []
    used: dict[tuple[str, str], int] = {}
    fills: dict[tuple[str, str], list[int]] = {}
    counts: dict[str, int] = {}
    for i, dep in enumerate(scenario.deployments):
        key = (dep.site, dep.gpu)
        if dep.replicas == "fill":
            fills.setdefault(key, []).append(i)
        else:
            used[key] = used.get(key, 0) + dep.replicas * dep.gpus_per_replica
            counts[dep.name] = dep.replicas
    for si, site in enumerate(scenario.sites):
        for gpu, have in site.gpus.items():
            key = (site.name, gpu)
            need = used.get(key, 0)
            if need > have:
                users = [f"{d.name}: {d.replicas} replicas x {d.gpus_per_replica}"
                         for d in scenario.deployments
                         if (d.site, d.gpu) == key and d.replicas != "fill"]
                problems.append(
                    f"sites[{si}].gpus.{gpu} = {have}: over-subscribed:"
                    f" deployments need {need} ({'; '.join(users)} GPUs)")
            idx = fills.get(key, [])
            if len(idx) > 1:
                problems.append(
                    f"deployments[{idx[1]}].replicas = 'fill': deployments "
                    f"{', '.join(scenario.deployments[j].name for j in idx)} all fill "
                    f"{gpu} at {site.name}; only one may")
            for j in idx[:1]:
                dep = scenario.deployments[j]
                n = max(have - need, 0) // dep.gpus_per_replica
                if n < 1:
                    problems.append(
                        f"deployments[{j}].replicas = 'fill': {max(have - need, 0)} {gpu} "
                        f"left at {site.name}, fewer than one replica's {dep.gpus_per_replica}")
                counts[dep.name] = n
    return counts, problems


def cell_sizes(simulation: Any, total: int) -> list[int]:
    """Replicas per simulated routing cell of a deployment of ``total`` replicas: ``[k]``
    in sampled fidelity (``k = min(sampled_replicas, total)``); in exact fidelity ``total``
    split into ``ceil(total / shard_replicas)`` near-equal cells."""
    if simulation.fidelity != "exact":
        return [min(simulation.sampled_replicas, total)]
    m = max(1, math.ceil(total / simulation.shard_replicas))
    return [total // m + (1 if s < total % m else 0) for s in range(m)]


def resolve_replicas(scenario: Scenario) -> dict[str, int]:
    """Replicas per deployment name, with ``replicas: fill`` resolved to the site's GPUs of
    that type left over by the other deployments (floor of leftover / gpus_per_replica: tp x pp,
    or a disaggregated unit's GPUs)."""
    counts, problems = _fill_plan(scenario)
    if problems:
        raise ScenarioError(*problems)
    return {d.name: counts.get(d.name, 0) for d in scenario.deployments}


def _check_tenants_and_workloads(scenario: Scenario, base_dir: Path | None,
                                 problems: list[str]) -> None:
    tenants = [t.name for t in scenario.tenants]
    deps = [d.name for d in scenario.deployments]
    for i, w in enumerate(scenario.workloads):
        p = f"workloads[{i}]"
        if w.tenant not in tenants:
            problems.append(f"{p}.tenant = {w.tenant!r}: no such tenant; tenants: "
                            f"{', '.join(tenants)}")
        if w.deployment not in deps:
            problems.append(f"{p}.deployment = {w.deployment!r}: no such deployment; "
                            f"deployments: {', '.join(deps)}")
        session_trace = isinstance(w.lengths, WorkflowLengths) and w.lengths.trace is not None
        if isinstance(w.lengths, TraceLengths) or session_trace:
            key = "trace" if session_trace else "path"
            if w.arrival is not None:
                problems.append(f"{p}.arrival: a trace workload takes its arrivals from the "
                                "trace; remove arrival (use lengths.time_scale"
                                f"{'' if session_trace else ' or target_rate_rps'})")
            given = getattr(w.lengths, key)
            path = _resolve_path(given, base_dir)
            if not path.exists():
                problems.append(f"{p}.lengths.{key} = {given!r}: no such file ({path})")
            else:
                try:  # a trace that is not text fails here, not in the middle of a run
                    read_text(path, f"{p}.lengths.{key} = {given!r}", ScenarioError,
                              expected="a UTF-8 trace (.jsonl Mooncake" + (
                                  ")" if session_trace else " or .csv Azure 2023)"))
                except ScenarioError as err:
                    problems.append(str(err))
                setattr(w.lengths, key, str(path))
        elif w.arrival is None:
            problems.append(f"{p}.arrival: missing (required unless lengths.kind is trace, "
                            "or workflow with a trace)")
        window = scenario.simulation.window
        if w.arrival is not None and w.arrival.base_month and window.month is None:
            problems.append(f"{p}.arrival.base_month = {w.arrival.base_month!r}: needs "
                            "simulation.window.month to apply growth from it")
    flows = {w.tenant for w in scenario.workloads if w.lengths.kind == "workflow"}
    for i, t in enumerate(scenario.tenants):
        if t.slo.workflow is not None and t.name not in flows:
            problems.append(f"tenants[{i}].slo.workflow: tenant {t.name!r} sends no workflow "
                            "workload (lengths.kind: workflow) to judge; remove slo.workflow "
                            "or give it one")
    shares = [(i, t.quotas.guaranteed_share_pct) for i, t in enumerate(scenario.tenants)
              if t.quotas.guaranteed_share_pct]
    if sum(s for _, s in shares) > 100:
        problems.append(f"tenants[{shares[-1][0]}].quotas.guaranteed_share_pct: the "
                        f"guaranteed shares sum to {sum(s for _, s in shares):g}% > 100%")


def _check_policies_and_economics(scenario: Scenario, problems: list[str]) -> None:
    adm = scenario.admission
    if adm.policy == "queue_length" and adm.max_queue is None:
        problems.append("admission.max_queue: missing; policy queue_length needs it "
                        "(waiting requests per replica)")
    if adm.policy == "predicted_ttft" and adm.max_predicted_ttft_ms is None:
        _tenants_ttft_limit(scenario, problems)
    if adm.policy == "predicted_ttft" and adm.max_queue is not None:
        problems.append(f"admission.max_queue = {adm.max_queue}: not used by policy "
                        "predicted_ttft (which bounds the wait by the predicted TTFT); remove "
                        "it, or use policy token_bucket or queue_length")
    sites = [s.name for s in scenario.sites]
    for i, c in enumerate(scenario.economics.contracts):
        if c.site is not None and c.site not in sites:
            problems.append(f"economics.contracts[{i}].site = {c.site!r}: no such site; "
                            f"sites: {', '.join(sites)}")
    prices = scenario.economics.gpu_hour_usd
    scenario.economics.gpu_hour_usd = _canonical_gpu_keys(prices, "economics.gpu_hour_usd",
                                                          problems)


def _tenants_ttft_limit(scenario: Scenario, problems: list[str]) -> None:
    """``max_predicted_ttft_ms: null`` means the tenants' ``slo.ttft_p99_ms``: fill it in when
    every tenant with a workload has the same one (the limit is one number per deployment),
    else say which differ."""
    served = {w.tenant for w in scenario.workloads}
    targets = {t.name: t.slo.ttft_p99_ms for t in scenario.tenants if t.name in served}
    values = set(targets.values())
    if len(values) == 1 and None not in values:
        scenario.admission.max_predicted_ttft_ms = values.pop()
        return
    listed = ", ".join(f"{name} {ms if ms is None else f'{ms:g}'}"
                       for name, ms in targets.items())
    problems.append(f"admission.max_predicted_ttft_ms = null: means the tenants' "
                    f"slo.ttft_p99_ms, which must be one value for all of them (one limit "
                    f"applies to every request), but they are: {listed}; set "
                    "max_predicted_ttft_ms in ms, or give every tenant the same ttft_p99_ms")


# ---- derived views ---------------------------------------------------------------------------


