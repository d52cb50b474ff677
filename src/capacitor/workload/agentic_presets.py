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

#: Workflow presets by name.
PRESETS: dict[str, WorkflowShape] = {s.name: s for s in (CODING_AGENT,)}


def preset(name: str) -> WorkflowShape:
    """The workflow type called ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"workflow preset {name!r} unknown; valid: "
                          f"{', '.join(PRESETS)}") from None


__all__ = ["CODING_AGENT", "PRESETS", "preset"]
