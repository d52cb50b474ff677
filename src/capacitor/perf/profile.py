"""Calibrated constants of the step-time and memory model, per (hardware family, engine).

The physics (bytes, FLOPs, link bandwidths) comes from the catalogue; what a real engine
achieves of it is a handful of constants kept in ONE data file, ``perf/data/default_profile.yaml``
(shipped), which a calibration fit may rewrite. The file is layered::

    defaults:            every key (the root; must be complete)
    engines:  {vllm: ..., sglang: ..., trtllm: ...}          engine defaults (partial)
    families: {hopper: {defaults: ..., engines: {vllm: ...}}} family defaults / family x engine

A lookup for (family, engine) takes each key from the most specific layer that sets it:
family x engine, then family default, then engine default, then the root. Each layer has the
four sections of :class:`ProfileConstants` (``efficiency``, ``overhead``, ``request_path``,
``memory``); units are in the key names (``_s`` seconds, ``_gib`` GiB, ``bytes_per_``).

:func:`load_profile` validates the file (unknown keys, out-of-range values and bad YAML raise
:class:`~capacitor.errors.CalibrationError` naming the key and value). :func:`engine_defaults`
gives each engine's own scheduling defaults (the values a server gets when the operator sets
nothing), in vLLM's vocabulary.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from capacitor.errors import CalibrationError, ConfigError

FAMILIES: tuple[str, ...] = ("ampere", "ada", "hopper", "blackwell", "cdna3", "cdna4")
ENGINES: tuple[str, ...] = ("vllm", "sglang", "trtllm")
_DEFAULT_FILE = "data/default_profile.yaml"
GiB = 1 << 30


# ---- resolved constants (frozen, what the model code reads) ---------------------------------


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Fractions of peak a real engine achieves, and link latencies.

    weight_bw, kv_bw: fraction of peak HBM bandwidth when streaming weights / reading KV.
    gemm_max: best dense-GEMM fraction of the 16-bit tensor peak; gemm_max_low_precision the
    same at FP8/FP4. gemm_half_tokens: batch tokens at which GEMM efficiency is half its max.
    attention: fraction of the tensor peak prefill attention (FlashAttention) reaches.
    allreduce_bw: NCCL bus bandwidth as a fraction of the per-direction link rate.
    allreduce_latency_s / allreduce_latency_pcie_s: fixed cost of one all-reduce (or
    pipeline send) over NVLink/xGMI / over PCIe, seconds. pcie_bw: fraction of the host
    link rate achieved copying KV blocks (CPU offload). all_to_all_bw, all_to_all_latency_s:
    MoE expert-parallel dispatch or combine (all-to-all): fraction of the per-direction link
    rate, and fixed cost of one such call over NVLink/xGMI (seconds); used only when the
    dispatch/combine layout is modelled (``build_coefficients(moe_all_to_all=True)``).
    """

    weight_bw: float
    kv_bw: float
    gemm_max: float
    gemm_max_low_precision: float
    gemm_half_tokens: float
    attention: float
    allreduce_bw: float
    allreduce_latency_s: float
    allreduce_latency_pcie_s: float
    pcie_bw: float
    all_to_all_bw: float
    all_to_all_latency_s: float


@dataclass(frozen=True, slots=True)
class Overhead:
    """CPU/launch overheads: per step, per sequence in the batch, extra per prefill chunk (s)."""

    step_fixed_s: float
    per_seq_s: float
    per_prefill_seq_s: float


@dataclass(frozen=True, slots=True)
class RequestPath:
    """ingress_s: HTTP + tokenization before the engine sees a request; egress_s:
    detokenization + streaming after the engine emits a token (seconds)."""

    ingress_s: float
    egress_s: float


@dataclass(frozen=True, slots=True)
class Memory:
    """Non-KV memory an engine reserves per GPU beyond the weights, and the CPU KV tier.

    reserve = reserve_fixed_gib (CUDA context growth, cuBLAS/attention workspaces, CUDA
    graphs) + reserve_multi_gpu_gib when tp*pp > 1 (NCCL / custom all-reduce buffers)
    + reserve_bytes_per_token_hidden * max_num_batched_tokens * hidden_size (profile-run
    activations and persistent per-token buffers) + reserve_bytes_per_seq_vocab *
    max_num_seqs * vocab_size (the profile run's dummy sampler: fp32 logits, probabilities,
    sort values and int64 indices) + reserve_extra_gib_by_model_type[model_type]
    (architectures with parts the ModelSpec does not describe). cpu_offload_gib: host KV
    space per GPU assumed when KV offloading is on but its size is not given.
    """

    reserve_fixed_gib: float
    reserve_multi_gpu_gib: float
    reserve_bytes_per_token_hidden: float
    reserve_bytes_per_seq_vocab: float
    reserve_extra_gib_by_model_type: MappingProxyType
    cpu_offload_gib: float


@dataclass(frozen=True, slots=True)
class ProfileConstants:
    """All constants for one (family, engine)."""

    family: str
    engine: str
    efficiency: Efficiency
    overhead: Overhead
    request_path: RequestPath
    memory: Memory


_SECTIONS = {
    "efficiency": Efficiency,
    "overhead": Overhead,
    "request_path": RequestPath,
    "memory": Memory,
}


# ---- file schema (pydantic at the edge; every key optional in a layer) ----------------------

_FRACTION = {"gt": 0.0, "le": 1.0}
_SECONDS = {"ge": 0.0, "le": 10.0}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _EfficiencyIn(_Strict):
    weight_bw: float | None = Field(None, **_FRACTION)
    kv_bw: float | None = Field(None, **_FRACTION)
    gemm_max: float | None = Field(None, **_FRACTION)
    gemm_max_low_precision: float | None = Field(None, **_FRACTION)
    gemm_half_tokens: float | None = Field(None, ge=0.0, le=1e5)
    attention: float | None = Field(None, **_FRACTION)
    allreduce_bw: float | None = Field(None, **_FRACTION)
    allreduce_latency_s: float | None = Field(None, ge=0.0, le=1e-2)
    allreduce_latency_pcie_s: float | None = Field(None, ge=0.0, le=1e-2)
    pcie_bw: float | None = Field(None, **_FRACTION)
    all_to_all_bw: float | None = Field(None, **_FRACTION)
    all_to_all_latency_s: float | None = Field(None, ge=0.0, le=1e-2)


class _OverheadIn(_Strict):
    step_fixed_s: float | None = Field(None, ge=0.0, le=1.0)
    per_seq_s: float | None = Field(None, ge=0.0, le=0.1)
    per_prefill_seq_s: float | None = Field(None, ge=0.0, le=0.1)


class _RequestPathIn(_Strict):
    ingress_s: float | None = Field(None, **_SECONDS)
    egress_s: float | None = Field(None, **_SECONDS)


class _MemoryIn(_Strict):
    reserve_fixed_gib: float | None = Field(None, ge=0.0, le=1024.0)
    reserve_multi_gpu_gib: float | None = Field(None, ge=0.0, le=1024.0)
    reserve_bytes_per_token_hidden: float | None = Field(None, ge=0.0, le=1e4)
    reserve_bytes_per_seq_vocab: float | None = Field(None, ge=0.0, le=1e4)
    reserve_extra_gib_by_model_type: dict[str, float] | None = None
    cpu_offload_gib: float | None = Field(None, ge=0.0, le=1e5)


class _LayerIn(_Strict):
    efficiency: _EfficiencyIn = Field(default_factory=_EfficiencyIn)
    overhead: _OverheadIn = Field(default_factory=_OverheadIn)
    request_path: _RequestPathIn = Field(default_factory=_RequestPathIn)
    memory: _MemoryIn = Field(default_factory=_MemoryIn)


class _FamilyIn(_Strict):
    defaults: _LayerIn = Field(default_factory=_LayerIn)
    engines: dict[Literal["vllm", "sglang", "trtllm"], _LayerIn] = Field(default_factory=dict)


class _ProfileIn(_Strict):
    schema_version: Literal[1]
    description: str = ""
    defaults: _LayerIn
    engines: dict[Literal["vllm", "sglang", "trtllm"], _LayerIn] = Field(default_factory=dict)
    families: dict[Literal["ampere", "ada", "hopper", "blackwell", "cdna3", "cdna4"], _FamilyIn] = (
        Field(default_factory=dict)
    )


def _validation_message(origin: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "<root>"
        parts.append(f"{key} = {e.get('input')!r}: {e['msg']}")
    return f"profile {origin}: " + "; ".join(parts)


class PerfProfile:
    """A validated, layered profile file; :meth:`constants` resolves one (family, engine)."""

    def __init__(self, data: dict[str, Any], origin: str = "<profile>") -> None:
        if not isinstance(data, dict):
            raise CalibrationError(
                f"profile {origin}: expected a mapping at the top level, got {type(data).__name__}"
            )
        try:
            self._in = _ProfileIn.model_validate(data)
        except ValidationError as err:
            raise CalibrationError(_validation_message(origin, err)) from None
        self.origin = origin
        for section in _SECTIONS:
            root = getattr(self._in.defaults, section)
            for name, value in root.model_dump().items():
                if value is None:
                    raise CalibrationError(
                        f"profile {origin}: defaults.{section}.{name} is missing (the root "
                        "layer must set every key)"
                    )
        self._cache: dict[tuple[str, str], ProfileConstants] = {}

    @property
    def description(self) -> str:
        return self._in.description

    def to_dict(self) -> dict[str, Any]:
        """The file's content (unset keys left out), e.g. for a calibration fit to rewrite."""
        return self._in.model_dump(exclude_none=True, exclude_defaults=False)

    def constants(self, family: str, engine: str) -> ProfileConstants:
        """The constants for ``family`` (GPUSpec.family) and ``engine``.

        Raises:
            ConfigError: unknown engine (lists the valid ones) or unknown family.
        """
        engine = check_engine(engine)
        if family not in FAMILIES:
            raise ConfigError(f"hardware family {family!r} unknown; valid: {', '.join(FAMILIES)}")
        key = (family, engine)
        if key not in self._cache:
            self._cache[key] = self._resolve(family, engine)
        return self._cache[key]

    def _resolve(self, family: str, engine: str) -> ProfileConstants:
        fam = self._in.families.get(family)
        layers = [  # most specific first
            fam.engines.get(engine) if fam else None,
            fam.defaults if fam else None,
            self._in.engines.get(engine),
            self._in.defaults,
        ]
        layers = [layer for layer in layers if layer is not None]
        built: dict[str, Any] = {}
        for section, cls in _SECTIONS.items():
            values: dict[str, Any] = {}
            for f in fields(cls):
                if f.name == "reserve_extra_gib_by_model_type":
                    merged: dict[str, float] = {}
                    for layer in reversed(layers):
                        merged.update(getattr(getattr(layer, section), f.name) or {})
                    values[f.name] = MappingProxyType(merged)
                    continue
                for layer in layers:
                    value = getattr(getattr(layer, section), f.name)
                    if value is not None:
                        values[f.name] = float(value)
                        break
            built[section] = cls(**values)
        return ProfileConstants(family=family, engine=engine, **built)


def check_engine(engine: str) -> str:
    """Normalised engine name; ConfigError listing the valid ones when unknown."""
    name = str(engine).strip().lower()
    if name not in ENGINES:
        raise ConfigError(f"engine {engine!r} unknown; valid: {', '.join(ENGINES)}")
    return name


@functools.cache
def _shipped() -> PerfProfile:
    text = resources.files("capacitor.perf").joinpath(_DEFAULT_FILE).read_text(encoding="utf-8")
    return PerfProfile(yaml.safe_load(text), origin=f"capacitor/perf/{_DEFAULT_FILE}")


def load_profile(path: str | Path | None = None) -> PerfProfile:
    """Load a profile YAML; ``None`` gives the shipped default (parsed once).

    Raises:
        CalibrationError: unreadable file, invalid YAML, unknown keys or out-of-range values
            (the message names the key and the value).
    """
    if path is None:
        return _shipped()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise CalibrationError(f"profile {p}: cannot read: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CalibrationError(f"profile {p}: not valid YAML: {err}") from None
    return PerfProfile(data, origin=str(p))


# ---- engine scheduling defaults ---------------------------------------------------------------


def engine_defaults(engine: str, gpu: Any, *, tp: int = 1, pp: int = 1) -> dict[str, Any]:
    """Scheduling and KV settings an engine picks when the operator sets none, in vLLM names
    (``max_num_seqs``, ``max_num_batched_tokens``, ``gpu_memory_utilization``, ``block_size``,
    ``enable_prefix_caching``). How each engine applies its memory fraction is in
    :func:`capacitor.perf.memory.num_gpu_blocks`.

    vllm (v1 engine, OpenAI server, v0.10-0.15): ``EngineArgs.get_batch_defaults`` /
      ``_set_default_args`` in ``vllm/engine/arg_utils.py``: a device with >= 70 GiB that is
      not an A100 (by name; PR #17885) gets max_num_batched_tokens 8192 and max_num_seqs 1024
      for the OPENAI_API_SERVER usage context, every other device 2048 and 256;
      ``CacheConfig``: gpu_memory_utilization 0.9, block_size 16; v1 enables prefix caching.
    sglang (v0.5.x, ``python/sglang/srt/server_args.py``
      ``ServerArgs._handle_gpu_memory_settings``): chunked_prefill_size 2048 below 35 GiB,
      4096 below 60 GiB, 8192 below 160 GiB, else 16384; cuda_graph_max_bs 256 (tp < 4) or
      512 on 60-160 GiB parts; mem_fraction_static = (M - reserved) / M with reserved MiB =
      512 + 1.5 * chunked_prefill_size + 2 * cuda_graph_max_bs + tp*pp/8 * 1024 (at least
      10 GiB on > 60 GiB parts); page_size 1; radix cache on. max_running_requests is derived
      from the KV pool (``min(max(tokens / context_len * 512, 2048), 4096)`` request slots);
      we take its floor, 2048.
    trtllm (1.x LLM API, ``tensorrt_llm/llmapi/llm_args.py``): max_batch_size 2048,
      max_num_tokens 8192; ``KvCacheConfig``: free_gpu_memory_fraction 0.9 (of the memory
      free after weights and activations), tokens_per_block 32, enable_block_reuse True.

    Raises:
        ConfigError: unknown engine (lists the valid ones).
    """
    engine = check_engine(engine)
    mem_gib = float(gpu.memory_gib)
    if engine == "vllm":
        large = mem_gib >= 70.0 and "a100" not in str(gpu.name).lower()
        return {
            "max_num_seqs": 1024 if large else 256,
            "max_num_batched_tokens": 8192 if large else 2048,
            "gpu_memory_utilization": 0.9,
            "block_size": 16,
            "enable_prefix_caching": True,
        }
    if engine == "sglang":
        mib = mem_gib * 1024.0
        if mib < 35 * 1024:
            chunk, graph_bs = 2048, (24 if tp < 4 else 80)
        elif mib < 60 * 1024:
            chunk, graph_bs = 4096, (32 if tp < 4 else 160)
        elif mib < 160 * 1024:
            chunk, graph_bs = 8192, (256 if tp < 4 else 512)
        else:
            chunk, graph_bs = 16384, 512
        reserved = 512 + 1.5 * max(chunk, 2048) + 2 * graph_bs + tp * pp / 8 * 1024
        if mib > 60 * 1024:
            reserved = max(reserved, 10 * 1024)
        return {
            "max_num_seqs": 2048,
            "max_num_batched_tokens": chunk,
            "gpu_memory_utilization": round((mib - reserved) / mib, 3),
            "block_size": 1,
            "enable_prefix_caching": True,
        }
    return {
        "max_num_seqs": 2048,
        "max_num_batched_tokens": 8192,
        "gpu_memory_utilization": 0.9,
        "block_size": 32,
        "enable_prefix_caching": True,
    }


__all__ = [
    "ENGINES",
    "FAMILIES",
    "Efficiency",
    "Memory",
    "Overhead",
    "PerfProfile",
    "ProfileConstants",
    "RequestPath",
    "check_engine",
    "engine_defaults",
    "load_profile",
]
