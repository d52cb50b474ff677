"""The support-agent, deep-research and rag-answer presets (workload/agentic_presets.py):
each generated shape against the figures its comment states, within the tolerances below
(the coding-agent preset is checked in test_agentic.py)."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.workload.agentic import DELAY_TOOL, generate
from capacitor.workload.agentic_presets import DEEP_RESEARCH, RAG_ANSWER, SUPPORT_AGENT

N = 3000  # workflows per preset: sampling error of the means below is ~1-2%


def _rows(shape, max_model_len=200_000):
    return generate(shape, np.zeros(N), np.random.default_rng(11), max_model_len=max_model_len)


def _main_last(rows):
    """Per workflow, the row of the last call on its main chain."""
    main = np.flatnonzero(~rows.subagent)
    wf = rows.workflow[main]
    return main[np.r_[wf[1:] != wf[:-1], True]]


def test_support_agent_turns_tools_and_context():
    rows = _rows(SUPPORT_AGENT)
    b = rows.batch
    calls = np.bincount(rows.workflow)
    # 2 calls per user turn (ask for the tool, answer), turns 25-57: 50-114 calls, mean 82
    assert calls.min() >= 50 and calls.max() <= 114 and np.all(calls % 2 == 0)
    assert calls.mean() == pytest.approx(82, rel=0.03)
    turns = calls // 2
    assert turns.min() == 25 and turns.max() == 57  # 3000 draws reach both ends
    # one tool call per turn: every tool round is one tool, every turn has one round
    tool = rows.delay_kind == DELAY_TOOL
    assert tool.sum() == turns.sum()
    # ~130 k tokens of context by the end of a conversation (last prompt + reply), +-10%
    last = _main_last(rows)
    final = b.prompt_len[last] + b.output_len[last]
    assert final.mean() == pytest.approx(130_000, rel=0.10)
    assert not rows.subagent.any()


def test_deep_research_fans_out_web_searches_and_writes_a_long_report():
    rows = _rows(DEEP_RESEARCH)
    b = rows.batch
    main_calls = np.bincount(rows.workflow[~rows.subagent], minlength=N)
    # <= 10 steps typical: 1 - (5/6)^10 = 84% of lead chains (within 3 points)
    assert (main_calls <= 10).mean() == pytest.approx(1 - (5 / 6) ** 10, abs=0.03)
    assert np.median(main_calls) <= 6
    # fan-out: tool rounds of 1 + Poisson(2.5) parallel searches, and subagents in a
    # round with probability 0.3: 1 - (1 - 0.3)^rounds of workflows have some
    assert rows.subagent.any() and len(b.join_child) > N // 2
    # web-search-dominated tool time: a round is the slowest of ~3.5 searches (median
    # 1.2 s each), so a round's median is above one search's and below 4 s (its p90)
    rounds = b.gate_delay_s[rows.delay_kind == DELAY_TOOL]
    assert 1.2 < np.median(rounds) < 4.0
    # the report: the last lead call writes median ~3,000 tokens (+-10%), the other calls
    # ~300 (+-10%)
    last = _main_last(rows)
    assert np.median(b.output_len[last]) == pytest.approx(3_000, rel=0.10)
    others = np.ones(len(b), bool)
    others[last] = False
    assert np.median(b.output_len[others]) == pytest.approx(300, rel=0.10)


def test_rag_answer_is_rewrite_retrieve_answer_reading_4_to_10k():
    rows = _rows(RAG_ANSWER, max_model_len=32_768)
    b = rows.batch
    calls = np.bincount(rows.workflow)
    assert np.all(calls == 2)  # rewrite, answer: a fixed pipeline
    answer = _main_last(rows)
    # the answer call waits for one tool round (retrieve + rerank) and reads 4-10 k tokens
    assert np.all(rows.delay_kind[answer] == DELAY_TOOL)
    assert b.prompt_len[answer].min() >= 4_000 and b.prompt_len[answer].max() <= 10_000
    # it carries the rewrite call's prompt and output (a prefix hit) plus the chunks
    rewrite = answer - 1
    np.testing.assert_array_equal(b.prefix_len[answer],
                                  b.prompt_len[rewrite] + b.output_len[rewrite])
    assert np.median(b.gate_delay_s[answer]) == pytest.approx(0.3, rel=0.10)
