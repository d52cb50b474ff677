"""Trace readers, time scaling and trace -> RequestBatch (workload/traces.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from capacitor.errors import ConfigError, ScenarioError
from capacitor.workload import traces
from tests.conftest import SHARED_DATA, require_data

TRACES = SHARED_DATA / "traces"


@pytest.fixture()
def needs_traces() -> None:
    """The real traces live in ../shared/data/traces: fail, not skip, when absent."""
    require_data("traces")


needs_data = pytest.mark.usefixtures("needs_traces")


def _trie_reference(chains: list[list[int]]) -> tuple[list[int], list[int]]:
    """Plain-Python trie: most recent earlier request with the longest common prefix."""
    root: dict = {}
    src, shared = [], []
    for i, ids in enumerate(chains):
        node, depth, best = root, 0, -1
        for h in ids:
            if h not in node:
                break
            node = node[h]
            depth += 1
            best = node["last"]
        src.append(best if depth else -1)
        shared.append(depth)
        node = root
        for h in ids:
            node = node.setdefault(h, {"last": i})
            node["last"] = i
    return src, shared


def _write_mooncake(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(chains: list[list[int]], inputs: list[int], outputs: list[int] | None = None):
    outputs = outputs or [10] * len(chains)
    return [{"timestamp": 1000 * k, "input_length": i, "output_length": o, "hash_ids": c}
            for k, (c, i, o) in enumerate(zip(chains, inputs, outputs, strict=True))]


# -- real traces ----------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    ("name", "rows", "mean_in", "mean_out", "span_s"),
    [
        ("AzureLLMInferenceTrace_code.csv", 8_819, 2_048, 28, 3_436),
        ("AzureLLMInferenceTrace_conv.csv", 19_366, 1_155, 211, 3_502),
    ],
)
def test_read_azure_real_files(name, rows, mean_in, mean_out, span_s) -> None:
    tr = traces.read_azure(TRACES / "azure_llm_2023" / name)
    assert len(tr) == rows
    assert tr.input_len.dtype == np.int32 and tr.output_len.dtype == np.int32
    assert tr.input_len.mean() == pytest.approx(mean_in, abs=0.5)
    assert tr.output_len.mean() == pytest.approx(mean_out, abs=0.5)
    assert tr.arrival_s[0] == 0 and np.all(np.diff(tr.arrival_s) >= 0)
    assert tr.span_s == pytest.approx(span_s, abs=0.5)
    assert tr.hash_ids is None
    batch = traces.to_request_batch(tr)
    batch.check()
    assert len(batch) == rows and np.all(batch.prefix_src == -1)


@needs_data
@pytest.mark.parametrize(
    ("name", "rows", "mean_in", "rate"),
    [("conversation_trace.jsonl", 12_031, 12_035, 3.40), ("synthetic_trace.jsonl", 3_993,
                                                           15_326, 3.91)],
)
def test_read_mooncake_real_files(name, rows, mean_in, rate) -> None:
    tr = traces.read_mooncake(TRACES / "mooncake_fast25" / name)
    assert len(tr) == rows
    assert tr.input_len.mean() == pytest.approx(mean_in, abs=1)
    assert tr.rate_rps == pytest.approx(rate, abs=0.005)
    lens = np.diff(tr.hash_offsets)
    np.testing.assert_array_equal(lens, np.ceil(tr.input_len / 512))  # one id per 512 tokens
    # the vectorised trie equals a plain-Python trie
    chains = [tr.hash_ids[a:b].tolist() for a, b in zip(tr.hash_offsets[:-1],
                                                         tr.hash_offsets[1:], strict=True)]
    src, shared = traces.prefix_chains(tr)
    ref_src, ref_shared = _trie_reference(chains)
    np.testing.assert_array_equal(src, ref_src)
    np.testing.assert_array_equal(shared, ref_shared)
    # prefix chains share blocks: sources hold the same leading ids
    assert np.count_nonzero(src >= 0) > 0.4 * rows
    for i in np.flatnonzero(src >= 0)[::97]:
        k = shared[i]
        assert chains[i][:k] == chains[src[i]][:k]
    batch = traces.to_request_batch(tr)
    batch.check()
    has = batch.prefix_src >= 0
    assert np.all(batch.prefix_src[has] < np.flatnonzero(has))
    assert np.all(batch.prefix_len <= batch.prompt_len)
    assert batch.prefix_len.sum() > 0.3 * batch.prompt_len.sum()  # a real prefix cache's view


# -- hand-made traces -----------------------------------------------------------------------


def test_prefix_chains_hand_checked(tmp_path: Path) -> None:
    chains = [[1, 2, 3], [1, 2, 4], [1, 2, 4, 5], [1, 9], [7], [1, 2, 3]]
    inputs = [1500, 1400, 2000, 600, 100, 1300]
    tr = traces.read_mooncake(_write_mooncake(tmp_path / "t.jsonl", _rows(chains, inputs)))
    src, shared = traces.prefix_chains(tr)
    assert src.tolist() == [-1, 0, 1, 2, -1, 0]
    assert shared.tolist() == [0, 2, 3, 1, 0, 3]
    b = traces.to_request_batch(tr)
    b.check()
    # 512 x shared ids, capped at the request's own input (request 5: 1,536 -> 1,300) and at
    # the source's prompt + output (request 2 shares 3 ids = 1,536 with request 1, which is
    # only 1,400 + 10 = 1,410 tokens long)
    assert b.prefix_len.tolist() == [0, 1024, 1410, 512, 0, 1300]
    assert b.arrival_s.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # ms -> s


def test_prefix_len_capped_at_source_length(tmp_path: Path) -> None:
    # source is 600 prompt + 10 output = 610 tokens; sharing 2 ids (1,024) is capped to 610
    rows = _rows([[1, 2], [1, 2, 3]], [600, 1500])
    b = traces.to_request_batch(traces.read_mooncake(_write_mooncake(tmp_path / "t.jsonl",
                                                                     rows)))
    assert b.prefix_src.tolist() == [-1, 0] and b.prefix_len.tolist() == [0, 610]


def test_unsorted_rows_are_sorted_with_their_chains(tmp_path: Path) -> None:
    rows = _rows([[5, 6], [5], [8]], [1000, 400, 300])
    rows[0]["timestamp"], rows[2]["timestamp"] = 3000, 0  # order by time: [8], [5], [5, 6]
    tr = traces.read_mooncake(_write_mooncake(tmp_path / "t.jsonl", rows))
    assert tr.input_len.tolist() == [300, 400, 1000]
    assert tr.hash_ids.tolist() == [8, 5, 5, 6] and tr.hash_offsets.tolist() == [0, 1, 2, 4]
    assert tr.arrival_s.tolist() == [0.0, 1.0, 3.0]
    assert traces.prefix_chains(tr)[0].tolist() == [-1, -1, 1]


def test_read_azure_small_file(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:00:00.5000000,100,0\n"
                 "2023-11-16 18:00:01.0000000,200,20\n"
                 "2023-11-16 18:00:02.7500000,300,30\n")
    tr = traces.read_azure(p)
    np.testing.assert_allclose(tr.arrival_s, [0.0, 0.5, 2.25])
    assert tr.input_len.tolist() == [100, 200, 300]
    # duration = span + one mean gap = 2.25 * 3 / 2; rate = 3 / 3.375
    assert tr.duration_s == pytest.approx(3.375) and tr.rate_rps == pytest.approx(3 / 3.375)
    b = traces.to_request_batch(tr)
    assert b.output_len.tolist() == [1, 20, 30]  # 0 output tokens become 1


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,1,2\n"
         "2023-11-16 18:00:01,abc,2\n", 3, "ContextTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,1,2\n"
         "2023-11-16 18:00:01,1\n", 3, "fields"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,1,2\n"
         "not a time,1,2\n", 3, "TIMESTAMP"),
        ("time,in,out\n2023-11-16 18:00:00,1,2\n", 1, "header"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,-4,2\n", 2,
         "ContextTokens"),
    ],
)
def test_malformed_azure_names_file_and_line(tmp_path: Path, text, line, what) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=f"bad.csv line {line}: .*{what}") as info:
        traces.read_azure(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("{not json", "JSON"),
        ('{"timestamp": 5, "input_length": 10, "output_length": 3}', "hash_ids"),
        ('{"timestamp": 5, "input_length": "x", "output_length": 3, "hash_ids": [1]}',
         "input_length"),
        ('{"timestamp": 5, "input_length": 4, "output_length": 3, "hash_ids": [1, "a"]}',
         "hash_ids"),
        ('{"timestamp": -1, "input_length": 4, "output_length": 3, "hash_ids": [1]}',
         "timestamp"),
        ("[1, 2]", "object"),
    ],
)
def test_malformed_mooncake_names_file_and_line(tmp_path: Path, bad, what) -> None:
    good = json.dumps({"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]})
    p = tmp_path / "bad.jsonl"
    p.write_text(f"{good}\n{good}\n{bad}\n")
    with pytest.raises(ScenarioError, match=f"bad.jsonl line 3: .*{what}"):
        traces.read_mooncake(p)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        traces.read_azure(tmp_path / "nope.csv")
    with pytest.raises(ScenarioError, match="unknown format"):
        traces.read_trace(tmp_path / "x.parquet")


# -- scaling and repetition -----------------------------------------------------------------


def _uniform_trace(n: int = 10, gap_s: float = 2.0) -> traces.Trace:
    return traces.Trace("t", np.arange(n) * gap_s, np.full(n, 100, np.int32),
                        np.full(n, 5, np.int32))


def test_time_scale_and_scale_to_rate() -> None:
    tr = _uniform_trace()  # 10 requests every 2 s: duration 20 s, rate 0.5 rps
    assert tr.duration_s == pytest.approx(20.0) and tr.rate_rps == pytest.approx(0.5)
    slow = traces.time_scale(tr, 2.0)
    assert slow.rate_rps == pytest.approx(0.25) and slow.arrival_s[-1] == 36.0
    fast = traces.scale_to_rate(tr, 5.0)
    assert fast.rate_rps == pytest.approx(5.0)
    np.testing.assert_allclose(fast.arrival_s, np.arange(10) * 0.2)
    with pytest.raises(ConfigError, match="target_rate_rps"):
        traces.scale_to_rate(tr, 0)
    with pytest.raises(ConfigError, match="factor"):
        traces.time_scale(tr, -1)


def test_repeat_tiles_the_trace_without_sharing_across_copies(tmp_path: Path) -> None:
    rows = _rows([[1, 2], [1, 2, 3], [1, 4]], [1024, 1500, 900])  # 0, 1, 2 s: period 3 s
    tr = traces.read_mooncake(_write_mooncake(tmp_path / "t.jsonl", rows))
    b = traces.to_request_batch(tr, duration_s=8.0)  # copies at 0, 3, 6 s; 8 requests < 8 s
    b.check()
    assert b.arrival_s.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert b.prefix_src.tolist() == [-1, 0, 1, -1, 3, 4, -1, 6]
    assert b.prefix_len.tolist() == [0, 1024, 512, 0, 1024, 512, 0, 1024]
    once = traces.to_request_batch(tr, duration_s=8.0, repeat=False)
    assert len(once) == 3
    short = traces.to_request_batch(tr, duration_s=1.5)
    assert len(short) == 2


@needs_data
def test_scaled_repeated_trace_keeps_target_rate() -> None:
    tr = traces.scale_to_rate(
        traces.read_azure(TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"), 20.0)
    b = traces.to_request_batch(tr, duration_s=3 * tr.duration_s + 10.0)
    assert len(b) == pytest.approx(20.0 * (3 * tr.duration_s + 10.0), rel=0.01)
    assert np.all(np.diff(b.arrival_s) >= 0) and b.arrival_s[-1] < 3 * tr.duration_s + 10
    assert math.isclose(len(b) / b.arrival_s[-1], 20.0, rel_tol=0.01)
    with pytest.raises(ConfigError, match="duration_s"):
        traces.to_request_batch(tr, duration_s=0)


def test_take_keeps_each_requests_prefix_hashes() -> None:
    t = traces.Trace("t", np.arange(5.0), np.arange(1, 6).astype(np.int32),
                     np.ones(5, np.int32), np.array([0, 1, 3, 3, 6, 7]), np.arange(7) + 100)
    sub = traces.take(t, np.array([1, 3, 4]))
    assert sub.arrival_s.tolist() == [1.0, 3.0, 4.0]
    assert sub.input_len.tolist() == [2, 4, 5]
    assert sub.hash_offsets.tolist() == [0, 2, 5, 6]
    assert sub.hash_ids.tolist() == [101, 102, 103, 104, 105, 106]


def test_cell_rows_split_a_trace_between_cells_or_sample_it_evenly() -> None:
    cells = [traces.cell_rows(10, 1 / 3, c, 3) for c in range(3)]
    assert [c.tolist() for c in cells] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert traces.cell_rows(10, 0.3).tolist() == [3, 6, 9]  # 30%, evenly spread
    assert traces.cell_rows(4, 1.0).tolist() == [0, 1, 2, 3]
