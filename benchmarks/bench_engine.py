"""Simulator speed and memory benchmarks (not tests). Run from the repository root:

    python benchmarks/bench_engine.py             # the standard workload, 1,000,000 requests
    python benchmarks/bench_engine.py --memory    # 10,000,000 requests: peak RSS

The first is what ``capacitor bench`` prints. The second runs the engine on ten million
requests of the standard workload and reports the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import time

from capacitor.bench import run_bench, standard_row


def memory(num_requests: int) -> None:
    from capacitor.bench import _plan
    from capacitor.engine import simulate

    t0 = time.perf_counter()
    plan = _plan(standard_row(num_requests))
    t1 = time.perf_counter()
    simulate(plan.batch, plan.config, plan.coeffs)
    t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{num_requests:,} requests: build {t1 - t0:.1f} s, simulate {t2 - t1:.1f} s "
        f"({num_requests / (t2 - t1):,.0f} req/s), peak RSS {rss_mb:,.0f} MB "
        f"({rss_mb * 2**20 / num_requests:.0f} bytes/request incl. interpreter)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="10M-request peak RSS run")
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    if args.memory:
        memory(args.requests or 10_000_000)
    else:
        run_bench(args.requests or 1_000_000)
