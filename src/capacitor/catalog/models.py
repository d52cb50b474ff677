"""Model catalogue: architecture facts of a model, imported from a Hugging Face config.json.

- :class:`ModelSpec` holds the architecture and counts parameters, KV bytes and attention FLOPs.
- :func:`from_hf_config` / :func:`load_config_file` import any config.json (parsing rules in
  :mod:`capacitor.catalog.hf_config`).
- :func:`list_models` gives the bundled catalogue (``catalog/data/models/*.json`` plus the
  ``derived`` entries of ``catalog/data/model_aliases.yaml``); :func:`resolve_model` accepts a
  bundled name, a Hugging Face repo id listed in that YAML, or a path to a config.json.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from capacitor.catalog.hf_config import parse_generation_config, parse_hf_config
from capacitor.errors import CatalogError
from capacitor.textio import read_text

WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "fp4")


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
        attention_16bit: the attention projections of the language model stay at 16 bit in
            a quantized checkpoint (listed in its quantization ``ignore`` list, as RedHatAI's
            FP8-dynamic Llama-4 checkpoints do); vLLM then loads them unquantized.
        default_top_p, default_top_k: the sampling defaults of the model's
            generation_config.json, which vLLM applies to every request that sets none
            (1.0 and 0, i.e. off, when the file sets none or is not known); bundled models
            take them from ``catalog/data/generation_defaults.yaml``, a config.json path from
            a generation_config.json beside it.
        num_mtp_layers: multi-token-prediction layers (config.json
            ``num_nextn_predict_layers``; DeepSeek-V3/R1: 1), usable as the draft of MTP
            speculative decoding (:mod:`capacitor.perf.speculative`); not counted in
            ``num_layers`` nor in the parameter counts.
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
    attention_16bit: bool = False
    default_top_p: float = 1.0
    default_top_k: int = 0
    num_mtp_layers: int = 0

    # ---- structure -----------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        """True when some layers route tokens to experts (``num_experts > 0``)."""
        return self.num_experts > 0 and self.num_moe_layers > 0

    @property
    def filters_vocab(self) -> bool:
        """True when requests sample with top-p or top-k by default, so an engine without a
        fused sampler sorts each sequence's whole vocabulary every step."""
        return self.default_top_p < 1.0 or self.default_top_k > 0

    @property
    def is_mla(self) -> bool:
        """True for multi-head latent attention (DeepSeek-V2/V3/R1, GLM-5): ``kv_lora_rank > 0``."""
        return self.kv_lora_rank > 0

    @property
    def num_dense_layers(self) -> int:
        """Layers whose FFN is a dense gated MLP of ``intermediate_size``."""
        return self.num_layers - (self.num_moe_layers if self.is_moe else 0)

    def _mlp_params(self, width: int) -> int:
        # Gated MLP (SwiGLU/GeGLU): gate and up (h x w) and down (w x h), no biases.
        return 3 * self.hidden_size * width

    # ---- parameters ----------------------------------------------------------------------

    def attention_param_count_per_layer(self) -> int:
        """Weights of one layer's attention block (projections, no biases).

        GQA/MHA, with h = hidden_size, H = heads, K = kv heads, d = head_dim:
        ``h*H*d`` (q) + ``2*h*K*d`` (k, v) + ``H*d*h`` (o).

        MLA, with r_q = q_lora_rank, r_kv = kv_lora_rank, n/p/v = qk_nope/qk_rope/v head dims:
        q: ``h*r_q + r_q + r_q*H*(n+p)`` (q_a_proj, q_a_layernorm, q_b_proj) when r_q > 0,
        else ``h*H*(n+p)`` (q_proj); ``h*(r_kv+p) + r_kv`` (kv_a_proj_with_mqa,
        kv_a_layernorm); ``r_kv*H*(n+v)`` (kv_b_proj); ``H*v*h`` (o_proj).
        """
        h, heads = self.hidden_size, self.num_attention_heads
        if not self.is_mla:
            d = self.head_dim
            return h * heads * d + 2 * h * self.num_kv_heads * d + heads * d * h
        qk = self.qk_nope_head_dim + self.qk_rope_head_dim
        rq, rkv = self.q_lora_rank, self.kv_lora_rank
        q = h * rq + rq + rq * heads * qk if rq else h * heads * qk
        kv_a = h * (rkv + self.qk_rope_head_dim) + rkv
        kv_b = rkv * heads * (self.qk_nope_head_dim + self.v_head_dim)
        return q + kv_a + kv_b + heads * self.v_head_dim * h

    def embedding_param_count(self) -> int:
        """Input embedding plus LM head: ``vocab_size*hidden_size * (1 if tied else 2)``."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def expert_param_count(self) -> int:
        """All routed experts of all MoE layers:
        ``num_moe_layers * num_experts * 3*hidden_size*moe_intermediate_size`` (gate, up, down).
        Shared experts and routers are not included (they are dense). 0 for dense models."""
        if not self.is_moe:
            return 0
        return self.num_moe_layers * self.num_experts * self._mlp_params(self.moe_intermediate_size)

    def param_count(self) -> int:
        """All weights of the model (the MTP / next-token-prediction layers excluded).

        ``num_layers * (attention + 2*h)`` (two RMSNorms per layer)
        ``+ num_dense_layers * 3*h*intermediate_size``
        ``+ num_moe_layers * (num_experts*3*h*moe_intermediate_size``
        ``  + 3*h*shared_expert_intermediate_size + h*num_experts)`` (experts, shared, router)
        ``+ embedding_param_count() + h`` (final norm).
        Biases and per-head q/k norms are left out (well under 0.1%).
        """
        h = self.hidden_size
        total = self.num_layers * (self.attention_param_count_per_layer() + 2 * h)
        total += self.num_dense_layers * self._mlp_params(self.intermediate_size)
        if self.is_moe:
            shared = self._mlp_params(self.shared_expert_intermediate_size)
            total += self.num_moe_layers * (shared + h * self.num_experts)
            total += self.expert_param_count()
        return total + self.embedding_param_count() + h

    def dense_param_count(self) -> int:
        """``param_count() - expert_param_count()``: attention, norms, dense FFNs, shared
        experts, routers and embeddings: the weights every token (and every decode step) reads."""
        return self.param_count() - self.expert_param_count()

    def active_param_count(self) -> int:
        """Weights one token touches: ``dense_param_count() + num_moe_layers *
        num_experts_per_tok * 3*h*moe_intermediate_size`` (``param_count()`` when dense).
        Includes the embedding and LM head, as model cards' "active parameters" do."""
        if not self.is_moe:
            return self.param_count()
        routed = self.num_experts_per_tok * self._mlp_params(self.moe_intermediate_size)
        return self.dense_param_count() + self.num_moe_layers * routed

    # ---- KV cache and attention ----------------------------------------------------------

    def kv_values_per_token_per_layer(self) -> int:
        """Values cached per token per layer: ``2*num_kv_heads*head_dim`` (K and V), or for MLA
        the compressed latent plus the shared rope key, ``kv_lora_rank + qk_rope_head_dim``."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """KV-cache bytes of one token over all layers:
        ``num_layers * kv_values_per_token_per_layer() * kv_dtype_bytes`` (2 for fp16/bf16,
        1 for fp8). Windowed layers count like full ones here; see
        :meth:`kv_bytes_for_sequence` for a sequence's bound."""
        return self.num_layers * self.kv_values_per_token_per_layer() * kv_dtype_bytes

    def kv_bytes_for_sequence(self, num_tokens: int, kv_dtype_bytes: float) -> float:
        """KV bytes one sequence of ``num_tokens`` needs when windowed layers keep only their
        last ``sliding_window`` tokens: ``values * bytes * (full_layers*T +
        num_sliding_layers*min(T, sliding_window))``."""
        per = self.kv_values_per_token_per_layer() * kv_dtype_bytes
        windowed = self.num_sliding_layers if self.sliding_window > 0 else 0
        kept = min(num_tokens, self.sliding_window) if windowed else 0
        return per * ((self.num_layers - windowed) * num_tokens + windowed * kept)

    def attention_flops_per_pair_per_layer(self) -> int:
        """FLOPs of one (query, key) pair in one layer: QK^T plus AV, 2 FLOPs per MAC.

        GQA/MHA: ``4 * num_attention_heads * head_dim``. MLA (unabsorbed, as in prefill):
        ``2 * heads * ((qk_nope_head_dim + qk_rope_head_dim) + v_head_dim)``. (Decode with
        absorbed weights works in the latent space instead: ``2*heads*(2*kv_lora_rank +
        qk_rope_head_dim)``, computable from the fields.)"""
        heads = self.num_attention_heads
        if self.is_mla:
            return 2 * heads * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)
        return 4 * heads * self.head_dim


# ---- import --------------------------------------------------------------------------------


def from_hf_config(config: dict[str, Any], name: str) -> ModelSpec:
    """ModelSpec of a Hugging Face config.json dict; ``name`` names it (and its errors).

    Raises:
        CatalogError: a required field is missing or malformed (the message names ``name``,
            the field and what is expected), or the quantization is not FP8/FP4.
    """
    return ModelSpec(**parse_hf_config(config, name))


def _read_json(path: Path, label: str, kind: str = "config.json") -> dict[str, Any]:
    text = read_text(path, f"model config {label}", CatalogError,
                     expected=f"a UTF-8 Hugging Face {kind}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"model config {label} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); expected a Hugging Face {kind}"
        ) from exc
    if not isinstance(data, dict):
        got = type(data).__name__
        raise CatalogError(f"model config {label} must hold a JSON object, got {got}")
    return data


def load_config_file(path: str | Path) -> ModelSpec:
    """Import a config.json file (or a directory holding one); the spec is named by its path.
    A generation_config.json in the same directory sets the sampling defaults
    (:func:`~capacitor.catalog.hf_config.parse_generation_config`).

    Raises:
        CatalogError: unreadable file, invalid JSON (naming the path) or a bad config.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    spec = from_hf_config(_read_json(p, str(p)), str(path))
    gen = p.parent / "generation_config.json"
    if gen.is_file():
        spec = dataclasses.replace(
            spec, **parse_generation_config(
                _read_json(gen, str(gen), "generation_config.json"), str(gen)
            )
        )
    return spec


# ---- bundled catalogue ---------------------------------------------------------------------

_DATA = resources.files("capacitor.catalog") / "data"


@cache
def _aliases_yaml() -> dict[str, Any]:
    data = yaml.safe_load((_DATA / "model_aliases.yaml").read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise CatalogError("catalog/data/model_aliases.yaml must be a mapping")
    return data


@cache
def _generation_defaults() -> dict[str, Any]:
    """Bundled name -> the sampling keys of its published generation_config.json."""
    text = (_DATA / "generation_defaults.yaml").read_text(encoding="utf-8")
    data = (yaml.safe_load(text) or {}).get("models") or {}
    if not isinstance(data, dict):
        raise CatalogError("catalog/data/generation_defaults.yaml: 'models' must be a mapping")
    return data


@cache
def _catalogue() -> tuple[dict[str, ModelSpec], dict[str, str]]:
    """(bundled name -> spec, lower-cased HF id -> bundled name), built once."""
    specs: dict[str, ModelSpec] = {}
    for entry in sorted((_DATA / "models").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            name = entry.name[: -len(".json")]
            data = json.loads(entry.read_text(encoding="utf-8"))
            specs[name] = from_hf_config(data, name)
    for name, entry in _generation_defaults().items():
        if name not in specs:
            raise CatalogError(f"generation_defaults.yaml: unknown model {name!r}")
        specs[name] = dataclasses.replace(specs[name], **parse_generation_config(entry, name))
    fields = {f.name for f in dataclasses.fields(ModelSpec)} - {"name", "hf_ids"}
    for name, entry in (_aliases_yaml().get("derived") or {}).items():
        overrides = {k: v for k, v in entry.items() if k not in ("base", "note")}
        if entry.get("base") not in specs or not set(overrides) <= fields:
            raise CatalogError(f"model_aliases.yaml: derived {name!r} has an unknown base or field")
        if overrides.get("weight_dtype", "bf16") not in WEIGHT_DTYPES:
            raise CatalogError(f"model_aliases.yaml: {name!r} weight_dtype not in {WEIGHT_DTYPES}")
        specs[name] = dataclasses.replace(specs[entry["base"]], name=name, **overrides)
    ids: dict[str, list[str]] = {}
    lookup: dict[str, str] = {}
    for hf_id, target in (_aliases_yaml().get("aliases") or {}).items():
        if target not in specs:
            raise CatalogError(f"model_aliases.yaml: alias {hf_id!r} -> unknown model {target!r}")
        ids.setdefault(target, []).append(hf_id)
        lookup[hf_id.lower()] = target
    specs = {n: dataclasses.replace(s, hf_ids=tuple(ids.get(n, ()))) for n, s in specs.items()}
    return specs, lookup


def list_models() -> list[ModelSpec]:
    """Every bundled model (config files and derived entries), sorted by name."""
    specs, _ = _catalogue()
    return [specs[n] for n in sorted(specs)]


def resolve_model(ref: str) -> ModelSpec:
    """Find a model by bundled name or Hugging Face repo id (both case-insensitive), or import
    the config.json at ``ref`` (a file, or a directory holding config.json).

    Raises:
        CatalogError: ``ref`` is none of these; the message lists the bundled names.
    """
    specs, lookup = _catalogue()
    key = str(ref).strip()
    by_name = {n.lower(): n for n in specs}
    if key.lower() in by_name:
        return specs[by_name[key.lower()]]
    if key.lower() in lookup:
        return specs[lookup[key.lower()]]
    path = Path(key).expanduser()
    if key.endswith(".json") or (key and (path.is_file() or (path / "config.json").is_file())):
        return load_config_file(path)
    raise CatalogError(
        f"unknown model {ref!r}: not a bundled model, a known Hugging Face id or a config.json "
        f"path. Use one of: {', '.join(sorted(specs))}; or pass the path to the model's "
        "config.json (from https://huggingface.co/<org>/<model>/blob/main/config.json)"
    )
