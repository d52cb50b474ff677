"""One deployment's pool, simulated: its demand (the merged requests of the workloads that
target it), tenants' limits and quotas (:mod:`capacitor.fleet.admission`), replica
failures (GPU / node MTBF, site outages) and the router, for one routing cell.

Routers work in cells of at most ``shard_replicas`` replicas, each with its share of the
demand: ``exact`` fidelity simulates every cell (:func:`shard_sizes`); ``sampled`` simulates
``k = sampled_replicas`` replicas of a deployment of ``R`` at ``k / R`` of its demand and
scales counts by ``R / k`` (the cells are exchangeable behind a load-balancing router); with
failures, at the sample's replicas up over the deployment's (:func:`sample_share`) and
scaled by its inverse, so the sample's up replicas carry the deployment's load per up
replica.
Failures start in steady state (:mod:`capacitor.fleet.failures`); in sampled fidelity they are
drawn for all ``R`` replicas, the ``k`` simulated being the first of them, so availability
and replicas up are measured over the whole deployment, not a sample of 64 in which a 0.5%
down share is mostly 0 or 1 replica.
Every random draw comes from ``numpy.random.default_rng`` streams seeded by the scenario's
seed, the deployment's index and the cell's.

A disaggregated deployment (``disaggregated:``) has units for replicas; its cell's demand is
made the same way and served by its prefill and decode pools (:mod:`capacitor.simulate.
disagg`), its workers failing as replicas do (:func:`_worker_failures`), without in-engine
admission (the scenario checks refuse it).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from capacitor.catalog.hardware import get_gpu
from capacitor.engine.disaggregated import disagg_max_model_len
from capacitor.engine.replica import build_replica
from capacitor.engine.simulator import simulate_pool
from capacitor.engine.status import S_THROTTLED
from capacitor.fleet.admission import concurrency_caps, month_seconds, throttle
from capacitor.fleet.demand import (
    arrival_times,
    merge,
    trace_batch,
    workflow_rows,
    workflow_trace_rows,
    workload_batch,
)
from capacitor.fleet.failures import (
    DEFAULT_GPUS_PER_NODE,
    domain_failures,
    down_s_per_bin,
    group_downtime,
    replica_downtime,
    steady_state_history_s,
)
from capacitor.perf.profile import load_profile
from capacitor.perf.step_time import (
    C_ATTN_DECODE_S_PER_TOKEN,
    C_ATTN_PREFILL_S_PER_PAIR,
    C_GEMM_S_PER_TOKEN,
    C_MOE_GEMM_S_PER_TOKEN,
    C_MOE_WEIGHT_S,
    C_WEIGHT_S,
)
from capacitor.scenario import (
    expected_arrivals,
    replica_spec,
    resolve_replicas,
    window_start_hour,
)
from capacitor.scenario import growth_factor as scenario_growth
from capacitor.scenario.checks import cell_sizes
from capacitor.scenario.specs import POOLS
from capacitor.simulate.digest import MINUTE_S
from capacitor.simulate.disagg import simulate_cell
from capacitor.simulate.records import PoolRun

#: How a scenario's repairs are drawn: ``failures.repair_hours`` is their mean (the scenario
#: field's description says exponential).
REPAIR = "exponential"


def shard_sizes(scenario, d_index: int) -> list[int]:
    """Replicas simulated per pool of deployment ``d_index``: ``[k]`` in sampled fidelity
    (``k = min(sampled_replicas, R)``); in exact fidelity ``R`` split into
    ``ceil(R / shard_replicas)`` near-equal shards."""
    total = resolve_replicas(scenario)[scenario.deployments[d_index].name]
    return cell_sizes(scenario.simulation, total)


def failure_rates(site, gpu: str) -> tuple[float, float, int]:
    """``(gpu_mtbf_hours, node_mtbf_hours, gpus_per_node)`` of ``gpu`` replicas at ``site``
    as the failure draw uses them (inf = does not fail): the site's figures, or its NVLink
    domain's when a failure takes the whole domain down."""
    f = site.failures
    mtbf = f.gpu_mtbf_hours.get(gpu, math.inf)
    node = f.node_mtbf_hours if f.node_mtbf_hours else math.inf
    per_node = f.gpus_per_node.get(gpu, DEFAULT_GPUS_PER_NODE)
    domain = get_gpu(gpu).nvlink_domain_gpus
    if f.nvlink_domain_blast_radius and math.isfinite(domain) and domain > per_node:
        mtbf, node, per_node = domain_failures(mtbf, node, per_node, int(domain))
    return mtbf, node, per_node


def _failures(site, gpu: str, gpus_per_replica: int, replicas: int, drawn: int,
              span_s: float, rng: np.random.Generator):
    """Failures of ``drawn`` replicas (the whole deployment in sampled fidelity, the cell in
    exact), the first ``replicas`` of which are simulated: their down intervals as the
    engine's failure events, and the replica-seconds down of all ``drawn``, in total and per
    minute of the span, in simulated-replica units (x ``replicas / drawn``, so that the
    digest's scale gives the deployment's measured figure back). The span starts in steady
    state: failures are drawn from a history before it
    (:func:`~capacitor.fleet.failures.steady_state_history_s`)."""
    f = site.failures
    outages = [(o.start_s, o.duration_s) for o in f.outages]
    mtbf, node, per_node = failure_rates(site, gpu)
    minutes = int(math.ceil(span_s / MINUTE_S))
    if math.isinf(mtbf) and math.isinf(node) and not outages:
        return None, 0.0, np.zeros(minutes)
    down = replica_downtime(drawn, gpus_per_replica, mtbf, node, f.repair_hours, span_s, rng,
                            outages, gpus_per_node=per_node, repair=REPAIR,
                            history_s=steady_state_history_s(f.repair_hours, REPAIR))
    rep = np.repeat(np.arange(drawn), np.diff(down.offsets))
    mine = rep < replicas
    events = (down.start_s[mine], rep[mine], (down.end_s - down.start_s)[mine])
    units = replicas / drawn
    return (events, float(down.down_s().sum()) * units,
            down_s_per_bin(down, MINUTE_S, minutes) * units)


def _worker_failures(site, dep, units: int, drawn: int, span_s: float,
                     rng: np.random.Generator):
    """Failures of the workers of ``drawn`` units of disaggregated deployment ``dep`` (the
    whole deployment in sampled fidelity, the cell in exact), the first ``units`` of which
    are simulated, as :func:`_failures` draws a replica's.

    GPUs to workers: unit ``u`` holds GPUs ``[u G, (u + 1) G)`` (``G`` its GPUs), its prefill
    workers' first (``prefill.tp`` consecutive GPUs each), then its decode workers'
    (``decode.tp`` each), as :func:`~capacitor.fleet.failures.replica_downtime` packs
    replicas. The GPUs fail, and their nodes (or NVLink domains, with the blast radius: every
    worker with a GPU in the domain) fail, as replicas of one GPU; a worker is down while any
    of its GPUs is. Returns the engine's events (worker ids of :func:`capacitor.engine.
    disaggregated.simulate_disaggregated`: prefill worker ``u x prefill.workers + j``, decode
    worker ``units x prefill.workers + u x decode.workers + j``), and the down time in
    units: a worker's down seconds times its share of its unit's GPUs (a unit with one worker
    down serves with the rest), in total and per minute, x ``units / drawn``."""
    f = site.failures
    outages = [(o.start_s, o.duration_s) for o in f.outages]
    mtbf, node, per_node = failure_rates(site, dep.gpu)
    minutes = int(math.ceil(span_s / MINUTE_S))
    if math.isinf(mtbf) and math.isinf(node) and not outages:
        return None, 0.0, np.zeros(minutes)
    d = dep.disaggregated
    wp, wd = d.prefill.workers, d.decode.workers
    per_unit = wp + wd
    g = dep.gpus_per_replica
    # the worker (in its unit) of each GPU of a unit, and each worker's share of its GPUs
    slot_of_gpu = np.concatenate([np.repeat(np.arange(wp), d.prefill.tp),
                                  wp + np.repeat(np.arange(wd), d.decode.tp)])
    share = np.where(np.arange(per_unit) < wp, d.prefill.tp, d.decode.tp) / g
    gpus = replica_downtime(drawn * g, 1, mtbf, node, f.repair_hours, span_s, rng, outages,
                            gpus_per_node=per_node, repair=REPAIR,
                            history_s=steady_state_history_s(f.repair_hours, REPAIR))
    group = np.repeat(np.arange(drawn) * per_unit, g) + np.tile(slot_of_gpu, drawn)
    down = group_downtime(gpus, group, drawn * per_unit)
    worker = np.repeat(np.arange(drawn * per_unit), np.diff(down.offsets))
    unit, slot = np.divmod(worker, per_unit)
    mine = unit < units
    engine_id = np.where(slot < wp, unit * wp + slot, units * wp + unit * wd + slot - wp)
    events = (down.start_s[mine], engine_id[mine], (down.end_s - down.start_s)[mine])
    weight = np.tile(share, drawn)
    scale = units / drawn
    return (events, float((down.down_s() * weight).sum()) * scale,
            down_s_per_bin(down, MINUTE_S, minutes, weight) * scale)
def sample_share(k: int, total: int, events, down_s: float, span_s: float) -> float:
    """The share of a deployment's demand its sample of ``k`` of ``total`` replicas serves
    (sampled fidelity): its replicas up over the deployment's, time-averaged over the span,
    so each of the sample's replicas up carries the load of one of the deployment's up
    replicas; ``k / total`` without failures. Without it the sample (a few NVLink racks of
    a GB200 deployment) usually has no replica down while the deployment has its repair
    share down (3.5 % of the default scenario's GB200 replicas), and would serve the
    deployment's demand as if no replica failed. ASSUMPTION: the fleet's balancer spreads
    demand over the replicas up, across cells as within one (the planner counts capacity
    the same way: :func:`capacitor.planner.capacity.down_share`). ``events`` are the
    sample's down intervals and ``down_s`` the deployment's replica-seconds down in sample
    units (x ``k / total``), as :func:`_failures` returns them."""
    if events is None:
        return k / total
    start, _, length = events
    sample_down = float(np.sum(np.clip(np.minimum(start + length, span_s)
                                       - np.maximum(start, 0.0), 0.0, None)))
    sample_up = k - sample_down / span_s
    fleet_up = total - down_s * (total / k) / span_s
    return sample_up / fleet_up if fleet_up > 0 and sample_up > 0 else k / total


def tenant_shares(scenario, deployment: str) -> np.ndarray:
    """Per tenant, the fraction of its expected window demand that goes to ``deployment``
    (1 when it uses only that one; 0 when none): how its fleet-wide limits are split. A
    tenant with a workload of unknown volume (a trace replayed by ``time_scale``) splits
    them evenly over the deployments it uses. The summary reports it
    (``tenants.<t>.limit_shares``, :func:`capacitor.simulate.summary._limit_shares`)."""
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


def _demand(scenario, dep, shard: int, num_cells: int, share: float,
            rng: np.random.Generator, max_model_len: int, base_dir: Path | None):
    """The cell's demand: the merged requests of the workloads on ``dep`` at ``share`` of
    their rates, those refused by their tenants' rate limits and token quotas marked
    rejected (and returned as ``throttled``), and each tenant's share of its limits here."""
    sim = scenario.simulation
    window = sim.window
    span = window.warmup_s + window.duration_s
    start_of_day_s = window_start_hour(scenario) * 3600.0 - window.warmup_s
    tenant_index = {t.name: k for k, t in enumerate(scenario.tenants)}
    parts = []
    for w_index, wl in enumerate(scenario.workloads):
        if wl.deployment != dep.name:
            continue
        growth = scenario_growth(scenario, wl.arrival)
        if wl.lengths.kind == "trace":
            batch = trace_batch(wl, span, share, growth, max_model_len, base_dir, cell=shard,
                                num_cells=num_cells)
        elif wl.lengths.kind == "workflow" and wl.lengths.trace is not None:  # sessions
            rows = workflow_trace_rows(wl, span, share, growth, max_model_len, base_dir,
                                       cell=shard, num_cells=num_cells)
            parts.append((rows.batch, tenant_index[wl.tenant], w_index, rows))
            continue
        elif wl.lengths.kind == "workflow":  # the arrivals start workflows
            send = arrival_times(wl.arrival, start_of_day_s, span, share * growth, rng)
            rows = workflow_rows(wl, send, max_model_len, rng)
            parts.append((rows.batch, tenant_index[wl.tenant], w_index, rows))
            continue
        else:
            send = arrival_times(wl.arrival, start_of_day_s, span, share * growth, rng)
            batch = workload_batch(wl, send, max_model_len, sim.seed, rng, base_dir)
        parts.append((batch, tenant_index[wl.tenant], w_index))
    demand = merge(parts)
    tenant_scale = share * tenant_shares(scenario, dep.name)
    throttled = np.zeros(len(demand.batch), np.bool_)
    if scenario.admission.policy != "none":
        throttled = throttle(demand, list(scenario.tenants), scenario.admission.bucket_depth_s,
                             tenant_scale, span, month_seconds(window.month))
        demand.batch.rejected |= throttled  # answered at once, like a 429
    return demand, throttled, tenant_scale


def simulate_deployment(scenario, d_index: int, *, shard: int = 0,
                        profile_path: str | None = None,
                        base_dir: Path | None = None,
                        step_slowdown: tuple[float, float] | None = None) -> PoolRun:
    """Simulate deployment ``d_index`` of ``scenario`` (its pool, demand, limits and failures).
    ``shard`` picks the routing cell of an exact run (:func:`shard_sizes`). A pure function of
    its arguments: its random streams are seeded by (seed, d_index[, shard]), so a pool gives
    the same result wherever it runs (the Ray backend relies on this). ``step_slowdown``
    ``(compute, memory)`` runs the GPUs power-capped: the compute and memory roofline terms
    of the step time take that many times as long (:func:`capped_coefficients`)."""
    sim = scenario.simulation
    window = sim.window
    span = window.warmup_s + window.duration_s
    profile = load_profile(profile_path or (
        str((base_dir or Path(".")) / sim.profile) if sim.profile else None))
    dep = scenario.deployments[d_index]
    sites = {s.name: s for s in scenario.sites}
    tenants = list(scenario.tenants)
    tenant_index = {t.name: k for k, t in enumerate(tenants)}
    sizes = shard_sizes(scenario, d_index)
    rng = np.random.default_rng([sim.seed, d_index] if len(sizes) == 1 else
                                [sim.seed, d_index, shard])
    total = resolve_replicas(scenario)[dep.name]
    k = sizes[shard]
    share = k / total
    if dep.disaggregated is not None:
        return _disaggregated(scenario, d_index, shard, sizes, rng, profile, base_dir,
                              step_slowdown)
    config, coeffs = build_replica(replica_spec(dep), profile)
    if step_slowdown is not None:
        coeffs = capped_coefficients(coeffs, *step_slowdown)
    if scenario.admission.preempt_lower_tiers:  # vLLM --scheduling-policy priority, by tier
        config = dataclasses.replace(config, scheduling_policy="priority")
    gpus = dep.gpus_per_replica
    sampled = len(sizes) == 1 and k < total
    if sampled:  # failures first: the sample's share of the demand depends on them
        events, down_s, down_by_minute = _failures(sites[dep.site], dep.gpu, gpus, k, total,
                                                   span, rng)
        share = sample_share(k, total, events, down_s, span)
    demand, throttled, tenant_scale = _demand(scenario, dep, shard, len(sizes), share, rng,
                                              config.effective_max_model_len, base_dir)
    if not sampled:  # every replica simulated: the cell's own failures
        events, down_s, down_by_minute = _failures(sites[dep.site], dep.gpu, gpus, k,
                                                   total if len(sizes) == 1 else k, span, rng)
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
        route_key=demand.route_key(scenario.routing.policy), max_queue=max_queue,
        failures=events, seed=sim.seed,
        tenant=demand.tenant, max_concurrent=limits, max_predicted_ttft_s=ttft_limit_s,
        priority=np.array([t.tier for t in tenants] or [0], np.int16)[demand.tenant],
        itl_class=itl_class, num_itl_classes=max(len(tenants), 1), busy_bin_s=MINUTE_S,
        num_busy_bins=int(math.ceil(span / MINUTE_S)),
    )
    status, measured = _status(demand, result, throttled, window.warmup_s)
    return PoolRun(
        name=dep.name, site=dep.site, gpu=dep.gpu, gpus_per_replica=gpus,
        replicas=total if len(sizes) == 1 else k, simulated_replicas=k, demand=demand,
        demand_scale=1.0 / share if sampled else None,
        status=status, result=result, measured=measured,
        downtime_s=down_s, down_s_by_minute=down_by_minute, max_num_seqs=config.max_num_seqs,
        replica_offset=sum(sizes[:shard]), coeffs=coeffs,
    )


def _status(demand, result, throttled: np.ndarray, warmup_s: float):
    """(status per request with the tenants' refusals marked throttled, which requests are
    measured: sent after the warm-up; a workflow call never sent, its workflow failed, is
    neither)."""
    status = result.status.astype(np.int8)
    measured = demand.batch.arrival_s >= warmup_s
    if demand.workflow.shape[0]:
        sent = np.isfinite(result.send_s)
        measured &= sent
        throttled = throttled & sent
    status[throttled] = S_THROTTLED
    return status, measured


def _disaggregated(scenario, d_index: int, shard: int, sizes: list[int],
                   rng: np.random.Generator, profile, base_dir: Path | None,
                   step_slowdown: tuple[float, float] | None) -> PoolRun:
    """A routing cell of ``k`` units of disaggregated deployment ``d_index``
    (:mod:`capacitor.simulate.disagg`); replicas are units. Its workers fail as
    :func:`_worker_failures` draws; no admission inside the engine; its tenants' rate limits
    and token quotas apply as for any deployment."""
    dep = scenario.deployments[d_index]
    total = resolve_replicas(scenario)[dep.name]
    k = sizes[shard]
    pools = []
    for pool in POOLS:
        config, coeffs = build_replica(replica_spec(dep, pool), profile)
        if step_slowdown is not None:
            coeffs = capped_coefficients(coeffs, *step_slowdown)
        pools.append((config, coeffs))
    max_model_len = disagg_max_model_len(pools[0][0], pools[1][0])
    demand, throttled, _ = _demand(scenario, dep, shard, len(sizes), k / total, rng,
                                   max_model_len, base_dir)
    span = scenario.simulation.window.warmup_s + scenario.simulation.window.duration_s
    sites = {s.name: s for s in scenario.sites}
    events, down_s, down_by_minute = _worker_failures(
        sites[dep.site], dep, k, total if len(sizes) == 1 else k, span, rng)
    result, cell = simulate_cell(scenario, dep, k, pools, demand, failures=events)
    status, measured = _status(demand, result, throttled, scenario.simulation.window.warmup_s)
    d = dep.disaggregated
    return PoolRun(
        name=dep.name, site=dep.site, gpu=dep.gpu, gpus_per_replica=dep.gpus_per_replica,
        replicas=total if len(sizes) == 1 else k, simulated_replicas=k, demand=demand,
        status=status, result=result, measured=measured, downtime_s=down_s,
        down_s_by_minute=down_by_minute,
        max_num_seqs=d.prefill.workers * pools[0][0].max_num_seqs
        + d.decode.workers * pools[1][0].max_num_seqs,
        replica_offset=sum(sizes[:shard]), disagg=cell,
    )


def capped_coefficients(coeffs: np.ndarray, compute: float, memory: float) -> np.ndarray:
    """Step-time coefficients of a power-capped GPU (:func:`capacitor.fleet.power.
    step_slowdowns`): the tensor-core terms (dense and expert GEMMs, prefill attention)
    ``compute`` times as long, the HBM terms (weights and experts streamed, decode KV reads)
    ``memory`` times; CPU overheads and communication unchanged."""
    out = coeffs.copy()
    for slot in (C_GEMM_S_PER_TOKEN, C_MOE_GEMM_S_PER_TOKEN, C_ATTN_PREFILL_S_PER_PAIR):
        out[slot] *= compute
    for slot in (C_WEIGHT_S, C_MOE_WEIGHT_S, C_ATTN_DECODE_S_PER_TOKEN):
        out[slot] *= memory
    return out


__all__ = ["capped_coefficients", "failure_rates", "shard_sizes", "simulate_deployment",
           "tenant_shares"]
