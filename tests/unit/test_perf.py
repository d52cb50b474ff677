"""perf/: profile file, memory model (vs vLLM-reported KV blocks), coefficients."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest
import yaml

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.errors import CalibrationError, ConfigError, MemoryFitError
from capacitor.perf import step_time as st
from capacitor.perf.coefficients import build_coefficients, describe_coefficients, ep_imbalance
from capacitor.perf.memory import (
    kv_bytes_per_block_per_gpu,
    kv_bytes_per_token_per_gpu,
    num_gpu_blocks,
    weight_bytes_per_gpu,
)
from capacitor.perf.profile import ENGINES, engine_defaults, load_profile

H100 = get_gpu("H100")
LLAMA8B = resolve_model("meta-llama/Llama-3.1-8B-Instruct")


def _file_constant(section: str, key: str, family: str = "hopper", engine: str = "vllm"):
    """A constant read straight from the shipped YAML, most specific layer first."""
    text = resources.files("capacitor.perf").joinpath("data/default_profile.yaml").read_text()
    doc = yaml.safe_load(text)
    fam = (doc.get("families") or {}).get(family) or {}
    layers = [
        ((fam.get("engines") or {}).get(engine)) or {},
        fam.get("defaults") or {},
        (doc.get("engines") or {}).get(engine) or {},
        doc["defaults"],
    ]
    for layer in layers:
        value = (layer.get(section) or {}).get(key)
        if value is not None:
            return value
    raise KeyError(key)


# ---- analytic oracle: Llama-3.1-8B dims, H100, TP1, 16-bit ---------------------------------


def test_oracle_llama8b_h100_weight_and_decode_attention_time() -> None:
    # The dims the hand computation assumes.
    assert (LLAMA8B.num_layers, LLAMA8B.hidden_size, LLAMA8B.intermediate_size) == (32, 4096, 14336)
    assert (LLAMA8B.num_attention_heads, LLAMA8B.num_kv_heads, LLAMA8B.head_dim) == (32, 8, 128)
    assert (LLAMA8B.vocab_size, LLAMA8B.tie_word_embeddings) == (128256, False)
    # Per layer: q 4096x4096 + k,v 2x4096x1024 + o 4096x4096 = 41,943,040;
    # MLP 3x4096x14336 = 176,160,768; 2 RMSNorms 8,192 -> 218,112,000 params.
    per_layer = 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 4096 + 3 * 4096 * 14336 + 2 * 4096
    assert per_layer == 218_112_000
    body = 32 * per_layer + 4096  # + final norm = 6,979,588,096 params
    lm_head = 128256 * 4096  # 525,336,576 params, streamed every step; embedding is a lookup
    streamed_bytes = 2 * (body + lm_head)  # 16-bit: 15,009,849,344 bytes
    assert streamed_bytes == 15_009_849_344
    hbm = 3.35e12  # H100 SXM peak bytes/s
    weight_s = streamed_bytes / (hbm * _file_constant("efficiency", "weight_bw"))
    # KV per token: 32 layers x (K+V) 2 x 8 heads x 128 x 2 bytes = 131,072 bytes.
    kv_per_token = 32 * 2 * 8 * 128 * 2
    decode_s = kv_per_token / (hbm * _file_constant("efficiency", "kv_bw"))
    # Dense GEMM: 2 FLOPs per body param per token at 989 TFLOPS x gemm_max.
    gemm_s = 2 * body / (989e12 * _file_constant("efficiency", "gemm_max"))
    # Prefill attention per (q, k) pair: 32 layers x 4 x 32 heads x 128 = 524,288 FLOPs.
    pair_s = 32 * 4 * 32 * 128 / (989e12 * _file_constant("efficiency", "attention"))

    c = build_coefficients(LLAMA8B, H100, tp=1, precision="FP16", engine="vllm")
    assert c[st.C_WEIGHT_S] == pytest.approx(weight_s, rel=1e-9)
    assert c[st.C_ATTN_DECODE_S_PER_TOKEN] == pytest.approx(decode_s, rel=1e-9)
    assert c[st.C_GEMM_S_PER_TOKEN] == pytest.approx(gemm_s, rel=1e-9)
    assert c[st.C_ATTN_PREFILL_S_PER_PAIR] == pytest.approx(pair_s, rel=1e-9)
    assert c[st.C_COMM_FIXED_S] == c[st.C_COMM_S_PER_TOKEN] == 0.0
    assert c[st.C_MOE_TOPK_FRACTION] == 0.0
    # Sanity: ~5.5 ms to stream 15 GB at ~82% of 3.35 TB/s.
    assert 4e-3 < c[st.C_WEIGHT_S] < 7e-3


def test_describe_coefficients_names_every_slot() -> None:
    c = build_coefficients(LLAMA8B, H100)
    named = describe_coefficients(c)
    assert list(named) == list(st.COEFF_NAMES)
    assert named["weight_s"] == c[st.C_WEIGHT_S]
    with pytest.raises(ValueError):
        describe_coefficients(c[:3])


# ---- memory: vLLM's reported KV blocks ----------------------------------------------------


def _kv_rows(shared_data):
    path = shared_data / "validation" / "experiments_trainval.csv"
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("total_kv_blocks")]
    assert rows, "no row reports total_kv_blocks"
    return rows


def test_num_gpu_blocks_within_5pct_of_vllm_reported(shared_data) -> None:
    errors = []
    for row in _kv_rows(shared_data):
        model, gpu = resolve_model(row["model"]), get_gpu(row["hardware"])
        predicted = num_gpu_blocks(
            model,
            gpu,
            tp=int(row["tp"]),
            precision=row["precision"],
            gpu_memory_utilization=float(row["gpu_memory_utilization"]),
            block_size=16,
            max_num_batched_tokens=int(row["max_num_batched_tokens"]),
            max_num_seqs=int(row["max_num_seqs"]),
            engine=row["engine"],
        )
        reported = int(row["total_kv_blocks"])
        errors.append((row["id"], predicted, reported, predicted / reported - 1))
    bad = [e for e in errors if abs(e[3]) > 0.05]
    assert not bad, f"predicted vs reported KV blocks off by > 5%: {bad}"


def test_kv_block_bytes_split_heads_and_replicate_latents() -> None:
    # Llama-3.1-8B: 8 KV heads; TP2 halves the per-GPU block, TP16 cannot split below 1 head.
    one = kv_bytes_per_block_per_gpu(LLAMA8B, 1, 1, 16)
    assert one == 32 * 2 * 8 * 128 * 2 * 16
    assert kv_bytes_per_block_per_gpu(LLAMA8B, 2, 1, 16) == one // 2
    assert kv_bytes_per_block_per_gpu(LLAMA8B, 8, 1, 16) == one // 8
    assert kv_bytes_per_token_per_gpu(LLAMA8B, 16) == kv_bytes_per_token_per_gpu(LLAMA8B, 8)
    assert kv_bytes_per_block_per_gpu(LLAMA8B, 1, 1, 16, "fp8") == one // 2
    assert kv_bytes_per_block_per_gpu(LLAMA8B, 1, 2, 16) == one // 2  # PP splits layers
    mla = resolve_model("deepseek-ai/DeepSeek-V2-Lite")
    assert mla.is_mla
    assert kv_bytes_per_token_per_gpu(mla, 1) == kv_bytes_per_token_per_gpu(mla, 2)


def test_weight_bytes_precisions_and_parallelism() -> None:
    bf16 = weight_bytes_per_gpu(LLAMA8B, "BF16")
    fp8 = weight_bytes_per_gpu(LLAMA8B, "FP8")
    fp4 = weight_bytes_per_gpu(LLAMA8B, "fp4")
    emb = 2 * 2 * 128256 * 4096  # embedding + LM head kept 16-bit
    assert fp8 - emb == pytest.approx((bf16 - emb) / 2)
    assert fp4 - emb == pytest.approx((bf16 - emb) * 0.5625 / 2)  # 0.5 B + fp8 scale per 16
    assert weight_bytes_per_gpu(LLAMA8B, "BF16", tp=2) == pytest.approx(bf16 / 2)
    assert weight_bytes_per_gpu(LLAMA8B, "BF16", pp=2) < 0.6 * bf16
    moe = resolve_model("mistralai/Mixtral-8x7B-v0.1")
    assert weight_bytes_per_gpu(moe, "BF16", tp=2, ep=2) == weight_bytes_per_gpu(moe, "BF16", tp=2)
    with pytest.raises(ConfigError, match="precision"):
        weight_bytes_per_gpu(LLAMA8B, "int3")


def test_model_too_big_raises_memory_fit_error() -> None:
    big, l40s = resolve_model("meta-llama/Llama-3.1-405B-Instruct"), get_gpu("L40S")
    with pytest.raises(MemoryFitError) as info:
        num_gpu_blocks(big, l40s, tp=1, precision="BF16")
    msg = str(info.value)
    assert "L40S" in msg and "tp=1" in msg and "GiB" in msg and "\n" not in msg


def test_engine_memory_rules_differ() -> None:
    args = dict(tp=1, precision="BF16", max_num_batched_tokens=2048, max_num_seqs=128)
    vllm = num_gpu_blocks(LLAMA8B, H100, engine="vllm", gpu_memory_utilization=0.9, **args)
    sgl = num_gpu_blocks(LLAMA8B, H100, engine="sglang", gpu_memory_utilization=0.9, **args)
    trt = num_gpu_blocks(LLAMA8B, H100, engine="trtllm", gpu_memory_utilization=0.9, **args)
    # sglang's fraction excludes the reserve; trtllm's applies to memory left after weights
    # and reserve; vLLM's applies to the whole device and includes the reserve.
    assert trt > sgl > vllm


# ---- directions ------------------------------------------------------------------------------


def test_more_tp_fewer_seconds_per_token_and_fewer_weight_bytes() -> None:
    model = resolve_model("meta-llama/Llama-3.1-70B-Instruct")
    prev = None
    for tp in (1, 2, 4, 8):
        c = build_coefficients(model, H100, tp=tp, precision="BF16")
        w = weight_bytes_per_gpu(model, "BF16", tp=tp)
        decode_64 = st.step_time_s(c, 64, 64, 0, 0, 64 * 1000)
        prefill = st.step_time_s(c, 2048, 1, 1, st.prefill_pairs(2048, 0), 0)
        now = (c[st.C_WEIGHT_S], c[st.C_GEMM_S_PER_TOKEN], w, decode_64, prefill)
        if prev is not None:
            assert all(b < a for a, b in zip(prev, now, strict=True)), (tp, prev, now)
        prev = now


def test_fp8_weights_stream_faster_than_bf16_on_h100() -> None:
    bf16 = build_coefficients(LLAMA8B, H100, precision="BF16")
    fp8 = build_coefficients(LLAMA8B, H100, precision="FP8")
    assert fp8[st.C_WEIGHT_S] < bf16[st.C_WEIGHT_S]
    assert fp8[st.C_GEMM_S_PER_TOKEN] < bf16[st.C_GEMM_S_PER_TOKEN]  # FP8 tensor cores


def test_fp8_on_ampere_is_weight_only() -> None:
    a100 = get_gpu("A100-80GB")
    bf16 = build_coefficients(LLAMA8B, a100, precision="BF16")
    fp8 = build_coefficients(LLAMA8B, a100, precision="FP8")
    assert fp8[st.C_WEIGHT_S] < 0.6 * bf16[st.C_WEIGHT_S]
    assert fp8[st.C_GEMM_S_PER_TOKEN] == bf16[st.C_GEMM_S_PER_TOKEN]  # 16-bit compute


def test_moe_touched_expert_term_grows_with_tokens() -> None:
    moe = resolve_model("mistralai/Mixtral-8x7B-v0.1")
    c = build_coefficients(moe, H100, tp=2, precision="BF16")
    assert c[st.C_MOE_TOPK_FRACTION] == pytest.approx(2 / 8)
    assert c[st.C_MOE_WEIGHT_S] > c[st.C_WEIGHT_S] > 0
    dense_only = c.copy()
    dense_only[st.C_MOE_TOPK_FRACTION] = 0.0
    extra = [
        st.step_time_s(c, t, t, 0, 0, 0) - st.step_time_s(dense_only, t, t, 0, 0, 0)
        for t in (1, 2, 4, 8, 16)
    ]
    assert all(b > a for a, b in zip(extra, extra[1:], strict=False)), extra
    assert extra[-1] <= c[st.C_MOE_WEIGHT_S] * (1 + 1e-9) + c[st.C_MOE_GEMM_S_PER_TOKEN] * 200


def test_routed_expert_gemm_efficiency_follows_tokens_per_expert() -> None:
    """Uniform top-k routing gives each of E experts T k / E of a step's T tokens, so the
    routed-expert GEMMs run at the efficiency a dense GEMM has at T k / E tokens, the
    curve T / (T + gemm_half_tokens). At T = 4096 Mixtral's experts (k / E = 1 / 4) see
    1024 tokens each: compute takes 1 + 128 / 1024 of its full-efficiency time, not
    1 + 128 / 4096."""
    moe = resolve_model("mistralai/Mixtral-8x7B-v0.1")
    c = build_coefficients(moe, H100, tp=2, precision="BF16")
    dense_only = c.copy()
    dense_only[st.C_MOE_TOPK_FRACTION] = 0.0
    half = c[st.C_GEMM_HALF_TOKENS]
    for t in (4096.0, 16384.0):
        extra = st.step_time_s(c, t, 1, 0, 0, 0) - st.step_time_s(dense_only, t, 1, 0, 0, 0)
        assert extra > c[st.C_MOE_WEIGHT_S]  # compute-bound at these batches
        full_efficiency = c[st.C_MOE_GEMM_S_PER_TOKEN] * t
        assert extra / full_efficiency == pytest.approx(1 + half / (t * 2 / 8), rel=1e-9)


def test_tp_adds_allreduce_and_pp_adds_sends() -> None:
    model = resolve_model("meta-llama/Llama-3.1-70B-Instruct")
    c1 = build_coefficients(model, H100, tp=1)
    c2 = build_coefficients(model, H100, tp=2)
    c2pp = build_coefficients(model, H100, tp=2, pp=2)
    assert c1[st.C_COMM_S_PER_TOKEN] == 0 < c2[st.C_COMM_S_PER_TOKEN] < c2pp[st.C_COMM_S_PER_TOKEN]
    assert c2[st.C_COMM_FIXED_S] == pytest.approx(
        2 * 80 * _file_constant("efficiency", "allreduce_latency_s")
    )
    assert c2pp[st.C_WEIGHT_S] == pytest.approx(c2[st.C_WEIGHT_S])  # sequential stages


def test_invalid_parallelism_names_the_field() -> None:
    with pytest.raises(ConfigError, match="tp=3"):
        build_coefficients(LLAMA8B, H100, tp=3)
    with pytest.raises(ConfigError, match="ep=2"):
        build_coefficients(LLAMA8B, H100, ep=2)
    with pytest.raises(ConfigError, match="pp=0"):
        build_coefficients(LLAMA8B, H100, pp=0)


# ---- profile file ------------------------------------------------------------------------------


def test_shipped_profile_resolves_every_family_and_engine() -> None:
    profile = load_profile(None)
    for family in ("ampere", "ada", "hopper", "blackwell", "cdna3", "cdna4"):
        for engine in ENGINES:
            k = profile.constants(family, engine)
            assert 0 < k.efficiency.weight_bw <= 1 and k.overhead.step_fixed_s >= 0
    prior = load_profile(
        resources.files("capacitor.perf").joinpath("data/prior_profile.yaml")
    )
    assert prior.constants("ampere", "vllm").efficiency.gemm_max == pytest.approx(0.87)
    assert profile.constants("hopper", "trtllm").overhead.step_fixed_s < (
        profile.constants("hopper", "vllm").overhead.step_fixed_s
    )
    with pytest.raises(ConfigError, match="vllm, sglang, trtllm"):
        profile.constants("hopper", "tgi")


def _write(tmp_path, doc):
    path = tmp_path / "p.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_profile_layering_most_specific_wins(tmp_path) -> None:
    doc = load_profile(None).to_dict()
    doc["engines"]["sglang"] = {"efficiency": {"kv_bw": 0.5, "pcie_bw": 0.4}}
    doc["families"]["hopper"] = {
        "defaults": {"efficiency": {"kv_bw": 0.6}},
        "engines": {"sglang": {"efficiency": {"kv_bw": 0.7}}},
    }
    p = load_profile(_write(tmp_path, doc))
    assert p.constants("hopper", "sglang").efficiency.kv_bw == 0.7  # family x engine
    assert p.constants("hopper", "vllm").efficiency.kv_bw == 0.6  # family default
    assert p.constants("blackwell", "sglang").efficiency.kv_bw == 0.5  # engine default
    assert p.constants("ampere", "sglang").efficiency.kv_bw == 0.80  # family beats engine
    assert p.constants("ampere", "sglang").efficiency.pcie_bw == 0.4
    assert p.constants("ampere", "vllm").efficiency.pcie_bw == 0.75  # root


def test_bad_profile_raises_calibration_error_naming_key_and_value(tmp_path) -> None:
    with pytest.raises(CalibrationError, match="not valid YAML"):
        load_profile(_write(tmp_path, "defaults: [unclosed"))
    doc = load_profile(None).to_dict()
    doc["defaults"]["efficiency"]["weight_bw"] = 1.7
    with pytest.raises(CalibrationError, match=r"weight_bw = 1\.7"):
        load_profile(_write(tmp_path, doc))
    doc = load_profile(None).to_dict()
    doc["families"]["hopper"] = {"defaults": {"efficiency": {"hbm_magic": 0.5}}}
    with pytest.raises(CalibrationError, match="hbm_magic"):
        load_profile(_write(tmp_path, doc))
    doc = load_profile(None).to_dict()
    doc["families"]["volta"] = {}
    with pytest.raises(CalibrationError, match="volta"):
        load_profile(_write(tmp_path, doc))
    doc = load_profile(None).to_dict()
    del doc["defaults"]["overhead"]["per_seq_s"]
    with pytest.raises(CalibrationError, match="per_seq_s is missing"):
        load_profile(_write(tmp_path, doc))
    with pytest.raises(CalibrationError, match="cannot be read"):
        load_profile(tmp_path / "absent.yaml")
    with pytest.raises(CalibrationError, match="mapping"):
        load_profile(_write(tmp_path, "- 1\n- 2\n"))


def test_engine_defaults() -> None:
    assert engine_defaults("vllm", H100)["max_num_batched_tokens"] == 8192
    assert engine_defaults("vllm", H100)["max_num_seqs"] == 1024
    a100 = engine_defaults("vllm", get_gpu("A100-80GB"))  # excluded by name (vLLM PR #17885)
    assert (a100["max_num_seqs"], a100["max_num_batched_tokens"]) == (256, 2048)
    assert engine_defaults("vllm", get_gpu("L40S"))["max_num_batched_tokens"] == 2048
    sgl = engine_defaults("sglang", H100)
    assert sgl["block_size"] == 1 and sgl["max_num_batched_tokens"] == 8192
    assert 0.8 < sgl["gpu_memory_utilization"] < 0.86
    trt = engine_defaults("trtllm", H100)
    assert (trt["max_num_seqs"], trt["max_num_batched_tokens"], trt["block_size"]) == (
        2048,
        8192,
        32,
    )
    for engine in ENGINES:
        d = engine_defaults(engine, H100)
        assert d["max_num_batched_tokens"] >= d["max_num_seqs"]
    with pytest.raises(ConfigError, match="vllm, sglang, trtllm"):
        engine_defaults("tgi", H100)


def test_step_times_are_physical() -> None:
    c = build_coefficients(LLAMA8B, H100, precision="BF16")
    one = st.step_time_s(c, 1, 1, 0, 0, 1001)
    batch = st.step_time_s(c, 64, 64, 0, 0, 64 * 1001)
    prefill = st.step_time_s(c, 2048, 1, 1, st.prefill_pairs(2048, 0), 0)
    assert 5e-3 < one < batch < prefill < 0.1
    assert np.all(np.isfinite(c)) and np.all(c >= 0)


# ---- expert parallelism ------------------------------------------------------------------------

MIXTRAL = resolve_model("mistralai/Mixtral-8x7B-v0.1")


def _moe_weight_term(c: np.ndarray, tokens: int) -> float:
    """Step time a decode batch of ``tokens`` spends on routed experts (all else cancels)."""
    no_moe = c.copy()
    no_moe[st.C_MOE_TOPK_FRACTION] = 0.0
    return st.step_time_s(c, tokens, tokens, 0, 0, 0) - st.step_time_s(
        no_moe, tokens, tokens, 0, 0, 0
    )


def _monte_carlo_imbalance(num_experts, top_k, ep, tokens, trials=400, seed=0) -> float:
    """Busiest GPU's touched experts over the mean, routing each token to top_k distinct
    experts uniformly at random (experts 0..E-1 laid out in ep contiguous groups)."""
    rng = np.random.default_rng(seed)
    picks = np.argpartition(rng.random((trials, tokens, num_experts)), top_k, axis=-1)[..., :top_k]
    touched = np.zeros((trials, num_experts), dtype=bool)
    touched[np.arange(trials)[:, None], picks.reshape(trials, -1)] = True
    per_gpu = touched.reshape(trials, ep, num_experts // ep).sum(axis=2)
    mean_touched = num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens) / ep
    return float(per_gpu.max(axis=1).mean() / mean_touched)


def test_ep_single_decode_token_mixtral_matches_hand_count() -> None:
    # One token picks 2 of 8 experts; at ep=2 each GPU owns 4. Both picks land on one GPU in
    # 2*C(4,2) = 12 of C(8,2) = 28 cases, so the busiest GPU streams E[max] = (12*2 + 16*1)/28
    # = 10/7 experts where TP slicing streams the mean, 1 expert's worth per GPU.
    tp1 = build_coefficients(MIXTRAL, H100, tp=2, ep=1, precision="BF16")
    ep2 = build_coefficients(MIXTRAL, H100, tp=2, ep=2, precision="BF16")
    assert tp1[st.C_MOE_TOPK_FRACTION] == pytest.approx(2 / 8)
    assert _moe_weight_term(ep2, 1) / _moe_weight_term(tp1, 1) == pytest.approx(10 / 7, rel=0.02)
    # The binomial model (experts touched independently) is within 3% of the exact count.
    assert ep_imbalance(8, 2, 2, 1) == pytest.approx(10 / 7, rel=0.03)
    assert ep_imbalance(8, 2, 1, 1) == 1.0
    # Every expert touched: whole experts or slices, each GPU streams the same bytes.
    assert _moe_weight_term(ep2, 256) == pytest.approx(_moe_weight_term(tp1, 256), rel=1e-4)
    ratios = [_moe_weight_term(ep2, t) / _moe_weight_term(tp1, t) for t in (1, 2, 4, 8, 16, 32)]
    assert all(b <= a + 1e-12 for a, b in zip(ratios, ratios[1:], strict=False)), ratios
    # Bytes per GPU, all other slots and the full-load step are unchanged.
    same = [i for i in range(st.NUM_COEFFS) if i != st.C_MOE_TOPK_FRACTION]
    assert np.array_equal(tp1[same], ep2[same])


@pytest.mark.parametrize(
    ("model_ref", "tp", "tolerance"),
    [("mistralai/Mixtral-8x7B-v0.1", 2, 0.05), ("Qwen/Qwen3-30B-A3B", 4, 0.25)],
)
def test_ep_imbalance_tracks_monte_carlo_routing(model_ref, tp, tolerance) -> None:
    model = resolve_model(model_ref)
    base = build_coefficients(model, H100, tp=tp, ep=1, precision="BF16")
    ep = build_coefficients(model, H100, tp=tp, ep=tp, precision="BF16")
    for tokens in (1, 2, 4, 8, 16, 32):
        modeled = _moe_weight_term(ep, tokens) / _moe_weight_term(base, tokens)
        simulated = _monte_carlo_imbalance(model.num_experts, model.num_experts_per_tok, tp, tokens)
        assert modeled >= 1.0
        assert modeled == pytest.approx(simulated, rel=tolerance), (tokens, modeled, simulated)


def test_ep_slower_per_token_at_small_batches_only() -> None:
    tp1 = build_coefficients(MIXTRAL, H100, tp=2, ep=1, precision="BF16")
    ep2 = build_coefficients(MIXTRAL, H100, tp=2, ep=2, precision="BF16")

    def decode(c, t):
        return st.step_time_s(c, t, t, 0, 0, t * 500)

    assert decode(ep2, 1) > 1.15 * decode(tp1, 1)
    assert decode(ep2, 4) > 1.05 * decode(tp1, 4)
    assert decode(ep2, 128) == pytest.approx(decode(tp1, 128), rel=1e-3)
    prefill = (2048, 1, 1, st.prefill_pairs(2048, 0), 0)
    assert st.step_time_s(ep2, *prefill) == pytest.approx(st.step_time_s(tp1, *prefill), rel=1e-6)


def test_ep_keeps_allreduce_unless_all_to_all_is_modelled() -> None:
    tp1 = build_coefficients(MIXTRAL, H100, tp=2, ep=1, precision="BF16")
    ep2 = build_coefficients(MIXTRAL, H100, tp=2, ep=2, precision="BF16")
    a2a = build_coefficients(MIXTRAL, H100, tp=2, ep=2, precision="BF16", moe_all_to_all=True)
    for slot in (st.C_COMM_FIXED_S, st.C_COMM_S_PER_TOKEN):
        assert ep2[slot] == tp1[slot]  # vLLM, dp = 1: the MoE output is all-reduced as in TP
    # Dispatch/combine layout, Mixtral (32 MoE layers, hidden 4096, top-2) at tp = ep = 2:
    # per MoE layer, reduce-scatter + all-gather for attention (ring bytes 2*(1/2)*4096*2 per
    # token) and a dispatch + a combine of 2 experts x 4096 x 2 bytes x (1/2 remote) for each
    # rank's half of the tokens: 2 * 2 * 4096 * 2 * 1/2 / 2 = 8192 bytes per batch token.
    link = 450e9  # H100 SXM NVLink per direction
    ar_bw = _file_constant("efficiency", "allreduce_bw")
    a2a_bw = _file_constant("efficiency", "all_to_all_bw")
    per_token = 32 * (4096 * 2 / (link * ar_bw) + 8192 / (link * a2a_bw))
    assert a2a[st.C_COMM_S_PER_TOKEN] == pytest.approx(per_token, rel=1e-9)
    latency = 32 * (
        2 * _file_constant("efficiency", "allreduce_latency_s")
        + 2 * _file_constant("efficiency", "all_to_all_latency_s")
    )
    assert a2a[st.C_COMM_FIXED_S] == pytest.approx(latency, rel=1e-9)
    # Qwen3-30B-A3B (every layer MoE, hidden 2048, top-8) at tp = ep = 4: the ring moves
    # 2*(3/4)*2048*2 = 6144 bytes per token per collective; dispatch + combine move
    # 2 * 8 * 2048 * 2 * (3/4) / 4 = 12288: twice the MoE all-reduce they replace.
    qwen = resolve_model("Qwen/Qwen3-30B-A3B")
    plain = build_coefficients(qwen, H100, tp=4, ep=4, precision="BF16")
    spread = build_coefficients(qwen, H100, tp=4, ep=4, precision="BF16", moe_all_to_all=True)
    expected = (6144 / ar_bw + 12288 / a2a_bw) / (2 * 6144 / ar_bw)
    ratio = spread[st.C_COMM_S_PER_TOKEN] / plain[st.C_COMM_S_PER_TOKEN]
    assert ratio == pytest.approx(expected, rel=1e-9) and ratio > 1.2


def test_ep_validation_names_ep() -> None:
    with pytest.raises(ConfigError, match=r"ep=2: .*dense"):
        build_coefficients(LLAMA8B, H100, tp=2, ep=2)
    with pytest.raises(ConfigError, match=r"ep=4: must equal tp=2"):
        build_coefficients(MIXTRAL, H100, tp=2, ep=4)
    with pytest.raises(ConfigError, match=r"ep=2: must equal tp=4"):
        num_gpu_blocks(MIXTRAL, H100, tp=4, ep=2, precision="BF16")
    with pytest.raises(ConfigError, match=r"ep=16: must divide num_experts=8"):
        build_coefficients(MIXTRAL, H100, tp=16, ep=16)
    with pytest.raises(ConfigError, match=r"ep=8: must equal tp=2 \(or tp\*pp=4\)"):
        build_coefficients(MIXTRAL, H100, tp=2, pp=2, ep=8)
    # A layer's experts spread over its own stage's tp GPUs: ep = tp*pp reads the same.
    by_stage = build_coefficients(MIXTRAL, H100, tp=2, pp=2, ep=2)
    by_replica = build_coefficients(MIXTRAL, H100, tp=2, pp=2, ep=4)
    assert np.array_equal(by_stage, by_replica)
    assert weight_bytes_per_gpu(MIXTRAL, "BF16", tp=4, ep=4) == weight_bytes_per_gpu(
        MIXTRAL, "BF16", tp=4
    )


def _sampler_profile(tmp_path, bytes_per_seq_vocab):
    doc = load_profile(None).to_dict()
    doc.setdefault("engines", {}).setdefault("vllm", {}).setdefault("overhead", {})[
        "sampler_bytes_per_seq_vocab"
    ] = bytes_per_seq_vocab
    return load_profile(_write(tmp_path, doc))


def test_top_p_sampling_adds_a_vocabulary_sized_cost_per_sequence(tmp_path) -> None:
    import dataclasses

    profile = _sampler_profile(tmp_path, 1000.0)  # bytes per sequence and vocabulary entry
    qwen = resolve_model("Qwen/Qwen2.5-7B-Instruct")  # vocab 152,064; top-k 20 / top-p 0.8
    greedy = dataclasses.replace(qwen, default_top_p=1.0, default_top_k=0)
    assert qwen.filters_vocab and not greedy.filters_vocab

    def decode_step(model, gpu="H100", engine="vllm"):
        c = build_coefficients(model, get_gpu(gpu), engine=engine, profile=profile)
        return st.step_time_s(c, 10, 10, 0, 0, 10 * 600)

    # 10 sequences x 152,064 entries x 1,000 B over the GPU's HBM bandwidth (catalogue:
    # H100 SXM 3.35 TB/s, L40S 864 GB/s)
    assert decode_step(qwen) - decode_step(greedy) == pytest.approx(
        10 * 152_064 * 1000 / 3.35e12, rel=1e-9
    )
    assert decode_step(qwen, "L40S") - decode_step(greedy, "L40S") == pytest.approx(
        10 * 152_064 * 1000 / 864e9, rel=1e-9
    )
    # TensorRT-LLM samples greedily unless asked: its prior charges nothing
    assert decode_step(qwen, engine="trtllm") == pytest.approx(
        decode_step(greedy, engine="trtllm"), rel=1e-12
    )


def test_per_layer_cost_is_paid_once_per_layer_every_step(tmp_path) -> None:
    doc = load_profile(None).to_dict()
    overhead = doc.setdefault("engines", {}).setdefault("vllm", {}).setdefault("overhead", {})
    overhead["per_layer_s"] = 0.0
    without = load_profile(_write(tmp_path, doc))
    overhead["per_layer_s"] = 3e-5
    with_layers = load_profile(_write(tmp_path, doc))

    def step(model, profile, pp=1, prefill=0):
        c = build_coefficients(model, H100, pp=pp, engine="vllm", profile=profile)
        return st.step_time_s(c, 8 + prefill, 8, 1 if prefill else 0, 0, 8 * 600)

    # 32 layers (Llama-3.1-8B) and 80 (Llama-3.1-70B) x 30 us, decode or prefill step alike;
    # pipeline stages run in turn, so pp=2 pays every layer once too
    for model, layers in ((LLAMA8B, 32), (resolve_model("meta-llama/Llama-3.1-70B"), 80)):
        for pp, prefill in ((1, 0), (1, 512), (2, 0)):
            extra = step(model, with_layers, pp, prefill) - step(model, without, pp, prefill)
            assert extra == pytest.approx(layers * 3e-5, rel=1e-9)


@pytest.mark.parametrize("key", ["sampler_bytes_per_seq_vocab", "per_layer_s"])
def test_a_profile_without_an_optional_key_still_loads_and_charges_nothing(tmp_path, key) -> None:
    doc = load_profile(None).to_dict()
    for layer in [doc["defaults"], *doc.get("engines", {}).values()]:
        layer.get("overhead", {}).pop(key, None)
    for fam in doc.get("families", {}).values():
        for layer in [fam.get("defaults", {}), *fam.get("engines", {}).values()]:
            layer.get("overhead", {}).pop(key, None)
    profile = load_profile(_write(tmp_path, doc))  # e.g. a profile fitted by an older version
    assert getattr(profile.constants("hopper", "vllm").overhead, key) == 0.0
    doc["defaults"]["overhead"][key] = -1.0
    with pytest.raises(CalibrationError, match=rf"{key} = -1\.0"):
        load_profile(_write(tmp_path, doc))
