"""Scenario -> results: every deployment's pool simulated over the window, then per-tier
verdicts, utilisation, power and unit costs.

Each deployment is a pool of identical replicas behind the scenario's router
(:func:`capacitor.engine.simulator.simulate_pool`). Its demand is the merged requests of the
workloads that target it; tenants' limits and quotas (:mod:`capacitor.fleet.admission`)
throttle before routing and cap what is in flight; replica failures
(GPU / node MTBF, site outages) take replicas away during the window. In ``sampled``
fidelity a deployment of ``R`` replicas is simulated with ``k = sampled_replicas`` of them at
``k / R`` of its demand, and counts are scaled by ``R / k`` (the pools are exchangeable
behind a load-balancing router); ``exact`` simulates every replica.

Requests sent during ``warmup_s`` are simulated but not counted. Same scenario and seed,
same results: every random draw comes from ``numpy.random.default_rng(seed)`` streams.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capacitor.engine.replica import build_replica
from capacitor.engine.simulator import simulate_pool
from capacitor.fleet.admission import concurrency_caps, month_seconds, throttle
from capacitor.fleet.demand import Demand, arrival_times, merge, trace_batch, workload_batch
from capacitor.perf.profile import load_profile
from capacitor.scenario import growth_factor as scenario_growth
from capacitor.scenario import (
    expected_arrivals,
    replica_spec,
    resolve_replicas,
    window_start_hour,
)

STATUS_NAMES = {0: "pending", 1: "completed", 2: "rejected", 3: "shed", 4: "lost",
                5: "throttled"}
THROTTLED = 5
MINUTE_S = 60.0


@dataclass(slots=True)
class PoolRun:
    """One deployment's simulation."""

    name: str
    site: str
    gpu: str
    gpus_per_replica: int
    replicas: int
    simulated_replicas: int
    demand: Demand
    status: np.ndarray
    result: Any  # EngineResult
    measured: np.ndarray  # requests counted (sent after warm-up)
    downtime_s: float
    max_num_seqs: int = 1

    @property
    def scale(self) -> float:
        return self.replicas / self.simulated_replicas


@dataclass(slots=True)
class RunResult:
    scenario: Any
    pools: list[PoolRun]
    window_s: float
    warmup_s: float
    num_minutes: int
    summary: dict[str, Any] = field(default_factory=dict)


def _failures(site, gpu: str, gpus_per_replica: int, replicas: int, span_s: float,
              rng: np.random.Generator):
    from capacitor.fleet.failures import replica_downtime

    f = site.failures
    outages = [(o.start_s, o.duration_s) for o in f.outages]
    mtbf = f.gpu_mtbf_hours.get(gpu, math.inf)
    node = f.node_mtbf_hours if f.node_mtbf_hours else math.inf
    if math.isinf(mtbf) and math.isinf(node) and not outages:
        return None, 0.0
    down = replica_downtime(replicas, gpus_per_replica, mtbf, node, f.repair_hours, span_s, rng,
                            outages, gpus_per_node=f.gpus_per_node.get(gpu, 8),
                            repair="exponential")
    rep = np.repeat(np.arange(replicas), np.diff(down.offsets))
    events = (down.start_s.copy(), rep, down.end_s - down.start_s)
    return events, float(down.down_s().sum())


def tenant_shares(scenario, deployment: str) -> np.ndarray:
    """Per tenant, the fraction of its expected window demand that goes to ``deployment``
    (1 when it uses only that one; 0 when none): how its fleet-wide limits are split. A
    tenant with a workload of unknown volume (a trace replayed by ``time_scale``) splits
    them evenly over the deployments it uses."""
    expected = expected_arrivals(scenario)
    out = np.zeros(max(len(scenario.tenants), 1))
    for j, ten in enumerate(scenario.tenants):
        mine = [w for w in scenario.workloads if w.tenant == ten.name]
        if not any(w.deployment == deployment for w in mine):
            continue
        if any(expected[w.name] is None for w in mine):
            out[j] = 1.0 / len({w.deployment for w in mine})
            continue
        total = sum(expected[w.name] for w in mine)
        here = sum(expected[w.name] for w in mine if w.deployment == deployment)
        out[j] = here / total if total > 0 else 1.0 / len({w.deployment for w in mine})
    return out


def simulate_deployment(scenario, d_index: int, *, profile_path: str | None = None,
                        base_dir: Path | None = None) -> PoolRun:
    """Simulate deployment ``d_index`` of ``scenario`` (its pool, demand, limits and failures).
    A pure function of its arguments: its random streams are seeded by (seed, d_index), so a
    deployment gives the same result wherever it runs (the Ray backend relies on this)."""
    sim = scenario.simulation
    window = sim.window
    span = window.warmup_s + window.duration_s
    start_of_day_s = window_start_hour(scenario) * 3600.0 - window.warmup_s
    profile = load_profile(profile_path or (
        str((base_dir or Path(".")) / sim.profile) if sim.profile else None))
    dep = scenario.deployments[d_index]
    sites = {s.name: s for s in scenario.sites}
    tenants = list(scenario.tenants)
    tenant_index = {t.name: k for k, t in enumerate(tenants)}
    rng = np.random.default_rng([sim.seed, d_index])
    total = resolve_replicas(scenario)[dep.name]
    k = total if sim.fidelity == "exact" else min(sim.sampled_replicas, total)
    share = k / total
    config, coeffs = build_replica(replica_spec(dep), profile)
    if scenario.admission.preempt_lower_tiers:  # vLLM --scheduling-policy priority, by tier
        config = dataclasses.replace(config, scheduling_policy="priority")
    parts = []
    for w_index, wl in enumerate(scenario.workloads):
        if wl.deployment != dep.name:
            continue
        growth = scenario_growth(scenario, wl.arrival)
        if wl.lengths.kind == "trace":
            batch = trace_batch(wl, span, share, growth, config.effective_max_model_len,
                                base_dir)
        else:
            send = arrival_times(wl.arrival, start_of_day_s, span, share * growth, rng)
            batch = workload_batch(wl, send, config.effective_max_model_len, sim.seed, rng,
                                   base_dir)
        parts.append((batch, tenant_index[wl.tenant], w_index))
    demand = merge(parts)
    tenant_scale = share * tenant_shares(scenario, dep.name)
    throttled = np.zeros(len(demand.batch), np.bool_)
    if scenario.admission.policy != "none":
        throttled = throttle(demand, tenants, scenario.admission.bucket_depth_s, tenant_scale,
                             span, month_seconds(window.month))
        demand.batch.rejected |= throttled  # answered at once, like a 429
    gpus = dep.tp * dep.pp
    events, down_s = _failures(sites[dep.site], dep.gpu, gpus, k, span, rng)
    itl_class = np.where(demand.batch.arrival_s >= window.warmup_s,
                         demand.tenant.astype(np.int64), -1)
    max_queue = scenario.admission.max_queue if scenario.admission.policy in (
        "queue_length", "token_bucket") and scenario.admission.max_queue else 0
    adm = scenario.admission
    limits = np.zeros(max(len(tenants), 1), np.int64)
    if adm.policy != "none":
        present = np.zeros(len(tenants))
        present[[tenant_index[w.tenant] for w in scenario.workloads
                 if w.deployment == dep.name]] = 1.0
        limits = concurrency_caps(tenants, tenant_scale, present, k, config.max_num_seqs)
    ttft_limit_s = (adm.max_predicted_ttft_ms or 0.0) / 1000.0 \
        if adm.policy == "predicted_ttft" else 0.0
    result = simulate_pool(
        demand.batch, config, coeffs, num_replicas=k, routing=scenario.routing.policy,
        route_key=demand.session, max_queue=max_queue, failures=events, seed=sim.seed,
        tenant=demand.tenant, max_concurrent=limits, max_predicted_ttft_s=ttft_limit_s,
        priority=np.array([t.tier for t in tenants] or [0], np.int16)[demand.tenant],
        itl_class=itl_class, num_itl_classes=max(len(tenants), 1), busy_bin_s=MINUTE_S,
        num_busy_bins=int(math.ceil(span / MINUTE_S)),
    )
    status = result.status.astype(np.int8)
    status[throttled] = THROTTLED
    return PoolRun(
        name=dep.name, site=dep.site, gpu=dep.gpu, gpus_per_replica=gpus, replicas=total,
        simulated_replicas=k, demand=demand, status=status, result=result,
        measured=demand.batch.arrival_s >= window.warmup_s, downtime_s=down_s,
        max_num_seqs=config.max_num_seqs,
    )


def run_scenario(scenario, *, profile_path: str | None = None, base_dir: Path | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 backend: str = "local", ray_address: str | None = None) -> RunResult:
    """Simulate ``scenario``; ``progress(deployment, done, total)`` after each pool.

    ``backend="ray"`` simulates the deployments as Ray tasks (local Ray, or the cluster at
    ``ray_address``) with the same results as ``local``.
    """
    window = scenario.simulation.window
    n = len(scenario.deployments)
    if backend == "ray":
        from capacitor.fleet.ray_backend import run_pools

        pools = run_pools(scenario, profile_path=profile_path, base_dir=base_dir,
                          progress=progress, address=ray_address)
    else:
        pools = []
        for d_index in range(n):
            pools.append(simulate_deployment(scenario, d_index, profile_path=profile_path,
                                             base_dir=base_dir))
            if progress is not None:
                progress(scenario.deployments[d_index].name, d_index + 1, n)
    span = window.warmup_s + window.duration_s
    run = RunResult(scenario=scenario, pools=pools, window_s=window.duration_s,
                    warmup_s=window.warmup_s, num_minutes=int(math.ceil(span / MINUTE_S)))
    from capacitor.summary import summarize

    run.summary = summarize(run)
    return run


__all__ = ["PoolRun", "RunResult", "STATUS_NAMES", "requests_table", "run_scenario",
           "simulate_deployment", "write_run_dir"]


def requests_table(run: RunResult):
    """One row per simulated request (pyarrow Table): tenant, tier, deployment, replica,
    send time, status, TTFT / E2E, tokens, prefix-cache hits, whether it is counted."""
    import pyarrow as pa

    tenants = [t.name for t in run.scenario.tenants]
    tiers = np.array([t.tier for t in run.scenario.tenants] or [0], np.int16)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "tenant", "tier", "deployment", "replica", "arrival_s", "status", "ttft_ms", "e2e_ms",
        "input_tokens", "output_tokens", "prefix_hit_tokens", "counted")}
    for d_index, p in enumerate(run.pools):
        res = p.result
        cols["tenant"].append(p.demand.tenant)
        cols["tier"].append(tiers[p.demand.tenant])
        cols["deployment"].append(np.full(len(p.status), d_index, np.int16))
        cols["replica"].append(res.replica)
        cols["arrival_s"].append(res.send_s)
        cols["status"].append(p.status)
        cols["ttft_ms"].append(((res.first_token_s - res.send_s) * 1e3).astype(np.float32))
        cols["e2e_ms"].append(((res.finish_s - res.send_s) * 1e3).astype(np.float32))
        cols["input_tokens"].append(p.demand.batch.prompt_len)
        cols["output_tokens"].append(p.demand.batch.output_len)
        cols["prefix_hit_tokens"].append(res.num_cached_tokens)
        cols["counted"].append(p.measured)
    arrays = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
    table = pa.table({
        "tenant": pa.DictionaryArray.from_arrays(arrays["tenant"].astype(np.int32),
                                                 pa.array(tenants or [""])),
        "tier": arrays["tier"],
        "deployment": pa.DictionaryArray.from_arrays(
            arrays["deployment"].astype(np.int32), pa.array([p.name for p in run.pools] or [""])),
        **{k: arrays[k] for k in ("replica", "arrival_s")},
        "status": pa.DictionaryArray.from_arrays(
            arrays["status"].astype(np.int32), pa.array([STATUS_NAMES[i] for i in range(6)])),
        **{k: arrays[k] for k in ("ttft_ms", "e2e_ms", "input_tokens", "output_tokens",
                                  "prefix_hit_tokens", "counted")},
    })
    scale = {p.name: p.scale for p in run.pools}
    return table.replace_schema_metadata({"scale_by_deployment": str(scale)})


def write_run_dir(run: RunResult, out_dir: Path, resolved_yaml: str) -> None:
    """``scenario.yaml`` (resolved), ``summary.json``, ``requests.parquet``,
    ``timeline.parquet`` in ``out_dir`` (created)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from capacitor.summary import timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scenario.yaml").write_text(resolved_yaml, encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(run.summary, indent=2, sort_keys=True)
                                          + "\n", encoding="utf-8")
    pq.write_table(requests_table(run), out_dir / "requests.parquet")
    pq.write_table(pa.table(timeline(run)), out_dir / "timeline.parquet")
