"""What ``capacitor plan`` runs: the runway of a scenario as it stands, and the plan search,
each with its capacity searches timed and cached."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capacitor.planner.capacity import Capacity, replica_capacity


@dataclass
class CapacityLog:
    """Every capacity search a command made (or read from the cache), in order."""

    cache_dir: Path | None
    progress: Callable[[str], None] | None = None
    searches: list[Capacity] = field(default_factory=list)

    def __call__(self, scenario: Any, deployment: str, cell: int, hint: float) -> float:
        """Per-replica capacity (the rate seen to meet every SLO), requests/s."""
        return self.find(scenario, deployment, cell, hint).rate_rps

    def find(self, scenario: Any, deployment: str, cell: int, hint: float) -> Capacity:
        """The capacity search's answer with its bracket."""
        if self.progress is not None:
            self.progress(f"capacity of {deployment} (cell of {cell})")
        found = replica_capacity(scenario, deployment, cell_replicas=cell,
                                 hint_rps=max(hint, 1e-3), cache_dir=self.cache_dir)
        self.searches.append(found)
        return found

    def stats(self) -> dict[str, Any]:
        fresh = [c for c in self.searches if not c.cached]
        return {"searches": len(self.searches), "cache_hits": len(self.searches) - len(fresh),
                "simulations": sum(c.runs for c in fresh),
                "search_seconds": sum(c.seconds for c in fresh),
                "seconds_per_search": (sum(c.seconds for c in fresh) / len(fresh)
                                       if fresh else None)}


def scenario_runway(scenario: Any, growths: Mapping[str, float | None], log: CapacityLog,
                    what_ifs: Sequence[Any] = ()) -> dict[str, Any]:
    """The runway of ``scenario`` as it stands (its deployments and replica counts), and
    under each of ``what_ifs`` (``scenario.what_if`` entries; :mod:`capacitor.planner.
    whatif`): their results under ``what_if`` keyed by label, each with its ``kind``,
    ``spec`` and ``growth`` (as the base case's)."""
    from capacitor.planner.capacity import workload_peak_rps
    from capacitor.planner.runway import runway, scenario_shapes
    from capacitor.scenario.checks import resolve_replicas

    started = time.perf_counter()
    counts = resolve_replicas(scenario)

    def capacity(name: str, cell: int) -> Capacity:
        peak = sum(workload_peak_rps(scenario, w) for w in scenario.workloads
                   if w.deployment == name)
        return log.find(scenario, name, cell, peak / max(counts[name], 1))

    shapes = scenario_shapes(scenario, capacity)
    out = runway(scenario, shapes, growths)
    if what_ifs:
        from capacitor.planner.whatif import effects
        from capacitor.scenario.whatif import label

        def swap_shape(w: Any) -> Any:
            return swapped_shape(scenario, w, shapes, log)

        out["what_if"] = {}
        for w in what_ifs:
            walked = runway(scenario, shapes, growths, effects(scenario, w, shapes, swap_shape))
            out["what_if"][label(w)] = {
                "kind": w.kind, "spec": w.model_dump(mode="json", exclude_none=True),
                "growth": walked["growth"]}
    out["seconds"] = time.perf_counter() - started
    out["capacity"] = [c.to_json() for c in log.searches]
    out["capacity_stats"] = log.stats()
    return out


def swapped_shape(scenario: Any, w: Any, shapes: Mapping[str, Any], log: CapacityLog) -> Any:
    """A gpu_swap's deployment shape after the swap: the deployment on ``w.gpu`` (and
    ``w.precision``) with as many GPUs as before, its capacity searched like any shape's."""
    import math

    from capacitor.planner.runway import scenario_shapes

    base = shapes[w.deployment]
    dep = scenario.deployment(w.deployment)
    update = {"gpu": w.gpu, "replicas": base.replicas}
    if w.precision is not None:
        update["precision"] = w.precision
    moved = dep.model_copy(update=update)
    replicas = math.floor(base.replicas * base.gpus_per_replica / moved.gpus_per_replica)
    moved = moved.model_copy(update={"replicas": max(replicas, 1)})
    sites = [s.model_copy(update={"gpus": {**s.gpus, w.gpu: s.gpus.get(w.gpu, 0)
                                           + replicas * moved.gpus_per_replica}})
             if s.name == dep.site else s for s in scenario.sites]
    swapped = scenario.model_copy(update={
        "sites": sites,
        "deployments": [moved if d.name == dep.name else d for d in scenario.deployments]})

    def capacity(name: str, cell: int) -> Capacity:
        return log.find(swapped, name, cell, base.capacity_rps)

    served = {w.deployment}
    only = swapped.model_copy(update={"workloads": [x for x in swapped.workloads
                                                    if x.deployment in served]})
    return scenario_shapes(only, capacity)[w.deployment]


def slo_margins(summary: Any) -> list[str]:
    """Per tenant and SLO target of a run summary: the value against the target, and the
    margin (target / value - 1, %; negative = missed)."""
    lines = []
    for name, t in summary.tenants.items():
        parts = []
        for metric, value in (("ttft_p99_ms", t.ttft_ms.p99), ("itl_p99_ms", t.itl_ms.p99),
                              ("e2e_p99_ms", t.e2e_ms.p99)):
            target = getattr(t.slo, metric)
            if target is None:
                continue
            margin = "n/a" if not value else f"{100.0 * (target / value - 1.0):+.0f}%"
            parts.append(f"{metric} {value if value is not None else '-'} / {target:g} "
                         f"({margin})")
        refused = t.refused_pct if t.refused_pct is not None else 0.0
        parts.append(f"refused {refused:.2f}% / {t.slo.max_throttled_pct:g}%")
        lines.append(f"  {name} (tier {t.tier}): " + ", ".join(parts))
    return lines


def run_plan(scenario: Any, objective: str, log: CapacityLog, *, verify: bool = True
             ) -> dict[str, Any]:
    """Search the plan, write its scenario, and (``verify``) simulate the chosen
    configuration as ``capacitor run`` would: the result, plan.json's content, the
    scenario YAML, report lines and whether every SLO held. A plan at the limit
    (:attr:`capacitor.planner.search.PlanResult.at_limit`) is ok only when verified."""
    from capacitor.planner import tables
    from capacitor.planner.search import plan
    from capacitor.scenario import parse_scenario

    result = plan(scenario, objective, log, progress=log.progress)
    text = tables.chosen_scenario_yaml(scenario, result)
    chosen = parse_scenario(text, origin="the planned scenario.yaml")  # capacitor run takes it
    data = tables.plan_json(result, objective)
    data["capacity_stats"] = log.stats()
    sized = data["candidates"]["sized"]
    lines = [f"{result.considered} candidate shapes ({result.pruned} pruned without simulating: "
             f"the model does not fit or the GPU lacks the precision), {sized} sized by "
             f"capacity search, {result.combinations:,} combinations visited; "
             f"{result.seconds:.1f} s ({result.considered / max(result.seconds, 1e-9):.1f} "
             "candidates/s)"]
    ok = True
    data["at_limit"] = result.at_limit
    if result.at_limit:
        lines.append("AT THE LIMIT (within tolerance): no configuration serves the peak with "
                     "the capacity seen to meet every SLO less the expected share of replicas "
                     "in repair; this one may, sized on the top of the capacity's band (the "
                     "rate seen to miss, two standard deviations fewer replicas in repair): "
                     "the verification run decides" + ("" if verify else
                                                       " (not run: --no-verify, exit 1)"))
        lines.extend(f"  for sure: {r}" for r in result.reasons)
        ok = False
    if verify:
        from capacitor.simulate import run_scenario

        if log.progress is not None:
            log.progress("verifying the chosen configuration")
        started = time.perf_counter()
        summary = run_scenario(chosen, keep_pools=False).summary
        ok = summary.verdict.ok
        data["verify"] = {"ok": ok, "seconds": time.perf_counter() - started,
                          "verdict": summary.verdict.text}
        lines.append(f"verification run ({time.perf_counter() - started:.1f} s): "
                     f"{summary.verdict.text}")
        lines.extend(slo_margins(summary))
    return {"result": result, "json": data, "yaml": text, "lines": lines, "ok": ok}


__all__ = ["CapacityLog", "run_plan", "scenario_runway", "slo_margins", "swapped_shape"]
