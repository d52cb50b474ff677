"""Coefficient vector of :func:`capacitor.perf.step_time.step_time_s` from physics x profile.

Every slot is bytes or FLOPs of the (model, GPU, parallelism, precision) divided by a peak
rate from the catalogue times an efficiency from the profile (:mod:`capacitor.perf.profile`):

======================== =================================================================
slot                     value (seconds, or seconds per unit)
======================== =================================================================
weight_s                 streamed dense bytes / tp / (HBM B/s x weight_bw): body weights at
                         the weight precision + the 16-bit LM head (the input embedding is a
                         row lookup, not streamed)
gemm_s_per_token         2 x body params / tp / (peak FLOP/s at the compute precision x
                         gemm_max); the LM head runs once per sequence, not per token, and
                         is charged in per_seq_s
gemm_half_tokens         profile gemm_half_tokens
attn_prefill_s_per_pair  layers x attention_flops_per_pair_per_layer / tp / (16-bit peak, or
                         FP8 peak when the KV cache is FP8 and the GPU has FP8, x attention)
attn_decode_s_per_token  KV bytes per token per GPU (all layers) / (HBM B/s x kv_bw)
comm_fixed_s             tp > 1: 2 all-reduces per layer x latency; pp > 1: (pp-1) sends
comm_s_per_token         tp > 1: 2 x layers x hidden x 2 bytes x 2(tp-1)/tp / (link B/s x
                         allreduce_bw) (ring); pp > 1: + (pp-1) x hidden x 2 bytes / link
moe_weight_s             routed-expert bytes / tp / (HBM B/s x weight_bw)
moe_topk_fraction        num_experts_per_tok / num_experts (0 for dense models)
moe_gemm_s_per_token     2 x routed params one token uses / tp / peak x gemm_max
fixed_s, per_seq_s,      profile overheads; per_seq_s adds the LM-head GEMM of one sequence
per_prefill_seq_s        (2 x vocab x hidden / tp at the 16-bit rate)
======================== =================================================================

Pipeline parallelism is modelled as sequential stages: a step's batch passes every stage in
turn, so the step time is the sum over stages of each stage's (weights/pp, layers/pp) terms,
which equals the whole model's terms divided by tp only (not by pp). This ignores the overlap
of micro-batches across stages (vLLM runs pp virtual engines concurrently), so it is a
latency model of one batch, pessimistic for throughput at pp > 1.

Weight-only quantization: FP8 weights on a GPU without FP8 tensor cores (Ampere) and FP4
weights without FP4 tensor cores (Hopper, Ada, CDNA3) shrink the bytes streamed but compute
at the 16-bit rate, as vLLM's Marlin W8A16 / W4A16 kernels do. Expert parallelism is assumed
to keep the same per-GPU bytes and FLOPs as TP-sliced experts (balanced routing); its
all-to-all is not modelled separately from the all-reduce.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capacitor.perf import step_time as st
from capacitor.perf.memory import (
    WEIGHT_BYTES,
    check_parallelism,
    kv_bytes_per_token_per_gpu,
    kv_dtype_bytes,
    normalize_precision,
    resolve_constants,
    weight_param_split,
)
from capacitor.perf.profile import PerfProfile, ProfileConstants

#: Bytes per activation value crossing the interconnect (bf16/fp16 hidden states).
ACTIVATION_BYTES = 2.0
_SIXTEEN_BIT = ("bf16", "fp16")


def compute_precision(weight_precision: str, gpu: Any) -> str:
    """Precision the GEMMs run at: the weight precision when the GPU has tensor cores for it,
    else 16-bit (weight-only quantization: bytes shrink, FLOPs at the bf16/fp16 rate)."""
    if weight_precision in gpu.dense_tflops:
        return weight_precision
    return "bf16" if "bf16" in gpu.dense_tflops else "fp16"


def _gemm_flops_per_s(gpu: Any, precision: str, constants: ProfileConstants) -> float:
    eff = constants.efficiency
    factor = eff.gemm_max if precision in _SIXTEEN_BIT else eff.gemm_max_low_precision
    return gpu.tflops(precision) * 1e12 * factor


def _attention_flops_per_s(gpu: Any, kv_cache_dtype: str | None, c: ProfileConstants) -> float:
    fp8_kv = kv_dtype_bytes(kv_cache_dtype) == 1.0 and "fp8" in gpu.dense_tflops
    precision = "fp8" if fp8_kv else compute_precision("bf16", gpu)
    return gpu.tflops(precision) * 1e12 * c.efficiency.attention


def build_coefficients(
    model: Any,
    gpu: Any,
    *,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    precision: str | None = None,
    kv_cache_dtype: str | None = "auto",
    engine: str = "vllm",
    profile: PerfProfile | ProfileConstants | None = None,
) -> np.ndarray:
    """The ``NUM_COEFFS`` float64 vector for :func:`step_time_s` (layout in step_time.py).

    ``precision`` None means the checkpoint's ``model.weight_dtype``; ``profile`` None the
    shipped default, resolved for ``gpu.family`` and ``engine``.

    Raises:
        ConfigError: invalid tp/pp/ep, unknown engine, precision or kv_cache_dtype.
    """
    check_parallelism(model, tp, pp, ep)
    c = resolve_constants(profile, gpu, engine)
    eff = c.efficiency
    weight_precision = normalize_precision(precision, model)
    bpp = WEIGHT_BYTES[weight_precision]
    gemm_rate = _gemm_flops_per_s(gpu, compute_precision(weight_precision, gpu), c)
    head_rate = _gemm_flops_per_s(gpu, compute_precision("bf16", gpu), c)
    hbm = gpu.hbm_bytes_per_s
    body, experts, emb, head = weight_param_split(model)
    layers, hidden = model.num_layers, model.hidden_size

    coeffs = np.zeros(st.NUM_COEFFS, dtype=np.float64)
    coeffs[st.C_FIXED_S] = c.overhead.step_fixed_s
    lm_head_flops = 2.0 * model.vocab_size * hidden / tp
    coeffs[st.C_PER_SEQ_S] = c.overhead.per_seq_s + lm_head_flops / head_rate
    coeffs[st.C_PER_PREFILL_SEQ_S] = c.overhead.per_prefill_seq_s

    streamed = body * bpp + (head or emb) * ACTIVATION_BYTES
    coeffs[st.C_WEIGHT_S] = streamed / tp / (hbm * eff.weight_bw)
    coeffs[st.C_GEMM_S_PER_TOKEN] = 2.0 * body / tp / gemm_rate
    coeffs[st.C_GEMM_HALF_TOKENS] = eff.gemm_half_tokens

    pair_flops = layers * model.attention_flops_per_pair_per_layer() / tp
    coeffs[st.C_ATTN_PREFILL_S_PER_PAIR] = pair_flops / _attention_flops_per_s(
        gpu, kv_cache_dtype, c
    )
    kv_token = kv_bytes_per_token_per_gpu(model, tp, kv_cache_dtype)
    coeffs[st.C_ATTN_DECODE_S_PER_TOKEN] = kv_token / (hbm * eff.kv_bw)

    link = gpu.interconnect_gb_s * 1e9 * eff.allreduce_bw
    latency = (
        eff.allreduce_latency_pcie_s if gpu.interconnect == "pcie" else eff.allreduce_latency_s
    )
    comm_fixed = comm_per_token = 0.0
    if tp > 1:
        ring = 2.0 * (tp - 1) / tp
        comm_fixed += 2 * layers * latency
        comm_per_token += 2 * layers * hidden * ACTIVATION_BYTES * ring / link
    if pp > 1:
        comm_fixed += (pp - 1) * latency
        comm_per_token += (pp - 1) * hidden * ACTIVATION_BYTES / link
    coeffs[st.C_COMM_FIXED_S] = comm_fixed
    coeffs[st.C_COMM_S_PER_TOKEN] = comm_per_token

    if model.is_moe:
        routed_per_token = model.active_param_count() - model.dense_param_count()
        coeffs[st.C_MOE_WEIGHT_S] = experts * bpp / tp / (hbm * eff.weight_bw)
        coeffs[st.C_MOE_TOPK_FRACTION] = model.num_experts_per_tok / model.num_experts
        coeffs[st.C_MOE_GEMM_S_PER_TOKEN] = 2.0 * routed_per_token / tp / gemm_rate
    return coeffs


def describe_coefficients(coeffs: np.ndarray) -> dict[str, float]:
    """``{name: value}`` of a coefficient vector, names from ``step_time.COEFF_NAMES``."""
    if len(coeffs) != st.NUM_COEFFS:
        raise ValueError(f"expected {st.NUM_COEFFS} coefficients, got {len(coeffs)}")
    return {name: float(value) for name, value in zip(st.COEFF_NAMES, coeffs, strict=True)}


__all__ = ["ACTIVATION_BYTES", "build_coefficients", "compute_precision", "describe_coefficients"]
