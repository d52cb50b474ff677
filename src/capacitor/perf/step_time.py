"""Time of one engine step, from a small vector of per-configuration coefficients.

The model is a roofline with separate basis terms (weights streamed, GEMM compute with
token-count-dependent efficiency, prefill attention FLOPs, decode KV bytes, TP all-reduce,
MoE expert loading and compute, CPU overheads). :mod:`capacitor.perf.coefficients` turns a
(model, GPU, parallelism, precision, engine profile) into the coefficient vector once; the
simulator then calls :func:`step_time_s` millions of times, so it is a handful of flops.

``step_time_s`` is plain Python so that ``engine/reference.py`` can call it directly; the
numba kernel compiles the very same parts (:func:`step_time_touched_s`, with the MoE term
:func:`moe_touched_fraction` tabulated by token count), so both give the same
floating-point result for the same inputs.

The batch a step runs is summarised by five numbers:

``num_tokens``        tokens processed (decodes + prefill chunk tokens)
``num_seqs``          sequences in the batch
``num_prefill_seqs``  of which prefill chunks
``prefill_pairs``     causal attention (query, key) pairs of the prefill chunks:
                      a chunk of q new tokens after c computed ones has q*c + q*(q+1)/2
``decode_ctx_tokens`` sum over decodes of the context each attends to (computed + 1)
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

# Coefficient vector layout (all seconds, or seconds per unit, per step).
C_FIXED_S = 0  # per-step CPU overhead: scheduling, input prep, kernel launches
C_PER_SEQ_S = 1  # per-sequence CPU/GPU overhead in the batch
C_PER_PREFILL_SEQ_S = 2  # extra per prefill chunk (attention metadata, sampling setup)
C_WEIGHT_S = 3  # stream the dense (non-expert) weights of one GPU once
C_GEMM_S_PER_TOKEN = 4  # dense GEMM time per token at full efficiency
C_GEMM_HALF_TOKENS = 5  # tokens at which GEMM efficiency is half its maximum
C_ATTN_PREFILL_S_PER_PAIR = 6  # prefill attention time per (query, key) pair
C_ATTN_DECODE_S_PER_TOKEN = 7  # decode attention time per context token (KV bytes read)
C_COMM_FIXED_S = 8  # TP/PP communication latency per step
C_COMM_S_PER_TOKEN = 9  # TP/PP communication bandwidth time per token
C_MOE_WEIGHT_S = 10  # stream all routed-expert weights of one GPU once
C_MOE_TOPK_FRACTION = 11  # experts_per_token / num_experts (0 for dense models)
C_MOE_GEMM_S_PER_TOKEN = 12  # routed-expert GEMM time per token at full efficiency
C_MOE_HALF_TOKENS = 13  # gemm_half_tokens x E / k: the GEMM curve per expert (below)
C_PREFILL_STEP_S = 14  # extra per step that has prefill chunks (run without CUDA graphs)
NUM_COEFFS = 15

COEFF_NAMES = (
    "fixed_s",
    "per_seq_s",
    "per_prefill_seq_s",
    "weight_s",
    "gemm_s_per_token",
    "gemm_half_tokens",
    "attn_prefill_s_per_pair",
    "attn_decode_s_per_token",
    "comm_fixed_s",
    "comm_s_per_token",
    "moe_weight_s",
    "moe_topk_fraction",
    "moe_gemm_s_per_token",
    "moe_half_tokens",
    "prefill_step_s",
)


@register_jitable
def moe_touched_fraction(coeffs: np.ndarray, num_tokens: float) -> float:
    """Fraction of the routed experts a batch of ``num_tokens`` tokens touches,
    ``1 - (1 - k/E)^T`` (0 for a dense model). The kernel tabulates it by token count."""
    frac = coeffs[C_MOE_TOPK_FRACTION]
    if frac > 0.0:
        return 1.0 - (1.0 - frac) ** num_tokens
    return 0.0


@register_jitable
def moe_touched_lookup(table: np.ndarray, coeffs: np.ndarray, num_tokens: int) -> float:
    """:func:`moe_touched_fraction` from ``table`` (its values by token count, as the
    kernel fills it) when it covers ``num_tokens``, else computed."""
    if num_tokens < table.shape[0]:
        return table[num_tokens]
    return moe_touched_fraction(coeffs, float(num_tokens))


@register_jitable
def step_time_head_touched_s(
    coeffs: np.ndarray,
    num_tokens: float,
    num_seqs: float,
    num_prefill_seqs: float,
    touched: float,
) -> float:
    """The terms of :func:`step_time_s` that do not depend on the attention pairs or
    context -- CPU overheads + dense GEMMs + MoE experts -- given the batch's
    :func:`moe_touched_fraction` ``touched``."""
    half = coeffs[C_GEMM_HALF_TOKENS]
    dense = max(coeffs[C_WEIGHT_S], coeffs[C_GEMM_S_PER_TOKEN] * (num_tokens + half))
    moe = 0.0
    if coeffs[C_MOE_TOPK_FRACTION] > 0.0:
        # each touched expert's GEMM sees T k / (E touched) tokens: its efficiency curve
        # T_e / (T_e + T_half), summed over the E touched experts
        moe_compute = coeffs[C_MOE_GEMM_S_PER_TOKEN] * (
            num_tokens + coeffs[C_MOE_HALF_TOKENS] * touched
        )
        moe = max(coeffs[C_MOE_WEIGHT_S] * touched, moe_compute)
    overhead = (
        coeffs[C_FIXED_S]
        + coeffs[C_PER_SEQ_S] * num_seqs
        + coeffs[C_PER_PREFILL_SEQ_S] * num_prefill_seqs
    )
    if num_prefill_seqs > 0.0:
        overhead += coeffs[C_PREFILL_STEP_S]
    return overhead + dense + moe


@register_jitable
def step_time_attention_s(
    coeffs: np.ndarray, prefill_pairs: float, decode_ctx_tokens: float
) -> float:
    """Attention: prefill (query, key) pairs and decode context tokens read."""
    return (
        coeffs[C_ATTN_PREFILL_S_PER_PAIR] * prefill_pairs
        + coeffs[C_ATTN_DECODE_S_PER_TOKEN] * decode_ctx_tokens
    )


@register_jitable
def step_time_comm_s(coeffs: np.ndarray, num_tokens: float) -> float:
    """Tensor/pipeline-parallel communication: fixed latency plus bandwidth per token."""
    return coeffs[C_COMM_FIXED_S] + coeffs[C_COMM_S_PER_TOKEN] * num_tokens


def step_time_s(
    coeffs: np.ndarray,
    num_tokens: float,
    num_seqs: float,
    num_prefill_seqs: float,
    prefill_pairs: float,
    decode_ctx_tokens: float,
) -> float:
    """Duration in seconds of one engine step for the summarised batch.

    Dense GEMMs take ``max(weights streamed, compute)``, where compute per token is
    inflated at small token counts by the efficiency curve ``T / (T + T_half)``; MoE
    experts stream only the experts the batch touches, ``p_T = 1 - (1 - k/E)^T`` of them,
    and each touched expert's GEMM follows the same curve at its own share of the tokens,
    ``T k / (E p_T)``.
    An empty batch (``num_tokens == 0``) takes no time. The sum is always taken in this
    order (head + attention + communication), so a caller that holds the head and
    communication of a fixed batch shape gets the same floating-point result.
    """
    return step_time_touched_s(
        coeffs,
        num_tokens,
        num_seqs,
        num_prefill_seqs,
        prefill_pairs,
        decode_ctx_tokens,
        moe_touched_fraction(coeffs, num_tokens),
    )


@register_jitable
def step_time_touched_s(
    coeffs: np.ndarray,
    num_tokens: float,
    num_seqs: float,
    num_prefill_seqs: float,
    prefill_pairs: float,
    decode_ctx_tokens: float,
    touched: float,
) -> float:
    """:func:`step_time_s` given the batch's :func:`moe_touched_fraction` (the kernel
    looks it up by token count instead of taking a power every step)."""
    if num_tokens <= 0.0:
        return 0.0
    return (
        step_time_head_touched_s(coeffs, num_tokens, num_seqs, num_prefill_seqs, touched)
        + step_time_attention_s(coeffs, prefill_pairs, decode_ctx_tokens)
        + step_time_comm_s(coeffs, num_tokens)
    )


def prefill_pairs(num_new_tokens: int, num_computed_tokens: int) -> int:
    """Causal attention (query, key) pairs of a chunk of ``num_new_tokens`` new tokens
    appended after ``num_computed_tokens`` already in the KV cache."""
    q = num_new_tokens
    return q * num_computed_tokens + q * (q + 1) // 2
