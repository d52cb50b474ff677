"""Per-replica knees of the embedded default scenario (a benchmark, not a test).

    python benchmarks/replica_knees.py                      # every deployment
    python benchmarks/replica_knees.py large_h200           # one deployment
    python benchmarks/replica_knees.py --cell 64            # in a routing cell of 64

For each deployment of ``scenarios/colossus.yaml``: its goodput capacity per replica from
:func:`capacitor.planner.capacity.replica_capacity` (one replica alone by default, Poisson
arrivals at a constant rate, its workloads' lengths and mix and its tenants' SLOs, over a
peak-hour window of 3,600 s after a 300 s warm-up; no rate limits, no failures), printed next
to its workloads' peak rate per replica. The scenario's comments quote these numbers. A
routing cell of many replicas behind power-of-two routing serves more per replica than one
replica with Poisson arrivals alone (the router evens out bursts), so a peak somewhat above
the one-replica knee can still meet the SLOs (``--cell 64`` measures that). Results are
cached (``$CAPACITOR_CACHE_DIR``, default ``~/.cache/capacitor/capacity``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    from capacitor.planner.capacity import deployment_mix, peak_rate_rps, replica_capacity
    from capacitor.scenario import load_scenario
    from capacitor.scenario.checks import resolve_replicas
    from capacitor.scenario.io import growth_factor

    parser = argparse.ArgumentParser(description="per-replica knees of the default scenario")
    parser.add_argument("deployments", nargs="*")
    parser.add_argument("--cell", type=int, default=1, help="replicas in the routing cell")
    args = parser.parse_args(argv)
    spec = load_scenario(None)
    counts = resolve_replicas(spec)
    served = [d.name for d in spec.deployments if any(w.deployment == d.name
                                                      for w in spec.workloads)]
    for name in args.deployments or served:
        deployment_mix(spec, name)
        peak = sum(peak_rate_rps(w.arrival) * growth_factor(spec, w.arrival)
                   for w in spec.workloads if w.deployment == name) / counts[name]
        cap = replica_capacity(spec, name, cell_replicas=args.cell, duration_s=3600.0,
                               warmup_s=300.0, hint_rps=peak)
        how = "cached" if cap.cached else f"{cap.runs} runs, {cap.seconds:.1f} s"
        print(f"{name}: knee {cap.rate_rps:.2f} req/s per replica (misses at "
              f"{cap.miss_rps:.2f}; {how}); peak {peak:.2f} ({100 * peak / cap.rate_rps:.0f}% "
              "of the knee)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
