"""One serving replica as a deployment describes it, resolved into what the simulator runs.

:class:`ReplicaSpec` is the operator's view (model, GPU, parallelism, precision, engine and its
settings, each None meaning "the engine's own default"); :func:`build_replica` resolves the
defaults (:func:`capacitor.perf.profile.engine_defaults`), sizes the KV cache
(:func:`capacitor.perf.memory.num_gpu_blocks`, or the engine's reported ``total_kv_blocks``),
and returns the :class:`~capacitor.engine.config.EngineConfig` with the step-time coefficients
(:func:`capacitor.perf.coefficients.build_coefficients`).

``max_model_len`` left unset becomes ``min(model.max_position_embeddings, blocks x
block_size)``: vLLM refuses to start when the model's full context does not fit the KV cache,
so an operator of such a server must have set ``--max-model-len`` to what fits, and we assume
the largest such value.

KV offloading (``cpu_offload``): the host tier holds ``cpu_offload_gib`` per GPU (profile
``memory.cpu_offload_gib``; the runs record no size), i.e. ``cpu_offload_gib x 2**30 /
block bytes per GPU`` blocks, and a block comes back in ``block bytes per GPU / (pcie_gb_s x
pcie_bw)`` seconds (every GPU copies its own shard of the block in parallel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from capacitor.engine.config import EngineConfig
from capacitor.errors import ConfigError
from capacitor.perf.coefficients import build_coefficients
from capacitor.perf.memory import (
    GiB,
    check_parallelism,
    check_reported_blocks,
    kv_bytes_per_block_per_gpu,
    kv_dtype_bytes,
    normalize_precision,
    num_gpu_blocks,
    redundant_experts,
    resolve_constants,
)
from capacitor.perf.profile import PerfProfile, check_engine, engine_defaults
from capacitor.perf.speculative import (
    DEFAULT_MTP_ACCEPTANCE_RATE,
    check_speculative,
    default_num_speculative_tokens,
    draft_coefficients,
)


@dataclass(frozen=True)
class ReplicaSpec:
    """A replica of ``tp x pp`` GPUs serving one model with one engine.

    Attributes:
        model: a :class:`capacitor.catalog.models.ModelSpec`.
        gpu: a :class:`capacitor.catalog.hardware.GPUSpec`.
        tp, pp: tensor / pipeline parallel sizes; ep: expert-parallel size over the same
            GPUs (None = 1).
        ep_num_redundant_experts: extra physical experts per MoE layer (SGLang
            ``--ep-num-redundant-experts``); None = the fewest that make the experts divide
            over ep (:func:`capacitor.perf.memory.redundant_experts`), 0 when ep divides them.
        dp_attention: attention data-parallel over the tp GPUs, each with a full copy of
            the attention weights and its own sequences' KV, the MoE layers expert-parallel
            (SGLang ``--enable-dp-attention``, TensorRT-LLM ``enable_attention_dp``); the
            replica is still one scheduler over the whole batch, the tp attention ranks'
            batches assumed balanced (as TensorRT-LLM's ``attention_dp_config.enable_balance``
            and SGLang's round-robin dispatch aim for).
        precision: weight precision FP16/BF16/FP8/FP4 (None = the checkpoint's weight_dtype).
        kv_cache_dtype: vLLM name (``auto`` = 16-bit, ``fp8`` ...); None = auto.
        engine: ``vllm``, ``sglang`` or ``trtllm``.
        max_num_seqs, max_num_batched_tokens, gpu_memory_utilization, block_size,
        enable_prefix_caching: engine settings in vLLM's names (for sglang they stand for
            max_running_requests, chunked_prefill_size, mem_fraction_static, page_size and the
            radix cache; for trtllm max_batch_size, max_num_tokens, free_gpu_memory_fraction,
            tokens_per_block and block reuse); None = the engine's default.
        cpu_offload: the engine also keeps KV blocks in host memory (None = False).
        total_kv_blocks: the KV block count the engine reported (None = derive from memory).
        max_model_len: longest request accepted (None = what fits, see the module docstring).
        scheduler_recv_interval: SGLang only: the scheduler polls for new requests every
            this many decode-only steps (and after any step with prompt tokens); None = 1.
        attention_dp_timeout_iters: TensorRT-LLM with dp_attention only: balancing
            (``attention_dp_config: enable_balance: true, timeout_iters``): prompts wait
            until every attention-DP rank has one, or this many scheduler iterations; None =
            no balancing.
        async_scheduling: schedule step N+1 while step N runs (None = the engine's default,
            :data:`ASYNC_SCHEDULING_BY_ENGINE`; vLLM with pp > 1 and SGLang with speculative
            decoding run synchronously).
        speculative: ``none`` or ``mtp`` (MTP speculative decoding with the model's
            multi-token-prediction layers; :mod:`capacitor.perf.speculative`).
        num_speculative_tokens: draft tokens per step with ``mtp`` (None = 2 with sglang,
            else 3, or 1 with dp_attention:
            :func:`capacitor.perf.speculative.default_num_speculative_tokens`).
        mtp_acceptance_rate: per-position draft acceptance with ``mtp`` (None =
            :data:`capacitor.perf.speculative.DEFAULT_MTP_ACCEPTANCE_RATE`, 0.69).
    """

    model: Any
    gpu: Any
    tp: int = 1
    pp: int = 1
    ep: int | None = 1
    ep_num_redundant_experts: int | None = None
    dp_attention: bool = False
    precision: str | None = None
    kv_cache_dtype: str | None = "auto"
    engine: str = "vllm"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    block_size: int | None = None
    enable_prefix_caching: bool | None = None
    cpu_offload: bool | None = False
    total_kv_blocks: int | None = None
    max_model_len: int | None = None
    async_scheduling: bool | None = None
    scheduler_recv_interval: int | None = None
    attention_dp_timeout_iters: int | None = None
    speculative: str = "none"
    num_speculative_tokens: int | None = None
    mtp_acceptance_rate: float | None = None


#: How each engine admits requests against KV memory (EngineConfig.kv_reservation). vLLM v1
#: and SGLang allocate blocks as tokens are computed and preempt (recompute / retract) when
#: they run out; TensorRT-LLM's default capacity scheduler, GUARANTEED_NO_EVICT, admits a
#: request only when blocks for its prompt plus max output tokens are free and never pauses
#: it (TensorRT-LLM docs, "Useful Runtime Options: Capacity Scheduler Policy").
KV_RESERVATION_BY_ENGINE = {"vllm": "on_demand", "sglang": "on_demand", "trtllm": "full_request"}

#: Whether each engine, by default, schedules step N+1 while step N runs on the GPU
#: (EngineConfig.async_scheduling).
#: * vLLM: on by default since v0.14.0 (release notes, "Breaking Changes: Async scheduling is
#:   now enabled by default", PR vllm-project/vllm#27614; tracking issue #27679):
#:   ``SchedulerConfig.async_scheduling`` defaults to None and ``VllmConfig.__post_init__``
#:   (vllm/config/vllm.py) resolves None to True unless an incompatible option is set: pooling
#:   models, non-EAGLE/MTP speculative decoding, an executor backend other than
#:   mp / uni / external_launcher, and in v0.14 pipeline parallelism (async + PP came with
#:   #32359; we keep PP > 1 synchronous). ``--no-async-scheduling`` turns it off. With it the
#:   engine core runs ``EngineCore.step_with_batch_queue`` (vllm/v1/engine/core.py, batch
#:   queue of 2): it schedules and launches batch N+1, then blocks on batch N and emits its
#:   tokens; new requests are pulled from the input queue only between those iterations, so
#:   one arriving while N runs is scheduled into N+2. ``AsyncScheduler``
#:   (vllm/v1/core/sched/async_scheduler.py) advances a request with output placeholders, so
#:   decodes and chunked prefills still run every step.
#: * SGLang: the overlap scheduler (``Scheduler.event_loop_overlap``,
#:   python/sglang/srt/managers/scheduler.py: receive requests, schedule and launch batch N+1,
#:   then process batch N's result) is on by default (ServerArgs
#:   ``disable_overlap_schedule = False``, python/sglang/srt/server_args.py): the same
#:   structure.
#: * TensorRT-LLM: its overlap scheduler belongs to the PyTorch backend (PyExecutor,
#:   docs/source/features/overlap-scheduler.md); the v0.17 TensorRT-engine runs we validate
#:   against predate it, so it stays off.
ASYNC_SCHEDULING_BY_ENGINE = {"vllm": True, "sglang": True, "trtllm": False}


def _positive_int(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{field}={value!r}: must be an integer >= 1")
    return value


def _recv_interval(spec: ReplicaSpec, engine: str) -> int:
    """SGLang's ``--scheduler-recv-interval`` (default 1); the other engines take new
    requests in at every step and have no such setting."""
    value = spec.scheduler_recv_interval
    if value is None:
        return 1
    if engine != "sglang":
        raise ConfigError(
            f"scheduler_recv_interval={value}: an SGLang setting (--scheduler-recv-interval); "
            f"engine={engine} takes new requests in at every step"
        )
    return _positive_int("scheduler_recv_interval", value)


def _adp_timeout(spec: ReplicaSpec, engine: str) -> int:
    """TensorRT-LLM's attention-DP balancing timeout (``attention_dp_config.timeout_iters``
    with ``enable_balance: true``); None = no balancing (its default ``enable_balance`` is
    false)."""
    value = spec.attention_dp_timeout_iters
    if value is None:
        return 0
    if engine != "trtllm" or not spec.dp_attention:
        raise ConfigError(
            f"attention_dp_timeout_iters={value}: TensorRT-LLM's attention-DP balancing; it "
            f"needs engine=trtllm with dp_attention (got engine={engine}, "
            f"dp_attention={spec.dp_attention})"
        )
    return _positive_int("attention_dp_timeout_iters", value)


def _async_scheduling(spec: ReplicaSpec, engine: str, pp: int) -> bool:
    if spec.async_scheduling is not None:
        return bool(spec.async_scheduling)
    if engine == "vllm" and pp > 1:
        return False  # vLLM v0.14 disables it with pipeline parallelism
    if engine == "sglang" and (spec.speculative or "none") != "none":
        # SGLang runs speculative decoding without its overlap scheduler unless the
        # experimental spec v2 is enabled (SGLANG_ENABLE_SPEC_V2): "Overlap scheduler is
        # disabled when spec v2 is off" (server_args.py; SGLang docs, "Speculative Decoding")
        return False
    return ASYNC_SCHEDULING_BY_ENGINE[engine]


def _speculative_settings(
    spec: ReplicaSpec, model: Any, gpu: Any, **build_kwargs: Any
) -> tuple[int, float, tuple[float, ...]]:
    """``(num_speculative_tokens, mtp_acceptance_rate, draft_coeffs)`` of the spec: zeros and
    an empty tuple without speculative decoding."""
    method = spec.speculative or "none"
    if method == "none":
        check_speculative(method, 0, 0.0, model)
        return 0, 0.0, ()
    num_drafts = spec.num_speculative_tokens
    if num_drafts is None:
        num_drafts = default_num_speculative_tokens(check_engine(spec.engine),
                                                    bool(spec.dp_attention))
    acceptance = spec.mtp_acceptance_rate
    if acceptance is None:
        acceptance = DEFAULT_MTP_ACCEPTANCE_RATE
    check_speculative(method, num_drafts, float(acceptance), model)
    draft = draft_coefficients(model, build_coefficients, gpu=gpu, **build_kwargs)
    return num_drafts, float(acceptance), tuple(float(x) for x in draft)


def resolved_settings(spec: ReplicaSpec) -> dict[str, Any]:
    """The spec's engine settings with every None replaced by the engine's default."""
    engine = check_engine(spec.engine)
    defaults = engine_defaults(engine, spec.gpu, tp=spec.tp, pp=spec.pp)
    out = {}
    for key, default in defaults.items():
        value = getattr(spec, key)
        out[key] = default if value is None else value
    for key in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
        _positive_int(key, out[key])
    util = out["gpu_memory_utilization"]
    if not isinstance(util, int | float) or not 0.0 < util <= 1.0:
        raise ConfigError(f"gpu_memory_utilization={util!r}: must be in (0, 1]")
    return out


def build_replica(
    spec: ReplicaSpec, profile: PerfProfile | None = None
) -> tuple[EngineConfig, np.ndarray]:
    """Resolve ``spec`` into the simulator's (EngineConfig, step-time coefficients).

    Raises:
        ConfigError: invalid tp (< 1, not dividing the attention heads), pp, ep, engine,
            precision, kv_cache_dtype or engine setting; the message names the field.
        MemoryFitError: the model does not fit (from :func:`num_gpu_blocks`).
    """
    model, gpu = spec.model, spec.gpu
    tp, pp = _positive_int("tp", spec.tp), _positive_int("pp", spec.pp)
    ep = 1 if spec.ep is None else _positive_int("ep", spec.ep)
    redundant = redundant_experts(model, ep, spec.ep_num_redundant_experts)
    check_parallelism(model, tp, pp, ep, dp_attention=spec.dp_attention,
                      ep_num_redundant_experts=redundant)
    engine = check_engine(spec.engine)
    precision = normalize_precision(spec.precision, model)
    kv_dtype = spec.kv_cache_dtype or "auto"
    if kv_dtype == "auto" and engine == "trtllm" and precision in ("fp8", "fp4"):
        # TensorRT-LLM's KV cache follows the checkpoint's quantization (KvCacheConfig
        # dtype="auto"); NVIDIA's ModelOpt FP8 / FP4 checkpoints quantize it to FP8.
        kv_dtype = "fp8"
    kv_dtype_bytes(kv_dtype)  # validates the name
    settings = resolved_settings(spec)
    constants = resolve_constants(profile, gpu, engine)
    block_size = settings["block_size"]

    if spec.total_kv_blocks is not None:
        blocks = _positive_int("total_kv_blocks", spec.total_kv_blocks)
        check_reported_blocks(model, gpu, blocks, tp=tp, pp=pp, precision=precision,
                              kv_cache_dtype=kv_dtype, block_size=block_size,
                              dp_attention=spec.dp_attention,
                              ep_num_redundant_experts=redundant)
    else:
        blocks = num_gpu_blocks(
            model,
            gpu,
            tp=tp,
            pp=pp,
            ep=ep,
            precision=precision,
            kv_cache_dtype=kv_dtype,
            gpu_memory_utilization=float(settings["gpu_memory_utilization"]),
            block_size=block_size,
            max_num_batched_tokens=settings["max_num_batched_tokens"],
            max_num_seqs=settings["max_num_seqs"],
            engine=engine,
            profile=constants,
            dp_attention=spec.dp_attention,
            ep_num_redundant_experts=redundant,
        )

    capacity = blocks * block_size
    if spec.max_model_len is None:
        max_model_len = min(model.max_position_embeddings, capacity)
    else:
        max_model_len = _positive_int("max_model_len", spec.max_model_len)
        if max_model_len > model.max_position_embeddings:
            raise ConfigError(
                f"max_model_len={max_model_len} exceeds max_position_embeddings="
                f"{model.max_position_embeddings} of {model.name}"
            )

    block_bytes = kv_bytes_per_block_per_gpu(model, tp, pp, block_size, kv_dtype)
    num_cpu_blocks, load_s = 0, 0.0
    if spec.cpu_offload:
        num_cpu_blocks = int(constants.memory.cpu_offload_gib * GiB // block_bytes)
        host_link = gpu.pcie_gb_s * 1e9 * constants.efficiency.pcie_bw
        load_s = block_bytes / host_link

    num_drafts, acceptance, draft = _speculative_settings(
        spec, model, gpu, tp=tp, ep=ep, precision=precision, kv_cache_dtype=kv_dtype,
        engine=engine, profile=constants, dp_attention=spec.dp_attention,
        ep_num_redundant_experts=redundant,
    )
    config = EngineConfig(
        max_num_seqs=settings["max_num_seqs"],
        max_num_batched_tokens=settings["max_num_batched_tokens"],
        block_size=block_size,
        num_gpu_blocks=blocks,
        enable_prefix_caching=bool(settings["enable_prefix_caching"]),
        max_model_len=max_model_len,
        num_cpu_blocks=num_cpu_blocks,
        cpu_load_s_per_block=load_s,
        ingress_s=constants.request_path.ingress_s,
        egress_s=constants.request_path.egress_s,
        kv_reservation=KV_RESERVATION_BY_ENGINE[engine],
        async_scheduling=_async_scheduling(spec, engine, pp),
        scheduler_recv_interval=_recv_interval(spec, engine),
        attention_dp_timeout_iters=_adp_timeout(spec, engine),
        attention_dp_ranks=tp if spec.dp_attention else 1,
        num_speculative_tokens=num_drafts,
        mtp_acceptance_rate=acceptance,
        draft_coeffs=draft,
    )
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
        dp_attention=spec.dp_attention,
        ep_num_redundant_experts=redundant,
    )
    return config, coeffs


__all__ = ["ReplicaSpec", "build_replica", "resolved_settings"]
