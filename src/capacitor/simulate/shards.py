"""One routing cell of a deployment simulated and reduced to what the driver keeps: its
digest, and its requests table or full records when asked for. :func:`run_shard` is a pure
function of its arguments, so the local and Ray backends (:mod:`capacitor.simulate.backends`)
give identical results."""

from __future__ import annotations

import math
from pathlib import Path

from capacitor.simulate.deployment import simulate_deployment
from capacitor.simulate.digest import MINUTE_S, digest_pool
from capacitor.simulate.outputs import pool_requests_table
from capacitor.simulate.records import ShardOutput


def run_shard(scenario, d_index: int, shard: int, *, profile_path: str | None = None,
              base_dir: Path | None = None, with_table: bool = False,
              keep_pool: bool = False,
              step_slowdowns: dict[str, tuple[float, float]] | None = None) -> ShardOutput:
    """Simulate one pool and reduce it: its digest, and its requests table / full records
    when asked for. A pure function of its arguments (the Ray backend runs it remotely).
    ``step_slowdowns`` maps power-capped deployments to their ``(compute, memory)`` step-time
    multipliers."""
    name = scenario.deployments[d_index].name
    pool = simulate_deployment(scenario, d_index, shard=shard, profile_path=profile_path,
                               base_dir=base_dir,
                               step_slowdown=(step_slowdowns or {}).get(name))
    window = scenario.simulation.window
    minutes = int(math.ceil((window.warmup_s + window.duration_s) / MINUTE_S))
    return ShardOutput(
        d_index=d_index, shard=shard,
        digest=digest_pool(pool, list(scenario.tenants), minutes, len(scenario.workloads)),
        table=pool_requests_table(pool, d_index, scenario) if with_table else None,
        pool=pool if keep_pool else None,
    )


__all__ = ["run_shard"]
