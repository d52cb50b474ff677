"""validate rows for disaggregated deployments (prefill_* / decode_* columns) and offline
rows with data-parallel replicas; the KV transfer time and link."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.errors import CatalogError
from capacitor.perf.memory import KV_TRANSFER_LATENCY_S, kv_transfer_s
from capacitor.perf.profile import load_profile
from capacitor.validate.experiments import Row, RowError, build_row, predict_row

DISAGG = {
    "id": "d1", "model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": "H100",
    "num_gpus": "5", "precision": "FP8", "engine": "sglang", "workload": "closed_loop",
    "concurrency": "8", "isl": "512", "osl": "64", "num_requests": "40",
    "prefill_workers": "1", "prefill_tp": "1", "decode_workers": "2", "decode_tp": "2",
}
OFFLINE = {
    "id": "o1", "model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": "H100",
    "num_gpus": "1", "tp": "1", "precision": "FP8", "engine": "trtllm",
    "workload": "offline", "isl": "128", "osl": "128", "num_requests": "200",
}


def test_disaggregated_row_runs_both_pools() -> None:
    profile = load_profile(None)
    plan = build_row(Row(DISAGG, "."), profile)
    d = plan.disagg
    assert d.prefill[2] == 1 and d.decode[2] == 2
    # the decode workers have 2 GPUs each: more KV blocks than the 1-GPU prefill worker
    assert d.decode[0].num_gpu_blocks > d.prefill[0].num_gpu_blocks
    # 5 GPUs on 8-GPU H100 nodes: one NVLink domain -> the NVLink bandwidth
    assert d.link_gb_s == get_gpu("H100").interconnect_gb_s
    metrics = predict_row(Row(DISAGG, "."), profile)
    assert metrics["completed"] == 40
    assert metrics["output_tokens_per_s"] > 0 and metrics["ttft_median_ms"] > 0


@pytest.mark.parametrize(("over", "text"), [
    ({"num_gpus": "4"}, "num_gpus=4: must equal prefill_workers × prefill_tp + decode_workers "
                        "× decode_tp = 1 × 1 + 2 × 2 = 5"),
    ({"decode_tp": ""}, "decode_tp (blank): missing"),
    ({"prefill_workers": "0"}, "prefill_workers='0': must be >= 1"),
    ({"tp": "2"}, "tp='2': must be blank on a disaggregated row"),
    ({"decode_dp_attention": "maybe"}, "decode_dp_attention='maybe'"),
    ({"num_gpus": "7", "decode_tp": "3"}, "decode_tp='3': tp=3: must divide"),
])
def test_bad_disaggregated_rows_name_the_column(over, text) -> None:
    with pytest.raises(RowError) as err:
        build_row(Row({**DISAGG, **over}, "."), load_profile(None))
    assert text in str(err.value) and "\n" not in str(err.value)


def test_offline_row_with_more_gpus_runs_data_parallel_replicas() -> None:
    profile = load_profile(None)
    one = predict_row(Row(OFFLINE, "."), profile)
    twice = {**OFFLINE, "num_gpus": "2", "num_requests": "400"}
    two = predict_row(Row(twice, "."), profile)
    assert build_row(Row(twice, "."), profile).num_replicas == 2
    # 400 equal requests at t = 0, round robin: each replica runs the single replica's 200,
    # so the deployment makes twice the tokens in the same time
    assert two["output_tokens_per_s"] / one["output_tokens_per_s"] == pytest.approx(2.0,
                                                                                    rel=1e-9)
    with pytest.raises(RowError, match=r"num_gpus=3: must be a multiple of tp × pp = 2 × 1 = 2"):
        build_row(Row({**OFFLINE, "tp": "2", "num_gpus": "3"}, "."), profile)
    closed = {**DISAGG, "num_gpus": "2", "tp": "1"}
    for c in ("prefill_workers", "prefill_tp", "decode_workers", "decode_tp"):
        closed.pop(c)
    with pytest.raises(RowError, match=r"num_gpus=2: must equal tp × pp"):
        build_row(Row(closed, "."), profile)


def test_kv_transfer_time_of_a_deepseek_prompt_by_hand() -> None:
    # DeepSeek-R1 (MLA): 61 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) latent values
    # per token, fp8 KV = 1 byte: 61 * 576 = 35136 bytes per token on every GPU.
    # 8192 tokens = 287,834,112 bytes; over a 50 GB/s NIC: 5.75668224 ms, + 1 ms latency.
    model = resolve_model("deepseek-ai/DeepSeek-R1-0528")
    t = kv_transfer_s(model, 8, "fp8", np.array([8192]), 50.0)
    assert KV_TRANSFER_LATENCY_S == 0.001
    assert t[0] == pytest.approx(0.001 + 0.00575668224, rel=1e-12)


def test_the_kv_link_is_nvlink_inside_one_domain_else_the_nic() -> None:
    assert get_gpu("GB200").kv_link_gb_s(72) == 900.0  # one NVL72 rack
    assert get_gpu("B200").kv_link_gb_s(8) == 900.0  # one HGX node
    assert get_gpu("B200").kv_link_gb_s(16) == 50.0  # two nodes: 400 Gb/s ConnectX-7
    # beyond the rack: the compute trays' NICs, 4 per 4 GPUs
    assert get_gpu("GB200").kv_link_gb_s(80) == 50.0  # ConnectX-7, 400 Gb/s / 8 bits
    assert get_gpu("GB300").kv_link_gb_s(144) == 100.0  # ConnectX-8, 800 Gb/s / 8 bits
    assert get_gpu("GB300").kv_link_gb_s(72) == 900.0
    with pytest.raises(CatalogError, match="scaleout_gb_s"):
        get_gpu("MI300X").kv_link_gb_s(16)  # no NIC figure catalogued
