"""The exact run of the embedded default scenario's peak hour (a benchmark, not a test).

    python benchmarks/bench_exact_peak.py                   # local backend: one process,
                                                            # a thread per CPU
    python benchmarks/bench_exact_peak.py --workers 1       # ... on one thread
    python benchmarks/bench_exact_peak.py --backend ray     # shards as Ray tasks (all cores)
    python benchmarks/bench_exact_peak.py --no-requests     # skip writing requests.parquet

It runs what ``capacitor run --fidelity exact`` runs — every replica of every deployment, in
shards of ``simulation.shard_replicas`` — and prints the wall time, the simulated requests,
the rate and the driver's peak RSS, then the same for the sampled default for comparison.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def run(fidelity: str, backend: str, shard_replicas: int | None, write_requests: bool,
        out_dir: Path, workers: int) -> None:
    from capacitor.scenario import load_scenario
    from capacitor.simulate import run_scenario, shard_sizes
    from capacitor.simulate.outputs import RequestsWriter

    spec = load_scenario()
    update = {"fidelity": fidelity}
    if shard_replicas:
        update["shard_replicas"] = shard_replicas
    spec = spec.model_copy(update={"simulation": spec.simulation.model_copy(update=update)})
    pools = sum(len(shard_sizes(spec, d)) for d in range(len(spec.deployments)))
    writer = RequestsWriter(out_dir / f"requests-{fidelity}.parquet", spec) \
        if write_requests else None
    started = time.perf_counter()

    def progress(name: str, done: int, total: int) -> None:
        if done % max(1, total // 20) == 0 or done == total:
            print(f"  {done}/{total} pools ({name}) {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)

    result = run_scenario(spec, progress=progress, backend=backend, requests_sink=writer,
                          keep_pools=False, workers=workers)
    if writer is not None:
        writer.close()
    wall = time.perf_counter() - started
    n = result.num_simulated
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    where = f"{workers} thread{'s' if workers > 1 else ''}" if backend == "local" else backend
    print(f"{fidelity} ({where}, {pools} pools): {n:,} requests in {wall:.1f} s "
          f"({n / wall:,.0f} req/s), driver peak RSS {rss:,.0f} MiB; verdict: "
          f"{result.summary.verdict.text}")
    for name, t in result.summary.tenants.items():
        print(f"  {name}: TTFT p50/p99 {t.ttft_ms.p50:.0f}/{t.ttft_ms.p99:.0f} ms, "
              f"E2E p50/p99 {t.e2e_ms.p50:.0f}/{t.e2e_ms.p99:.0f} ms, ITL p99 "
              f"{t.itl_ms.p99:.1f} ms, goodput {t.goodput_rps:,.0f} rps, refused "
              f"{t.refused_pct:.2f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="local", choices=("local", "ray"))
    parser.add_argument("--shard-replicas", type=int, default=None)
    parser.add_argument("--no-requests", action="store_true")
    parser.add_argument("--workers", type=int, default=None,
                        help="threads of the local backend (default: one per CPU)")
    args = parser.parse_args()
    from capacitor.parallel import default_workers

    workers = args.workers or default_workers()
    with tempfile.TemporaryDirectory() as tmp:
        run("sampled", "local", None, not args.no_requests, Path(tmp), workers)  # warms numba
        run("exact", args.backend, args.shard_replicas, not args.no_requests, Path(tmp), workers)
