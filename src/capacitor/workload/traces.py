"""Production request traces: read, time-scale, and turn into a :class:`RequestBatch`.

Formats and sources (the files sit in ``../shared/data/traces/``; cite them where used):

- **Azure LLM inference trace 2023** (``azure_llm_2023/*.csv``): ``TIMESTAMP,ContextTokens,
  GeneratedTokens``, one row per request, timestamps like ``2023-11-16 18:17:03.9799600``.
  Microsoft Azure, Azure/AzurePublicDataset, released with Patel et al., "Splitwise: Efficient
  generative LLM inference using phase splitting", ISCA 2024. Licence: CC-BY-4.0
  (``LICENSE_CC-BY-4.0.txt`` beside the files).
- **Mooncake traces** (``mooncake_fast25/*.jsonl``): one JSON object per line with
  ``timestamp`` (ms), ``input_length``, ``output_length`` and ``hash_ids``, one id per 512-token
  prefix block (equal ids = a reusable prefix, what a prefix cache sees). kvcache-ai/Mooncake,
  released with Qin et al., "Mooncake: A KVCache-centric Architecture for Serving LLM Chatbot",
  FAST 2025. Licence: Apache-2.0 (``LICENSE-APACHE.txt`` beside the files).

A :class:`Trace` holds arrival times in seconds from the first request (rows are sorted
stably by time), input and output token counts, and for Mooncake the block-hash chains as CSR
arrays. Its ``duration_s`` is the span from the first to the last arrival plus one mean gap,
so ``rate_rps = n / duration_s`` and a repeated trace keeps that rate.

:func:`to_request_batch` builds the engine's request arrays. Mooncake ``hash_ids`` become prefix
chains (see :mod:`capacitor.engine.requests`): request ``i`` points at the most recent earlier
request sharing the longest common prefix of hash ids, with ``prefix_len = 512 x shared ids``,
capped at its own input length and at the source's length (prompt + output). The common
prefixes are found with a trie whose nodes are keyed on ``(parent node, hash id)``, built depth
by depth with vectorised sorts (no per-block Python loop); see :func:`prefix_chains`. When a
trace is repeated to fill a longer window, each copy is a fresh set of users: copies share no
prefixes with each other (repeating must not inflate prefix-cache hits).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, replace
from numbers import Real
from pathlib import Path

import numpy as np

from capacitor.engine.requests import RequestBatch
from capacitor.errors import ConfigError, ScenarioError
from capacitor.textio import read_text

MOONCAKE_BLOCK_TOKENS = 512
AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")


@dataclass(frozen=True, slots=True)
class Trace:
    """A request trace as arrays.

    Attributes:
        name: where it came from (file path).
        arrival_s: send time of each request, seconds from the first (float64, sorted).
        input_len: prompt tokens (int32).
        output_len: generated tokens (int32).
        hash_offsets: CSR offsets into ``hash_ids`` per request (int64, n + 1), or None.
        hash_ids: prefix-block hash ids of all requests, concatenated (int64), or None.
        block_tokens: tokens per hash id (512 for Mooncake).
    """

    name: str
    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    hash_offsets: np.ndarray | None = None
    hash_ids: np.ndarray | None = None
    block_tokens: int = MOONCAKE_BLOCK_TOKENS

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def span_s(self) -> float:
        """First to last arrival, seconds."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) else 0.0

    @property
    def duration_s(self) -> float:
        """The window the trace covers: its span plus one mean gap (``span * n / (n - 1)``)."""
        n = len(self)
        return self.span_s * n / (n - 1) if n > 1 else 0.0

    @property
    def rate_rps(self) -> float:
        """Mean request rate, ``n / duration_s``."""
        return len(self) / self.duration_s if self.duration_s > 0 else math.inf


def _fail(path: Path, line: int, what: str) -> ScenarioError:
    return ScenarioError(f"trace {path} line {line}: {what}")


def _count(path: Path, line: int, name: str, text: object) -> int:
    if isinstance(text, str):
        try:
            value = int(text.strip())
        except ValueError:
            raise _fail(path, line, f"bad {name} {text!r}; expected an integer >= 0") from None
    elif isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raise _fail(path, line, f"bad {name} {text!r}; expected an integer >= 0")
    if value < 0 or value > np.iinfo(np.int32).max:
        raise _fail(path, line, f"bad {name} {text!r}; expected an integer >= 0")
    return value


def _open(path: str | Path, expected: str) -> tuple[Path, io.StringIO]:
    p = Path(path)
    text = read_text(p, f"trace {p}", ScenarioError, expected=expected)
    return p, io.StringIO(text, newline="")


def _sorted_trace(name: str, t: np.ndarray, inp: list[int], out: list[int],
                  offsets: np.ndarray | None = None,
                  ids: np.ndarray | None = None) -> Trace:
    order = np.argsort(t, kind="stable")
    sorted_ok = bool(np.all(order == np.arange(order.size)))
    arrival = t[order] - t[order[0]]
    input_len = np.asarray(inp, np.int32)[order]
    output_len = np.asarray(out, np.int32)[order]
    if offsets is not None and ids is not None and not sorted_ok:
        lens = np.diff(offsets)[order]
        starts = offsets[:-1][order]
        new_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        gather = np.repeat(starts - new_offsets[:-1], lens) + np.arange(int(lens.sum()))
        offsets, ids = new_offsets, ids[gather]
    return Trace(name, arrival.astype(np.float64), input_len, output_len, offsets, ids)


def read_azure(path: str | Path) -> Trace:
    """Read an Azure LLM inference 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    p, fh = _open(path, "a UTF-8 CSV file (Azure LLM inference 2023)")
    stamps: list[str] = []
    inp: list[int] = []
    out: list[int] = []
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != AZURE_HEADER:
            raise _fail(p, 1, f"header {header!r}; expected {','.join(AZURE_HEADER)}")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise _fail(p, line, f"{len(row)} fields; expected 3 ({','.join(AZURE_HEADER)})")
            stamps.append(row[0].strip())
            inp.append(_count(p, line, "ContextTokens", row[1]))
            out.append(_count(p, line, "GeneratedTokens", row[2]))
    if not stamps:
        raise ScenarioError(f"trace {p}: no requests")
    try:
        ns = np.array(stamps, dtype="datetime64[ns]")
    except ValueError:
        for k, s in enumerate(stamps):  # find the first bad one for the message
            try:
                np.datetime64(s, "ns")
            except ValueError:
                raise _fail(
                    p, k + 2, f"bad TIMESTAMP {s!r}; expected YYYY-MM-DD HH:MM:SS.fff"
                ) from None
        raise
    if np.isnat(ns).any():
        k = int(np.flatnonzero(np.isnat(ns))[0])
        raise _fail(p, k + 2, f"bad TIMESTAMP {stamps[k]!r}; expected YYYY-MM-DD HH:MM:SS.fff")
    t = (ns - ns.min()).astype(np.int64).astype(np.float64) / 1e9
    return _sorted_trace(str(p), t, inp, out)


def read_mooncake(path: str | Path) -> Trace:
    """Read a Mooncake FAST'25 JSONL trace (``timestamp`` ms, ``input_length``,
    ``output_length``, ``hash_ids``)."""
    p, fh = _open(path, "a UTF-8 JSONL file (Mooncake FAST'25)")
    t: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    lens: list[int] = []
    chains: list[list[int]] = []
    with fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise _fail(p, line, f"not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise _fail(p, line, "expected a JSON object")
            missing = [k for k in MOONCAKE_KEYS if k not in obj]
            if missing:
                raise _fail(p, line, f"missing {', '.join(missing)}")
            stamp = obj["timestamp"]
            if isinstance(stamp, bool) or not isinstance(stamp, Real) \
                    or not math.isfinite(stamp) or stamp < 0:
                raise _fail(p, line, f"bad timestamp {stamp!r}; expected milliseconds >= 0")
            ids = obj["hash_ids"]
            if not isinstance(ids, list) or not all(
                isinstance(h, int) and not isinstance(h, bool) for h in ids
            ):
                raise _fail(p, line, f"bad hash_ids {str(ids)[:60]!r}; expected a list of ints")
            t.append(float(stamp) / 1000.0)
            inp.append(_count(p, line, "input_length", obj["input_length"]))
            out.append(_count(p, line, "output_length", obj["output_length"]))
            lens.append(len(ids))
            chains.append(ids)
    if not t:
        raise ScenarioError(f"trace {p}: no requests")
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    try:
        flat = np.fromiter((h for c in chains for h in c), np.int64, count=int(offsets[-1]))
    except OverflowError:
        raise ScenarioError(f"trace {p}: a hash id does not fit in 64 bits") from None
    times = np.asarray(t, np.float64)
    trace = _sorted_trace(str(p), times - times.min(), inp, out, offsets, flat)
    return trace


def read_trace(path: str | Path) -> Trace:
    """Read a trace by its suffix: ``.csv`` Azure, ``.jsonl`` Mooncake."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_azure(path)
    if suffix in (".jsonl", ".json"):
        return read_mooncake(path)
    raise ScenarioError(f"trace {path}: unknown format {suffix!r}; expected .csv (Azure 2023) "
                        "or .jsonl (Mooncake)")


def time_scale(trace: Trace, factor: float) -> Trace:
    """The trace with every arrival time multiplied by ``factor`` (> 1 stretches it: a lower
    rate; < 1 compresses it: a higher rate). Lengths and prefixes are unchanged."""
    if isinstance(factor, bool) or not isinstance(factor, Real) or not math.isfinite(factor) \
            or factor <= 0:
        raise ConfigError(f"time_scale: bad factor={factor!r}; expected a number > 0")
    return replace(trace, arrival_s=trace.arrival_s * float(factor))


def scale_to_rate(trace: Trace, target_rate_rps: float) -> Trace:
    """The trace time-scaled so that its mean rate ``n / duration_s`` is ``target_rate_rps``."""
    if isinstance(target_rate_rps, bool) or not isinstance(target_rate_rps, Real) \
            or not math.isfinite(target_rate_rps) or target_rate_rps <= 0:
        raise ConfigError(f"scale_to_rate: bad target_rate_rps={target_rate_rps!r}; "
                          "expected a rate > 0")
    if trace.duration_s <= 0:
        raise ConfigError(f"scale_to_rate: trace {trace.name} has no time span to scale")
    return time_scale(trace, trace.rate_rps / float(target_rate_rps))


def prefix_chains(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """``(prefix_src, shared_blocks)`` per request (int32): the most recent earlier request
    with the longest common prefix of hash ids, and how many ids they share (-1 / 0 if none).

    Each (request, depth) entry gets the id of its trie node, ``node(d) = key(node(d - 1),
    hash[d])``, assigned depth by depth with one lexsort per depth. Sorting all entries by
    (node, request) puts, right before each entry, the most recent earlier request through the
    same node. A request shares depth ``d`` only if it shares every shallower depth, so the
    count of entries with such a predecessor is the shared length.
    """
    n = len(trace)
    src = np.full(n, -1, np.int32)
    shared = np.zeros(n, np.int32)
    if trace.hash_ids is None or trace.hash_offsets is None or n == 0:
        return src, shared
    off = trace.hash_offsets
    ids = trace.hash_ids
    lens = np.diff(off)
    total = int(off[-1])
    if total == 0:
        return src, shared
    req = np.repeat(np.arange(n, dtype=np.int64), lens)
    depth = np.arange(total, dtype=np.int64) - np.repeat(off[:-1], lens)
    by_depth = np.argsort(depth, kind="stable")
    cuts = np.searchsorted(depth[by_depth], np.arange(int(lens.max()) + 1))
    node = np.empty(total, np.int64)
    next_id = 0
    for d in range(int(lens.max())):
        sel = by_depth[cuts[d]: cuts[d + 1]]
        parent = node[sel - 1] if d > 0 else np.zeros(sel.size, np.int64)
        h = ids[sel]
        order = np.lexsort((h, parent))
        ps, hs = parent[order], h[order]
        new_group = np.ones(sel.size, bool)
        new_group[1:] = (ps[1:] != ps[:-1]) | (hs[1:] != hs[:-1])
        group = np.cumsum(new_group) - 1
        node[sel[order]] = next_id + group
        next_id += int(group[-1]) + 1
    order = np.lexsort((req, node))
    same = np.zeros(total, bool)
    same[1:] = node[order][1:] == node[order][:-1]
    prev = np.full(total, -1, np.int64)
    prev[order[1:][same[1:]]] = req[order[:-1][same[1:]]]
    has = prev >= 0
    shared[:] = np.bincount(req[has], minlength=n)
    hit = np.flatnonzero(shared > 0)
    src[hit] = prev[off[hit] + shared[hit] - 1]
    return src, shared


def take(trace: Trace, index: np.ndarray) -> Trace:
    """The requests ``index`` (sorted) of ``trace``, with their prefix-block hashes."""
    index = np.asarray(index, np.int64)
    offsets, ids = trace.hash_offsets, trace.hash_ids
    if offsets is not None and ids is not None:
        lengths = np.diff(offsets)[index]
        new_offsets = np.zeros(index.shape[0] + 1, np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        within = np.arange(new_offsets[-1], dtype=np.int64) - np.repeat(new_offsets[:-1], lengths)
        ids = ids[np.repeat(offsets[index], lengths) + within]
        offsets = new_offsets
    return replace(trace, arrival_s=trace.arrival_s[index], input_len=trace.input_len[index],
                   output_len=trace.output_len[index], hash_offsets=offsets, hash_ids=ids)


def cell_rows(n: int, share: float, cell: int = 0, num_cells: int = 1) -> np.ndarray:
    """The rows of an ``n``-request trace that one routing cell receives: every
    ``num_cells``-th row from ``cell`` when the cells split the trace between them; with one
    cell holding ``share`` of the fleet (a sampled pool), an evenly spread ``share`` of the
    rows (row i is kept when floor((i + 1) share) > floor(i share))."""
    if num_cells > 1:
        return np.arange(cell, n, num_cells, dtype=np.int64)
    if share >= 1.0:
        return np.arange(n, dtype=np.int64)
    i = np.arange(n, dtype=np.float64)
    return np.nonzero(np.floor((i + 1.0) * share) > np.floor(i * share))[0]


def to_request_batch(trace: Trace, duration_s: float | None = None,
                     repeat: bool = True, period_s: float | None = None) -> RequestBatch:
    """The trace as engine requests over ``[0, duration_s)`` (all of it when None).

    With ``repeat`` the trace is tiled every ``period_s`` seconds (default: the trace's own
    ``duration_s``; a cell's share of a trace tiles with the whole trace's period) until the
    window is full (each copy a fresh set of users, see the module docstring); without it, the
    window is only truncated. Token counts of 0 become 1 (the engine needs >= 1). Mooncake hash ids
    become prefix chains; Azure requests share nothing.
    """
    n = len(trace)
    if duration_s is None:
        copies, window = 1, math.inf
    else:
        if isinstance(duration_s, bool) or not isinstance(duration_s, Real) \
                or not math.isfinite(duration_s) or duration_s <= 0:
            raise ConfigError(f"to_request_batch: bad duration_s={duration_s!r}; expected > 0")
        window = float(duration_s)
        period = trace.duration_s if period_s is None else float(period_s)
        if repeat and period <= 0:
            raise ConfigError(f"to_request_batch: trace {trace.name} has no time span to repeat")
        copies = max(1, math.ceil(window / period)) if repeat else 1
    src1, blocks = prefix_chains(trace)
    inp = np.maximum(trace.input_len, 1).astype(np.int32)
    out = np.maximum(trace.output_len, 1).astype(np.int32)
    plen1 = blocks.astype(np.int64) * trace.block_tokens
    has = src1 >= 0
    node_len = inp.astype(np.int64) + out
    plen1[has] = np.minimum(np.minimum(plen1[has], inp[has]), node_len[src1[has]])
    plen1[~has] = 0
    src1 = np.where(plen1 > 0, src1, -1).astype(np.int64)
    if copies == 1:
        arrival = trace.arrival_s.astype(np.float64, copy=True)
        src = src1
    else:
        shift = np.arange(copies, dtype=np.float64) * period
        arrival = (trace.arrival_s[None, :] + shift[:, None]).ravel()
        base = np.arange(copies, dtype=np.int64)[:, None] * n
        src = np.where(src1[None, :] >= 0, src1[None, :] + base, -1).ravel()
    keep = int(np.searchsorted(arrival, window, side="left"))
    if keep > np.iinfo(np.int32).max:
        raise ConfigError(f"to_request_batch: {keep} requests exceed the int32 index space")
    batch = RequestBatch(
        arrival_s=arrival[:keep],
        prompt_len=np.tile(inp, copies)[:keep],
        output_len=np.tile(out, copies)[:keep],
        prefix_src=src[:keep].astype(np.int32),
        prefix_len=np.tile(plen1.astype(np.int32), copies)[:keep],
        gate=np.full(keep, -1, np.int32),
        rejected=np.zeros(keep, np.bool_),
    )
    return batch


__all__ = [
    "AZURE_HEADER",
    "MOONCAKE_BLOCK_TOKENS",
    "Trace",
    "prefix_chains",
    "read_azure",
    "read_mooncake",
    "read_trace",
    "cell_rows",
    "scale_to_rate",
    "take",
    "time_scale",
    "to_request_batch",
]
