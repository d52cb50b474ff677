"""Checks of disaggregated deployments (``deployments[i].disaggregated``): each pool's
workers build (the model fits, tp / ep / dp_attention are valid), the two pools form one
engine, and nothing the disaggregated engine does not model is asked of them.

:mod:`capacitor.engine.disaggregated` models worker failures (its site's, drawn per
worker: :func:`capacitor.simulate.deployment._worker_failures`) but not admission
control inside the engine (per-replica queue limits, predicted-TTFT shedding, tenants'
concurrency caps and guaranteed shares), nor priority preemption, nor a host KV tier, nor
session / prefix affinity routing. A scenario that asks for one of them on a
disaggregated deployment is refused, one line naming the field; tenants' rate limits
and token quotas apply, before the engine, as for any deployment.
"""

from __future__ import annotations

import math
import re

from capacitor.catalog.hardware import get_gpu
from capacitor.engine.disaggregated import DISAGG_ROUTERS, check_pools
from capacitor.engine.replica import build_replica
from capacitor.errors import CapacitorError, CatalogError, ConfigError, MemoryFitError
from capacitor.perf.profile import PerfProfile
from capacitor.scenario.models import Deployment, DisaggPool, Scenario
from capacitor.scenario.specs import POOLS, replica_spec

#: what a disaggregated deployment cannot have, in the message's words
_UNMODELLED = "which the disaggregated engine does not model"


def check_pools_of(dep: Deployment, p: str, profile: PerfProfile | None,
                   problems: list[str]) -> None:
    """Deployment ``dep`` (at YAML path ``p``, disaggregated): its deployment-level tp / pp /
    ep are left out, no host KV tier, each pool's worker builds, the pools form one engine."""
    for field, default in (("tp", (1,)), ("pp", (1,)), ("ep", (None, 1)),
                           ("dp_attention", (False,))):
        value = getattr(dep, field)
        if value in default:
            continue
        why = ("disaggregated pools have no pipeline parallelism" if field == "pp" else
               f"a disaggregated deployment sets {field} per pool "
               f"({p}.disaggregated.prefill.{field}, .decode.{field})")
        problems.append(f"{p}.{field} = {value} ({dep.name}): {why}; remove it")
    if dep.cpu_offload:
        problems.append(f"{p}.cpu_offload = true ({dep.name}): disaggregated pools have no "
                        f"host KV tier, {_UNMODELLED}; remove it")
        return
    built = {}
    for pool in POOLS:
        where = f"{p}.disaggregated.{pool}"
        spec_pool = getattr(dep.disaggregated, pool)
        try:
            built[pool] = build_replica(replica_spec(dep, pool), profile)
        except MemoryFitError as err:
            problems.append(f"{where}.tp = {spec_pool.tp} ({dep.name}): the model does not "
                            f"fit a {pool} worker: {err}")
        except ConfigError as err:
            # build_replica's messages start with "field=value: ..."
            m = re.match(r"(\w+)[= ]", str(err))
            field = m.group(1) if m else ""
            if field in DisaggPool.model_fields:
                problems.append(f"{where}.{field} ({dep.name}): {err}")
            elif field in Deployment.model_fields:
                problems.append(f"{p}.{field} ({dep.name}): {err}")
            else:
                problems.append(f"{where} ({dep.name}): {err}")
        except CapacitorError as err:
            problems.append(f"{where} ({dep.name}): {err}")
    if len(built) == len(POOLS):
        d = dep.disaggregated
        try:
            check_pools(built["prefill"][0], built["decode"][0], d.prefill.workers,
                        d.decode.workers)
        except ConfigError as err:
            problems.append(f"{p}.disaggregated ({dep.name}): {err}")


def check_kv_link(dep: Deployment, p: str, units: int, problems: list[str]) -> None:
    """Deployment ``dep`` (at YAML path ``p``, disaggregated), simulated in routing cells of
    up to ``units`` units: the catalogue knows the link its KV moves over (NVLink inside one
    domain, else the scale-out NIC, :meth:`capacitor.catalog.hardware.GPUSpec.kv_link_gb_s`)."""
    gpus = units * dep.gpus_per_replica
    gpu = get_gpu(dep.gpu)
    try:
        gpu.kv_link_gb_s(gpus)
    except CatalogError:
        domain = gpu.nvlink_domain_gpus
        where = ("" if math.isnan(domain) else
                 f", more than one NVLink domain of {domain:g}")
        problems.append(
            f"{p}.gpu = {dep.gpu!r} ({dep.name}): a routing cell of {units} units is {gpus:,} "
            f"GPUs{where}, so its KV moves over the scale-out network, and the GPU catalogue "
            f"has no scaleout_gb_s for {gpu.name}; make the cells fit one domain "
            "(simulation.shard_replicas / sampled_replicas) or use a GPU that has one")


def check_disaggregated(scenario: Scenario, problems: list[str]) -> None:
    """Scenario-wide settings a disaggregated deployment cannot honour: admission control
    inside the engine, priority preemption, affinity routing (one line
    each, naming the field)."""
    disagg = [(i, d) for i, d in enumerate(scenario.deployments) if d.disaggregated]
    if not disagg:
        return
    i, first = disagg[0]
    who = f"disaggregated deployment deployments[{i}] ({first.name})"
    routing = scenario.routing.policy
    if routing not in DISAGG_ROUTERS:
        problems.append(f"routing.policy = {routing!r}: not modelled with a {who}; valid: "
                        f"{', '.join(DISAGG_ROUTERS)}")
    adm = scenario.admission
    if adm.policy in ("queue_length", "predicted_ttft"):
        problems.append(f"admission.policy = {adm.policy!r}: sheds inside the engine, "
                        f"{_UNMODELLED} ({who}); valid with one: none, token_bucket")
    elif adm.policy == "token_bucket" and adm.max_queue:
        problems.append(f"admission.max_queue = {adm.max_queue}: a per-replica queue limit, "
                        f"{_UNMODELLED} ({who}); remove it")
    if adm.preempt_lower_tiers:
        problems.append(f"admission.preempt_lower_tiers = true: priority scheduling, "
                        f"{_UNMODELLED} ({who}); remove it")
    for i, dep in disagg:
        who = f"disaggregated deployment deployments[{i}] ({dep.name})"
        if adm.policy != "none":
            _tenant_caps(scenario, dep.name, who, problems)


def _tenant_caps(scenario: Scenario, name: str, who: str, problems: list[str]) -> None:
    """Tenants' concurrency caps and guaranteed shares (enforced in the engine's admission)
    of the tenants with a workload on deployment ``name``."""
    present = {w.tenant for w in scenario.workloads if w.deployment == name}
    for j, t in enumerate(scenario.tenants):
        if t.name not in present:
            continue
        for path, value in (("rate_limits.max_concurrent", t.rate_limits.max_concurrent),
                            ("quotas.max_share_pct", t.quotas.max_share_pct),
                            ("quotas.guaranteed_share_pct", t.quotas.guaranteed_share_pct)):
            if value is not None:
                problems.append(f"tenants[{j}].{path} = {value:g}: enforced by the engine's "
                                f"admission, {_UNMODELLED} ({who}); remove it, or set "
                                "admission.policy none")


__all__ = ["check_disaggregated", "check_kv_link", "check_pools_of"]
