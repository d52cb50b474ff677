"""Read a Hugging Face ``config.json`` into the fields of a ``ModelSpec``.

:func:`parse_hf_config` returns a plain dict of ModelSpec keyword arguments, so that this module
does not import ``models`` (which imports this one). What it understands:

- dense GQA / MHA decoders (llama, mistral, qwen2, qwen3, yi, gemma ...), including the
  GPT-2 style key names (``n_layer``, ``n_embd``, ``n_head``);
- multimodal wrappers whose decoder sits in ``text_config`` (llama4, ...);
- MoE: ``num_local_experts`` (mixtral, llama4), ``num_experts`` (qwen*_moe),
  ``n_routed_experts`` (deepseek, glm); shared experts from ``n_shared_experts`` (each of
  ``moe_intermediate_size``), ``shared_expert_intermediate_size`` (qwen2_moe) or llama4's one
  shared expert of ``intermediate_size``; which layers are MoE from ``moe_layers``,
  ``interleave_moe_layer_step``, ``first_k_dense_replace`` / ``moe_layer_freq`` or
  ``decoder_sparse_step`` / ``mlp_only_layers`` (otherwise every layer);
- MLA (``kv_lora_rank`` > 0): ``q_lora_rank``, ``qk_rope_head_dim``, ``qk_nope_head_dim``,
  ``v_head_dim``; ``head_dim`` is then the query/key head width ``qk_nope + qk_rope``;
- sliding windows: ``sliding_window`` (0 when ``use_sliding_window`` is false or the window
  is no shorter than ``max_position_embeddings``), the windowed layers from ``layer_types``,
  ``max_window_layers`` (qwen2: layers at index >= it), ``sliding_window_pattern`` (gemma3)
  or gemma2's alternation, else all layers;
- weight precision: ``quantization_config`` (fp8, fbgemm_fp8, compressed-tensors float 8/4
  bit, modelopt FP8/NVFP4, mxfp4) gives ``fp8``/``fp4``; otherwise ``torch_dtype`` / ``dtype``
  gives ``bf16`` (also for float32 and absent) or ``fp16``. Integer quantization (GPTQ, AWQ,
  bitsandbytes, int compressed-tensors) is refused: the catalogue has no integer weight type.

Not represented (ModelSpec has no field for them): attention/MLP biases, qwen3 q/k norms and the
DeepSeek-V3.2/GLM DSA indexer (~1e-3 of the weights), non-gated (2-matrix) MLPs of GPT-2-era
models (counted as gated), llama4's chunked local attention (vLLM keeps full KV for it by
default). Multi-token-prediction layers (``num_nextn_predict_layers``) are counted in
``num_mtp_layers`` only (the draft of MTP speculative decoding), not in the layers or weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from capacitor.errors import CatalogError

# Model types whose config defaults tie_word_embeddings to true when the key is absent.
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text", "gpt2", "opt", "bloom", "falcon"}

_KEYS = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "vocab_size": ("vocab_size",),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_sequence_length"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size"),
}
_EXPECT = {
    "num_layers": "a positive integer: the number of decoder layers",
    "hidden_size": "a positive integer: the model width",
    "num_attention_heads": "a positive integer: query heads per layer",
    "vocab_size": "a positive integer: the tokenizer vocabulary size",
    "max_position_embeddings": "a positive integer: the longest context in tokens",
    "intermediate_size": "a positive integer: the FFN width",
}


def _int(
    cfg: Mapping[str, Any], key: str, where: str, expect: str, *, allow_zero: bool = False
) -> int:
    value = cfg.get(key)
    ok = (
        isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    )
    if not ok or int(value) < (0 if allow_zero else 1):
        raise CatalogError(f"{where}: field {key!r} = {value!r}; expected {expect}")
    return int(value)


def _opt_int(cfg: Mapping[str, Any], key: str, where: str, default: int = 0) -> int:
    if cfg.get(key) is None:
        return default
    return _int(cfg, key, where, "a non-negative integer or null", allow_zero=True)


def _required(cfg: Mapping[str, Any], field: str, where: str) -> int:
    keys = _KEYS[field]
    for key in keys:
        if cfg.get(key) is not None:
            return _int(cfg, key, where, _EXPECT[field])
    raise CatalogError(f"{where}: missing field {keys[0]!r}; expected {_EXPECT[field]}")


def _first(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if cfg.get(k) is not None), None)


def _text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The decoder's config: ``text_config`` merged over the top level (it wins)."""
    merged = dict(config)
    text = config.get("text_config")
    if isinstance(text, Mapping):
        merged.update(text)
    return merged


def _moe_layers(cfg: Mapping[str, Any], num_layers: int, where: str) -> int:
    """How many of the ``num_layers`` decoder layers have a MoE FFN, per the family's rule."""
    if isinstance(cfg.get("moe_layers"), list):
        return sum(1 for i in cfg["moe_layers"] if isinstance(i, int) and 0 <= i < num_layers)
    if cfg.get("interleave_moe_layer_step") is not None:  # llama4
        step = _int(cfg, "interleave_moe_layer_step", where, "a positive integer")
        return len(range(step - 1, num_layers, step))
    if cfg.get("first_k_dense_replace") is not None or cfg.get("moe_layer_freq") is not None:
        first = _opt_int(cfg, "first_k_dense_replace", where)  # deepseek_v2/v3, glm
        freq = _opt_int(cfg, "moe_layer_freq", where, 1) or 1
        return sum(1 for i in range(num_layers) if i >= first and i % freq == 0)
    if cfg.get("decoder_sparse_step") is not None or cfg.get("mlp_only_layers"):
        step = _opt_int(cfg, "decoder_sparse_step", where, 1) or 1  # qwen2_moe / qwen3_moe
        dense = set(cfg.get("mlp_only_layers") or [])
        return sum(1 for i in range(num_layers) if i not in dense and (i + 1) % step == 0)
    return num_layers


def _moe_fields(cfg: Mapping[str, Any], num_layers: int, ffn: int, where: str) -> dict[str, int]:
    fields = ("num_experts", "num_experts_per_tok", "moe_intermediate_size")
    zero = dict.fromkeys(
        (*fields, "num_shared_experts", "shared_expert_intermediate_size", "num_moe_layers"), 0
    )
    key = _first(cfg, ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts"))
    if key is None or _opt_int(cfg, key, where) == 0:
        return zero
    experts = _int(cfg, key, where, "a positive integer: routed experts per MoE layer")
    topk_key = _first(cfg, ("num_experts_per_tok", "num_experts_per_token", "moe_top_k"))
    if topk_key is None:
        raise CatalogError(
            f"{where}: MoE config ({key}={experts}) lacks 'num_experts_per_tok'; "
            "expected a positive integer: routed experts per token"
        )
    topk = _int(cfg, topk_key, where, "a positive integer: routed experts per token")
    if topk > experts:
        raise CatalogError(f"{where}: {topk_key}={topk} exceeds {key}={experts}")
    width = _opt_int(cfg, "moe_intermediate_size", where) or ffn
    shared, shared_width = 0, 0
    if _opt_int(cfg, "n_shared_experts", where):  # deepseek, glm: each as wide as a routed one
        shared = _opt_int(cfg, "n_shared_experts", where)
        shared_width = shared * width
    elif _opt_int(cfg, "shared_expert_intermediate_size", where):  # qwen2_moe
        shared, shared_width = 1, _opt_int(cfg, "shared_expert_intermediate_size", where)
    elif str(cfg.get("model_type", "")).startswith("llama4"):  # one shared expert
        shared, shared_width = 1, width
    return dict(
        num_experts=experts,
        num_experts_per_tok=topk,
        moe_intermediate_size=width,
        num_shared_experts=shared,
        shared_expert_intermediate_size=shared_width,
        num_moe_layers=_moe_layers(cfg, num_layers, where),
    )


def _mla_fields(cfg: Mapping[str, Any], where: str) -> dict[str, int]:
    rank = _opt_int(cfg, "kv_lora_rank", where)
    if rank == 0:
        return dict.fromkeys(
            ("kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"), 0
        )
    expect = "a positive integer (required for MLA, kv_lora_rank > 0)"
    return dict(
        kv_lora_rank=rank,
        q_lora_rank=_opt_int(cfg, "q_lora_rank", where),
        qk_rope_head_dim=_int(cfg, "qk_rope_head_dim", where, expect),
        qk_nope_head_dim=_int(cfg, "qk_nope_head_dim", where, expect),
        v_head_dim=_int(cfg, "v_head_dim", where, expect),
    )


def _sliding(cfg: Mapping[str, Any], num_layers: int, max_pos: int, where: str) -> tuple[int, int]:
    """(window, windowed layers); (0, 0) when no layer is effectively windowed."""
    window = _opt_int(cfg, "sliding_window", where)
    if cfg.get("use_sliding_window") is False or window == 0 or window >= max_pos:
        return 0, 0
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        layers = sum(1 for t in types[:num_layers] if t == "sliding_attention")
    elif cfg.get("max_window_layers") is not None and cfg.get("use_sliding_window"):
        layers = num_layers - min(_opt_int(cfg, "max_window_layers", where), num_layers)
    elif cfg.get("sliding_window_pattern"):
        pattern = _int(cfg, "sliding_window_pattern", where, "a positive integer")
        layers = sum(1 for i in range(num_layers) if (i + 1) % pattern != 0)
    elif cfg.get("model_type") == "gemma2":
        layers = (num_layers + 1) // 2
    else:
        layers = num_layers
    return (window, layers) if layers > 0 else (0, 0)


def _quant_dtype(q: Mapping[str, Any], where: str) -> str:
    method = str(q.get("quant_method", "")).lower()
    if method in ("fp8", "fbgemm_fp8"):
        return "fp8"
    if method == "mxfp4":
        return "fp4"
    if method == "modelopt":
        algo = str(q.get("quant_algo", "")).upper()
        if "FP4" in algo:
            return "fp4"
        if "FP8" in algo:
            return "fp8"
    if method == "compressed-tensors":
        fmt = str(q.get("format", "")).lower()
        weights = [
            g.get("weights") or {}
            for g in (q.get("config_groups") or {}).values()
            if isinstance(g, Mapping)
        ]
        bits = {(w.get("type"), w.get("num_bits")) for w in weights if isinstance(w, Mapping)}
        if ("float", 4) in bits or "fp4" in fmt:
            return "fp4"
        if ("float", 8) in bits or fmt == "float-quantized":
            return "fp8"
    raise CatalogError(
        f"{where}: quantization_config quant_method={q.get('quant_method')!r} "
        f"(quant_algo={q.get('quant_algo')!r}, format={q.get('format')!r}) is not supported; "
        "expected an FP8 or FP4 checkpoint (fp8, fbgemm_fp8, mxfp4, modelopt FP8/NVFP4, "
        "compressed-tensors float) or an unquantized bf16/fp16 one"
    )


def _weight_dtype(cfg: Mapping[str, Any], where: str) -> str:
    q = cfg.get("quantization_config") or cfg.get("compression_config")
    if isinstance(q, Mapping) and q:
        return _quant_dtype(q, where)
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").lower()
    return "fp16" if dtype in ("float16", "fp16", "half", "torch.float16") else "bf16"


_ATTENTION_PROJ = re.compile(r"self_attn\.(q|k|v|o|qkv)_proj$")


def _attention_16bit(cfg: Mapping[str, Any], weight_dtype: str) -> bool:
    """True when a quantized checkpoint leaves the language model's attention projections
    unquantized: compressed-tensors lists them in ``quantization_config.ignore`` (module
    names, or ``re:`` patterns); vLLM loads ignored modules with the unquantized method."""
    if weight_dtype in ("bf16", "fp16"):
        return False
    q = cfg.get("quantization_config") or cfg.get("compression_config") or {}
    ignore = q.get("ignore") if isinstance(q, Mapping) else None
    if not isinstance(ignore, list):
        return False
    for entry in ignore:
        text = str(entry)
        if "vision" in text:
            continue
        if text.startswith("re:"):
            if "self_attn" in text:
                return True
        elif _ATTENTION_PROJ.search(text):
            return True
    return False


def parse_hf_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """ModelSpec keyword arguments (``hf_ids`` empty) from a config.json dict.

    Raises:
        CatalogError: naming ``name``, the field and what was expected, when a required
            field is missing or malformed.
    """
    if not isinstance(config, Mapping):
        raise CatalogError(f"{name}: config must be a JSON object, got {type(config).__name__}")
    cfg = _text_config(config)
    where = f"model config {name!r}"
    num_layers = _required(cfg, "num_layers", where)
    hidden = _required(cfg, "hidden_size", where)
    heads = _required(cfg, "num_attention_heads", where)
    max_pos = _required(cfg, "max_position_embeddings", where)
    vocab = _required(cfg, "vocab_size", where)
    # llama4 keeps the dense-layer FFN width in intermediate_size_mlp; intermediate_size is
    # the expert width there.
    ffn = _required(cfg, "intermediate_size", where)
    dense_ffn = _opt_int(cfg, "intermediate_size_mlp", where) or ffn
    kv_key = _first(cfg, ("num_key_value_heads", "num_kv_heads", "n_head_kv"))
    kv_heads = _int(cfg, kv_key, where, "a positive integer") if kv_key else heads
    if heads % kv_heads:
        raise CatalogError(
            f"{where}: num_attention_heads={heads} is not a multiple of {kv_key}={kv_heads}"
        )
    mla = _mla_fields(cfg, where)
    if mla["kv_lora_rank"]:
        head_dim = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    elif cfg.get("head_dim") is not None:
        head_dim = _int(cfg, "head_dim", where, "a positive integer")
    elif hidden % heads == 0:
        head_dim = hidden // heads
    else:
        raise CatalogError(
            f"{where}: no 'head_dim' and hidden_size={hidden} is not divisible by "
            f"num_attention_heads={heads}; add head_dim"
        )
    model_type = str(config.get("model_type") or cfg.get("model_type") or "unknown")
    tied = cfg.get("tie_word_embeddings")
    if tied is None:
        tied = model_type in _TIED_BY_DEFAULT
    window, windowed = _sliding(cfg, num_layers, max_pos, where)
    return dict(
        name=name,
        hf_ids=(),
        model_type=model_type,
        num_layers=num_layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=dense_ffn,
        vocab_size=vocab,
        tie_word_embeddings=bool(tied),
        **_moe_fields(cfg, num_layers, ffn, where),
        **mla,
        sliding_window=window,
        num_sliding_layers=windowed,
        max_position_embeddings=max_pos,
        weight_dtype=_weight_dtype(cfg, where),
        attention_16bit=_attention_16bit(cfg, _weight_dtype(cfg, where)),
        num_mtp_layers=_opt_int(cfg, "num_nextn_predict_layers", where),
    )


def parse_generation_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``default_top_p`` / ``default_top_k`` ModelSpec arguments from a generation_config.json.

    vLLM (``--generation-config auto``, its default since v0.9) takes ``temperature``,
    ``top_p``, ``top_k``, ``min_p`` and ``repetition_penalty`` from this file as the sampling
    defaults of every request that sets none (``ModelConfig.get_diff_sampling_param``; it
    ignores ``do_sample``). Only the two that make its sampler filter the whole vocabulary
    are kept. A ``temperature`` of 0 means greedy sampling, which filters nothing.

    Raises:
        CatalogError: naming ``name``, the key and its value, when top_p is not in (0, 1],
            top_k not an integer >= -1 or temperature negative.
    """
    if not isinstance(config, Mapping):
        raise CatalogError(f"{name}: generation config must be a JSON object")
    where = f"generation config {name!r}"
    top_p, top_k, temperature = config.get("top_p"), config.get("top_k"), config.get("temperature")
    if top_p is None:
        top_p = 1.0
    if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0.0 < top_p <= 1.0:
        raise CatalogError(f"{where}: top_p={top_p!r} must be a number in (0, 1]")
    if top_k is None:
        top_k = 0
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < -1:
        raise CatalogError(f"{where}: top_k={top_k!r} must be an integer >= -1 (-1 or 0: off)")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature < 0
    ):
        raise CatalogError(f"{where}: temperature={temperature!r} must be a number >= 0")
    if temperature == 0:
        top_p, top_k = 1.0, 0
    return {"default_top_p": float(top_p), "default_top_k": max(int(top_k), 0)}
