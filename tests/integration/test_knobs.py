"""Every engine knob moves the predictions in its documented direction, end to end.

Each test builds small experiments rows (as in ``experiments_trainval.csv``), runs them
through :func:`capacitor.validate.predict_row` with the shipped profile and compares two
settings of one knob. The expected directions come from how the servers work (cited in each
test), not from earlier runs of this code; the margins are loose inequalities.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capacitor.errors import ConfigError
from capacitor.perf.profile import load_profile
from capacitor.validate import Row, build_row, predict_row

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
MIXTRAL = "mistralai/Mixtral-8x7B-v0.1"

#: One vLLM replica on H100, closed loop (vLLM benchmark_serving --max-concurrency).
CLOSED_LOOP = {
    "id": "knob",
    "model": LLAMA_8B,
    "hardware": "H100",
    "tp": 1,
    "precision": "FP16",
    "engine": "vllm",
    "workload": "closed_loop",
    "seed": 7,
}
#: inference-perf shared prefix, single turn (the trainval rows' shape, smaller).
SHARED_PREFIX = {
    "id": "knob",
    "model": LLAMA_8B,
    "hardware": "H100",
    "tp": 1,
    "precision": "FP16",
    "engine": "vllm",
    "workload": "shared_prefix",
    "system_prompt_len": 2048,
    "question_len": 128,
    "output_len": 64,
    "num_groups": 2,
    "users_per_group": 4,
    "enable_multi_turn_chat": "false",
    "arrival": "poisson",
    "stages": "4@30",
    "seed": 7,
}


def _cells(base: dict[str, object], **changes: object) -> dict[str, str]:
    return {k: str(v) for k, v in {**base, **changes}.items()}


PRIOR = Path(__file__).resolve().parents[2] / "src/capacitor/perf/data/prior_profile.yaml"


def predict(base: dict[str, object], profile=None, **changes: object) -> dict[str, float]:
    """The metrics of ``base`` with ``changes`` applied; every request must complete."""
    cells = _cells(base, **changes)
    metrics = predict_row(Row(cells, "."), profile or load_profile(None))
    assert metrics["completed"] > 0, cells
    return metrics


def test_max_num_seqs_smaller_queues_requests_and_raises_ttft() -> None:
    # 64 clients, but only max_num_seqs requests run at once (vLLM scheduler); the others
    # wait in the queue for whole request lifetimes (~128 decode steps), and that wait is TTFT.
    load = dict(CLOSED_LOOP, concurrency=64, isl=512, osl=128, num_requests=256)
    few = predict(load, max_num_seqs=8)
    many = predict(load, max_num_seqs=256)
    assert few["ttft_mean_ms"] > 3.0 * many["ttft_mean_ms"]
    assert few["output_tokens_per_s"] < many["output_tokens_per_s"]


def test_max_num_batched_tokens_smaller_chunks_long_prompts_and_raises_ttft() -> None:
    # An 8000-token prompt under a 256-token budget is prefilled in 32 chunked-prefill steps;
    # each re-streams the weights, pays the per-step overhead and runs small-M GEMMs at lower
    # efficiency, where a budget of 8192 prefills it in one compute-bound step.
    load = dict(CLOSED_LOOP, concurrency=1, isl=8000, osl=16, num_requests=4, max_num_seqs=256)
    small = predict(load, max_num_batched_tokens=256)
    large = predict(load, max_num_batched_tokens=8192)
    assert small["ttft_mean_ms"] > 1.2 * large["ttft_mean_ms"]


def test_prefix_caching_on_skips_the_shared_system_prompt() -> None:
    # A 2048-token system prompt shared by each group: with the prefix cache only the
    # 128-token question (plus the partial last block) is prefilled after the first request.
    on = predict(SHARED_PREFIX, enable_prefix_caching="true")
    off = predict(SHARED_PREFIX, enable_prefix_caching="false")
    assert off["ttft_mean_ms"] > 2.0 * on["ttft_mean_ms"]


def test_cpu_offload_keeps_prefixes_the_gpu_cache_cannot_hold() -> None:
    # 16 groups x 2048-token system prompts = 2048 blocks of 16 tokens, but the GPU holds
    # 600 blocks, so LRU evicts most prefixes before their group comes back. The host tier
    # (16 GiB per GPU ~ 8000 Llama-8B blocks of 2 MiB) keeps them all; loading a block over
    # PCIe (~2 MiB / 48 GB/s ~ 45 us) is cheaper than recomputing its 16 tokens (~0.3 ms).
    load = dict(SHARED_PREFIX, num_groups=16, users_per_group=2, total_kv_blocks=600)
    offload = predict(load, cpu_offload="true")
    gpu_only = predict(load, cpu_offload="false")
    assert offload["ttft_mean_ms"] < 0.8 * gpu_only["ttft_mean_ms"]


def test_tp4_decodes_a_70b_model_faster_than_tp2() -> None:
    # Decode streams the weights every step; TP4 halves the bytes each GPU streams (and adds
    # a little all-reduce bandwidth), so ITL drops nearly 2x.
    load = dict(
        CLOSED_LOOP,
        model=LLAMA_70B,
        max_num_seqs=128,
        concurrency=8,
        isl=512,
        osl=128,
        num_requests=32,
    )
    tp2 = predict(load, tp=2)
    tp4 = predict(load, tp=4)
    assert tp4["itl_mean_ms"] < 0.75 * tp2["itl_mean_ms"]
    assert tp4["ttft_mean_ms"] < tp2["ttft_mean_ms"]


def test_pp2_adds_kv_blocks_but_not_decode_speed() -> None:
    # PP2 at the same tp: each GPU holds half the layers, so it has more free memory and each
    # KV block (half the layers) is half as large -> more blocks. A token still passes every
    # stage in turn, streaming the same total weights per tp group, plus a send between
    # stages: ITL is not lower (vLLM's PP raises throughput by overlapping micro-batches, not
    # the latency of one batch).
    load = dict(
        CLOSED_LOOP,
        model=LLAMA_70B,
        tp=2,
        precision="FP8",
        max_num_seqs=128,
        concurrency=8,
        isl=512,
        osl=128,
        num_requests=32,
    )
    profile = load_profile(None)
    blocks = {
        pp: build_row(Row(_cells(load, pp=pp), "."), profile).config.num_gpu_blocks for pp in (1, 2)
    }
    assert blocks[2] > 2 * blocks[1]
    pp1 = predict(load, pp=1)
    pp2 = predict(load, pp=2)
    assert pp2["itl_mean_ms"] >= 0.99 * pp1["itl_mean_ms"]


def test_expert_parallel_is_slower_per_token_at_small_batches_only() -> None:
    # Mixtral-8x7B TP2 with --enable-expert-parallel: each GPU owns 4 whole experts instead
    # of half of each of 8. One decode token's 2 experts land on the same GPU with
    # probability 3/7, and the step waits for that GPU: the expert stream is 10/7 of the
    # TP-sliced one (capacitor.perf.coefficients). With 64 sequences every expert is touched
    # on both GPUs and the two layouts stream the same bytes.
    light = dict(
        CLOSED_LOOP,
        model=MIXTRAL,
        tp=2,
        precision="BF16",
        max_num_seqs=256,
        concurrency=1,
        isl=256,
        osl=64,
        num_requests=4,
    )
    assert predict(light, ep=2)["itl_mean_ms"] > 1.1 * predict(light, ep=1)["itl_mean_ms"]
    heavy = dict(light, concurrency=64, num_requests=128)
    ep1, ep2 = predict(heavy, ep=1), predict(heavy, ep=2)
    assert ep2["itl_mean_ms"] == pytest.approx(ep1["itl_mean_ms"], rel=0.02)
    with pytest.raises(ConfigError, match="ep=2"):  # a dense model has no experts to spread
        predict(dict(CLOSED_LOOP, tp=2, concurrency=1, isl=64, osl=8), ep=2)


def test_fp8_weights_decode_a_70b_model_faster_than_fp16_on_h100() -> None:
    # FP8 halves the weight bytes streamed per decode step and H100 has FP8 tensor cores.
    load = dict(
        CLOSED_LOOP,
        model=LLAMA_70B,
        tp=4,
        max_num_seqs=128,
        concurrency=8,
        isl=512,
        osl=128,
        num_requests=32,
    )
    fp16 = predict(load, precision="FP16")
    fp8 = predict(load, precision="FP8")
    assert fp8["itl_mean_ms"] < 0.75 * fp16["itl_mean_ms"]
    assert fp8["ttft_mean_ms"] < fp16["ttft_mean_ms"]


def test_engines_differ_by_their_profiled_overheads() -> None:
    # Same settings on each engine (KV blocks, batch limits, block size 16) under the physical
    # prior, where the engines share kernel efficiencies, so only their CPU overheads differ
    # (the fitted shipped profile also gives TensorRT-LLM its own kernel efficiencies).
    # A decode step of 4 sequences pays step_fixed_s + 4 x
    # per_seq_s; in the shipped profile vllm 0.56 ms > sglang 0.44 ms (overlap scheduler) >
    # trtllm 0.33 ms (C++ executor): ~2% of a 6 ms Llama-8B step each. TTFT adds the front end:
    # trtllm-serve tokenizes in Python (ingress 3 ms vs vLLM's 2 ms), which outweighs its
    # faster steps (~2 steps per TTFT at this load). Expected orders come from the profile.
    load = dict(
        CLOSED_LOOP,
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        enable_prefix_caching="true",
        total_kv_blocks=20000,
        concurrency=4,
        isl=512,
        osl=128,
        num_requests=32,
    )
    profile = load_profile(PRIOR)
    metrics, step_s, ingress_s = {}, {}, {}
    for engine in ("vllm", "sglang", "trtllm"):
        metrics[engine] = predict(load, profile, engine=engine)
        k = profile.constants("hopper", engine)
        step_s[engine] = k.overhead.step_fixed_s + 4 * k.overhead.per_seq_s
        ingress_s[engine] = k.request_path.ingress_s
    for fast, slow in (("sglang", "vllm"), ("trtllm", "sglang"), ("trtllm", "vllm")):
        saved_ms = 1e3 * (step_s[slow] - step_s[fast])
        assert saved_ms > 0.05, "the prior profile no longer orders these engines"
        gap_ms = metrics[slow]["itl_mean_ms"] - metrics[fast]["itl_mean_ms"]
        assert gap_ms > 0.5 * saved_ms, (fast, slow, gap_ms, saved_ms)
    extra_ms = 1e3 * (
        (ingress_s["trtllm"] - ingress_s["vllm"]) - 2 * (step_s["vllm"] - step_s["trtllm"])
    )
    assert extra_ms > 0.2, "the prior profile no longer gives trtllm the slower front end"
    assert metrics["trtllm"]["ttft_mean_ms"] > metrics["vllm"]["ttft_mean_ms"] + 0.5 * extra_ms
