"""Memory model of one replica: weight bytes, KV bytes per block, and the KV block count.

All sizes are bytes per GPU unless a name says GiB (2**30 bytes).

Weights (:func:`weight_bytes_per_gpu`): transformer body (attention, norms, dense FFNs, shared
experts, routers) and routed experts at the weight precision (FP16/BF16 2 bytes, FP8 1 byte,
its per-channel / 128x128 block scales being negligible, FP4 0.5 byte plus one FP8 scale per
16 values = 0.5625 byte); input embedding and LM head stay 16-bit, as quantized checkpoints
keep them. Tensor parallelism splits everything tp ways (vocab-parallel embeddings, column/
row-parallel projections, experts sliced per rank). Expert parallelism (vLLM
``--enable-expert-parallel``) places E/tp whole experts on each GPU of a stage instead of a
1/tp slice of all E: the bytes per GPU are the same (E divisible by ep), and with dp = 1 no
all-to-all buffers are allocated, so ``ep`` only has to be valid (:func:`check_parallelism`);
its step-time effects are in :mod:`capacitor.perf.coefficients`. Redundant experts (SGLang
``--ep-num-redundant-experts r``, used by wide-EP deployments for load balancing, and needed
when ep does not divide E) place ``(E + r) / ep`` physical experts on each GPU: the routed
expert bytes grow by ``(E + r) / E`` (:func:`redundant_experts`). Pipeline parallelism
puts ceil(layers/pp) layers on the fullest stage, plus the embedding (first stage) or the LM
head (last stage); we size every GPU like that fullest stage (conservative by < 1 layer).

KV (:func:`kv_bytes_per_block_per_gpu`): vLLM splits KV heads across TP ranks (a rank holds
max(1, num_kv_heads // tp) heads: with fewer KV heads than ranks they are replicated); an MLA
latent is replicated on every rank; PP splits layers.

Block count (:func:`num_gpu_blocks`), per engine:

- vllm: ``floor((gpu_memory_utilization * M - weights - reserve) / block_bytes)`` where M is
  the device memory the framework reports (``GPUSpec.memory_bytes``; 79.11 GiB on an H100,
  not 80 GB) and the reserve is the profile run's non-KV peak (:func:`non_kv_reserve_bytes`).
- sglang: ``mem_fraction_static`` covers weights + KV only: ``floor((f * M - weights) /
  block_bytes)``.
- trtllm: ``free_gpu_memory_fraction`` of the memory left after weights and activations:
  ``floor(f * (M - weights - reserve) / block_bytes)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from capacitor.errors import ConfigError, MemoryFitError
from capacitor.perf.profile import PerfProfile, ProfileConstants, check_engine, load_profile

GiB = 1 << 30

#: Bytes per weight at each precision (FP4: 0.5 byte + an FP8 scale per 16 values).
WEIGHT_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1.0 / 16.0}
_PRECISION_ALIASES = {
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
}
#: KV-cache element size per ``kv_cache_dtype`` (vLLM names); ``auto`` = the model's 16-bit
#: activation dtype (FP8 and FP4 checkpoints still run bf16 activations).
KV_DTYPE_BYTES = {
    "auto": 2.0,
    "fp16": 2.0,
    "float16": 2.0,
    "half": 2.0,
    "bf16": 2.0,
    "bfloat16": 2.0,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
}


def normalize_precision(precision: str | None, model: Any) -> str:
    """``fp16``/``bf16``/``fp8``/``fp4`` from a user string (any case); None -> the
    checkpoint's ``model.weight_dtype``. ConfigError naming the value when unknown."""
    if precision is None or str(precision).strip() == "":
        return str(model.weight_dtype).lower()
    key = str(precision).strip().lower()
    key = _PRECISION_ALIASES.get(key, key)
    if key not in WEIGHT_BYTES:
        raise ConfigError(f"precision={precision!r} unknown; valid: FP16, BF16, FP8, FP4")
    return key


def kv_dtype_bytes(kv_cache_dtype: str | None) -> float:
    """Bytes per cached value for a vLLM ``kv_cache_dtype`` (None/'' = auto = 2)."""
    key = "auto" if kv_cache_dtype is None else str(kv_cache_dtype).strip().lower() or "auto"
    if key not in KV_DTYPE_BYTES:
        raise ConfigError(
            f"kv_cache_dtype={kv_cache_dtype!r} unknown; valid: auto, bf16, fp16, fp8, "
            "fp8_e4m3, fp8_e5m2"
        )
    return KV_DTYPE_BYTES[key]


def resolve_constants(profile: PerfProfile | ProfileConstants | None, gpu: Any, engine: str):
    """The :class:`ProfileConstants` for ``gpu.family`` and ``engine`` (None = shipped)."""
    if isinstance(profile, ProfileConstants):
        return profile
    return (profile or load_profile(None)).constants(gpu.family, check_engine(engine))


def redundant_experts(model: Any, ep: int, ep_num_redundant_experts: int | None = None) -> int:
    """Redundant (extra physical) experts per MoE layer: ``ep_num_redundant_experts`` when
    given, else the fewest that make ``num_experts + r`` divisible by ``ep`` (0 when ep
    divides the experts). SGLang refuses a layout whose physical experts do not divide
    evenly over the EP ranks (``--ep-num-redundant-experts``, default 0); the fewest is an
    ASSUMPTION for rows that do not say (the GB200 wide-EP recipes of SGLang and Dynamo set
    32, which gives the same 288 experts at ep = 48)."""
    if ep_num_redundant_experts is not None:
        r = ep_num_redundant_experts
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            raise ConfigError(f"ep_num_redundant_experts={r!r}: must be an integer >= 0")
        return r
    if ep <= 1 or not model.is_moe:
        return 0
    return -model.num_experts % ep


def check_parallelism(
    model: Any, tp: int, pp: int, ep: int, *, dp_attention: bool = False,
    ep_num_redundant_experts: int = 0,
) -> None:
    """ConfigError naming the field when tp, pp or ep cannot work for ``model``.

    tp must divide the attention heads (and, like vLLM, divide or be a multiple of the KV
    heads) unless ``dp_attention`` (then every GPU holds all the heads); pp must be
    1..num_layers; ep > 1 needs an MoE model, must divide the number of physical experts
    (``num_experts + ep_num_redundant_experts``), and must equal tp: vLLM's
    ``--enable-expert-parallel`` sets the expert-parallel group to TP x DP with DP = 1
    inside one replica (pipeline stages hold different layers, so a layer's experts spread
    over its stage's tp GPUs). ``ep = tp*pp`` (every GPU of the replica counted) is accepted
    as the same layout."""
    for field, value in (("tp", tp), ("pp", pp), ("ep", ep)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{field}={value!r}: must be an integer >= 1")
    redundant = redundant_experts(model, ep, ep_num_redundant_experts)
    heads, kv = model.num_attention_heads, model.num_kv_heads
    if heads % tp and not dp_attention:
        raise ConfigError(f"tp={tp}: must divide num_attention_heads={heads} of {model.name}")
    if not model.is_mla and not dp_attention and kv % tp and tp % kv:
        raise ConfigError(
            f"tp={tp}: must divide num_kv_heads={kv} of {model.name}, or be a multiple of it"
        )
    if pp > model.num_layers:
        raise ConfigError(f"pp={pp}: exceeds num_layers={model.num_layers} of {model.name}")
    if ep > 1:
        if not model.is_moe:
            raise ConfigError(
                f"ep={ep}: {model.name} is a dense model, it has no experts to spread; use ep=1"
            )
        if ep not in (tp, tp * pp):
            both = f"tp={tp}" if pp == 1 else f"tp={tp} (or tp*pp={tp * pp})"
            raise ConfigError(
                f"ep={ep}: must equal {both}: vLLM's expert-parallel group is TP x DP, "
                "DP = 1 in one replica"
            )
        if (model.num_experts + redundant) % ep:
            extra = f" + ep_num_redundant_experts={redundant}" if redundant else ""
            raise ConfigError(
                f"ep={ep}: must divide num_experts={model.num_experts}{extra} of {model.name}"
            )
    elif redundant and not model.is_moe:
        raise ConfigError(
            f"ep_num_redundant_experts={redundant}: {model.name} is a dense model; use 0"
        )


def weight_param_split(model: Any) -> tuple[int, int, int, int]:
    """(body dense params, routed-expert params, input-embedding params, LM-head params).

    body = ``dense_param_count() - embedding_param_count()``; a tied LM head reads the
    embedding matrix, so its params count once, as embedding, but it is still streamed."""
    emb = model.vocab_size * model.hidden_size
    head = 0 if model.tie_word_embeddings else emb
    body = model.dense_param_count() - model.embedding_param_count()
    return body, model.expert_param_count(), emb, head


def sixteen_bit_body_params(model: Any, precision: str | None = None) -> int:
    """Body params a quantized checkpoint keeps at 16 bit: the attention projections of
    every layer when ``model.attention_16bit`` (its quantization ``ignore`` list); for an MLA
    model at FP4 the MLA projections other than ``o_proj`` (NVIDIA's NVFP4 DeepSeek-R1
    checkpoints exclude the attention from FP4, and nvidia/DeepSeek-R1-0528-FP4-v2 -- the one
    the InferenceMAX FP4 runs name -- "additionally quantizes the wo module in attention
    layers", its model card); else 0. Zero when the weights run at 16 bit anyway."""
    weight_precision = normalize_precision(precision, model)
    if WEIGHT_BYTES[weight_precision] >= 2.0:
        return 0
    if getattr(model, "attention_16bit", False):
        return model.num_layers * model.attention_param_count_per_layer()
    if getattr(model, "is_mla", False) and weight_precision == "fp4":
        o_proj = model.num_attention_heads * model.v_head_dim * model.hidden_size
        return model.num_layers * (model.attention_param_count_per_layer() - o_proj)
    return 0


def attention_bytes(model: Any, precision: str | None = None) -> float:
    """Bytes of every layer's attention projections at the checkpoint's precisions (the
    16-bit part of :func:`sixteen_bit_body_params` at 2 bytes, the rest at the weight
    precision)."""
    bpp = WEIGHT_BYTES[normalize_precision(precision, model)]
    total = model.num_layers * model.attention_param_count_per_layer()
    body16 = sixteen_bit_body_params(model, precision)
    return body16 * 2.0 + (total - body16) * bpp


def weight_bytes_per_gpu(
    model: Any,
    precision: str | None = None,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dp_attention: bool = False,
    ep_num_redundant_experts: int = 0,
) -> float:
    """Weight bytes on the fullest GPU of a tp x pp replica (see the module docstring).

    ``ep`` does not change the bytes (experts are placed on the same tp*pp GPUs), redundant
    experts add ``r / E`` of the routed experts' bytes. With ``dp_attention`` every GPU
    holds the whole attention block of its layers (attention data-parallel): ``(tp - 1) /
    tp`` of those bytes more per GPU."""
    bpp = WEIGHT_BYTES[normalize_precision(precision, model)]
    body, experts, emb, head = weight_param_split(model)
    if ep_num_redundant_experts:
        experts = experts * (model.num_experts + ep_num_redundant_experts) / model.num_experts
    layer_share = math.ceil(model.num_layers / pp) / model.num_layers
    layers_bytes = (body + experts) * bpp * layer_share
    body16 = sixteen_bit_body_params(model, precision)
    layers_bytes += body16 * (2.0 - bpp) * layer_share
    ends = (emb + head) if pp == 1 else max(emb, head)
    per_gpu = (layers_bytes + 2.0 * ends) / tp
    if dp_attention and tp > 1:
        per_gpu += attention_bytes(model, precision) * layer_share * (tp - 1) / tp
    return per_gpu


def kv_bytes_per_token_per_gpu(model: Any, tp: int, kv_cache_dtype: str | None = "auto") -> float:
    """KV bytes one token adds on one GPU over all its layers (all pipeline stages summed):
    ``num_layers * values_per_gpu * dtype_bytes``, values_per_gpu = ``2*max(1, K // tp)*d``
    (GQA/MHA) or the replicated MLA latent ``kv_lora_rank + qk_rope_head_dim``."""
    if model.is_mla:
        values = model.kv_values_per_token_per_layer()
    else:
        values = 2 * max(1, model.num_kv_heads // tp) * model.head_dim
    return model.num_layers * values * kv_dtype_bytes(kv_cache_dtype)


def kv_bytes_per_block_per_gpu(
    model: Any, tp: int = 1, pp: int = 1, block_size: int = 16, kv_cache_dtype: str | None = "auto"
) -> int:
    """Bytes of one KV block on the fullest GPU (ceil(layers/pp) layers of its stage)."""
    per_layer = kv_bytes_per_token_per_gpu(model, tp, kv_cache_dtype) / model.num_layers
    return int(math.ceil(model.num_layers / pp) * per_layer * block_size)


def non_kv_reserve_bytes(
    model: Any,
    constants: ProfileConstants,
    *,
    tp: int,
    pp: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
) -> float:
    """Non-KV, non-weight memory per GPU the engine keeps (bytes); formula in
    :class:`capacitor.perf.profile.Memory`."""
    m = constants.memory
    gib = m.reserve_fixed_gib + (m.reserve_multi_gpu_gib if tp * pp > 1 else 0.0)
    gib += m.reserve_extra_gib_by_model_type.get(model.model_type, 0.0)
    per_token = m.reserve_bytes_per_token_hidden * max_num_batched_tokens * model.hidden_size
    sampler = m.reserve_bytes_per_seq_vocab * max_num_seqs * model.vocab_size
    return gib * GiB + per_token + sampler


def kv_memory_bytes(
    model: Any,
    gpu: Any,
    *,
    tp: int,
    pp: int,
    ep: int = 1,
    precision: str | None,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    engine: str,
    profile: PerfProfile | ProfileConstants | None,
    dp_attention: bool = False,
    ep_num_redundant_experts: int = 0,
) -> tuple[float, float, float]:
    """(bytes left for KV per GPU, weight bytes, reserve bytes) under the engine's rule."""
    engine = check_engine(engine)
    check_parallelism(model, tp, pp, ep, dp_attention=dp_attention,
                      ep_num_redundant_experts=ep_num_redundant_experts)
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ConfigError(f"gpu_memory_utilization={gpu_memory_utilization}: must be in (0, 1]")
    constants = resolve_constants(profile, gpu, engine)
    total = float(gpu.memory_bytes)
    weights = weight_bytes_per_gpu(model, precision, tp, pp, ep, dp_attention,
                                   ep_num_redundant_experts)
    reserve = non_kv_reserve_bytes(
        model,
        constants,
        tp=tp,
        pp=pp,
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs,
    )
    if engine == "sglang":
        return gpu_memory_utilization * total - weights, weights, reserve
    if engine == "trtllm":
        return gpu_memory_utilization * (total - weights - reserve), weights, reserve
    return gpu_memory_utilization * total - weights - reserve, weights, reserve


def num_gpu_blocks(
    model: Any,
    gpu: Any,
    *,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    precision: str | None = None,
    kv_cache_dtype: str | None = "auto",
    gpu_memory_utilization: float = 0.9,
    block_size: int = 16,
    max_num_batched_tokens: int = 2048,
    max_num_seqs: int = 256,
    engine: str = "vllm",
    profile: PerfProfile | ProfileConstants | None = None,
    dp_attention: bool = False,
    ep_num_redundant_experts: int = 0,
) -> int:
    """KV blocks of the replica (vLLM's "GPU KV cache blocks"): the per-GPU KV memory under
    the engine's rule (module docstring) divided by the per-GPU block bytes, floored.

    With ``dp_attention`` each of the tp GPUs holds the whole attention weights and the KV
    of its own sequences only, so the replica has tp times one GPU's blocks.

    Raises:
        MemoryFitError: the weights and reserve leave no room for a single block; the
            one-line message names model, GPU, tp/pp and needed vs available GiB.
        ConfigError: an unknown engine, precision or kv_cache_dtype.
    """
    kv_bytes, weights, reserve = kv_memory_bytes(
        model,
        gpu,
        tp=tp,
        pp=pp,
        ep=ep,
        precision=precision,
        gpu_memory_utilization=gpu_memory_utilization,
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs,
        engine=engine,
        profile=profile,
        dp_attention=dp_attention,
        ep_num_redundant_experts=ep_num_redundant_experts,
    )
    block = kv_bytes_per_block_per_gpu(model, tp, pp, block_size, kv_cache_dtype)
    blocks = math.floor(kv_bytes / block) if kv_bytes > 0 else 0
    if blocks < 1:
        usable = gpu_memory_utilization * gpu.memory_bytes / GiB
        if check_engine(engine) == "sglang":
            # mem_fraction_static covers weights + KV only (module docstring)
            needed = (weights + block) / GiB
            parts = f"weights {weights / GiB:.1f} + one KV block"
            hint = "raise tp or pp, or gpu_memory_utilization (SGLang's --mem-fraction-static)"
        else:
            needed = (weights + reserve + block) / GiB
            parts = f"weights {weights / GiB:.1f} + reserve {reserve / GiB:.1f} + one KV block"
            hint = "raise tp or pp"
        raise MemoryFitError(
            f"{model.name} does not fit on {gpu.name} with tp={tp}, pp={pp} "
            f"({normalize_precision(precision, model).upper()} weights, {engine}): needs "
            f"{needed:.1f} GiB per GPU ({parts}) but {usable:.1f} GiB is available "
            f"({gpu_memory_utilization} x {gpu.memory_bytes / GiB:.2f} GiB); {hint}"
        )
    return blocks * tp if dp_attention and tp > 1 else blocks


def check_reported_blocks(
    model: Any,
    gpu: Any,
    blocks: int,
    *,
    tp: int = 1,
    pp: int = 1,
    precision: str | None = None,
    kv_cache_dtype: str | None = "auto",
    block_size: int = 16,
    dp_attention: bool = False,
    ep_num_redundant_experts: int = 0,
) -> None:
    """Check that an engine-reported KV block count (``total_kv_blocks``) and the weights fit
    the GPU: weights + the blocks' bytes per GPU <= the GPU's whole memory. The engine's own
    reserve is not charged (its ``gpu_memory_utilization`` is not known), so only a row that
    no engine could have run fails.

    Raises:
        MemoryFitError: one line naming model, GPU, tp/pp, total_kv_blocks and the GiB.
    """
    weights = weight_bytes_per_gpu(model, precision, tp, pp, dp_attention=dp_attention,
                                   ep_num_redundant_experts=ep_num_redundant_experts)
    per_gpu_blocks = blocks / tp if dp_attention and tp > 1 else blocks
    kv = per_gpu_blocks * kv_bytes_per_block_per_gpu(model, tp, pp, block_size, kv_cache_dtype)
    if weights + kv > gpu.memory_bytes:
        raise MemoryFitError(
            f"{model.name} does not fit on {gpu.name} with tp={tp}, pp={pp} "
            f"({normalize_precision(precision, model).upper()} weights): weights "
            f"{weights / GiB:.1f} GiB + total_kv_blocks={blocks} ({kv / GiB:.1f} GiB) per GPU "
            f"exceed its {gpu.memory_bytes / GiB:.2f} GiB; raise tp or pp, or check "
            "total_kv_blocks"
        )


__all__ = [
    "KV_DTYPE_BYTES",
    "WEIGHT_BYTES",
    "attention_bytes",
    "check_parallelism",
    "check_reported_blocks",
    "kv_bytes_per_block_per_gpu",
    "kv_bytes_per_token_per_gpu",
    "kv_dtype_bytes",
    "kv_memory_bytes",
    "non_kv_reserve_bytes",
    "normalize_precision",
    "num_gpu_blocks",
    "resolve_constants",
    "sixteen_bit_body_params",
    "weight_bytes_per_gpu",
    "weight_param_split",
]


#: ASSUMPTION: the fixed cost of one disaggregated KV hand-off besides the bytes on the
#: wire: the decode side's poll of the transfer's completion and its scheduler picking the
#: request up (SGLang and TensorRT-LLM poll once per scheduler iteration; RDMA latency
#: itself is microseconds). No published measurement isolates it; 1 ms is of the order of
#: one scheduler iteration.
KV_TRANSFER_LATENCY_S = 0.001


def kv_transfer_s(
    model: Any, tp: int, kv_cache_dtype: str | None, num_tokens: np.ndarray, link_gb_s: float
) -> np.ndarray:
    """Seconds to move the KV of ``num_tokens`` prompt tokens from a prefill worker of
    ``tp`` GPUs to a decode worker (disaggregated serving): each GPU's share
    (:func:`kv_bytes_per_token_per_gpu`: the whole latent for MLA, which every rank holds)
    over one GPU's link of ``link_gb_s`` (GB/s per direction; the GPUs send in parallel),
    plus :data:`KV_TRANSFER_LATENCY_S`."""
    per_gpu = kv_bytes_per_token_per_gpu(model, tp, kv_cache_dtype)
    tokens = np.asarray(num_tokens, np.float64)
    return KV_TRANSFER_LATENCY_S + tokens * per_gpu / (link_gb_s * 1e9)
