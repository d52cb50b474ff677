"""perf/ for DeepSeek-R1-class models: MLA decode attention, kernel-count layer cost, DP
attention, FP4 MLA checkpoints, the EP all-to-all. Every expected number is worked out by
hand from the config.json fields in the comments, not by the code's own formulas."""

from __future__ import annotations

import dataclasses
import math

import pytest

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.errors import CalibrationError
from capacitor.perf import step_time as st
from capacitor.perf.coefficients import (
    build_coefficients,
    decode_attention_s_per_token,
    layer_kernel_counts,
)
from capacitor.perf.memory import num_gpu_blocks, weight_bytes_per_gpu
from capacitor.perf.profile import PerfProfile, load_profile

DSR1 = resolve_model("deepseek-ai/DeepSeek-R1-0528")
LLAMA8B = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
H200, B200 = get_gpu("H200"), get_gpu("B200")

# DeepSeek-R1 config.json: 61 layers (first 3 dense), hidden 7168, 128 heads, q_lora_rank
# 1536, kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head 128, 256 routed experts (top 8)
# of width 2048, 1 shared expert.
# One layer's MLA projections, by hand:
#   q_a 7168x1536 = 11,010,048 (+ q_a_layernorm 1,536); q_b 1536x128x(128+64) = 37,748,736
#   kv_a 7168x(512+64) = 4,128,768 (+ kv_a_layernorm 512); kv_b 512x128x(128+128) = 16,777,216
#   o 128x128x7168 = 117,440,512                                         sum = 187,107,328
ATTN_PARAMS_PER_LAYER = 187_107_328


def _constants(gpu, engine="sglang", **over):
    """Shipped constants for (gpu, engine) with some fields replaced (known values)."""
    c = load_profile(None).constants(gpu.family, engine)
    eff = dataclasses.replace(c.efficiency, **{k: v for k, v in over.items()
                                               if hasattr(c.efficiency, k)})
    ovh = dataclasses.replace(c.overhead, **{k: v for k, v in over.items()
                                             if hasattr(c.overhead, k)})
    return dataclasses.replace(c, efficiency=eff, overhead=ovh)


def test_config_fields_the_hand_numbers_assume() -> None:
    m = DSR1
    dims = (m.num_layers, m.num_moe_layers, m.hidden_size, m.num_attention_heads)
    assert dims == (61, 58, 7168, 128)
    assert (m.kv_lora_rank, m.qk_rope_head_dim, m.q_lora_rank) == (512, 64, 1536)
    assert (m.num_experts, m.num_experts_per_tok, m.num_shared_experts) == (256, 8, 1)
    assert m.attention_param_count_per_layer() == ATTN_PARAMS_PER_LAYER


def test_mla_decode_step_bytes_and_flops_by_hand() -> None:
    """Absorbed MLA decode on 8 x H200 with a 16-bit KV cache, per context token:
    bytes read per GPU = 61 layers x (512 + 64) x 2 B = 70,272 B (latent replicated on every
    TP rank); FLOPs per GPU = 61 x 2 x (128/8 = 16 heads) x (2 x 512 + 64) = 2,123,776."""
    c = _constants(H200, kv_bw=0.85, mla_decode_attention=0.67)
    bytes_s = 70_272 / (4.8e12 * 0.85)  # 1.7224e-8 s
    flops_s = 2_123_776 / (989e12 * 0.67)  # 3.2051e-9 s
    got = decode_attention_s_per_token(DSR1, H200, c, tp=8, kv_cache_dtype="auto")
    assert got == pytest.approx(bytes_s, rel=1e-9)  # bytes bind under TP
    # DP attention: each GPU reads only its 1/8 of the sequences' latents (8,784 B per replica
    # token) but runs all 128 heads on them: 61 x 2 x 128 x 1088 / 8 = the same 2,123,776
    # FLOPs per replica token, so the FLOPs bind: 2.153e-9 < 3.205e-9.
    dp = decode_attention_s_per_token(DSR1, H200, c, tp=8, kv_cache_dtype="auto",
                                      dp_attention=True)
    assert 8_784 / (4.8e12 * 0.85) < flops_s
    assert dp == pytest.approx(flops_s, rel=1e-9)
    # an FP8 cache halves the bytes and, on a GPU with FP8 tensor cores, the FLOP time
    fp8 = decode_attention_s_per_token(DSR1, H200, c, tp=8, kv_cache_dtype="fp8",
                                       dp_attention=True)
    assert fp8 == pytest.approx(2_123_776 / (1979e12 * 0.67), rel=1e-9)


def test_mla_decode_without_the_flop_constant_is_bytes_only() -> None:
    c = _constants(H200, kv_bw=0.85, mla_decode_attention=0.0)
    got = decode_attention_s_per_token(DSR1, H200, c, tp=8, kv_cache_dtype="auto",
                                       dp_attention=True)
    assert got == pytest.approx(8_784 / (4.8e12 * 0.85), rel=1e-9)


def test_kernel_counts_and_fixed_layer_cost_by_hand() -> None:
    # dense layer: MLA (5 GEMMs, 1 attention, 4 small) + dense FFN (2, 0, 1) = (7, 1, 5)
    # MoE layer: MLA + routed (3, 0, 4) + shared (2, 0, 0) = (10, 1, 8)
    # 3 x (7, 1, 5) + 58 x (10, 1, 8) = (601, 61, 479)
    assert layer_kernel_counts(DSR1) == (601, 61, 479)
    c = _constants(B200, step_fixed_s=4e-4, gemm_kernel_s=4.3e-6, attention_kernel_s=11e-6,
                   small_kernel_s=2e-6, per_layer_s=25e-6)
    coeffs = build_coefficients(DSR1, B200, tp=8, precision="FP8", engine="sglang", profile=c)
    # 601 x 4.3 + 61 x 11 + 479 x 2 = 2,584.3 + 671 + 958 = 4,213.3 us, + 400 us per step
    assert coeffs[st.C_FIXED_S] == pytest.approx(400e-6 + 4213.3e-6, rel=1e-12)


def test_kernel_costs_leave_non_mla_models_alone() -> None:
    """A dense (or non-MLA MoE) model keeps per_layer_s x layers whatever the kernel costs."""
    a = _constants(H200, "vllm", gemm_kernel_s=0.0)
    b = _constants(H200, "vllm", gemm_kernel_s=9e-6, attention_kernel_s=20e-6,
                   small_kernel_s=5e-6, mla_decode_attention=0.3)
    ca = build_coefficients(LLAMA8B, H200, tp=2, engine="vllm", profile=a)
    cb = build_coefficients(LLAMA8B, H200, tp=2, engine="vllm", profile=b)
    assert (ca == cb).all()
    assert ca[st.C_FIXED_S] == pytest.approx(a.overhead.step_fixed_s + 32 * a.overhead.per_layer_s)


def test_dp_attention_replicates_attention_weights_by_hand() -> None:
    # FP8 weights, tp = 8: each GPU holds 7/8 of the attention block more than under TP:
    # 61 x 187,107,328 x 1 B x 7/8 = 9,986,853,632 B
    extra = weight_bytes_per_gpu(DSR1, "FP8", tp=8, dp_attention=True) - weight_bytes_per_gpu(
        DSR1, "FP8", tp=8)
    assert extra == pytest.approx(9_986_853_632, rel=1e-12)


def test_dp_attention_streams_whole_attention_block_each_step_by_hand() -> None:
    """weight_s grows by the replicated 7/8 of the FP8 attention block, 9,986,853,632 B per
    GPU, at 8 TB/s x weight_bw 0.85; the GEMM FLOPs per token do not change."""
    c = _constants(B200, weight_bw=0.85)
    dp = build_coefficients(DSR1, B200, tp=8, ep=8, precision="FP8", engine="sglang",
                            profile=c, dp_attention=True)
    tp = build_coefficients(DSR1, B200, tp=8, ep=8, precision="FP8", engine="sglang",
                            profile=c)
    assert dp[st.C_WEIGHT_S] - tp[st.C_WEIGHT_S] == pytest.approx(
        9_986_853_632 / (8e12 * 0.85), rel=1e-9)
    assert dp[st.C_GEMM_S_PER_TOKEN] == tp[st.C_GEMM_S_PER_TOKEN]


def test_dp_attention_kv_blocks_are_per_rank_times_tp() -> None:
    """SGLang: mem_fraction_static covers weights + KV: a GPU's KV bytes are
    0.85 x M - weights(dp); a block of 1 token is 61 x 576 x 1 B (FP8) = 35,136 B; each of
    the 8 ranks holds its own sequences, so the replica has 8 x that many blocks."""
    w = weight_bytes_per_gpu(DSR1, "FP4", tp=8, dp_attention=True)
    per_gpu = math.floor((0.85 * B200.memory_bytes - w) / 35_136)
    got = num_gpu_blocks(DSR1, B200, tp=8, ep=8, precision="FP4", kv_cache_dtype="fp8",
                         gpu_memory_utilization=0.85, block_size=1, engine="sglang",
                         dp_attention=True)
    assert got == 8 * per_gpu


def test_dp_attention_comm_is_allgather_plus_reduce_scatter_by_hand() -> None:
    """Per layer an all-gather and a reduce-scatter of 7168 x 2 B per token, each moving
    (tp-1)/tp of it per GPU: 2 x 61 x 14,336 B x 7/8 per token over 900 GB/s x allreduce_bw."""
    c = _constants(B200, allreduce_bw=0.8)
    coeffs = build_coefficients(DSR1, B200, tp=8, ep=8, precision="FP8", engine="sglang",
                                profile=c, dp_attention=True)
    assert coeffs[st.C_COMM_S_PER_TOKEN] == pytest.approx(
        2 * 61 * 14_336 * 7 / 8 / (900e9 * 0.8), rel=1e-12)
    tp_only = build_coefficients(DSR1, B200, tp=8, ep=8, precision="FP8", engine="sglang",
                                 profile=c)
    assert tp_only[st.C_COMM_S_PER_TOKEN] == pytest.approx(2 * coeffs[st.C_COMM_S_PER_TOKEN])


def test_ep_all_to_all_time_by_hand() -> None:
    """Dispatch + combine of each rank's T/8 tokens to top-8 experts, 7/8 of them remote:
    per batch token per GPU 2 x 8 x 7/(8 x 8) x 7168 x 2 B = 25,088 B per MoE layer (58), at
    900 GB/s x all_to_all_bw 0.95; the 3 dense layers keep 2 all-reduces (2 x 14,336 x 2 x
    7/8 B), the 58 MoE layers 1 (their attention's)."""
    c = _constants(B200, allreduce_bw=0.8, all_to_all_bw=0.95)
    coeffs = build_coefficients(DSR1, B200, tp=8, ep=8, precision="FP8", engine="trtllm",
                                profile=c, moe_all_to_all=True)
    a2a = 58 * 25_088 / (900e9 * 0.95)
    allreduce = (2 * 3 + 58) * 14_336 * 2 * 7 / 8 / (900e9 * 0.8)
    assert coeffs[st.C_COMM_S_PER_TOKEN] == pytest.approx(a2a + allreduce, rel=1e-12)


def test_fp4_mla_checkpoint_keeps_attention_but_o_proj_at_16_bit() -> None:
    """NVFP4 DeepSeek-R1 (v2): experts, shared experts, dense FFNs and o_proj at 0.5625 B;
    the other MLA projections (187,107,328 - o_proj 117,440,512 = 69,666,816 per layer) at
    2 B. Against FP8 weights (1 B each) at tp = 8, per GPU:
    (everything else) x (0.5625 - 1) + 61 x 69,666,816 x (2 - 1), / 8."""
    fp4 = weight_bytes_per_gpu(DSR1, "FP4", tp=8)
    fp8 = weight_bytes_per_gpu(DSR1, "FP8", tp=8)
    body = DSR1.dense_param_count() - DSR1.embedding_param_count()
    experts = DSR1.expert_param_count()
    attn16 = 61 * 69_666_816
    expected = ((body + experts - attn16) * (0.5625 - 1.0) + attn16 * (2.0 - 1.0)) / 8
    assert fp4 - fp8 == pytest.approx(expected, rel=1e-12)
    # DP attention replicates that mixed-precision block: 61 x (69,666,816 x 2 + 117,440,512
    # x 0.5625) x 7/8 B more per GPU
    extra = weight_bytes_per_gpu(DSR1, "FP4", tp=8, dp_attention=True) - fp4
    assert extra == pytest.approx(61 * (69_666_816 * 2 + 117_440_512 * 0.5625) * 7 / 8)


@pytest.mark.parametrize(("key", "value"), [("gemm_kernel_s", -1e-6),
                                            ("small_kernel_s", "two"),
                                            ("mla_decode_attention", 1.5)])
def test_bad_frontier_constant_names_key_and_value(key, value) -> None:
    data = load_profile(None).to_dict()
    section = "efficiency" if key == "mla_decode_attention" else "overhead"
    data["defaults"][section][key] = value
    with pytest.raises(CalibrationError) as err:
        PerfProfile(data, origin="bad.yaml")
    msg = str(err.value)
    assert key in msg and str(value) in msg and "\n" not in msg


def test_sglang_4xb200_fp8_fits_at_the_launch_scripts_memory_fraction() -> None:
    """DeepSeek-R1 FP8 on 4 x B200 with SGLang. Weights per GPU by hand: 671,026,404,352
    params, of which the 16-bit embedding and LM head are 2 x 129,280 x 7,168 =
    1,853,358,080: (669,173,046,272 x 1 B + 1,853,358,080 x 2 B) / 4 = 168,219,940,608 B
    (156.7 GiB). SGLang's default mem_fraction_static on a 178 GiB part (0.854) leaves
    152.3 GiB: it does not fit, and the one-line error names the weights and the knob. At
    the InferenceMAX script's --mem-fraction-static 0.95 the KV pool is
    0.95 x M - weights, in 1-token FP8 blocks of 61 x 576 B = 35,136 B."""
    from capacitor.errors import MemoryFitError

    weights = 168_219_940_608
    assert weight_bytes_per_gpu(DSR1, "FP8", tp=4) == pytest.approx(weights, rel=1e-12)
    with pytest.raises(MemoryFitError) as err:
        num_gpu_blocks(DSR1, B200, tp=4, precision="FP8", kv_cache_dtype="fp8",
                       gpu_memory_utilization=0.854, block_size=1, engine="sglang")
    msg = str(err.value)
    assert "weights 156.7" in msg and "mem-fraction-static" in msg and "\n" not in msg
    assert "reserve" not in msg  # SGLang's fraction covers weights + KV only
    blocks = num_gpu_blocks(DSR1, B200, tp=4, precision="FP8", kv_cache_dtype="fp8",
                            gpu_memory_utilization=0.95, block_size=1, engine="sglang")
    assert blocks == math.floor((0.95 * B200.memory_bytes - weights) / 35_136)


def test_mla_per_seq_cost_is_paid_by_mla_models_only() -> None:
    """Per sequence per step: per_seq_s + the LM head (2 x 129,280 x 7,168 / 8 = 231,669,760
    FLOPs per GPU at 2,250 TFLOPS x 0.75 = 1.3729e-7 s on B200) + mla_per_seq_s for MLA."""
    c = _constants(B200, "sglang", per_seq_s=1e-5, mla_per_seq_s=5e-5, gemm_max=0.75,
                   sampler_bytes_per_seq_vocab=0.0)
    dsr1 = build_coefficients(DSR1, B200, tp=8, precision="FP8", engine="sglang", profile=c)
    assert dsr1[st.C_PER_SEQ_S] == pytest.approx(1e-5 + 5e-5 + 231_669_760 / (2250e12 * 0.75),
                                                 rel=1e-12)
    llama = build_coefficients(LLAMA8B, B200, tp=8, engine="sglang", profile=c)
    # Llama-3.1-8B: 2 x 128,256 x 4,096 / 8 FLOPs, no MLA term
    assert llama[st.C_PER_SEQ_S] == pytest.approx(1e-5 + 131_334_144 / (2250e12 * 0.75),
                                                  rel=1e-12)


def test_dp_attention_divides_per_sequence_costs_over_the_ranks() -> None:
    """With attention DP over 8 ranks each rank schedules, attends to and samples its own
    1/8 of the sequences in parallel: (per_seq_s 1e-5 + mla_per_seq_s 5e-5) / 8 = 7.5e-6 s
    per sequence, plus the LM head, whole on each rank for its own tokens: the same
    231,669,760 FLOPs per GPU per sequence as the 8-way sliced head (1.3729e-7 s on B200)."""
    c = _constants(B200, "sglang", per_seq_s=1e-5, mla_per_seq_s=5e-5, gemm_max=0.75,
                   sampler_bytes_per_seq_vocab=0.0)
    dp = build_coefficients(DSR1, B200, tp=8, ep=8, precision="FP8", engine="sglang",
                            profile=c, dp_attention=True)
    assert dp[st.C_PER_SEQ_S] == pytest.approx(7.5e-6 + 231_669_760 / (2250e12 * 0.75),
                                               rel=1e-12)


def test_eager_prefill_step_cost_by_hand() -> None:
    """An MLA model's step with prefill chunks pays every kernel's eager launch: DeepSeek-R1
    runs 3 x (7 + 1 + 5) + 58 x (10 + 1 + 8) = 1,141 kernels, at 40 us each 45.64 ms. A
    GQA model has no kernel counts (0), nor does vLLM (piecewise CUDA graphs, 0 shipped)."""
    c = _constants(B200, "sglang", eager_kernel_s=4e-5)
    coeffs = build_coefficients(DSR1, B200, tp=8, precision="fp8", engine="sglang", profile=c)
    assert coeffs[st.C_PREFILL_STEP_S] == pytest.approx(0.04564, rel=1e-12)
    llama = build_coefficients(LLAMA8B, B200, engine="sglang", profile=c)
    assert llama[st.C_PREFILL_STEP_S] == 0.0
    vllm = build_coefficients(DSR1, B200, tp=8, precision="fp8", engine="vllm")
    assert vllm[st.C_PREFILL_STEP_S] == 0.0
