"""The replicas an experiments row describes: one replica of ``tp x pp`` GPUs with the row's
engine settings, ``num_gpus / (tp x pp)`` data-parallel replicas of an offline row, or the
prefill and decode pools of a disaggregated row (``prefill_*`` / ``decode_*`` columns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.engine.disaggregated import check_pools
from capacitor.engine.replica import ReplicaSpec, build_replica
from capacitor.errors import CapacitorError, CatalogError, ConfigError, MemoryFitError
from capacitor.perf.speculative import SPECULATIVE_METHODS
from capacitor.validate.rows import (
    COUNT,
    Row,
    RowError,
    boolean,
    fraction,
    integer,
    one_of,
    unit_interval,
)

ENGINES = ("vllm", "sglang", "trtllm")
PRECISIONS = ("fp16", "bf16", "fp8", "fp4")
DEFAULT_BLOCK_SIZE = 16


def _resolve_model_gpu(row: Row) -> tuple[Any, Any]:
    """The row's model and GPU from the catalogues (RowError naming the column otherwise)."""
    ref, hardware = row.model_ref(), row.get("hardware", required=True)
    try:
        model = resolve_model(ref)
    except CatalogError as exc:
        raise RowError("model", row.text("model"), str(exc)) from None
    try:
        gpu = get_gpu(hardware)
    except CatalogError as exc:
        raise RowError("hardware", hardware, str(exc)) from None
    return model, gpu


def _build(row: Row, profile: object, model: Any, gpu: Any, tp: int, pp: int, ep: int | None,
           dp_attention: bool, where: str = "", pool: str = "") -> tuple[Any, np.ndarray]:
    """One replica of ``tp × pp`` GPUs with the row's engine settings (``pool`` the column
    prefix of a disaggregated row's pool, e.g. ``decode_``)."""
    spec = ReplicaSpec(
        model=model,
        gpu=gpu,
        tp=tp,
        pp=pp,
        ep=ep,
        ep_num_redundant_experts=row.get(f"{pool}ep_num_redundant_experts", integer(0)),
        dp_attention=dp_attention,
        precision=row.get("precision", one_of(PRECISIONS)),
        kv_cache_dtype=row.get("kv_cache_dtype", str.lower),
        engine=row.get("engine", one_of(ENGINES), "vllm"),
        max_num_seqs=row.get("max_num_seqs", COUNT),
        max_num_batched_tokens=row.get("max_num_batched_tokens", COUNT),
        gpu_memory_utilization=row.get("gpu_memory_utilization", fraction),
        block_size=row.get("block_size", COUNT, DEFAULT_BLOCK_SIZE),
        enable_prefix_caching=row.get("enable_prefix_caching", boolean),
        cpu_offload=row.get("cpu_offload", boolean),
        total_kv_blocks=row.get("total_kv_blocks", COUNT),
        max_model_len=row.get("max_model_len", integer(2)),
        async_scheduling=row.get("async_scheduling", boolean),
        scheduler_recv_interval=row.get("scheduler_recv_interval", COUNT),
        attention_dp_timeout_iters=row.get("attention_dp_timeout_iters", COUNT),
        speculative=row.get("speculative", one_of(SPECULATIVE_METHODS), "none"),
        num_speculative_tokens=row.get("num_speculative_tokens", integer(1, 16)),
        mtp_acceptance_rate=row.get("mtp_acceptance_rate", unit_interval),
    )
    try:
        return build_replica(spec, profile)
    except MemoryFitError as exc:
        hw = row.text("hardware")
        raise RowError("model", row.text("model"),
                       f"does not fit {where}on hardware={hw} with tp={tp} pp={pp}: {exc}"
                       ) from None


def build_replica_for_row(row: Row, profile: object) -> tuple[Any, np.ndarray]:
    """ReplicaSpec from the row's model / hardware / engine columns → (EngineConfig, coeffs)."""
    model, gpu = _resolve_model_gpu(row)
    tp, pp = row.get("tp", COUNT, 1), row.get("pp", COUNT, 1)
    _data_parallel_replicas(row, tp, pp)
    return _build(row, profile, model, gpu, tp, pp, row.get("ep", COUNT),
                  row.get("dp_attention", boolean, False))


def _data_parallel_replicas(row: Row, tp: int, pp: int) -> int:
    """Replicas of ``tp × pp`` GPUs the row's ``num_gpus`` makes: 1, or for an offline row
    ``num_gpus / (tp × pp)`` data-parallel replicas (a multiple of it)."""
    num_gpus = row.get("num_gpus", COUNT)
    if num_gpus is None or num_gpus == tp * pp:
        return 1
    if row.text("workload").lower() == "offline" and num_gpus % (tp * pp) == 0:
        return num_gpus // (tp * pp)
    if row.text("workload").lower() == "offline":
        raise RowError("num_gpus", num_gpus,
                       f"must be a multiple of tp × pp = {tp} × {pp} = {tp * pp} "
                       "(data-parallel replicas)")
    raise RowError("num_gpus", num_gpus, f"must equal tp × pp = {tp} × {pp} = {tp * pp}")


#: the columns of a disaggregated row, per pool (``num_gpus`` counts both pools)
DISAGG_COLUMNS = tuple(f"{pool}_{c}" for pool in ("prefill", "decode")
                       for c in ("workers", "tp", "ep", "dp_attention"))


def is_disaggregated(row: Row) -> bool:
    """Whether the row describes a disaggregated deployment (any ``prefill_*`` /
    ``decode_*`` cell filled)."""
    return any(row.text(c) for c in DISAGG_COLUMNS)


@dataclass(slots=True)
class DisaggPlan:
    """A disaggregated row's pools: ``(config, coeffs, workers)`` each, and per request the
    KV transfer seconds (filled once the batch is known)."""

    prefill: tuple[Any, np.ndarray, int]
    decode: tuple[Any, np.ndarray, int]
    model: Any
    prefill_tp: int
    kv_cache_dtype: str | None
    link_gb_s: float


def build_disaggregated(row: Row, profile: object) -> DisaggPlan:
    """Both pools of a disaggregated row (RowError naming the column when they cannot run)."""
    model, gpu = _resolve_model_gpu(row)
    for col in ("tp", "pp", "ep", "dp_attention"):
        if row.text(col):
            raise RowError(col, row.text(col), "must be blank on a disaggregated row "
                           "(the prefill_* and decode_* columns describe the pools)")
    pools = {}
    for pool in ("prefill", "decode"):
        workers = row.get(f"{pool}_workers", COUNT, required=True)
        tp = row.get(f"{pool}_tp", COUNT, required=True)
        ep = row.get(f"{pool}_ep", COUNT)
        dp_attention = row.get(f"{pool}_dp_attention", boolean, False)
        try:
            config, coeffs = _build(row, profile, model, gpu, tp, 1, ep, dp_attention,
                                    where=f"the {pool} pool ", pool=f"{pool}_")
        except ConfigError as exc:  # tp / ep that cannot work: name the pool's column
            col = f"{pool}_tp"
            for name in ("ep_num_redundant_experts", "ep"):
                if str(exc).startswith(f"{name}="):
                    col = f"{pool}_{name}"
                    break
            raise RowError(col, row.text(col), str(exc)) from None
        pools[pool] = (config, coeffs, workers, tp)
    total = sum(w * tp for (_, _, w, tp) in pools.values())
    num_gpus = row.get("num_gpus", COUNT)
    if num_gpus is not None and num_gpus != total:
        (_, _, wp, tpp), (_, _, wd, tpd) = pools["prefill"], pools["decode"]
        raise RowError("num_gpus", num_gpus, "must equal prefill_workers × prefill_tp + "
                       f"decode_workers × decode_tp = {wp} × {tpp} + {wd} × {tpd} = {total}")
    try:
        link = gpu.kv_link_gb_s(total)
        check_pools(pools["prefill"][0], pools["decode"][0], pools["prefill"][2],
                    pools["decode"][2])
    except CapacitorError as exc:
        raise RowError("hardware", row.text("hardware"), str(exc)) from None
    return DisaggPlan(
        prefill=pools["prefill"][:3], decode=pools["decode"][:3], model=model,
        prefill_tp=pools["prefill"][3], kv_cache_dtype=row.get("kv_cache_dtype", str.lower),
        link_gb_s=link,
    )


__all__ = ["DEFAULT_BLOCK_SIZE", "DISAGG_COLUMNS", "DisaggPlan", "ENGINES", "PRECISIONS",
           "build_disaggregated", "build_replica_for_row", "is_disaggregated"]
