"""MTP speculative decoding: how many tokens a decode step emits, and what the step costs.

DeepSeek-V3/R1 ship a multi-token-prediction (MTP) module (``num_nextn_predict_layers`` = 1 in
config.json): one more transformer block (MLA attention + a MoE FFN, the same shape as a main
MoE layer) that shares the embedding and the LM head. Engines use it as a draft model
(SGLang ``--speculative-algorithm NEXTN/EAGLE``, TensorRT-LLM ``speculative_config: decoding_type:
MTP``, vLLM ``method: mtp``): per decode step every decoding sequence

1. runs the *verify* pass of the target model over ``1 + k`` positions (its last token and the
   ``k`` draft tokens): ``1 + k`` tokens in every GEMM, attention of ``1 + k`` query positions
   over the sequence's KV (read once), and
2. keeps the ``a`` leading drafts that the target agrees with plus one token of its own:
   it emits ``1 + a`` tokens;
3. drafts the next ``k`` tokens with the MTP module: one *draft extend* pass over the tokens
   the target just ran (the MTP block needs its own KV of them: the step's prefill chunks and
   the verified positions), then ``k - 1`` *draft decode* passes of one token per sequence.

Pricing (:func:`spec_step_time_s`) reuses :func:`capacitor.perf.step_time.step_time_touched_s`:
the verify pass is the target's step with the verify tokens counted, and each draft pass is a
step of the *draft coefficients*, :func:`draft_coefficients`: the same coefficient build for the
model cut down to its MTP layers (weights, GEMMs, MoE experts, attention and TP communication
of one layer; the shared LM head is streamed and run once per sequence per pass, as each draft
position needs its logits). The MTP block's input projection (``2h x h``, ~0.1B parameters) and
its own KV (one layer in 62) are left out (under 1% of a pass and of the KV).

Scheduler overheads: the draft passes run inside the engine iteration that verifies, from the
batch its scheduler built once, so they pay the GPU's fixed kernel costs of their layers but
not the profile's per-iteration and per-request scheduler costs (:func:`draft_overhead`).

Acceptance (ASSUMPTION, stated so it can be overridden): each draft position is accepted with
the same probability ``p`` given that the ones before it were (a geometric chain), so the
expected tokens per step (the acceptance length) are ``1 + p + p^2 + ... + p^k``. Default
``p`` = :data:`DEFAULT_MTP_ACCEPTANCE_RATE` = 0.69, the rate at which three drafts give the
acceptance length SemiAnalysis measured for DeepSeek-R1 on the InferenceMAX benchmark's own
data, random-token prompts sent through the chat template: "~2.50", the same as on MT-Bench
(InferenceX PR #649; ``1 + 0.69 + 0.69^2 + 0.69^3`` = 2.49). The draft count of that
measurement is not stated; it is at least 3, since without the chat template the same
prompts gave 3.55, more than two drafts can emit, and 3 is the DeepSeek MTP recipes' count
(SGLang ``--speculative-num-steps 3``, TensorRT-LLM ``num_nextn_predict_layers: 3``).
InferenceMAX's MTP scripts pass ``--use-chat-template``; raw random prompts (no template)
would be accepted far more often (3.55: ``p`` about 0.93 at three drafts), real text in
between: DeepSeek-V3's own "acceptance rate of the second token prediction ranges between
85% and 90%" (technical report, arXiv 2412.19437, s. 5.4.3) is the first position on its
generation topics. A deeper chain reuses the single MTP block autoregressively, so its later
positions may be accepted less often than the chain assumes (an MTP-depth study on GLM-5.2,
JustVugg/colibri PR #569: 88% at depth 1, 55% per position at depth 2); the InferenceMAX
DeepSeek-R1 rows do not show it: their 3-draft TensorRT-LLM rows match ``p`` 0.65-0.67, and
the 1- and 2-draft rows a lower ``p``, not a higher one (README, "DeepSeek-R1 with MTP"). Set
``mtp_acceptance_rate`` from a measured acceptance length for other data.

The expected tokens per step ``L`` are applied deterministically (no random draw): every
decoder of a replica emits ``pos(G + 1) - pos(G)`` tokens in the replica's step ``G``, with
``pos(G) = floor(G L)`` in fixed point (:data:`SPEC_FP_BITS` fraction bits), so that after
``n`` steps a decoder has emitted ``L n`` tokens to within one, and all decoders of a step share
its token count (which keeps the fast kernel's per-step O(1) bookkeeping: a decoder's context
at step ``G`` is its context at entry plus ``pos(G) - pos(step at entry)``). The last step of a
request emits only the tokens it still owes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numba.extending import register_jitable

from capacitor.errors import ConfigError
from capacitor.perf.memory import resolve_constants
from capacitor.perf.step_time import moe_touched_fraction, step_time_touched_s

#: Speculative decoding methods by name (validate rows' ``speculative``, scenario deployments).
SPECULATIVE_METHODS = ("none", "mtp")
#: Per-position draft acceptance of DeepSeek-R1's MTP module on chat-templated random-token
#: prompts: acceptance length 2.49 at 3 drafts against the ~2.50 SemiAnalysis measured
#: (InferenceX PR #649; module docstring).
DEFAULT_MTP_ACCEPTANCE_RATE = 0.69
#: Fraction bits of the fixed-point tokens per step (``pos(G) = (G * L_fp) >> SPEC_FP_BITS``).
SPEC_FP_BITS = 16


def default_num_speculative_tokens(engine: str, dp_attention: bool) -> int:
    """Draft tokens per step when a deployment sets none: SemiAnalysis InferenceX's
    DeepSeek-R1 MTP launch scripts. SGLang (``dsr1_fp8_b200_mtp.sh``, ``dsr1_fp4_b200_mtp.sh``,
    the Dynamo SGLang MTP recipes): ``--speculative-num-steps 2 --speculative-eagle-topk 1
    --speculative-num-draft-tokens 3``, a chain of 2. TensorRT-LLM (``dsr1_fp8_h200_trt_mtp.sh``
    and the B200 ones): ``num_nextn_predict_layers`` 3, or 1 with attention DP.
    ASSUMPTION: vLLM as TensorRT-LLM."""
    if engine == "sglang":
        return 2
    return 1 if dp_attention else 3


def expected_tokens_per_step(num_speculative_tokens: int, acceptance_rate: float) -> float:
    """``1 + p + p^2 + ... + p^k``: tokens a decoder emits per step (module docstring)."""
    total = 1.0
    term = 1.0
    for _ in range(num_speculative_tokens):
        term *= acceptance_rate
        total += term
    return total


def tokens_per_step_fp(num_speculative_tokens: int, acceptance_rate: float) -> int:
    """:func:`expected_tokens_per_step` in fixed point (``SPEC_FP_BITS`` fraction bits)."""
    return int(round(expected_tokens_per_step(num_speculative_tokens, acceptance_rate)
                     * (1 << SPEC_FP_BITS)))


def check_speculative(method: str, num_speculative_tokens: int, acceptance_rate: float,
                      model: Any) -> None:
    """Raise a one-line ConfigError for an unknown method, a draft count below 1, an
    acceptance rate outside [0, 1] or ``mtp`` on a model without MTP layers."""
    if method not in SPECULATIVE_METHODS:
        raise ConfigError(f"speculative={method!r}; valid: {', '.join(SPECULATIVE_METHODS)}")
    if method == "none":
        return
    if (not isinstance(num_speculative_tokens, int) or isinstance(num_speculative_tokens, bool)
            or not 1 <= num_speculative_tokens <= 16):
        raise ConfigError(
            f"num_speculative_tokens={num_speculative_tokens!r}: must be an integer in 1..16")
    if not 0.0 <= acceptance_rate <= 1.0:
        raise ConfigError(f"mtp_acceptance_rate={acceptance_rate!r}: must be in [0, 1]")
    if getattr(model, "num_mtp_layers", 0) < 1:
        raise ConfigError(
            f"speculative=mtp: model {model.name} has no MTP layers "
            "(num_nextn_predict_layers = 0 in its config); use speculative=none")


def draft_model(model: Any) -> Any:
    """The model cut down to its MTP layers (each a MoE layer when the model is MoE), with
    the same embedding, LM head, attention and experts."""
    n = model.num_mtp_layers
    return dataclasses.replace(
        model,
        num_layers=n,
        num_moe_layers=n if model.is_moe else 0,
        num_sliding_layers=0,
        num_mtp_layers=0,
    )


def draft_overhead(overhead: Any) -> Any:
    """The profile's :class:`~capacitor.perf.profile.Overhead` as one draft pass pays it:
    the GPU's fixed kernel costs of the draft layers (``per_layer_s``, the kernel costs,
    ``eager_kernel_s``) and the LM head stay; the scheduler's costs, paid once per engine
    iteration and per request in it, go (``step_fixed_s``, ``per_seq_s``,
    ``per_prefill_seq_s``, and ``mla_per_seq_s``, fitted per request per iteration). The
    draft passes run inside the iteration that verifies: SGLang's EAGLE worker drafts and
    TensorRT-LLM's MTP worker runs its MTP layers in the same forward step as the target,
    from one batch the scheduler built once (SGLang ``eagle_worker.py``
    ``forward_batch_speculative_generation``; TensorRT-LLM blog "DeepSeek R1 MTP
    Implementation and Optimization", "MTP modules")."""
    return dataclasses.replace(overhead, step_fixed_s=0.0, per_seq_s=0.0,
                               per_prefill_seq_s=0.0, mla_per_seq_s=0.0)


def draft_coefficients(model: Any, build: Any, **kwargs: Any) -> np.ndarray:
    """Step-time coefficients of one MTP draft pass: ``build`` (:func:`capacitor.perf.
    coefficients.build_coefficients`) for :func:`draft_model`, on one pipeline stage (the
    MTP block sits after the last layer), with the overheads of :func:`draft_overhead`."""
    kwargs["pp"] = 1
    constants = resolve_constants(kwargs.pop("profile", None), kwargs["gpu"],
                                  kwargs.get("engine", "vllm"))
    kwargs["profile"] = dataclasses.replace(
        constants, overhead=draft_overhead(constants.overhead))
    return build(draft_model(model), **kwargs)


@register_jitable
def spec_step_time_s(
    coeffs: np.ndarray,
    draft_coeffs: np.ndarray,
    num_speculative_tokens: int,
    num_tokens: float,
    num_decoding: float,
    num_seqs: float,
    num_prefill_seqs: float,
    prefill_pairs: float,
    decode_ctx_tokens: float,
) -> float:
    """Duration of one step with MTP: the target's verify step, one draft extend pass over
    the same tokens, and ``k - 1`` draft decode passes of ``num_decoding`` tokens.

    ``num_tokens`` counts ``1 + k`` per decoder plus the prefill chunks' tokens;
    ``decode_ctx_tokens`` sums over decoders their context plus ``1 + k`` (the verify
    positions). A step without decoders (prefill only) still runs the draft extend (the MTP
    block computes its KV of the prompt and drafts the first tokens)."""
    if num_tokens <= 0.0:
        return 0.0
    target_s = step_time_touched_s(
        coeffs, num_tokens, num_seqs, num_prefill_seqs, prefill_pairs, decode_ctx_tokens,
        moe_touched_fraction(coeffs, num_tokens),
    )
    extend_s = step_time_touched_s(
        draft_coeffs, num_tokens, num_seqs, num_prefill_seqs, prefill_pairs, decode_ctx_tokens,
        moe_touched_fraction(draft_coeffs, num_tokens),
    )
    decode_s = 0.0
    if num_decoding > 0.0 and num_speculative_tokens > 1:
        decode_s = (num_speculative_tokens - 1) * step_time_touched_s(
            draft_coeffs, num_decoding, num_decoding, 0.0, 0.0, decode_ctx_tokens,
            moe_touched_fraction(draft_coeffs, num_decoding),
        )
    return target_s + extend_s + decode_s


__all__ = [
    "DEFAULT_MTP_ACCEPTANCE_RATE",
    "SPECULATIVE_METHODS",
    "SPEC_FP_BITS",
    "check_speculative",
    "default_num_speculative_tokens",
    "draft_coefficients",
    "draft_model",
    "draft_overhead",
    "expected_tokens_per_step",
    "spec_step_time_s",
    "tokens_per_step_fp",
]
