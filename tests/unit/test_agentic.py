"""Agentic workflows (workload/agentic.py, agentic_presets.py): the rows a workflow type
generates, their prefix sharing as the engine sees it, and the coding-agent preset's shape
against the published figures it comes from."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from capacitor.engine import reference, simulate
from capacitor.errors import ConfigError
from capacitor.workload.agentic import DELAY_THINK, DELAY_TOOL, Lognormal, WorkflowShape, generate
from capacitor.workload.agentic_presets import CODING_AGENT, preset
from tests.engine_cases import coeffs_8b_like, config


def _const(x: float) -> Lognormal:
    return Lognormal(median=x, p90=x)


# every length constant: system 32 tokens, a user turn adds 100, a tool result 50 (one tool
# per round), every output 10 tokens; tools take 2 s, think time 30 s
TINY = WorkflowShape(
    name="tiny", system_tokens=32, user_turns_mean=1.0, calls_per_turn_mean=4.0,
    user_tokens=_const(100.0), tools_per_round_mean=1.0, tool_latency_s=_const(2.0),
    tool_tokens=_const(50.0), think_s=_const(30.0), output_tokens=_const(10.0),
    compact_at_tokens=10_000, summary_tokens=20, subagent_prob=0.0, subagent_calls_mean=1.0,
)


def _first_with_calls(shape, k, **kw):
    """A seed whose first workflow has at least ``k`` calls, and its rows."""
    for seed in range(100):
        rows = generate(shape, np.zeros(2), np.random.default_rng(seed), **kw)
        if (rows.workflow == 0).sum() >= k:
            return rows
    raise AssertionError("no seed gives the case")


def test_a_growing_context_carries_the_previous_call_and_hits_the_cache():
    rows = _first_with_calls(TINY, 3, max_model_len=100_000)
    b = rows.batch
    # call 0: 32 + 100 = 132; call 1: 132 + 10 (output) + 50 (tool) = 192; call 2: 252
    assert b.prompt_len[:3].tolist() == [132, 192, 252]
    # call 1 shares all of call 0 (132 + 10 = 142 tokens), call 2 all of call 1 (202)
    assert b.prefix_src[:3].tolist() == [len(b), 0, 1] and b.prefix_len[:3].tolist() == [32, 142,
                                                                                          202]
    assert b.gate[:3].tolist() == [-1, 0, 1] and b.gate_delay_s[:3].tolist() == [0.0, 2.0, 2.0]
    # one workflow alone on an idle replica (blocks of 16): call 0 finds nothing cached;
    # call 1 finds call 0's full blocks, 142 // 16 = 8 blocks = 128 tokens; call 2 finds
    # 202 // 16 = 12 blocks = 192 tokens
    one = rows.workflow == 0
    alone = dataclasses.replace(
        b, arrival_s=b.arrival_s[one], prompt_len=b.prompt_len[one],
        output_len=b.output_len[one], prefix_src=np.where(b.prefix_src[one] == len(b),
                                                          one.sum(), b.prefix_src[one]),
        prefix_len=b.prefix_len[one], gate=b.gate[one], rejected=b.rejected[one],
        gate_delay_s=b.gate_delay_s[one], cancel_if_gate_fails=b.cancel_if_gate_fails[one])
    for engine in (simulate, reference.simulate):
        r = engine(alone, config(num_gpu_blocks=400), coeffs_8b_like())
        assert r.num_cached_tokens[:3].tolist() == [0, 128, 192]
        # each call is sent 2 s (the tool) after the previous one answered
        assert r.send_s[1] == r.finish_s[0] + 2.0 and r.send_s[2] == r.finish_s[1] + 2.0


def test_user_turns_start_after_think_time_with_new_tokens():
    shape = dataclasses.replace(TINY, user_turns_mean=3.0, calls_per_turn_mean=2.0)
    rows = generate(shape, np.zeros(200), np.random.default_rng(1), max_model_len=100_000)
    b = rows.batch
    think = rows.delay_kind == DELAY_THINK
    assert think.sum() > 50
    np.testing.assert_array_equal(b.gate_delay_s[think], 30.0)
    # a turn's first call adds 100 user tokens to the carried prompt + output
    prev = b.gate[think]
    np.testing.assert_array_equal(b.prompt_len[think],
                                  b.prompt_len[prev] + b.output_len[prev] + 100)
    np.testing.assert_array_equal(b.gate_delay_s[rows.delay_kind == DELAY_TOOL], 2.0)


def test_compaction_restarts_the_context_from_system_prompt_and_summary():
    # compact above 400 tokens: 132, 192, 252, 312, 372, 432 > 400 -> 32 + 20 + 50 = 102
    shape = dataclasses.replace(TINY, compact_at_tokens=400, calls_per_turn_mean=30.0)
    rows = _first_with_calls(shape, 8, max_model_len=100_000)
    b = rows.batch
    assert b.prompt_len[:8].tolist() == [132, 192, 252, 312, 372, 102, 162, 222]
    assert b.prefix_src[5] == len(b) and b.prefix_len[5] == 32  # only the system prompt
    assert b.prefix_src[6] == 5 and b.prefix_len[6] == 112


def test_subagents_fan_out_and_join():
    shape = dataclasses.replace(TINY, subagent_prob=0.5, calls_per_turn_mean=6.0,
                                subagent_calls_mean=2.0)
    rows = generate(shape, np.zeros(50), np.random.default_rng(2), max_model_len=100_000)
    b = rows.batch
    b.check()
    assert rows.subagent.sum() > 20 and len(b.join_child) > 10
    # a joiner waits on its gate (the spawner) and on subagent calls of its own workflow
    for c, g in zip(b.join_child, b.join_gate, strict=True):
        assert rows.subagent[g] and not rows.subagent[c]
        assert rows.workflow[c] == rows.workflow[g] and g < c
    # a subagent's first call starts from the system prompt and waits for the spawner
    starts = rows.subagent & (b.prefix_src == len(b))
    assert np.all(~rows.subagent[b.gate[starts]])


def test_same_seed_same_rows_and_bad_shapes():
    a = generate(CODING_AGENT, np.arange(20.0), np.random.default_rng(7), max_model_len=400_000)
    b = generate(CODING_AGENT, np.arange(20.0), np.random.default_rng(7), max_model_len=400_000)
    np.testing.assert_array_equal(a.batch.prompt_len, b.batch.prompt_len)
    np.testing.assert_array_equal(a.batch.gate_delay_s, b.batch.gate_delay_s)
    with pytest.raises(ConfigError, match="max_model_len"):
        generate(CODING_AGENT, np.zeros(1), np.random.default_rng(0), max_model_len=30_000)
    with pytest.raises(ConfigError, match="unknown"):
        preset("no-such-agent")


def test_coding_agent_preset_matches_the_published_shape():
    # 5,000 workflows; a window wide enough that compaction happens at the preset's point
    rows = generate(CODING_AGENT, np.zeros(5000), np.random.default_rng(0),
                    max_model_len=1_000_000)
    b = rows.batch
    prompt, output = b.prompt_len.astype(float), b.output_len.astype(float)
    # TraceLab: 154,000 input / 523 output tokens per call = 294.5
    assert prompt.sum() / output.sum() == pytest.approx(154_000 / 523, rel=0.10)
    assert prompt.mean() == pytest.approx(154_000, rel=0.10)
    assert output.mean() == pytest.approx(523, rel=0.10)
    # SemiAnalysis: median 444 output tokens (and 142,016 input)
    assert np.median(output) == pytest.approx(444, rel=0.10)
    assert np.median(prompt) == pytest.approx(142_016, rel=0.10)
    # TraceLab: 357,161 calls / 4,265 sessions = 83.7 calls per session
    assert len(b) / rows.num_workflows == pytest.approx(357_161 / 4_265, rel=0.10)
    # TraceLab: 96% of input tokens are prefix-cache reads (here: tokens each call shares
    # with an earlier call or the system prompt, what a large enough cache serves)
    assert b.prefix_len.sum() / prompt.sum() == pytest.approx(0.96, rel=0.10)
    assert 1 - b.prefix_len.sum() / prompt.sum() == pytest.approx(0.04, abs=0.01)
