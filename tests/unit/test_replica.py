"""engine/replica.py: ReplicaSpec -> (EngineConfig, coefficients)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.engine.config import EngineConfig
from capacitor.engine.replica import ReplicaSpec, build_replica
from capacitor.errors import ConfigError, MemoryFitError
from capacitor.perf import step_time as st
from capacitor.perf.coefficients import build_coefficients
from capacitor.perf.memory import kv_bytes_per_block_per_gpu
from capacitor.perf.profile import PerfProfile, load_profile

H100 = get_gpu("H100")
LLAMA8B = resolve_model("meta-llama/Llama-3.1-8B-Instruct")


def _round_profile() -> PerfProfile:
    """The shipped profile with round request-path, overhead and host-tier constants for
    Hopper (most specific layer, so they win), so expected values can be worked by hand."""
    doc = load_profile(None).to_dict()
    for engine in ("vllm", "trtllm"):
        layer = doc["families"]["hopper"]["engines"][engine]
        layer["request_path"] = {"ingress_s": 0.01, "egress_s": 0.002}
        layer["overhead"] = {"step_fixed_s": 0.001 if engine == "vllm" else 0.0002,
                             "per_layer_s": 2e-5}
        layer["memory"] = {"cpu_offload_gib": 8.0}
        layer["efficiency"] = {**layer["efficiency"], "pcie_bw": 0.5}
    return PerfProfile(doc, origin="<round>")


def test_defaults_resolve_to_vllm_on_h100() -> None:
    config, coeffs = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100))
    assert isinstance(config, EngineConfig)
    assert (config.max_num_seqs, config.max_num_batched_tokens, config.block_size) == (
        1024,
        8192,
        16,
    )
    assert config.enable_prefix_caching is True
    # ~48 GiB of KV at 2 MiB per 16-token block: over 10,000 blocks, over 160,000 tokens,
    # so max_model_len is the model's 131072 positions
    assert config.num_gpu_blocks > 10_000
    assert config.max_model_len == 131072
    assert config.num_cpu_blocks == 0
    assert coeffs.shape == (st.NUM_COEFFS,)
    np.testing.assert_array_equal(coeffs, build_coefficients(LLAMA8B, H100, precision="bf16"))
    # the profile's request path reaches the engine config (round values: see _round_profile)
    config, _ = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100), _round_profile())
    assert (config.ingress_s, config.egress_s) == (0.01, 0.002)


def test_reported_blocks_are_used_and_bound_max_model_len() -> None:
    config, _ = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, total_kv_blocks=500))
    assert config.num_gpu_blocks == 500
    assert config.max_model_len == 500 * 16  # what fits, not the model's 131072
    spec = ReplicaSpec(model=LLAMA8B, gpu=H100, total_kv_blocks=500, max_model_len=4096)
    assert build_replica(spec)[0].max_model_len == 4096
    with pytest.raises(ConfigError, match="max_model_len"):
        build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, total_kv_blocks=500, max_model_len=9000))
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, max_model_len=200_000))


def test_explicit_settings_win_over_engine_defaults() -> None:
    spec = ReplicaSpec(
        model=LLAMA8B,
        gpu=H100,
        precision="FP16",
        max_num_seqs=128,
        max_num_batched_tokens=2048,
        gpu_memory_utilization=0.8,
        block_size=32,
        enable_prefix_caching=False,
    )
    config, _ = build_replica(spec)
    assert (config.max_num_seqs, config.max_num_batched_tokens, config.block_size) == (
        128,
        2048,
        32,
    )
    assert config.enable_prefix_caching is False
    full, _ = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, precision="FP16", block_size=32))
    assert config.num_gpu_blocks < full.num_gpu_blocks


def test_none_fields_mean_defaults() -> None:
    # What an experiments row with blank columns passes on.
    spec = ReplicaSpec(
        model=LLAMA8B,
        gpu=H100,
        ep=None,
        kv_cache_dtype=None,
        cpu_offload=None,
        precision=None,
        enable_prefix_caching=None,
    )
    config, _ = build_replica(spec)
    assert config.num_cpu_blocks == 0 and config.enable_prefix_caching


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tp": 3}, "tp=3"),
        ({"tp": 0}, "tp=0"),
        ({"pp": 0}, "pp=0"),
        ({"pp": 64}, "pp=64"),
        ({"ep": 2}, "ep=2"),
        ({"ep": 0}, "ep=0"),
        ({"engine": "tgi"}, "vllm, sglang, trtllm"),
        ({"precision": "int3"}, "precision"),
        ({"kv_cache_dtype": "int4"}, "kv_cache_dtype"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"max_num_seqs": 0}, "max_num_seqs"),
        ({"total_kv_blocks": 0}, "total_kv_blocks"),
    ],
)
def test_invalid_settings_raise_config_error_naming_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, **kwargs))


def test_ep_on_moe_model() -> None:
    moe = resolve_model("mistralai/Mixtral-8x7B-v0.1")
    a, ca = build_replica(ReplicaSpec(model=moe, gpu=H100, tp=2, ep=2))
    b, cb = build_replica(ReplicaSpec(model=moe, gpu=H100, tp=2))
    assert a.num_gpu_blocks == b.num_gpu_blocks  # same bytes per GPU either way
    from capacitor.perf.step_time import C_MOE_TOPK_FRACTION

    others = np.arange(len(ca)) != C_MOE_TOPK_FRACTION
    np.testing.assert_allclose(ca[others], cb[others])
    # whole experts per GPU: the busiest GPU streams more experts than the mean (top-2 of 8:
    # one token touches 2/8 of the experts; at ep=2 the busier GPU holds both 3/7 of the time)
    assert cb[C_MOE_TOPK_FRACTION] == pytest.approx(2 / 8)
    assert ca[C_MOE_TOPK_FRACTION] > cb[C_MOE_TOPK_FRACTION] * 1.3
    with pytest.raises(ConfigError, match="ep=4"):
        build_replica(ReplicaSpec(model=moe, gpu=H100, tp=2, ep=4))


def test_model_too_big_for_gpu() -> None:
    big = resolve_model("meta-llama/Llama-3.1-405B-Instruct")
    with pytest.raises(MemoryFitError, match="L40S"):
        build_replica(ReplicaSpec(model=big, gpu=get_gpu("L40S")))
    # ... but with enough GPUs it fits.
    config, _ = build_replica(ReplicaSpec(model=big, gpu=H100, tp=8, pp=2, precision="BF16"))
    assert config.num_gpu_blocks > 0


def test_cpu_offload_tier() -> None:
    # a Llama-3.1-8B block: 32 layers x 2 (K, V) x 8 KV heads x 128 dims x 2 bytes x 16 tokens
    # = 2,097,152 bytes (2 MiB). Host tier 8 GiB (round profile): 8 x 1024 / 2 = 4096
    # blocks; a block over 64 GB/s PCIe at 0.5 efficiency: 2,097,152 / 32e9 = 65.536 us
    assert kv_bytes_per_block_per_gpu(LLAMA8B, 1, 1, 16, "auto") == 2_097_152
    config, _ = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, cpu_offload=True),
                              _round_profile())
    assert config.num_cpu_blocks == 4096
    assert config.cpu_load_s_per_block == pytest.approx(65.536e-6, rel=1e-12)


def test_other_engines() -> None:
    sgl, _ = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, engine="sglang"))
    assert sgl.block_size == 1 and sgl.max_num_batched_tokens == 8192
    trt, _ = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, engine="TRTLLM"))
    assert trt.block_size == 32 and trt.max_num_seqs == 2048
    # the C++ executor's CPU cost per step is below vLLM's Python loop in the shipped profile
    shipped = load_profile(None)
    assert (shipped.constants("hopper", "trtllm").overhead.step_fixed_s
            < shipped.constants("hopper", "vllm").overhead.step_fixed_s)
    # both also pay every layer's kernels: fixed + 32 layers x 20 us (round profile) =
    # 1 ms + 0.64 ms for vLLM, 0.2 ms + 0.64 ms for TensorRT-LLM
    round_profile = _round_profile()
    _, vllm_coeffs = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100), round_profile)
    _, trt_coeffs = build_replica(ReplicaSpec(model=LLAMA8B, gpu=H100, engine="trtllm"),
                                  round_profile)
    assert vllm_coeffs[st.C_FIXED_S] == pytest.approx(0.00164, rel=1e-12)
    assert trt_coeffs[st.C_FIXED_S] == pytest.approx(0.00084, rel=1e-12)


def test_fp8_kv_cache_doubles_blocks() -> None:
    base = dict(model=LLAMA8B, gpu=H100, max_num_seqs=128, max_num_batched_tokens=2048)
    bf16, _ = build_replica(ReplicaSpec(**base))
    fp8, coeffs = build_replica(ReplicaSpec(**base, kv_cache_dtype="fp8"))
    assert fp8.num_gpu_blocks == pytest.approx(2 * bf16.num_gpu_blocks, abs=2)


def test_trainval_rows_derive_blocks_within_5pct(shared_data) -> None:
    path = shared_data / "validation" / "experiments_trainval.csv"
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("total_kv_blocks")]
    for row in rows:
        spec = ReplicaSpec(
            model=resolve_model(row["model"]),
            gpu=get_gpu(row["hardware"]),
            tp=int(row["tp"]),
            precision=row["precision"],
            engine=row["engine"],
            max_num_seqs=int(row["max_num_seqs"]),
            max_num_batched_tokens=int(row["max_num_batched_tokens"]),
            gpu_memory_utilization=float(row["gpu_memory_utilization"]),
        )
        config, _ = build_replica(spec)
        reported = int(row["total_kv_blocks"])
        assert config.num_gpu_blocks == pytest.approx(reported, rel=0.05), row["id"]
