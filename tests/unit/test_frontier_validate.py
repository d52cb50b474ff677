"""validate rows with the DeepSeek-R1 InferenceMAX columns: dp_attention (and bad values)."""

from __future__ import annotations

import pytest

from capacitor.perf import step_time as st
from capacitor.perf.profile import load_profile
from capacitor.validate.experiments import Row, RowError, build_replica_for_row

CELLS = {
    "id": "r1", "model": "deepseek-ai/DeepSeek-R1-0528", "hardware": "B200", "tp": "8",
    "ep": "8", "precision": "FP4", "engine": "trtllm", "workload": "closed_loop",
    "concurrency": "4", "isl": "1024", "osl": "1024", "gpu_memory_utilization": "0.8",
}


def _replica(**over):
    return build_replica_for_row(Row({**CELLS, **over}, "."), load_profile(None))


def test_dp_attention_row_holds_tp_times_the_kv_and_streams_the_attention() -> None:
    cfg_tp, co_tp = _replica(dp_attention="false")
    cfg_dp, co_dp = _replica(dp_attention="true")
    # 8 ranks each keep their own sequences' latents: ~8 x the blocks, less the replicated
    # attention weights' share (a few GiB per GPU out of ~50 GiB of KV)
    assert 6.5 * cfg_tp.num_gpu_blocks < cfg_dp.num_gpu_blocks < 8 * cfg_tp.num_gpu_blocks
    assert cfg_dp.num_gpu_blocks % 8 == 0
    assert co_dp[st.C_WEIGHT_S] > co_tp[st.C_WEIGHT_S]
    assert co_dp[st.C_ATTN_DECODE_S_PER_TOKEN] < co_tp[st.C_ATTN_DECODE_S_PER_TOKEN]
    # blank means false
    cfg_blank, co_blank = _replica()
    assert cfg_blank.num_gpu_blocks == cfg_tp.num_gpu_blocks and (co_blank == co_tp).all()


def test_bad_dp_attention_names_column_value_and_valid_values() -> None:
    with pytest.raises(RowError) as err:
        _replica(dp_attention="maybe")
    msg = str(err.value)
    assert "dp_attention='maybe'" in msg and "true/false" in msg and "\n" not in msg


def test_calibrate_frees_the_mla_constants_only_for_mla_rows(tmp_path) -> None:
    """A DeepSeek-R1 latency row frees its engine's GEMM kernel and MLA per-sequence costs
    (not per_layer_s, which MLA layers do not pay); a Llama row of another engine keeps
    per_layer_s and gets neither."""
    from capacitor.calibrate import Observation, free_params

    def obs(model, engine):
        cells = {**CELLS, "model": model, "engine": engine}
        return Observation(cells=cells, measured={"tpot_median_ms": 10.0}, base_dir=tmp_path,
                           family="blackwell", engine=engine)

    names = {p.name for p in free_params([obs(CELLS["model"], "sglang"),
                                          obs("meta-llama/Llama-3.1-8B-Instruct", "vllm")])}
    assert "engine:sglang:overhead.gemm_kernel_s" in names
    assert "engine:sglang:overhead.mla_per_seq_s" in names
    assert "engine:sglang:overhead.per_layer_s" not in names
    assert "engine:vllm:overhead.per_layer_s" in names
    assert not any(n.startswith("engine:vllm:overhead.") and ("kernel" in n or "mla" in n)
                   for n in names)
