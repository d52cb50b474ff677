"""Model catalogue: architecture facts of a model, imported from a Hugging Face config.json.

STUB: the dataclass below is the contract; import, bundling and resolution are to be built.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture of one decoder-only model, enough to cost a forward pass.

    Counts are for the whole model (before any tensor/pipeline/expert parallel split).
    Dense models have ``num_experts == 0``. MLA models (DeepSeek-V2/V3/R1) have
    ``kv_lora_rank > 0`` and cache ``kv_lora_rank + qk_rope_head_dim`` values per token
    per layer instead of ``2 * num_kv_heads * head_dim``.

    Attributes:
        name: bundled catalogue name (e.g. ``llama-3.1-8b-instruct``) or the config path.
        hf_ids: Hugging Face repo ids that resolve to this spec.
        model_type: config.json ``model_type``.
        num_layers, hidden_size, num_attention_heads, num_kv_heads, head_dim,
        intermediate_size, vocab_size, tie_word_embeddings: as in config.json
            (``head_dim`` derived as hidden_size / num_attention_heads when absent).
        num_experts: routed experts per MoE layer (0 = dense).
        num_experts_per_tok: routed experts each token uses (top-k).
        moe_intermediate_size: FFN width of one routed expert.
        num_shared_experts: always-on experts per MoE layer.
        shared_expert_intermediate_size: FFN width of the shared experts together.
        num_moe_layers: layers with a MoE FFN (the rest have a dense FFN of
            ``intermediate_size``).
        kv_lora_rank, q_lora_rank, qk_rope_head_dim, qk_nope_head_dim, v_head_dim: MLA.
        sliding_window: attention window in tokens for windowed layers (0 = none).
        num_sliding_layers: how many layers use the window (the rest attend fully).
        max_position_embeddings: longest context the model supports.
        weight_dtype: precision the checkpoint ships in: ``bf16``, ``fp16``, ``fp8``, ``fp4``.
    """

    name: str
    hf_ids: tuple[str, ...]
    model_type: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    num_shared_experts: int
    shared_expert_intermediate_size: int
    num_moe_layers: int
    kv_lora_rank: int
    q_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    sliding_window: int
    num_sliding_layers: int
    max_position_embeddings: int
    weight_dtype: str
