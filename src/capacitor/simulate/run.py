"""Scenario -> results: every deployment's pool simulated over the window, then per-tier
verdicts, utilisation, power and unit costs.

Each deployment is a pool of identical replicas behind the scenario's router
(:func:`capacitor.engine.simulator.simulate_pool`). Its demand is the merged requests of the
workloads that target it; tenants' limits and quotas (:mod:`capacitor.fleet.admission`)
throttle before routing and cap what is in flight; replica failures
(GPU / node MTBF, site outages) take replicas away during the window. Routers work in cells
of at most ``shard_replicas`` replicas, each with its share of the demand: ``exact`` fidelity
simulates every cell (:func:`shard_sizes`), each reduced to a
:class:`~capacitor.simulate.digest.PoolDigest` as soon as it is done; ``sampled`` simulates
``k = sampled_replicas`` replicas of a deployment of ``R`` at ``k / R`` of its demand and
scales counts by ``R / k`` (the cells are exchangeable behind a load-balancing router).

Requests sent during ``warmup_s`` are simulated but not counted. Same scenario and seed,
same results: every random draw comes from ``numpy.random.default_rng(seed)`` streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from capacitor.scenario.models import Failures
from capacitor.simulate.backends import run_local, run_ray
from capacitor.simulate.causes import failures_possible
from capacitor.simulate.deployment import shard_sizes
from capacitor.simulate.digest import MINUTE_S, PoolDigest, add_digest
from capacitor.simulate.power_cap import (
    MAX_CAP_PASSES,
    cap_limits,
    cap_slowdowns,
    nameplate_fits,
)
from capacitor.simulate.records import PoolRun, RunResult, ShardOutput
from capacitor.simulate.summary import summarize


def run_scenario(scenario, *, profile_path: str | None = None, base_dir: Path | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 backend: str = "local", ray_address: str | None = None,
                 requests_sink: Callable[[Any], None] | None = None,
                 keep_pools: bool = True, workers: int = 1,
                 explain_misses: bool = True) -> RunResult:
    """Simulate ``scenario``; ``progress(deployment, done, total)`` after each pool (a
    deployment, or a shard of one in exact fidelity).

    ``requests_sink`` receives each pool's requests as a pyarrow Table, in deployment and
    shard order (e.g. a :class:`~capacitor.simulate.outputs.RequestsWriter`); ``keep_pools=False``
    keeps only the digests, so memory does not grow with the number of requests.
    ``backend="ray"`` simulates the pools as Ray tasks (local Ray, or the cluster at
    ``ray_address``) with the same results as ``local``; the local backend runs ``workers``
    pools at a time on threads, with the same results for any number.

    A site whose inventory at full TDP exceeds its ``power_cap_mw`` may have to run
    power-capped (:mod:`capacitor.simulate.power_cap`): its deployments are simulated again
    with slower steps until its draw fits the cap. The requests of such a run are held until
    the last pass (the ones it keeps) and handed to ``requests_sink`` then.

    When the verdict misses and a missing tenant's deployment sits at a site with failures,
    ``explain_misses`` simulates the window once more without failures (digests only) so the
    verdict can name the binding cause (:mod:`capacitor.simulate.causes`); the run's own
    results are unchanged by it.
    """
    window = scenario.simulation.window
    span = window.warmup_s + window.duration_s
    num_minutes = int(math.ceil(span / MINUTE_S))
    may_cap = not nameplate_fits(scenario)
    digests: dict[int, PoolDigest] = {}
    pools: dict[int, list[PoolRun]] = {}
    tables: dict[int, list] = {}

    def simulate(d_indices: list[int], slowdowns: dict) -> None:
        tasks = [(d, s) for d in d_indices for s in range(len(shard_sizes(scenario, d)))]
        kwargs = {"profile_path": profile_path, "base_dir": base_dir,
                  "with_table": requests_sink is not None, "keep_pool": keep_pools,
                  "step_slowdowns": slowdowns or None}
        for d in d_indices:
            digests.pop(d, None)
            pools[d] = []
            tables[d] = []

        def take(out: ShardOutput) -> None:  # called in task order: sums are reproducible
            digests[out.d_index] = add_digest(digests.get(out.d_index), out.digest)
            if out.table is not None:
                if may_cap:
                    tables[out.d_index].append(out.table)
                else:
                    requests_sink(out.table)
            if out.pool is not None:
                pools[out.d_index].append(out.pool)

        if backend == "ray":
            run_ray(scenario, tasks, kwargs, take, progress=progress, address=ray_address)
        else:
            run_local(scenario, tasks, kwargs, take, progress, workers)

    def result(limits: dict, slowdowns: dict) -> RunResult:
        return RunResult(scenario=scenario, digests=[digests[d] for d in sorted(digests)],
                         window_s=window.duration_s, warmup_s=window.warmup_s,
                         num_minutes=num_minutes,
                         pools=[p for d in sorted(pools) for p in pools[d]],
                         power_limits=dict(limits), step_slowdowns=dict(slowdowns))

    everything = list(range(len(scenario.deployments)))
    simulate(everything, {})
    run = result({}, {})
    if may_cap:
        limits: dict[str, float] = {}
        uncapped = None
        for _ in range(MAX_CAP_PASSES):
            new = cap_limits(scenario, run.digests, num_minutes, limits)
            if new == limits:
                break
            if uncapped is None:
                uncapped = summarize(run)
            limits = new
            slowdowns = cap_slowdowns(scenario, limits)
            simulate([i for i, d in enumerate(scenario.deployments) if d.site in limits],
                     slowdowns)
            run = result(limits, slowdowns)
        run.uncapped_summary = uncapped
        if requests_sink is not None:
            for d in sorted(tables):
                for table in tables[d]:
                    requests_sink(table)
    run.summary = summarize(run)
    misses = run.summary.verdict.misses
    if explain_misses and misses and failures_possible(scenario, misses):
        def tagged(name: str, done: int, total: int) -> None:
            progress(f"{name} (without failures)", done, total)

        calm = run_scenario(without_failures(scenario), profile_path=profile_path,
                            base_dir=base_dir, progress=tagged if progress else None,
                            backend=backend, ray_address=ray_address, keep_pools=False,
                            workers=workers, explain_misses=False)
        run.failure_free_summary = calm.summary
        run.summary = summarize(run)
    return run


def without_failures(scenario):
    """``scenario`` with no replica failures and no site outages at any site."""
    sites = [s.model_copy(update={"failures": Failures()}) for s in scenario.sites]
    return scenario.model_copy(update={"sites": sites})


__all__ = ["run_scenario", "without_failures"]
