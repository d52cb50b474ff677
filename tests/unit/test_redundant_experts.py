"""Redundant experts (SGLang ``--ep-num-redundant-experts``) and wide expert parallelism with
DP attention: the GB200 wide-EP layouts (decode tp = ep = 48 or 24 over DeepSeek-R1's 256
routed experts) that a public row runs. Expected numbers are worked out by hand from
DeepSeek-R1's config.json (58 MoE layers, 256 routed experts of width 2048, hidden 7168)."""

from __future__ import annotations

import pytest

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.engine.replica import ReplicaSpec, build_replica
from capacitor.errors import ConfigError
from capacitor.perf import step_time as st
from capacitor.perf.coefficients import build_coefficients
from capacitor.perf.memory import check_parallelism, redundant_experts, weight_bytes_per_gpu
from capacitor.perf.profile import load_profile
from capacitor.validate.experiments import Row, RowError, build_row

DSR1 = resolve_model("deepseek-ai/DeepSeek-R1-0528")
GB200 = get_gpu("GB200")
# one routed expert: gate, up and down projections of 7168 x 2048 = 3 x 14,680,064
EXPERT_PARAMS = 44_040_192


@pytest.mark.parametrize(("ep", "given", "expected"), [
    (8, None, 0),     # 256 / 8 = 32 experts per GPU
    (48, None, 32),   # 256 + 32 = 288 = 6 x 48
    (24, None, 8),    # 256 + 8 = 264 = 11 x 24
    (72, None, 32),   # 288 = 4 x 72
    (48, 80, 80),     # given: taken as is
])
def test_fewest_redundant_experts_that_divide(ep, given, expected) -> None:
    assert redundant_experts(DSR1, ep, given) == expected


def test_wide_ep_with_dp_attention_is_a_valid_layout() -> None:
    # with DP attention every GPU holds all 128 heads, so tp = 48 need not divide them
    check_parallelism(DSR1, 48, 1, 48, dp_attention=True, ep_num_redundant_experts=32)
    with pytest.raises(ConfigError, match="tp=48: must divide num_attention_heads=128"):
        check_parallelism(DSR1, 48, 1, 48, ep_num_redundant_experts=32)
    with pytest.raises(ConfigError, match=r"ep=48: must divide num_experts=256 \+ "
                                          r"ep_num_redundant_experts=16"):
        check_parallelism(DSR1, 48, 1, 48, dp_attention=True, ep_num_redundant_experts=16)
    with pytest.raises(ConfigError, match="ep_num_redundant_experts=-1"):
        redundant_experts(DSR1, 48, -1)


def test_redundant_experts_add_their_weights_by_hand() -> None:
    """32 redundant experts in each of the 58 MoE layers, FP8 (1 byte per weight), spread
    over 48 GPUs: 58 x 32 x 44,040,192 B / 48 = 1,702,887,424 B more on each GPU."""
    plain = weight_bytes_per_gpu(DSR1, "fp8", 48, 1, 48, True)
    more = weight_bytes_per_gpu(DSR1, "fp8", 48, 1, 48, True, 32)
    assert more - plain == pytest.approx(58 * 32 * EXPERT_PARAMS / 48, rel=1e-12)
    assert 58 * 32 * EXPERT_PARAMS / 48 == 1_702_887_424


def test_redundant_experts_stream_their_bytes_in_the_step() -> None:
    """The expert-weight term covers the GPU's 288 / 48 = 6 physical experts per layer, 9/8
    of the 256 / 48 share without redundancy (at ep = 8 both are exact)."""
    kw = dict(tp=8, ep=8, precision="fp8", engine="sglang", dp_attention=True)
    base = build_coefficients(DSR1, GB200, **kw)
    more = build_coefficients(DSR1, GB200, ep_num_redundant_experts=8, **kw)
    assert more[st.C_MOE_WEIGHT_S] == pytest.approx(base[st.C_MOE_WEIGHT_S] * 264 / 256)
    # with more physical experts each GPU's share of them touched per token falls
    assert more[st.C_MOE_TOPK_FRACTION] < base[st.C_MOE_TOPK_FRACTION]


def test_replica_takes_the_default_and_a_given_count() -> None:
    spec = ReplicaSpec(model=DSR1, gpu=GB200, tp=48, ep=48, dp_attention=True,
                       precision="fp4", kv_cache_dtype="fp8", engine="sglang")
    config_auto, _ = build_replica(spec)
    config_32, _ = build_replica(ReplicaSpec(**{**spec.__dict__, "ep_num_redundant_experts": 32}))
    config_80, _ = build_replica(ReplicaSpec(**{**spec.__dict__, "ep_num_redundant_experts": 80}))
    assert config_auto.num_gpu_blocks == config_32.num_gpu_blocks  # blank = 32 here
    assert config_80.num_gpu_blocks < config_32.num_gpu_blocks  # more experts, less KV


WIDE = {
    "id": "w1", "model": "deepseek-ai/DeepSeek-R1-0528", "hardware": "GB200",
    "num_gpus": "72", "precision": "FP4", "engine": "sglang", "workload": "closed_loop",
    "concurrency": "64", "isl": "1024", "osl": "64", "num_requests": "64",
    "prefill_workers": "6", "prefill_tp": "4", "prefill_ep": "1",
    "decode_workers": "1", "decode_tp": "48", "decode_ep": "48",
    "decode_dp_attention": "true",
}


def test_wide_ep_disaggregated_row_builds() -> None:
    plan = build_row(Row(WIDE, "."), load_profile(None))
    assert plan.disagg.decode[2] == 1 and plan.disagg.prefill[2] == 6


def test_redundant_experts_that_do_not_divide_name_the_pool() -> None:
    row = {**WIDE, "decode_ep_num_redundant_experts": "16"}
    with pytest.raises(RowError) as err:
        build_row(Row(row, "."), load_profile(None))
    assert str(err.value).startswith("decode_ep='48': ")
    assert "ep=48: must divide num_experts=256 + ep_num_redundant_experts=16" in str(err.value)


def test_negative_redundant_experts_cell_is_refused() -> None:
    with pytest.raises(RowError) as err:
        build_row(Row({**WIDE, "decode_ep_num_redundant_experts": "-2"}, "."),
                  load_profile(None))
    assert str(err.value).startswith("decode_ep_num_redundant_experts='-2'")
