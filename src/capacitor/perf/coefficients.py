"""Coefficient vector of :func:`capacitor.perf.step_time.step_time_s` from physics x profile.

Every slot is bytes or FLOPs of the (model, GPU, parallelism, precision) divided by a peak
rate from the catalogue times an efficiency from the profile (:mod:`capacitor.perf.profile`):

======================== =================================================================
slot                     value (seconds, or seconds per unit)
======================== =================================================================
weight_s                 streamed dense bytes / tp / (HBM B/s x weight_bw): body weights at
                         the weight precision (attention projections a quantized checkpoint
                         ignores at 16 bit) + the 16-bit LM head (the input embedding is a
                         row lookup, not streamed)
gemm_s_per_token         2 x body params / tp / (peak FLOP/s at the compute precision x
                         gemm_max); the LM head runs once per sequence, not per token, and
                         is charged in per_seq_s
gemm_half_tokens         profile gemm_half_tokens
attn_prefill_s_per_pair  layers x attention_flops_per_pair_per_layer / tp / (16-bit peak, or
                         FP8 peak when the KV cache is FP8 and the GPU has FP8, x attention)
attn_decode_s_per_token  KV bytes per token per GPU (all layers) / (HBM B/s x kv_bw)
comm_fixed_s             tp > 1: 2 all-reduces per layer x latency; pp > 1: (pp-1) sends;
                         moe_all_to_all: + dispatch/combine latencies (below)
comm_s_per_token         tp > 1: 2 x layers x hidden x 2 bytes x 2(tp-1)/tp / (link B/s x
                         allreduce_bw) (ring); pp > 1: + (pp-1) x hidden x 2 bytes / link;
                         moe_all_to_all: MoE layers' all-reduce -> dispatch + combine (below)
moe_weight_s             routed-expert bytes / tp / (HBM B/s x weight_bw)
moe_topk_fraction        num_experts_per_tok / num_experts (0 for dense models); with ep > 1
                         the busiest GPU's effective fraction ep_touch_fraction(E, k, ep)
moe_gemm_s_per_token     2 x routed params one token uses / tp / peak x gemm_max
moe_half_tokens          gemm_half_tokens x E / k: uniform top-k routing gives each of the
                         E p_T touched experts T k / (E p_T) of a step's T tokens, so the
                         routed GEMMs run at the efficiency a dense GEMM has at that many
                         tokens, T_e / (T_e + gemm_half_tokens); summed over the touched
                         experts their time is moe_gemm_s_per_token x (T + moe_half_tokens
                         x p_T)
fixed_s, per_seq_s,      profile overheads; fixed_s adds per_layer_s x layers (every layer's
per_prefill_seq_s        kernels, on each stage in turn); per_seq_s adds the LM-head GEMM of
                         one sequence (2 x vocab x hidden / tp at the 16-bit rate), for an MLA
                         model mla_per_seq_s, and, for a
                         model whose requests sample with top-p / top-k (ModelSpec.
                         filters_vocab), the sampler's filtering of its logits,
                         sampler_bytes_per_seq_vocab x vocab / HBM B/s (every tensor-parallel
                         rank samples the whole vocabulary)
prefill_step_s           MLA models: overhead.eager_kernel_s x the step's kernels
                         (layer_kernel_counts), paid by a step with prefill chunks (run
                         eagerly, :class:`~capacitor.perf.profile.Overhead`); else 0
======================== =================================================================

Pipeline parallelism is modelled as sequential stages: a step's batch passes every stage in
turn, so the step time is the sum over stages of each stage's (weights/pp, layers/pp) terms,
which equals the whole model's terms divided by tp only (not by pp). This ignores the overlap
of micro-batches across stages (vLLM runs pp virtual engines concurrently), so it is a
latency model of one batch, pessimistic for throughput at pp > 1.

Weight-only quantization: FP8 weights on a GPU without FP8 tensor cores (Ampere) and FP4
weights without FP4 tensor cores (Hopper, Ada, CDNA3) shrink the bytes streamed but compute
at the 16-bit rate, as vLLM's Marlin W8A16 / W4A16 kernels do.

Expert parallelism (vLLM ``--enable-expert-parallel``; ``ep`` = tp, the EP group being
TP x DP with DP = 1 inside one replica, per pipeline stage). Each of the tp GPUs of a stage
holds ``n = E / ep`` whole experts instead of a 1/tp slice of all E. Per GPU the bytes and,
on average, the FLOPs are the same as TP slicing; what changes:

(a) Routing imbalance. A step waits for its busiest GPU. With TP slicing every GPU streams
    its slice of each expert the batch touches (``E p_T`` of them, ``p_T = 1 - (1 - k/E)^T``
    for T tokens choosing top-k of E uniformly), so all GPUs do the same work. With EP a GPU
    streams the whole experts it owns that were touched, ``U_g ~ Binomial(n, p_T)``
    (independence between experts assumed), and the step streams
    ``E[max_g U_g] = sum_{j=0}^{n-1} (1 - F_{n,p_T}(j)^ep)`` experts' worth of bytes
    (order statistics of ep i.i.d. counts; F the binomial CDF) against a mean of ``n p_T``.
    The ratio ``E[max_g U_g] / (n p_T)`` is the imbalance factor on the expert-weight term:
    10/7 = 1.43 for one Mixtral decode token at ep=2 (the two chosen experts land on one
    GPU with probability 3/7), falling to 1 once every expert is touched (T >~ 16 for
    Mixtral). To keep ``step_time_s``'s 13-slot layout and its T-dependence, ep > 1 stores an
    effective per-token touch fraction ``f_ep`` in ``moe_topk_fraction`` instead of k/E:
    the modelled busiest-GPU share ``1 - (1 - f_ep)^T`` is least-squares fitted (in log) to
    ``E[max_g U_g] / n`` at T = 1, 2, 4, ..., 64 (the decode batches of one replica),
    :func:`ep_touch_fraction`. It stays exact at T -> infinity (all experts), is within 2% of
    a Monte-Carlo of top-k routing for Mixtral (8 experts, top-2) and within ~25% of the
    factor for top-1 routing or 128-256 experts (one fraction cannot follow the decay of a
    binomial maximum at every T; :func:`ep_imbalance` is the exact-model factor). Routing is
    assumed uniform:
    real routers are skewed (DeepSeek-V3 tech report, arXiv 2412.19437, which adds redundant
    experts / EPLB for that), so this is a lower bound on the imbalance. The busiest GPU's
    token-expert GEMM work is also above the mean, by ``~1 + z_ep sqrt((ep-1)/(T k))``
    under uniform routing: under 3% where the GEMM term binds (T >~ 1000), so not modelled.
(b) Communication. vLLM runs all-to-all dispatch/combine kernels only when
    ``FusedMoEParallelConfig.use_all2all_kernels`` holds, i.e. EP with data parallel
    attention (dp > 1) or sequence-parallel MoE (which itself needs dp > 1); inside one
    replica (dp = 1) the tokens are already replicated on every TP rank after the attention
    all-reduce, each rank runs its own experts on them (``expert_map``) and the MoE output is
    all-reduced exactly as with TP-sliced experts. So the default keeps the all-reduce.
    ``moe_all_to_all=True`` models the dispatch/combine layout instead (tokens sharded T/tp
    per rank): per MoE layer the MoE all-reduce becomes a dispatch and a combine, each
    ``k x hidden x 2 bytes x (ep-1)/ep`` per token a rank owns, i.e.
    ``k x hidden x 2 x (ep-1) / (ep x tp)`` per batch token per GPU, over the link at
    ``all_to_all_bw`` with ``all_to_all_latency_s`` each; the attention all-reduce becomes a
    reduce-scatter + all-gather (same bytes, two latencies).

MLA and DP attention. An MLA model's (DeepSeek-V2/V3/R1) decode attention reads the
compressed latent, ``kv_lora_rank + qk_rope_head_dim`` values per token and layer,
replicated on every tp rank, and with absorbed weights does ``2 (H/tp) (2 r_kv + rope)``
FLOPs per context token and layer: :func:`decode_attention_s_per_token` charges the larger
of the two. Its layer kernels are counted (:func:`layer_kernel_counts`, priced by the
profile's per-kernel costs): a 61-layer MLA + MoE step at small batch is mostly these fixed
costs. With ``dp_attention`` the tp GPUs run attention data-parallel: each holds all the
attention weights (streamed whole every step: ``weight_s`` grows by ``(tp-1)/tp`` of them)
and its own 1/tp of the sequences (KV bytes read per replica token / tp, FLOPs unchanged),
and each layer's all-reduces become an all-gather before the FFN and a reduce-scatter after
it (half the bytes, the same number of latencies).

Direction: for one replica at small batches ep > 1 is slower per token than TP-sliced
experts (the busiest GPU streams more expert bytes than the mean), by up to the factor above
on the expert-weight term; at large batches (every expert touched) the two are equal.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from capacitor.perf import step_time as st
from capacitor.perf.memory import (
    WEIGHT_BYTES,
    attention_bytes,
    check_parallelism,
    kv_bytes_per_token_per_gpu,
    kv_dtype_bytes,
    normalize_precision,
    resolve_constants,
    sixteen_bit_body_params,
    weight_param_split,
)
from capacitor.perf.profile import PerfProfile, ProfileConstants

#: Bytes per activation value crossing the interconnect (bf16/fp16 hidden states).
ACTIVATION_BYTES = 2.0
_SIXTEEN_BIT = ("bf16", "fp16")
#: Batch sizes (tokens per step) at which :func:`ep_touch_fraction` matches the busiest GPU's
#: expected expert count: the decode batches of one replica.
EP_FIT_TOKENS = (1, 2, 4, 8, 16, 32, 64)
_EP_FIT_GRID = 2001


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


def expected_max_binomial(n: int, p: float, num_groups: int) -> float:
    """Expected maximum of ``num_groups`` independent Binomial(n, p) counts:
    ``sum_{j=0}^{n-1} (1 - F(j)^num_groups)`` with F the Binomial(n, p) CDF.

    >>> round(expected_max_binomial(4, 0.25, 2), 4)
    1.4616
    """
    if p <= 0.0 or n <= 0:
        return 0.0
    if p >= 1.0:
        return float(n)
    cdf, total = 0.0, 0.0
    for j in range(n):
        cdf = min(1.0, cdf + math.comb(n, j) * p**j * (1.0 - p) ** (n - j))
        total += 1.0 - cdf**num_groups
    return total


def ep_imbalance(num_experts: int, top_k: int, ep: int, num_tokens: float) -> float:
    """Expert-weight bytes the busiest of ``ep`` GPUs streams over the mean, for a step of
    ``num_tokens`` tokens routed uniformly top-``top_k`` of ``num_experts`` (>= 1; 1 at ep=1):
    ``E[max_g U_g] / (n p_T)``, ``U_g ~ Binomial(n = E/ep, p_T = 1 - (1 - k/E)^T)``."""
    if ep <= 1:
        return 1.0
    n = num_experts // ep
    p = 1.0 - (1.0 - top_k / num_experts) ** num_tokens
    return expected_max_binomial(n, p, ep) / (n * p)


@functools.cache
def ep_touch_fraction(num_experts: int, top_k: int, ep: int) -> float:
    """The ``moe_topk_fraction`` slot for experts spread over ``ep`` GPUs (module docstring).

    ``k/E`` at ep = 1. Otherwise the f in [k/E, 1] whose ``1 - (1 - f)^T`` best matches (least
    squares in log) the busiest GPU's expected share of its experts touched,
    ``E[max_g U_g] / n``, at T in :data:`EP_FIT_TOKENS`; ``step_time_s`` then charges
    ``moe_weight_s x (1 - (1 - f)^T)``, which tends to all the GPU's experts as T grows.

    Raises:
        ValueError: ``ep`` does not divide ``num_experts`` or ``top_k`` not in 1..E.
    """
    if num_experts < 1 or not 1 <= top_k <= num_experts:
        raise ValueError(f"top_k={top_k} must be in 1..num_experts={num_experts}")
    base = top_k / num_experts
    if ep <= 1:
        return base
    if num_experts % ep:
        raise ValueError(f"ep={ep} must divide num_experts={num_experts}")
    n = num_experts // ep
    tokens = np.asarray(EP_FIT_TOKENS, dtype=np.float64)
    target = np.array(
        [expected_max_binomial(n, 1.0 - (1.0 - base) ** t, ep) / n for t in EP_FIT_TOKENS]
    )
    grid = np.linspace(base, 1.0, _EP_FIT_GRID)
    modeled = 1.0 - (1.0 - grid[:, None]) ** tokens[None, :]  # > 0: grid starts at k/E > 0
    error = ((np.log(modeled) - np.log(target)[None, :]) ** 2).sum(axis=1)
    return float(grid[int(np.argmin(error))])


#: Kernels of one block of an MLA decoder layer, as (GEMMs, attention kernels, small
#: kernels), in the order a CUDA-graphed decode step runs them (SGLang / TensorRT-LLM
#: DeepSeek-V3 forward): MLA = q_a (fused with kv_a), q_b, the absorbed W_UK and W_UV
#: batched GEMMs, o_proj; the MLA decode kernel; the q_a / kv_a RMSNorms, rotary and the
#: input RMSNorm. Routed MoE = router GEMM and the two grouped expert GEMMs; top-k,
#: permute (dispatch + activation quantization), SiLU-and-mul and the weighted combine.
#: Shared expert = gate_up and down GEMMs (activation fused). Dense FFN = gate_up, down
#: and the activation. Counts read from sglang python/sglang/srt/models/deepseek_v2.py
#: (DeepseekV2AttentionMLA.forward_absorb, DeepseekV2MoE.forward); ASSUMPTION that fused
#: variants balance out across engine versions.
MLA_ATTENTION_KERNELS = (5, 1, 4)
ROUTED_MOE_KERNELS = (3, 0, 4)
SHARED_EXPERT_KERNELS = (2, 0, 0)
DENSE_FFN_KERNELS = (2, 0, 1)


def layer_kernel_counts(model: Any) -> tuple[int, int, int]:
    """(GEMMs, attention kernels, small kernels) of one step over all of ``model``'s layers,
    for an MLA model (:data:`MLA_ATTENTION_KERNELS` ...): its dense layers run the MLA block
    and a dense FFN, its MoE layers the MLA block, the routed experts and, when it has
    them, the shared experts. DeepSeek-R1 (3 dense + 58 MoE layers): 3 x (7, 1, 5) +
    58 x (10, 1, 8) = (601, 61, 479)."""
    dense_layer = [a + f for a, f in zip(MLA_ATTENTION_KERNELS, DENSE_FFN_KERNELS, strict=True)]
    moe_layer = [a + r for a, r in zip(MLA_ATTENTION_KERNELS, ROUTED_MOE_KERNELS, strict=True)]
    if model.num_shared_experts > 0:
        moe_layer = [m + s for m, s in zip(moe_layer, SHARED_EXPERT_KERNELS, strict=True)]
    n_moe = model.num_moe_layers if model.is_moe else 0
    n_dense = model.num_layers - n_moe
    if not model.is_moe:
        moe_layer = [0, 0, 0]
    return tuple(n_dense * d + n_moe * m for d, m in zip(dense_layer, moe_layer, strict=True))


def layers_fixed_s(model: Any, c: ProfileConstants) -> float:
    """The fixed (bytes- and FLOP-independent) kernel time of all layers in one step.

    An MLA model with ``overhead.gemm_kernel_s`` > 0 pays its kernel counts
    (:func:`layer_kernel_counts`) times the per-kernel costs; every other model
    ``per_layer_s`` per layer."""
    o = c.overhead
    if model.is_mla and o.gemm_kernel_s > 0.0:
        gemms, attns, smalls = layer_kernel_counts(model)
        return gemms * o.gemm_kernel_s + attns * o.attention_kernel_s + smalls * o.small_kernel_s
    return o.per_layer_s * model.num_layers


def mla_decode_flops_per_token(model: Any, tp: int) -> float:
    """FLOPs one GPU spends per context token of one decoding query in absorbed MLA, over
    all layers: each of its ``H / tp`` heads scores the latent and the rope key
    (``2 (r_kv + rope)``) and sums the latents (``2 r_kv``). With DP attention a GPU runs
    all H heads for 1/tp of the sequences: the same FLOPs per replica context token."""
    heads = model.num_attention_heads / tp
    return model.num_layers * 2.0 * heads * (2 * model.kv_lora_rank + model.qk_rope_head_dim)


def decode_attention_s_per_token(
    model: Any,
    gpu: Any,
    c: ProfileConstants,
    *,
    tp: int,
    kv_cache_dtype: str | None,
    dp_attention: bool = False,
) -> float:
    """Decode attention time per context token of the replica's batch (the
    ``attn_decode_s_per_token`` slot).

    KV bytes per GPU at ``kv_bw``; for an MLA model with ``efficiency.mla_decode_attention``
    > 0 the larger of that and its FLOPs (:func:`mla_decode_flops_per_token`) at that
    fraction of the tensor peak (FP8 when the KV cache is FP8 and the GPU has FP8, else
    16-bit), since absorbed MLA does ~2 H FLOPs per KV byte and binds on compute once a GPU
    runs many heads (FlashMLA deep dive). With DP attention a GPU holds and reads only its
    own 1/tp of the sequences' latents."""
    kv_token = kv_bytes_per_token_per_gpu(model, tp, kv_cache_dtype)
    if dp_attention and tp > 1:
        kv_token /= tp
    seconds = kv_token / (gpu.hbm_bytes_per_s * c.efficiency.kv_bw)
    frac = c.efficiency.mla_decode_attention
    if model.is_mla and frac > 0.0:
        fp8_kv = kv_dtype_bytes(kv_cache_dtype) == 1.0 and "fp8" in gpu.dense_tflops
        precision = "fp8" if fp8_kv else compute_precision("bf16", gpu)
        flops_s = mla_decode_flops_per_token(model, tp) / (gpu.tflops(precision) * 1e12 * frac)
        seconds = max(seconds, flops_s)
    return seconds


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
    moe_all_to_all: bool = False,
    dp_attention: bool = False,
    ep_num_redundant_experts: int = 0,
) -> np.ndarray:
    """The ``NUM_COEFFS`` float64 vector for :func:`step_time_s` (layout in step_time.py).

    ``precision`` None means the checkpoint's ``model.weight_dtype``; ``profile`` None the
    shipped default, resolved for ``gpu.family`` and ``engine``. ``ep`` > 1 (whole experts on
    each of the tp GPUs) raises the busiest GPU's expert-weight share (module docstring, (a));
    ``moe_all_to_all`` with ep > 1 replaces the MoE layers' all-reduce by all-to-all dispatch
    and combine ((b); not what vLLM runs inside one dp = 1 replica, hence off by default).
    ``dp_attention`` runs attention data-parallel over the tp GPUs (SGLang
    ``--enable-dp-attention``, TensorRT-LLM ``enable_attention_dp``; "MLA and DP attention"
    in the module docstring). ``ep_num_redundant_experts`` r places ``(E + r) / ep``
    physical experts on each GPU: the routed-expert bytes grow by ``(E + r) / E`` and the
    busiest GPU's touch fraction is that of ``E + r`` experts chosen top-k uniformly (an
    approximation: a replicated expert's tokens split between its copies).

    Raises:
        ConfigError: invalid tp/pp/ep, unknown engine, precision or kv_cache_dtype.
    """
    check_parallelism(model, tp, pp, ep, dp_attention=dp_attention,
                      ep_num_redundant_experts=ep_num_redundant_experts)
    # The GPUs one MoE layer's experts spread over: the tp GPUs of its pipeline stage (ep is
    # tp, or tp*pp counting every stage's GPUs; check_parallelism allows nothing else).
    ep_group = tp if ep > 1 else 1
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
    coeffs[st.C_FIXED_S] = c.overhead.step_fixed_s + layers_fixed_s(model, c)
    lm_head_flops = 2.0 * model.vocab_size * hidden / tp
    sampler = c.overhead.sampler_bytes_per_seq_vocab * model.vocab_size / gpu.hbm_bytes_per_s
    coeffs[st.C_PER_SEQ_S] = (
        c.overhead.per_seq_s + lm_head_flops / head_rate + (sampler if model.filters_vocab else 0.0)
    )
    if model.is_mla:
        coeffs[st.C_PER_SEQ_S] += c.overhead.mla_per_seq_s
    if dp_attention and tp > 1:
        # each attention-DP rank schedules, attends to and samples its own 1/tp of the
        # sequences, in parallel with the others: those per-sequence costs divide by tp; its
        # LM head is whole, for its own tokens (per GPU the FLOPs of the tp-sliced head)
        lm_head_s = lm_head_flops / head_rate
        coeffs[st.C_PER_SEQ_S] = lm_head_s + (coeffs[st.C_PER_SEQ_S] - lm_head_s) / tp
    coeffs[st.C_PER_PREFILL_SEQ_S] = c.overhead.per_prefill_seq_s
    if model.is_mla:
        coeffs[st.C_PREFILL_STEP_S] = c.overhead.eager_kernel_s * sum(layer_kernel_counts(model))

    # Body params a quantized checkpoint keeps at 16 bit (its ignore list): streamed at 2
    # bytes and multiplied at the 16-bit rate.
    body16 = sixteen_bit_body_params(model, weight_precision)
    streamed = (body - body16) * bpp + (body16 + (head or emb)) * ACTIVATION_BYTES
    if dp_attention and tp > 1:
        # every GPU holds (and streams) the whole attention block; its FLOPs per GPU stay
        # the same (all heads for 1/tp of the tokens)
        streamed += (tp - 1) * attention_bytes(model, weight_precision)
    coeffs[st.C_WEIGHT_S] = streamed / tp / (hbm * eff.weight_bw)
    coeffs[st.C_GEMM_S_PER_TOKEN] = (
        2.0 * (body - body16) / tp / gemm_rate + 2.0 * body16 / tp / head_rate
    )
    coeffs[st.C_GEMM_HALF_TOKENS] = eff.gemm_half_tokens

    pair_flops = layers * model.attention_flops_per_pair_per_layer() / tp
    coeffs[st.C_ATTN_PREFILL_S_PER_PAIR] = pair_flops / _attention_flops_per_s(
        gpu, kv_cache_dtype, c
    )
    coeffs[st.C_ATTN_DECODE_S_PER_TOKEN] = decode_attention_s_per_token(
        model, gpu, c, tp=tp, kv_cache_dtype=kv_cache_dtype, dp_attention=dp_attention
    )

    link = gpu.interconnect_gb_s * 1e9 * eff.allreduce_bw
    latency = (
        eff.allreduce_latency_pcie_s if gpu.interconnect == "pcie" else eff.allreduce_latency_s
    )
    comm_fixed = comm_per_token = 0.0
    if tp > 1:
        ring = 2.0 * (tp - 1) / tp
        if dp_attention:
            # per layer an all-gather of the tokens before the FFN and a reduce-scatter
            # after it (two collectives, each half an all-reduce's bytes)
            ring = (tp - 1) / tp
        all_reduces = 2 * layers
        if moe_all_to_all and ep_group > 1:
            # Per MoE layer: attention all-reduce -> reduce-scatter + all-gather (same bytes,
            # two latencies); MoE all-reduce -> dispatch + combine of each rank's T/tp tokens.
            moe_layers = model.num_moe_layers
            all_reduces -= moe_layers
            a2a_link = gpu.interconnect_gb_s * 1e9 * eff.all_to_all_bw
            a2a_latency = eff.all_to_all_latency_s
            if gpu.interconnect == "pcie":
                a2a_latency = max(a2a_latency, eff.allreduce_latency_pcie_s)
            comm_fixed += moe_layers * (latency + 2 * a2a_latency)
            k_remote = model.num_experts_per_tok * (ep_group - 1) / (ep_group * tp)
            comm_per_token += moe_layers * 2 * k_remote * hidden * ACTIVATION_BYTES / a2a_link
        comm_fixed += all_reduces * latency
        comm_per_token += all_reduces * hidden * ACTIVATION_BYTES * ring / link
    if pp > 1:
        comm_fixed += (pp - 1) * latency
        comm_per_token += (pp - 1) * hidden * ACTIVATION_BYTES / link
    coeffs[st.C_COMM_FIXED_S] = comm_fixed
    coeffs[st.C_COMM_S_PER_TOKEN] = comm_per_token

    if model.is_moe:
        routed_per_token = model.active_param_count() - model.dense_param_count()
        physical = model.num_experts + ep_num_redundant_experts
        if ep_num_redundant_experts:
            experts = experts * physical / model.num_experts
        coeffs[st.C_MOE_WEIGHT_S] = experts * bpp / tp / (hbm * eff.weight_bw)
        coeffs[st.C_MOE_TOPK_FRACTION] = ep_touch_fraction(
            physical, model.num_experts_per_tok, ep_group
        )
        coeffs[st.C_MOE_GEMM_S_PER_TOKEN] = 2.0 * routed_per_token / tp / gemm_rate
        coeffs[st.C_MOE_HALF_TOKENS] = (
            eff.gemm_half_tokens * model.num_experts / model.num_experts_per_tok
        )
    return coeffs


def describe_coefficients(coeffs: np.ndarray) -> dict[str, float]:
    """``{name: value}`` of a coefficient vector, names from ``step_time.COEFF_NAMES``."""
    if len(coeffs) != st.NUM_COEFFS:
        raise ValueError(f"expected {st.NUM_COEFFS} coefficients, got {len(coeffs)}")
    return {name: float(value) for name, value in zip(st.COEFF_NAMES, coeffs, strict=True)}


__all__ = [
    "ACTIVATION_BYTES",
    "EP_FIT_TOKENS",
    "build_coefficients",
    "compute_precision",
    "decode_attention_s_per_token",
    "layer_kernel_counts",
    "layers_fixed_s",
    "mla_decode_flops_per_token",
    "describe_coefficients",
    "ep_imbalance",
    "ep_touch_fraction",
    "expected_max_binomial",
]
