"""A replica whose attention runs data-parallel over its tp GPUs (DP attention).

SGLang ``--enable-dp-attention`` and TensorRT-LLM ``enable_attention_dp``: each of the tp
GPUs runs the attention block for its own share of the sequences with a full copy of the
attention weights, and the MoE layers run expert-parallel over the same GPUs. Relative to a
tensor-parallel replica of the same GPUs this changes (i) the memory: the attention weights
are replicated, and each GPU keeps only its own sequences' KV, so the replica holds tp times
one GPU's KV blocks (:func:`capacitor.perf.memory.num_gpu_blocks`); (ii) the step time:
attention weights streamed whole on every GPU, the decode KV read split tp ways, and
all-gather / reduce-scatter instead of all-reduce
(:func:`capacitor.perf.coefficients.build_coefficients`).

The replica is still simulated as one scheduler over the whole batch (the tp attention
ranks' batches are assumed balanced, as TensorRT-LLM's ``attention_dp_config.enable_balance``
and SGLang's round-robin dispatch aim for).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from capacitor.perf.coefficients import build_coefficients
from capacitor.perf.memory import normalize_precision, num_gpu_blocks, resolve_constants
from capacitor.perf.profile import check_engine


def _kv_dtype(spec: Any, engine: str, precision: str) -> str:
    # The rule of capacitor.engine.replica.build_replica: TensorRT-LLM's KV cache follows an
    # FP8 / FP4 checkpoint's quantization (FP8) when the row leaves kv_cache_dtype blank.
    kv = spec.kv_cache_dtype or "auto"
    if kv == "auto" and engine == "trtllm" and precision in ("fp8", "fp4"):
        return "fp8"
    return kv


def dp_attention_replica(spec: Any, profile: Any = None) -> tuple[Any, np.ndarray]:
    """``build_replica(spec)`` with attention data-parallel over ``spec.tp`` GPUs:
    (EngineConfig with the replica's KV blocks, step-time coefficients).

    Raises:
        ConfigError / MemoryFitError: as :func:`capacitor.engine.replica.build_replica`.
    """
    from capacitor.engine.replica import build_replica, resolved_settings

    config, _ = build_replica(spec, profile)
    engine = check_engine(spec.engine)
    model, gpu, tp, pp = spec.model, spec.gpu, spec.tp, spec.pp
    ep = 1 if spec.ep is None else spec.ep
    precision = normalize_precision(spec.precision, model)
    kv_dtype = _kv_dtype(spec, engine, precision)
    constants = resolve_constants(profile, gpu, engine)
    if spec.total_kv_blocks is None:
        settings = resolved_settings(spec)
        blocks = num_gpu_blocks(
            model,
            gpu,
            tp=tp,
            pp=pp,
            ep=ep,
            precision=precision,
            kv_cache_dtype=kv_dtype,
            gpu_memory_utilization=float(settings["gpu_memory_utilization"]),
            block_size=settings["block_size"],
            max_num_batched_tokens=settings["max_num_batched_tokens"],
            max_num_seqs=settings["max_num_seqs"],
            engine=engine,
            profile=constants,
            dp_attention=True,
        )
        max_len = config.max_model_len
        if spec.max_model_len is None:
            max_len = min(model.max_position_embeddings, blocks * config.block_size)
        config = dataclasses.replace(config, num_gpu_blocks=blocks, max_model_len=max_len)
    coeffs = build_coefficients(
        model,
        gpu,
        tp=tp,
        pp=pp,
        ep=ep,
        precision=precision,
        kv_cache_dtype=kv_dtype,
        engine=engine,
        profile=constants,
        dp_attention=True,
    )
    return config, coeffs


__all__ = ["dp_attention_replica"]
