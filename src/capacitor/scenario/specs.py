"""The engine's view of a scenario deployment: the :class:`ReplicaSpec` of one of its
replicas, or of one worker of a disaggregated deployment's prefill or decode pool."""

from __future__ import annotations

from typing import Any

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.engine.replica import ReplicaSpec

#: the pools of a disaggregated deployment, in the engine's order
POOLS = ("prefill", "decode")


def replica_spec(deployment: Any, pool: str | None = None) -> ReplicaSpec:
    """The :class:`ReplicaSpec` of a deployment of a checked scenario; with ``pool``
    (``prefill`` or ``decode``), of one worker of that pool of a disaggregated deployment:
    the pool's tp, ep, dp_attention (pp 1), its max_num_seqs, max_num_batched_tokens and
    gpu_memory_utilization when set (else the deployment's), every other setting the
    deployment's (engine flags such as scheduler_recv_interval, ep_num_redundant_experts)."""
    tp, pp, ep = deployment.tp, deployment.pp, deployment.ep
    dp_attention = deployment.dp_attention
    seqs, tokens = deployment.max_num_seqs, deployment.max_num_batched_tokens
    util = deployment.gpu_memory_utilization
    if pool is not None:
        p = getattr(deployment.disaggregated, pool)
        tp, pp, ep, dp_attention = p.tp, 1, p.ep, p.dp_attention
        seqs = p.max_num_seqs if p.max_num_seqs is not None else seqs
        tokens = p.max_num_batched_tokens if p.max_num_batched_tokens is not None else tokens
        util = p.gpu_memory_utilization if p.gpu_memory_utilization is not None else util
    return ReplicaSpec(
        model=resolve_model(deployment.model),
        gpu=get_gpu(deployment.gpu),
        tp=tp,
        pp=pp,
        ep=ep,
        ep_num_redundant_experts=deployment.ep_num_redundant_experts,
        dp_attention=dp_attention,
        precision=deployment.precision,
        kv_cache_dtype=deployment.kv_cache_dtype,
        engine=deployment.engine,
        max_num_seqs=seqs,
        max_num_batched_tokens=tokens,
        gpu_memory_utilization=util,
        block_size=deployment.block_size,
        enable_prefix_caching=deployment.enable_prefix_caching,
        cpu_offload=deployment.cpu_offload,
        max_model_len=deployment.max_model_len,
        scheduler_recv_interval=deployment.scheduler_recv_interval,
        attention_dp_timeout_iters=deployment.attention_dp_timeout_iters,
        speculative=deployment.speculative,
        num_speculative_tokens=deployment.num_speculative_tokens,
        mtp_acceptance_rate=deployment.mtp_acceptance_rate,
    )


__all__ = ["POOLS", "replica_spec"]
