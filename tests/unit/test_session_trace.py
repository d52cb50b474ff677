"""Session traces replayed as workflows (workload/session_trace.py): sessions found by the
prefix blocks calls reuse, parent and child calls, recorded gaps, side branches, cells and
tiling, on a six-call trace worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from capacitor.errors import ConfigError
from capacitor.workload import traces
from capacitor.workload.agentic import DELAY_NONE, DELAY_THINK
from capacitor.workload.session_trace import generate, sessions

#   call  t (ms)  hash_ids        its prefix source (longest shared run, most recent)
#   0     0       0 1 2           none                      -> starts session A
#   1     1000    0 5             0, 1 block (the common 0) -> starts session B
#   2     5000    0 1 2 3         0, 3 blocks               -> continues 0, gap 5 s
#   3     9000    0 1 2 4         2, 3 blocks (0 too: 2 is more recent) -> continues 2, 4 s
#   4     12000   0 1 2 3 6       2, 4 blocks               -> continues 2: a second child,
#                                                              a side branch, gap 7 s
#   5     13000   0 5 7           1, 2 blocks               -> continues 1, gap 12 s
ROWS = [(0, 1400, 100, [0, 1, 2]), (1000, 900, 50, [0, 5]), (5000, 1900, 100, [0, 1, 2, 3]),
        (9000, 1900, 100, [0, 1, 2, 4]), (12000, 2400, 100, [0, 1, 2, 3, 6]),
        (13000, 1400, 50, [0, 5, 7])]


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "sessions.jsonl"
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o,
                                        "hash_ids": h}) + "\n" for t, i, o, h in ROWS))
    return traces.read_trace(path)


def test_sessions_parents_and_side_branches(trace):
    parent, root, side = sessions(trace)
    assert parent.tolist() == [-1, -1, 0, 2, 2, 1]
    assert root.tolist() == [0, 1, 0, 0, 0, 1]
    assert side.tolist() == [False, False, False, False, True, False]
    # asking for 4 shared blocks: only call 4 (4 blocks with call 2) continues anything
    parent, _, side = sessions(trace, min_shared_blocks=4)
    assert parent.tolist() == [-1, -1, -1, -1, 2, -1] and not side.any()


def test_rows_gate_on_the_parent_after_the_recorded_gap(trace):
    rows = generate(trace)
    b = rows.batch
    b.check()
    assert b.gate.tolist() == [-1, -1, 0, 2, 2, 1]
    assert b.gate_delay_s.tolist() == [0.0, 0.0, 5.0, 4.0, 7.0, 12.0]
    assert rows.workflow.tolist() == [0, 1, 0, 0, 0, 1]  # A first: its first call is first
    assert rows.step.tolist() == [0, 0, 1, 2, 3, 1]
    assert rows.subagent.tolist() == [False, False, False, False, True, False]
    assert rows.delay_kind.tolist() == [DELAY_NONE, DELAY_NONE] + [DELAY_THINK] * 4
    assert rows.arrival_s.tolist() == [0.0, 1.0]
    assert np.all(b.cancel_if_gate_fails)
    # prefix reuse as the trace gives it: call 2 reads 3 blocks of call 0, capped at call
    # 0's prompt + output (1400 + 100 = 1500); call 1 shares the common block: 512
    assert b.prefix_src[2] == 0 and b.prefix_len[2] == 1500
    assert b.prefix_src[1] == 0 and b.prefix_len[1] == 512


def test_cells_get_whole_sessions_and_copies_are_fresh_sessions(trace):
    a = generate(trace, num_cells=2, cell=0)
    b = generate(trace, num_cells=2, cell=1)
    assert a.batch.prompt_len.tolist() == [1400, 1900, 1900, 2400]  # session A
    assert a.batch.gate.tolist() == [-1, 0, 1, 1]
    assert b.batch.prompt_len.tolist() == [900, 1400] and b.batch.gate.tolist() == [-1, 0]
    assert b.batch.gate_delay_s.tolist() == [0.0, 12.0]
    # the trace lasts 13 s + one mean gap (13 / 5) = 15.6 s; two copies in 31.2 s
    two = generate(trace, duration_s=31.2)
    two.batch.check()
    assert len(two.batch) == 12 and two.num_workflows == 4
    assert two.batch.gate[6:].tolist() == [-1, -1, 6, 8, 8, 7]
    assert two.workflow.tolist() == [0, 1, 0, 0, 0, 1, 2, 3, 2, 2, 2, 3]
    # copies share no prefixes with each other
    assert np.all(two.batch.prefix_src[6:][two.batch.prefix_src[6:] >= 0] >= 6)


def test_a_trace_without_block_hashes_is_refused(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:17:03.9799600,100,10\n")
    with pytest.raises(ConfigError, match="hash"):
        generate(traces.read_trace(path))
