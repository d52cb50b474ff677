"""Replay a session trace as workflows: the recorded calls, grouped into sessions by the
prefix blocks they reuse, each call waiting for the one it continues.

A trace with prefix-block hashes (Mooncake's ``hash_ids``, one id per 512-token block; see
:mod:`capacitor.workload.traces`) does not name sessions, but a call that continues a
conversation repeats its context: its prompt starts with the blocks of the call before it.
So, with :func:`capacitor.workload.traces.prefix_chains` giving each call its *prefix
source* (the most recent earlier call with the longest common run of leading blocks) and how
many blocks they share:

* **Sessions.** Call ``i`` *continues* its prefix source when they share at least
  ``min_shared_blocks`` blocks; a call that continues none starts a session (a workflow).
  The default, 2, asks for more than one block because every prompt of the Mooncake
  conversation trace starts with the same block (a common system prompt): sharing only it
  says nothing about the conversation.
* **Parent and child calls.** A continuing call is gated on the call it continues (sent
  after that call's answer). When two calls continue the same one (a regenerated answer,
  an edited question), the later one and everything continuing it are a *side branch*:
  counted in the workflow's calls and tokens like a subagent's calls, not on its main chain
  (:mod:`capacitor.simulate.workflows`).
* **Recorded gaps.** The pause before a continuing call is the recorded gap between the two
  calls' timestamps, taken as think time after the earlier call's answer. ASSUMPTION: the
  trace records when calls were sent, not when they were answered, so the gap includes the
  original service time; a replayed session lasts its recorded span plus its calls' time at
  the server here (seconds, beside a median gap of ~2 minutes in the conversation trace).
* **Prefix reuse.** Every call keeps the prefix chain the trace gives it (within its session
  or across sessions, e.g. the common first block), as a plain trace replay does.

A cell of the fleet (or a sample of it) receives whole sessions: sessions are dealt to cells
by :func:`capacitor.workload.traces.cell_rows` over the sessions in order of their first call.
A trace replayed past its end is tiled, each copy a fresh set of sessions (no prefixes shared
between copies), as :func:`capacitor.workload.traces.to_request_batch` does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from capacitor.errors import ConfigError
from capacitor.workload import traces
from capacitor.workload.agentic import DELAY_NONE, DELAY_THINK, WorkflowRows


def _root(parent: np.ndarray) -> np.ndarray:
    """Per element the end of its ``parent`` chain (-1 ends a chain; parents come first),
    by pointer jumping."""
    root = np.where(parent >= 0, parent, np.arange(parent.shape[0]))
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def sessions(trace: traces.Trace, min_shared_blocks: int = 2):
    """Per call of ``trace``: the call it continues (-1: it starts a session), its session
    (the index of the session's first call) and whether it is on a side branch."""
    if min_shared_blocks < 1:
        raise ConfigError(f"min_shared_blocks={min_shared_blocks} must be >= 1")
    if trace.hash_ids is None:
        raise ConfigError(f"trace {trace.name} has no prefix-block hashes (hash_ids) to find "
                          "sessions by; a session trace must be in the Mooncake format")
    src, shared = traces.prefix_chains(trace)
    parent = np.where(shared >= min_shared_blocks, src, -1).astype(np.int64)
    n = parent.shape[0]
    # a call's first continuation stays on the chain; a later one starts a side branch
    child = np.flatnonzero(parent >= 0)
    first_child = np.full(n, n, np.int64)
    np.minimum.at(first_child, parent[child], child)
    side = np.zeros(n, np.bool_)
    side[child] = first_child[parent[child]] != child
    while True:  # a side branch's continuations are on it too (parents come first)
        spread = side | (parent >= 0) & side[np.maximum(parent, 0)]
        if np.array_equal(spread, side):
            break
        side = spread
    return parent, _root(parent), side


def generate(trace: traces.Trace, *, min_shared_blocks: int = 2, duration_s: float | None = None,
             repeat: bool = True, period_s: float | None = None, share: float = 1.0,
             cell: int = 0, num_cells: int = 1) -> WorkflowRows:
    """The sessions of ``trace`` as workflow rows over ``[0, duration_s)`` (all of it when
    None): the cell's sessions (``share``, ``cell``, ``num_cells`` as in
    :func:`capacitor.workload.traces.cell_rows`), tiled every ``period_s`` (the trace's own
    ``duration_s`` by default) with ``repeat``. A row's ``arrival_s`` is its recorded time (a
    lower bound the gate and gap always pass); its send time comes from its gate."""
    parent, root, side = sessions(trace, min_shared_blocks)
    period = trace.duration_s if period_s is None else float(period_s)
    starts = np.flatnonzero(parent < 0)
    mine = starts[traces.cell_rows(starts.shape[0], share, cell, num_cells)]
    rows = np.flatnonzero(np.isin(root, mine))
    sub = traces.take(trace, rows) if rows.shape[0] < len(trace) else trace
    new_index = np.full(len(trace), -1, np.int64)
    new_index[rows] = np.arange(rows.shape[0])
    parent = np.where(parent[rows] >= 0, new_index[np.maximum(parent[rows], 0)], -1)
    root, side = new_index[root[rows]], side[rows]
    batch = traces.to_request_batch(sub, duration_s=duration_s, repeat=repeat,
                                    period_s=period)
    n, keep = len(sub), len(batch)
    copy = np.arange(keep) // max(n, 1)
    at = np.arange(keep) % max(n, 1)
    gated = parent[at] >= 0
    gate = np.where(gated, parent[at] + copy * n, -1)
    gap = np.where(gated, sub.arrival_s[at] - sub.arrival_s[np.maximum(parent[at], 0)], 0.0)
    # workflows numbered in order of their first call (a root precedes its session's calls)
    ids, workflow = np.unique(root[at] + copy * n, return_inverse=True)
    order = np.argsort(workflow, kind="stable")
    step = np.empty(keep, np.int64)
    step[order] = np.arange(keep) - np.searchsorted(workflow[order], workflow[order])
    batch = dataclasses.replace(batch, gate=gate.astype(np.int32),
                                gate_delay_s=np.maximum(gap, 0.0),
                                cancel_if_gate_fails=np.ones(keep, np.bool_))
    return WorkflowRows(
        batch=batch, workflow=workflow.astype(np.int64), step=step.astype(np.int32),
        subagent=side[at], delay_kind=np.where(gated, DELAY_THINK, DELAY_NONE).astype(np.int8),
        arrival_s=batch.arrival_s[ids])  # ids: each workflow's first row (its root)


__all__ = ["generate", "sessions"]
