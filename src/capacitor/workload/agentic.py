"""Agentic workflows as demand: sessions of model calls with tool time between them and a
context that grows as results are fed back.

A workflow is a DAG of model calls (the rows of a :class:`RequestBatch`), shaped by a
:class:`WorkflowShape`:

* **User turns.** A workflow has a geometric number of user turns (mean
  ``user_turns_mean``), or a uniform one in ``user_turns_range`` when given; each turn
  after the first starts after a human *think time* (``think_s``) and adds ``user_tokens``
  of new input.
* **The agent loop.** Within a turn the model is called again and again: after each call
  the turn ends with probability ``1 / calls_per_turn_mean`` (the final answer), else the
  call asked for tools: ``1 + Poisson(tools_per_round_mean - 1)`` of them run in parallel,
  each taking ``tool_latency_s`` and returning ``tool_tokens``; the next call is sent when
  the slowest returns (its delay) with every result appended to its input. With
  ``calls_per_turn_fixed`` every turn has exactly ``calls_per_turn_mean`` calls (a fixed
  pipeline, e.g. rewrite -> retrieve -> answer). A turn's last call (its answer to the
  user) writes ``final_output_tokens`` when given, every other call ``output_tokens``.
* **Context.** Call ``j``'s prompt is the context it carries (the previous call's prompt and
  output) plus its new tokens, and it names the previous call as its prefix source, so a
  prefix cache serves the carried part if it is still resident. Every workflow of a type
  starts from the same system prompt (``system_tokens``, a shared segment).
* **Compaction.** When a call's prompt would exceed ``compact_at_tokens`` (or the deployment's
  ``max_model_len`` less room for an output), the context is replaced by the system prompt
  plus a summary of ``summary_tokens`` (new, uncached text) and grows again from there. The
  summarising call itself is not modelled as a separate request (ASSUMPTION: its cost is
  one more long-context call with a short output, small beside ~80 calls).
* **Subagents (fan-out and join).** A tool round is instead a fan-out of 1-3 subagents with
  probability ``subagent_prob``: each subagent is a chain of its own calls (geometric, mean
  ``subagent_calls_mean``) from the system prompt plus a task of ``user_tokens``; the parent's
  next call waits for the last call of every subagent (a join) and reads their outputs.

Rows carry ``gate`` (previous call), ``gate_delay_s`` (tool or think time),
``join_child``/``join_gate`` (subagent joins) and ``cancel_if_gate_fails`` (a failed call
ends its workflow: nothing after it is sent; see :mod:`capacitor.engine.requests`).
All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from capacitor.engine.requests import RequestBatch
from capacitor.errors import ConfigError

#: 90th percentile of the standard normal.
_Z90 = 1.2815515655446004

#: Per-row ``delay_kind``: what the row's ``gate_delay_s`` is.
DELAY_NONE, DELAY_TOOL, DELAY_THINK = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Lognormal:
    """A lognormal by its median and 90th percentile, clipped to ``[lo, hi]``."""

    median: float
    p90: float
    lo: float = 0.0
    hi: float = math.inf

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        sigma = math.log(self.p90 / self.median) / _Z90 if self.p90 > self.median else 0.0
        x = self.median * np.exp(sigma * rng.standard_normal(n))
        return np.clip(x, self.lo, self.hi)

    def tokens(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.maximum(np.rint(self.draw(n, rng)), 1).astype(np.int64)


@dataclass(frozen=True, slots=True)
class WorkflowShape:
    """One workflow type (see the module docstring for what each field does)."""

    name: str
    system_tokens: int
    user_turns_mean: float
    calls_per_turn_mean: float
    user_tokens: Lognormal
    tools_per_round_mean: float
    tool_latency_s: Lognormal
    tool_tokens: Lognormal
    think_s: Lognormal
    output_tokens: Lognormal
    compact_at_tokens: int
    summary_tokens: int
    subagent_prob: float
    subagent_calls_mean: float
    user_turns_range: tuple[int, int] | None = None
    calls_per_turn_fixed: bool = False
    final_output_tokens: Lognormal | None = None

    @property
    def mean_turns(self) -> float:
        """Expected user turns per workflow."""
        if self.user_turns_range is not None:
            return (self.user_turns_range[0] + self.user_turns_range[1]) / 2.0
        return self.user_turns_mean

    @property
    def mean_calls(self) -> float:
        """Expected model calls per workflow: turns x calls per turn on the main chain, plus
        per tool round (every call of a turn but its first) ``subagent_prob`` x 2 subagents
        (1-3, uniform) x ``subagent_calls_mean`` calls."""
        turns = self.mean_turns
        per_turn = float(round(self.calls_per_turn_mean)) if self.calls_per_turn_fixed \
            else self.calls_per_turn_mean
        rounds = turns * (per_turn - 1.0)
        return turns * per_turn + rounds * self.subagent_prob * 2.0 * self.subagent_calls_mean

    def check(self) -> None:
        if self.user_turns_mean < 1 or self.calls_per_turn_mean < 1 \
                or self.tools_per_round_mean < 1 or self.subagent_calls_mean < 1:
            raise ConfigError(f"workflow {self.name}: turns, calls per turn, tools per round "
                              "and subagent calls must have means >= 1")
        if self.user_turns_range is not None and not \
                1 <= self.user_turns_range[0] <= self.user_turns_range[1]:
            raise ConfigError(f"workflow {self.name}: user_turns_range="
                              f"{self.user_turns_range} must be (lo, hi) with 1 <= lo <= hi")
        if not 0 <= self.subagent_prob <= 1:
            raise ConfigError(f"workflow {self.name}: subagent_prob={self.subagent_prob} must "
                              "be in [0, 1]")
        if self.system_tokens < 1 or self.summary_tokens < 0 \
                or self.compact_at_tokens <= self.system_tokens + self.summary_tokens:
            raise ConfigError(f"workflow {self.name}: need system_tokens >= 1 and "
                              "compact_at_tokens > system_tokens + summary_tokens")


@dataclass(slots=True)
class WorkflowRows:
    """The calls of ``num_workflows`` workflows and, per row, which workflow and step."""

    batch: RequestBatch
    workflow: np.ndarray  # int64[n]: the row's workflow (0..num_workflows-1)
    step: np.ndarray  # int32[n]: the row's place in its workflow
    subagent: np.ndarray  # bool[n]: a subagent's call (not on the main chain)
    delay_kind: np.ndarray  # int8[n]: DELAY_* of gate_delay_s
    arrival_s: np.ndarray  # float64[num_workflows]

    @property
    def num_workflows(self) -> int:
        return int(self.arrival_s.shape[0])


def _segmented_cumsum(x: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``x`` restarting at every True of ``start`` (``start[0]`` True)."""
    c = np.cumsum(x)
    first = np.maximum.accumulate(np.where(start, np.arange(x.shape[0]), 0))
    return c - c[first] + x[first]


def _tool_rounds(shape: WorkflowShape, tool_round: np.ndarray, rng: np.random.Generator):
    """Per call, the delay and the tokens of the tool round before it (0 where
    ``tool_round`` is False): ``1 + Poisson(tools_per_round_mean - 1)`` tools in parallel,
    the round as long as its slowest, every result read."""
    n = tool_round.shape[0]
    k = 1 + rng.poisson(shape.tools_per_round_mean - 1.0, n)
    k[~tool_round] = 0
    total = int(k.sum())
    lat = shape.tool_latency_s.draw(total, rng)
    tok = shape.tool_tokens.tokens(total, rng)
    starts = np.cumsum(k) - k
    has = k > 0
    delay = np.zeros(n)
    new = np.zeros(n, np.int64)
    if total:
        delay[has] = np.maximum.reduceat(lat, starts[has])
        new[has] = np.add.reduceat(tok, starts[has])
    return delay, new


def _main_chains(shape: WorkflowShape, num: int, rng: np.random.Generator):
    """The main chain of each workflow, flat and workflow by workflow: per call its
    workflow, new input tokens, output, delay and its kind, whether a tool round precedes it
    and whether it starts its workflow."""
    if shape.user_turns_range is None:
        turns = rng.geometric(1.0 / shape.user_turns_mean, num)
    else:
        turns = rng.integers(shape.user_turns_range[0], shape.user_turns_range[1] + 1, num)
    turn_wf = np.repeat(np.arange(num), turns)
    if shape.calls_per_turn_fixed:
        calls = np.full(turn_wf.shape[0], round(shape.calls_per_turn_mean), np.int64)
    else:
        calls = rng.geometric(1.0 / shape.calls_per_turn_mean, turn_wf.shape[0])
    wf = np.repeat(turn_wf, calls)
    n = wf.shape[0]
    first_in_turn = np.zeros(n, np.bool_)
    first_in_turn[np.cumsum(calls) - calls] = True
    first_in_wf = np.r_[True, wf[1:] != wf[:-1]][:n]
    tool_round = ~first_in_turn
    delay, new = _tool_rounds(shape, tool_round, rng)
    new[first_in_turn] = shape.user_tokens.tokens(int(first_in_turn.sum()), rng)
    think = first_in_turn & ~first_in_wf
    delay[think] = shape.think_s.draw(int(think.sum()), rng)
    kind = np.where(think, DELAY_THINK, np.where(tool_round, DELAY_TOOL, DELAY_NONE))
    output = shape.output_tokens.tokens(n, rng)
    if shape.final_output_tokens is not None:  # each turn's answer to the user
        last_in_turn = np.cumsum(calls) - 1
        output[last_in_turn] = shape.final_output_tokens.tokens(last_in_turn.shape[0], rng)
    return wf, new, output, delay, kind, tool_round, first_in_wf


def _contexts(shape: WorkflowShape, new: np.ndarray, output: np.ndarray,
              first_in_wf: np.ndarray, limit: int):
    """Per main-chain call its prompt, prefix source (-1: the system segment, else the
    previous call) and shared tokens, the context compacted when it passes ``limit``."""
    n = new.shape[0]
    reset = first_in_wf.copy()
    base = np.where(first_in_wf, shape.system_tokens, shape.system_tokens + shape.summary_tokens)
    prev_out = np.r_[0, output[:-1]][:n]
    prompt = np.zeros(n, np.int64)
    rows = np.arange(n)  # the rows a pass recomputes: each from a reset to its workflow's end
    while rows.size:  # a pass per compaction: segments of calls that grow from one base
        r = reset[rows]
        p = _segmented_cumsum(new[rows] + np.where(r, base[rows], prev_out[rows]), r)
        prompt[rows] = p
        over = (p > limit) & ~r
        if not over.any():
            break
        # the first call over the limit in each segment starts a new one
        k = np.arange(rows.size)
        seg = np.maximum.accumulate(np.where(r, k, 0))
        o = np.flatnonzero(over)
        o = o[np.unique(seg[o], return_index=True)[1]]
        reset[rows[o]] = True
        # next pass: from each new reset to the end of its workflow
        wf_start = np.r_[True, first_in_wf[rows[1:]] | (rows[1:] != rows[:-1] + 1)]
        group = np.maximum.accumulate(np.where(wf_start, k, 0))
        mark = np.zeros(rows.size, np.int64) - 1
        mark[o] = o
        rows = rows[np.maximum.accumulate(mark) >= group]
    prompt = np.minimum(prompt, limit)  # one huge tool result: the prompt is truncated
    src = np.where(reset, -1, np.arange(n) - 1)
    plen = np.where(reset, shape.system_tokens, np.r_[0, (prompt + output)[:-1]][:n])
    return prompt, src, np.minimum(plen, prompt - 1)


def generate(shape: WorkflowShape, arrival_s: np.ndarray, rng: np.random.Generator, *,
             max_model_len: int) -> WorkflowRows:
    """Workflows of ``shape`` starting at ``arrival_s`` (sorted), as rows of one batch.
    Compaction happens at ``limit = min(compact_at_tokens, max_model_len - 2 * output p90)``
    (the larger p90 of ``output_tokens`` and ``final_output_tokens``) and outputs are capped
    at ``max_model_len - limit``, so no call overflows the window."""
    shape.check()
    arrival_s = np.asarray(arrival_s, np.float64)
    num = arrival_s.shape[0]
    out_p90 = shape.output_tokens.p90 if shape.final_output_tokens is None else \
        max(shape.output_tokens.p90, shape.final_output_tokens.p90)
    room = int(max_model_len - 2 * out_p90)
    limit = min(shape.compact_at_tokens, room)
    if limit <= shape.system_tokens + shape.summary_tokens:
        raise ConfigError(f"workflow {shape.name}: max_model_len={max_model_len} leaves no "
                          f"room past the system prompt and summary "
                          f"({shape.system_tokens + shape.summary_tokens} tokens)")
    wf, new, output, delay, kind, tool_round, first_in_wf = _main_chains(shape, num, rng)
    # ASSUMPTION: the client caps max_tokens so that no call overflows the window
    cap = max_model_len - limit
    output = np.minimum(output, cap)
    n_main = wf.shape[0]
    # subagent fan-outs: per fan-out 1-3 subagents, each a chain from the system prompt
    fans = np.flatnonzero(tool_round & (rng.random(n_main) < shape.subagent_prob))
    sub_j = np.repeat(fans, rng.integers(1, 4, fans.shape[0]))  # per subagent: its joiner
    m = rng.geometric(1.0 / shape.subagent_calls_mean, sub_j.shape[0])
    n_extra = int(m.sum())
    first = np.zeros(n_extra, np.bool_)
    first[np.cumsum(m) - m] = True
    last = np.cumsum(m) - 1
    s_delay, s_new = _tool_rounds(shape, ~first, rng)
    s_new[first] = shape.user_tokens.tokens(int(first.sum()), rng)  # the task
    s_out = np.minimum(shape.output_tokens.tokens(n_extra, rng), cap)
    s_prev_out = np.r_[0, s_out[:-1]][:n_extra]
    s_prompt = np.minimum(_segmented_cumsum(
        s_new + np.where(first, shape.system_tokens, s_prev_out), first), limit)
    s_idx = np.arange(n_extra)
    row_j = np.repeat(sub_j, m)
    extra = dict(
        wf=wf[row_j], pos=2 * row_j - 1, prompt=s_prompt, output=s_out,
        src=np.where(first, -1, n_main + s_idx - 1),
        plen=np.minimum(np.where(first, shape.system_tokens,
                                 np.r_[0, (s_prompt + s_out)[:-1]][:n_extra]), s_prompt - 1),
        gate=np.where(first, row_j - 1, n_main + s_idx - 1),
        delay=s_delay, kind=np.where(first, DELAY_NONE, DELAY_TOOL),
    )
    joins = (sub_j, n_main + last)  # the joiner waits for each subagent's last call
    np.add.at(new, sub_j, s_out[last])  # and reads its answer
    prompt, src, plen = _contexts(shape, new, output, first_in_wf, limit)
    n = n_main + n_extra
    pos = np.r_[2 * np.arange(n_main), extra["pos"]]
    wf_all = np.r_[wf, extra["wf"]]
    order = np.lexsort((np.arange(n), pos, wf_all))  # workflow, then place, then creation
    new_index = np.empty(n, np.int64)
    new_index[order] = np.arange(n)
    main_gate = np.where(first_in_wf, -1, np.arange(n_main) - 1)
    seg = n  # the system prompt: the one segment node

    def remap(a: np.ndarray) -> np.ndarray:
        return np.where(a >= 0, new_index[np.maximum(a, 0)], -1)
    src_all = remap(np.r_[src, extra["src"]])
    src_all = np.where(src_all < 0, seg, src_all)
    gate_all = remap(np.r_[main_gate, extra["gate"]])
    cols = dict(
        prompt=np.r_[prompt, extra["prompt"]],
        output=np.r_[output, extra["output"]],
        plen=np.r_[plen, extra["plen"]],
        delay=np.r_[delay, extra["delay"]],
        kind=np.r_[kind, extra["kind"]],
    )
    cols = {k: v[order] for k, v in cols.items()}
    jc = new_index[joins[0]]
    jg = new_index[joins[1]]
    jo = np.argsort(jc, kind="stable")
    wf_sorted = wf_all[order]
    step = np.arange(n) - np.searchsorted(wf_sorted, wf_sorted)
    batch = RequestBatch(
        arrival_s=arrival_s[wf_sorted],
        prompt_len=cols["prompt"].astype(np.int32),
        output_len=cols["output"].astype(np.int32),
        prefix_src=src_all[order].astype(np.int32),
        prefix_len=cols["plen"].astype(np.int32),
        gate=gate_all[order].astype(np.int32),
        rejected=np.zeros(n, np.bool_),
        segment_len=np.asarray([shape.system_tokens], np.int32),
        gate_delay_s=cols["delay"],
        join_child=jc[jo].astype(np.int32),
        join_gate=jg[jo].astype(np.int32),
        cancel_if_gate_fails=np.ones(n, np.bool_),
    )
    return WorkflowRows(batch=batch, workflow=wf_sorted, step=step.astype(np.int32),
                        subagent=order >= n_main, delay_kind=cols["kind"].astype(np.int8),
                        arrival_s=arrival_s)


__all__ = ["DELAY_NONE", "DELAY_THINK", "DELAY_TOOL", "Lognormal", "WorkflowRows",
           "WorkflowShape", "generate"]
