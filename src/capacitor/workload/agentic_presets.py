"""Named workflow types (:class:`capacitor.workload.agentic.WorkflowShape`), each with its
sources.

``coding-agent`` — a coding assistant session (Claude Code / Codex style). Targets:

* TraceLab (uw-syfi/TraceLab; 4,265 Claude Code and Codex sessions, 357,161 model calls):
  a call reads ~154 k input tokens and writes ~523; 96% of input tokens are prefix-cache
  reads; a session averages 74 tool-triggered calls and 101 tool calls; tools take p50 0.3 s
  / p90 13.6 s; human think time is 92% of a session's wall clock.
* SemiAnalysis's agentic benchmark: median request 142,016 input / 444 output tokens;
  subagents in 44% of sessions.

Derived here (arithmetic in the comments below); every other number is an ASSUMPTION.
The shape test (tests/unit/test_agentic.py) checks the generated rows against the
targets: input:output ratio 154,000 / 523 = 294, 357,161 / 4,265 = 83.7 calls per session,
and a 96% cache-hit share, each within 10%.
"""

from __future__ import annotations

import math

from capacitor.errors import ConfigError
from capacitor.workload.agentic import Lognormal, WorkflowShape

# calls per session: 357,161 / 4,265 = 83.7; of them 74 follow tools, so 83.7 - 74 = 9.7 follow
# a user message: 9.7 user turns per session
_TURNS = 9.7
# subagents in 44% of sessions: with ~74 tool rounds, a round spawns subagents with
# probability p where 1 - (1 - p)^74 = 0.44: p = 1 - 0.56^(1/74) = 0.0078
_SUBAGENT_PROB = 1.0 - 0.56 ** (1.0 / 74.0)
# each fan-out: 1-3 subagents (mean 2, ASSUMPTION) of 5 calls (ASSUMPTION): 0.58 fan-outs x
# 10 calls = 5.8 calls per session; the main chain keeps 83.7 - 5.8 = 77.9 calls, i.e.
# 77.9 / 9.7 = 8.0 calls per turn
_SUBAGENT_CALLS = 5.0
_CALLS_PER_TURN = (83.7 - 74.0 * _SUBAGENT_PROB * 2.0 * _SUBAGENT_CALLS) / _TURNS
# output: median 444 (SemiAnalysis), mean 523 (TraceLab): a lognormal with
# sigma = sqrt(2 ln(523 / 444)) = 0.572 and p90 = 444 exp(1.2816 x 0.572) = 923
_OUT_SIGMA = math.sqrt(2.0 * math.log(523.0 / 444.0))

CODING_AGENT = WorkflowShape(
    name="coding-agent",
    # ASSUMPTION: system prompt + tool (and MCP tool) definitions of a coding agent
    system_tokens=25_000,
    user_turns_mean=_TURNS,
    calls_per_turn_mean=_CALLS_PER_TURN,
    user_tokens=Lognormal(median=300.0, p90=3_000.0, lo=1.0, hi=50_000.0),  # ASSUMPTION
    tools_per_round_mean=101.0 / 74.0,  # 101 tool calls over 74 tool-triggered calls: 1.36
    # TraceLab p50 0.3 s / p90 13.6 s; capped at 600 s (ASSUMPTION: a 10-minute tool timeout)
    tool_latency_s=Lognormal(median=0.3, p90=13.6, lo=0.01, hi=600.0),
    # ASSUMPTION, fitted (with the compaction point) so the 96% cache-hit share and ~154 k
    # tokens per call come out: a tool result adds ~4.5 k tokens on average (file reads,
    # command output)
    tool_tokens=Lognormal(median=2_000.0, p90=11_000.0, lo=1.0, hi=60_000.0),
    # ASSUMPTION: minutes between user turns (the study's 92% of wall clock in think time
    # depends on the serving speed, so it is not fitted here)
    think_s=Lognormal(median=120.0, p90=1_800.0, lo=1.0, hi=4 * 3600.0),
    output_tokens=Lognormal(median=444.0, p90=444.0 * math.exp(1.2815515655446004 * _OUT_SIGMA),
                            lo=1.0, hi=32_000.0),
    # ASSUMPTION, fitted: compaction at 310 k tokens (or the model's max_model_len) puts the
    # per-call mean at TraceLab's 154 k (median ~147 k; SemiAnalysis 142 k); not a
    # documented limit of either agent
    compact_at_tokens=310_000,
    summary_tokens=20_000,  # ASSUMPTION: the compacted summary
    subagent_prob=_SUBAGENT_PROB,
    subagent_calls_mean=_SUBAGENT_CALLS,
)

# ---- support-agent --------------------------------------------------------------------------
# A customer-support conversation (chat or voice bot with CRM, order and knowledge-base tools).
# Targets: 25-57 user turns, ~130 k tokens of context by the end of a conversation, one tool
# call per turn. ASSUMPTION: these are the stated design targets; no public trace gives them
# (Parloa's study of long support conversations, parloa.com/labs/research/
# long-conversation-performance (2025), describes tool-heavy dialogues whose context grows
# with every turn and tool result, without published counts). Per turn: the user's message,
# a call that asks for one tool, the tool's result, a call that answers. So 2 calls per turn,
# 41 turns on average (uniform 25-57): 82 calls per conversation. The context grows per turn
# by the user's message + the tool call (its output) + the result + the answer; for ~130 k at
# the end of 41 turns after a 4 k system prompt: (130,000 - 4,000) / 41 = 3,070 tokens per
# turn: 60 (user, ASSUMPTION) + 60 (tool call) + 180 (answer) + ~2,770 (tool result: a
# lognormal of median 2,300 and p90 5,000 has mean 2,300 x exp(0.606^2 / 2) = 2,761).
SUPPORT_AGENT = WorkflowShape(
    name="support-agent",
    system_tokens=4_000,  # ASSUMPTION: instructions, policies and tool schemas
    user_turns_mean=41.0,
    user_turns_range=(25, 57),
    calls_per_turn_mean=2.0,
    calls_per_turn_fixed=True,
    user_tokens=Lognormal(median=50.0, p90=120.0, lo=1.0, hi=2_000.0),  # ASSUMPTION
    tools_per_round_mean=1.0,  # one tool call per turn
    # ASSUMPTION: CRM / order API lookups, a few hundred ms, seconds in the tail
    tool_latency_s=Lognormal(median=0.5, p90=2.0, lo=0.05, hi=30.0),
    tool_tokens=Lognormal(median=2_300.0, p90=5_000.0, lo=50.0, hi=30_000.0),  # ASSUMPTION
    # ASSUMPTION: a customer reads and types a reply
    think_s=Lognormal(median=20.0, p90=60.0, lo=2.0, hi=600.0),
    output_tokens=Lognormal(median=50.0, p90=100.0, lo=10.0, hi=1_000.0),  # the tool call
    final_output_tokens=Lognormal(median=150.0, p90=350.0, lo=10.0, hi=2_000.0),  # the reply
    compact_at_tokens=400_000,  # ASSUMPTION: never compacted below the model's window
    summary_tokens=4_000,
    subagent_prob=0.0,
    subagent_calls_mean=1.0,
)

# ---- deep-research --------------------------------------------------------------------------
# A research agent: plan, fan out web searches, read, then write a long report.
# Sources: Anthropic, "How we built our multi-agent research system" (2025): a lead agent
# spawns 3-5 subagents that search in parallel; a simple fact-finding task takes 1 subagent
# and 3-10 tool calls; multi-agent research uses ~15x the tokens of a chat. Search API
# latency (scavio.dev/glossary/search-api-latency-budget, 2026): p50 / p95 of 250 / 700 ms
# (Brave) to 1,200 / 3,500 ms (SerpAPI), Tavily 800 / 2,200 ms; reading a result page adds
# a fetch. Here: one user turn, ~6 lead calls (geometric: 84% of tasks take <= 10 steps,
# 1 - (5/6)^10), each tool round 1 + Poisson(2.5) = 3.5 parallel searches or fetches that
# take a web-search latency of median 1.2 s and p90 4 s (ASSUMPTION: SerpAPI-like p50, the
# tail widened for page fetches); a round spawns 1-3 search subagents with probability 0.3
# (ASSUMPTION), each ~4 calls. The last call writes the report: median 3,000 output tokens
# (ASSUMPTION: a multi-page answer with citations).
DEEP_RESEARCH = WorkflowShape(
    name="deep-research",
    system_tokens=6_000,  # ASSUMPTION: research instructions and tool schemas
    user_turns_mean=1.0,
    user_turns_range=(1, 1),
    calls_per_turn_mean=6.0,
    user_tokens=Lognormal(median=150.0, p90=600.0, lo=5.0, hi=5_000.0),  # ASSUMPTION
    tools_per_round_mean=3.5,
    tool_latency_s=Lognormal(median=1.2, p90=4.0, lo=0.1, hi=60.0),
    # ASSUMPTION: snippets of ~10 results, or a fetched page's extracted text
    tool_tokens=Lognormal(median=1_500.0, p90=6_000.0, lo=100.0, hi=30_000.0),
    think_s=Lognormal(median=60.0, p90=300.0, lo=1.0, hi=3_600.0),  # unused: one turn
    output_tokens=Lognormal(median=300.0, p90=1_000.0, lo=20.0, hi=8_000.0),  # ASSUMPTION
    final_output_tokens=Lognormal(median=3_000.0, p90=7_000.0, lo=500.0, hi=16_000.0),
    compact_at_tokens=150_000,  # ASSUMPTION
    summary_tokens=8_000,
    subagent_prob=0.3,
    subagent_calls_mean=4.0,
)

# ---- rag-answer -----------------------------------------------------------------------------
# Retrieval-augmented answering: a call rewrites the question into a search query, the
# retriever and a reranker run (one tool round), and a call answers from the top chunks.
# Target: the answering call reads 4-10 k tokens. ASSUMPTION throughout: a 1 k system
# prompt, a ~100-token question, top-k chunks (e.g. 8-16 chunks of 512 tokens) of 3-9 k
# tokens after reranking; retrieval (vector search, tens of ms) and a cross-encoder rerank
# of ~50 candidates (hundreds of ms) take median 0.3 s, p90 0.8 s.
RAG_ANSWER = WorkflowShape(
    name="rag-answer",
    system_tokens=1_000,
    user_turns_mean=1.0,
    user_turns_range=(1, 1),
    calls_per_turn_mean=2.0,
    calls_per_turn_fixed=True,
    # the answer reads 1,000 + question + query + chunks: at least 1,000 + 5 + 5 + 3,000 =
    # 4,010 and at most 1,000 + 300 + 150 + 8,500 = 9,950 tokens
    user_tokens=Lognormal(median=80.0, p90=200.0, lo=5.0, hi=300.0),
    tools_per_round_mean=1.0,
    tool_latency_s=Lognormal(median=0.3, p90=0.8, lo=0.02, hi=10.0),
    tool_tokens=Lognormal(median=5_500.0, p90=8_000.0, lo=3_000.0, hi=8_500.0),
    think_s=Lognormal(median=30.0, p90=120.0, lo=1.0, hi=600.0),  # unused: one turn
    output_tokens=Lognormal(median=30.0, p90=60.0, lo=5.0, hi=150.0),  # the rewritten query
    final_output_tokens=Lognormal(median=350.0, p90=800.0, lo=20.0, hi=2_000.0),
    compact_at_tokens=32_000,
    summary_tokens=1_000,
    subagent_prob=0.0,
    subagent_calls_mean=1.0,
)

#: Workflow presets by name.
PRESETS: dict[str, WorkflowShape] = {
    s.name: s for s in (CODING_AGENT, SUPPORT_AGENT, DEEP_RESEARCH, RAG_ANSWER)}


def preset(name: str) -> WorkflowShape:
    """The workflow type called ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"workflow preset {name!r} unknown; valid: "
                          f"{', '.join(PRESETS)}") from None


__all__ = ["CODING_AGENT", "DEEP_RESEARCH", "PRESETS", "RAG_ANSWER", "SUPPORT_AGENT", "preset"]
