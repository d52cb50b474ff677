"""Per-replica knees of the embedded default scenario (a benchmark, not a test).

    python benchmarks/replica_knees.py                      # every workload, ~5 s
    python benchmarks/replica_knees.py agent_loop           # one workload

For each workload of ``scenarios/colossus.yaml``: one replica of its deployment, Poisson
arrivals at a constant rate, the workload's lengths and its tenant's SLOs, over a peak-hour
window (3,600 s after a 300 s warm-up; no rate limits). The rate is bisected (9 runs) for the
knee where the tenant first misses an SLO, and printed next to the workload's peak rate per
replica. The scenario's comments quote these numbers. A routing cell of many replicas behind
power-of-two routing serves more per replica than one replica with Poisson arrivals alone
(the router evens out bursts), so a peak somewhat above the knee can still meet the SLOs.
"""

from __future__ import annotations

import copy
import sys
from importlib import resources
from typing import Any

import yaml


def knee_run(base: dict, workload: str, rate_rps: float) -> tuple[bool, Any]:
    """(the tenant meets every SLO, its summary) for one replica at ``rate_rps``."""
    from capacitor.scenario import parse_scenario
    from capacitor.simulate import run_scenario

    d = copy.deepcopy(base)
    w = next(x for x in d["workloads"] if x["name"] == workload)
    dep = next(x for x in d["deployments"] if x["name"] == w["deployment"])
    dep["replicas"] = 1
    d["deployments"] = [dep]
    d["workloads"] = [{**w, "arrival": {"kind": "poisson", "rate_rps": rate_rps}}]
    for tenant in d["tenants"]:
        tenant.pop("rate_limits", None)
    d["simulation"]["window"] = {"month": "2026-07", "hour": 17, "duration_s": 3600,
                                 "warmup_s": 300}
    d["simulation"]["fidelity"] = "exact"
    run = run_scenario(parse_scenario(yaml.safe_dump(d), origin=f"knee {workload}"),
                       keep_pools=False)
    misses = [m for m in run.summary.verdict.misses if m.tenant == w["tenant"]]
    return not misses, run.summary.tenants[w["tenant"]]


def peak_per_replica(base: dict, workload: str) -> float:
    """The workload's peak rate per replica of its deployment: mean x peak_to_mean, as the
    scenario's comments count it (the window month is the workloads' base month)."""
    from capacitor.scenario import parse_scenario
    from capacitor.scenario.checks import resolve_replicas

    spec = parse_scenario(yaml.safe_dump(base), origin="colossus")
    w = next(x for x in spec.workloads if x.name == workload)
    peak = w.arrival.mean_rate_rps * w.arrival.peak_to_mean
    return peak / resolve_replicas(spec)[w.deployment]


def main(argv: list[str]) -> int:
    base = yaml.safe_load(
        resources.files("capacitor").joinpath("scenarios/colossus.yaml").read_text())
    names = argv or [w["name"] for w in base["workloads"]]
    for name in names:
        lo, hi = 0.2, 12.0
        for _ in range(9):
            mid = (lo + hi) / 2
            ok, t = knee_run(base, name, mid)
            print(f"  {name} {mid:.3f} req/s: {'meets' if ok else 'misses'} (TTFT p99 "
                  f"{t.ttft_ms.p99:.0f} ms, ITL p99 {t.itl_ms.p99:.1f} ms, E2E p99 "
                  f"{t.e2e_ms.p99:.0f} ms)", file=sys.stderr, flush=True)
            lo, hi = (mid, hi) if ok else (lo, mid)
        knee = (lo + hi) / 2
        peak = peak_per_replica(base, name)
        print(f"{name}: knee {knee:.2f} req/s per replica; peak {peak:.2f} "
              f"({100 * peak / knee:.0f}% of the knee)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
