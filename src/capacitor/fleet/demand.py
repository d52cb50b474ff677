"""A deployment's demand in the simulated window: the requests of every workload that targets
it, merged into one :class:`~capacitor.engine.requests.RequestBatch` (what tenant admission
then does with it is :mod:`capacitor.fleet.admission`).

Arrival processes and lengths come from :mod:`capacitor.workload`; times are seconds from the
start of the simulated span (warm-up included). In sampled fidelity a deployment of ``R``
replicas is simulated with ``k`` of them at ``k / R`` of the demand: the per-replica load the
router implies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capacitor.engine.requests import RequestBatch
from capacitor.errors import ScenarioError
from capacitor.workload import agentic, session_trace, shared_prefix, traces
from capacitor.workload import arrivals as arr
from capacitor.workload import lengths as lens
from capacitor.workload.agentic_presets import preset
from capacitor.workload.stages import parse_stages


@dataclass(slots=True)
class Demand:
    """Merged requests of one deployment, with who sent each."""

    batch: RequestBatch
    tenant: np.ndarray  # int16 tenant index per request
    workload: np.ndarray  # int16 workload index per request
    session: np.ndarray  # int64 session key per request: its conversation's first request
    # int64 prefix key per request: the root of its prefix chain (empty: not computed)
    prefix_key: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # workflows (all empty when no workload is one): per request its workflow (-1: none;
    # numbered across the deployment's workloads), its step in it, what its gate delay is
    # (capacitor.workload.agentic.DELAY_*), and whether a subagent made it
    workflow: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    delay_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    subagent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.bool_))

    def route_key(self, routing: str) -> np.ndarray:
        """The key an affinity router hashes: ``prefix_affinity`` the request's prefix root
        (its shared segment, or the first request its prompt's prefix chain leads back to),
        any other policy the session."""
        return self.prefix_key if routing == "prefix_affinity" else self.session


def arrival_times(arrival, start_s: float, duration_s: float, scale: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Send times (sorted, [0, duration_s)) of one workload's arrival process, its rate
    multiplied by ``scale`` (growth x sampling). ``start_s`` is the window's start as seconds
    since midnight (for diurnal demand)."""
    kind = arrival.kind
    if kind == "poisson":
        return arr.poisson(arrival.rate_rps * scale, duration_s, rng)
    if kind == "constant":
        return arr.constant(arrival.rate_rps * scale, duration_s, rng)
    if kind == "diurnal":
        # the scenario's peak_hour is an hour of the day; its peak is mid-hour
        return arr.diurnal(arrival.mean_rate_rps * scale, arrival.peak_to_mean,
                           arrival.peak_hour + 0.5, start_s, duration_s, rng)
    if kind == "bursty":
        return arr.bursty(arrival.rate_rps * scale, arrival.burst_rate_rps * scale,
                          arrival.mean_burst_s, arrival.mean_gap_s, duration_s, rng)
    if kind == "stages":

        out = []
        t0 = 0.0
        for stage in parse_stages(arrival.stages):
            end = min(t0 + stage.duration_s, duration_s)
            if end > t0 and stage.rate_rps > 0:
                process = arr.constant if getattr(arrival, "process", "poisson") == "constant" \
                    else arr.poisson
                out.append(t0 + process(stage.rate_rps * scale, end - t0, rng))
            t0 += stage.duration_s
        return np.sort(np.concatenate(out)) if out else np.zeros(0)
    raise ScenarioError(f"arrival kind {kind!r} is not supported")


def _token_counts(spec, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec.kind == "lognormal":
        return lens.lognormal(n, spec.mean_tokens, rng, p99_tokens=spec.p99_tokens,
                              min_tokens=spec.min_tokens or 1, max_tokens=spec.max_tokens)
    return lens.uniform(n, spec.min_tokens, spec.max_tokens, rng)


def workload_batch(workload, send_s: np.ndarray, max_model_len: int, seed: int,
                   rng: np.random.Generator, base_dir) -> RequestBatch:
    """The requests one workload sends at ``send_s``."""
    lengths = workload.lengths
    n = len(send_s)
    if lengths.kind == "fixed":
        batch = RequestBatch.simple(send_s, lens.fixed(n, lengths.input_tokens),
                                    lens.fixed(n, lengths.output_tokens))
    elif lengths.kind == "distribution":
        batch = RequestBatch.simple(send_s, _token_counts(lengths.input, n, rng),
                                    _token_counts(lengths.output, n, rng))
        if lengths.shared_prefix_tokens > 0:
            share_segment(batch, lengths.shared_prefix_tokens)
    elif lengths.kind == "shared_prefix":

        batch = shared_prefix.generate(
            system_prompt_len=lengths.system_prompt_len, question_len=lengths.question_len,
            output_len=lengths.output_len, num_groups=lengths.num_groups,
            users_per_group=lengths.users_per_group,
            enable_multi_turn_chat=lengths.enable_multi_turn_chat, arrival_s=send_s, seed=seed,
            max_model_len=max_model_len, carry_context=lengths.carry_context,
            mean_rounds_per_session=lengths.mean_rounds_per_session,
            context_full=lengths.context_full,
        )
    else:
        raise ScenarioError(f"workload {workload.name}: lengths kind {lengths.kind!r} has no "
                            "generator here (trace workloads go through trace_batch)")
    batch.rejected |= (batch.prompt_len.astype(np.int64) + batch.output_len) > max_model_len
    return batch


def workflow_rows(workload, send_s: np.ndarray, max_model_len: int,
                  rng: np.random.Generator) -> agentic.WorkflowRows:
    """The calls of a workflow workload whose workflows start at ``send_s``."""
    rows = agentic.generate(preset(workload.lengths.preset), send_s, rng,
                            max_model_len=max_model_len)
    b = rows.batch
    b.rejected |= (b.prompt_len.astype(np.int64) + b.output_len) > max_model_len
    return rows


def _read_trace(file: str, base_dir):
    """The trace at ``file``, relative to the scenario's directory ``base_dir`` unless
    absolute."""
    path = Path(file)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return traces.read_trace(path)


def workflow_trace_rows(workload, span_s: float, share: float, growth: float,
                        max_model_len: int, base_dir, cell: int = 0,
                        num_cells: int = 1) -> agentic.WorkflowRows:
    """A workflow workload's recorded sessions over ``[0, span_s)``
    (:mod:`capacitor.workload.session_trace`): the file (relative to the scenario),
    time-scaled as the scenario says and by monthly ``growth``, tiled when ``loop``, and of
    it the whole sessions one routing cell receives (as :func:`trace_batch` deals rows)."""
    lengths = workload.lengths
    trace = _read_trace(lengths.trace, base_dir)
    if lengths.time_scale is not None:
        trace = traces.time_scale(trace, lengths.time_scale)
    if growth != 1.0:
        trace = traces.time_scale(trace, 1.0 / growth)
    rows = session_trace.generate(trace, min_shared_blocks=lengths.min_shared_blocks,
                                  duration_s=span_s, repeat=lengths.loop, share=share,
                                  cell=cell, num_cells=num_cells)
    b = rows.batch
    b.rejected |= (b.prompt_len.astype(np.int64) + b.output_len) > max_model_len
    return rows


def share_segment(batch: RequestBatch, tokens: int) -> None:
    """Make every prompt of ``batch`` start with one shared segment of ``tokens`` (the
    workload's system / tool prompt): a new segment node, the source of every request, with
    ``prefix_len = min(tokens, prompt_len)``. ``batch`` must have no prefixes yet."""
    n = len(batch)
    batch.segment_len = np.array([tokens], np.int32)
    batch.prefix_src = np.full(n, n, np.int32)
    batch.prefix_len = np.minimum(batch.prompt_len, tokens).astype(np.int32)


def _chain_root(parent: np.ndarray) -> np.ndarray:
    """Per element, the end of its ``parent`` chain (``parent[i] <= i``; a root is its own
    parent), by pointer jumping: log2(depth) vectorised passes."""
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def trace_batch(workload, span_s: float, share: float, growth: float, max_model_len: int,
                base_dir, cell: int = 0, num_cells: int = 1) -> RequestBatch:
    """A trace workload's requests over ``[0, span_s)``: the file (relative to the scenario),
    time-scaled as the scenario says and by monthly ``growth``, tiled when ``loop``, and of
    it the rows one routing cell receives (:func:`capacitor.workload.traces.cell_rows`: every
    ``num_cells``-th row when the cells of an exact run split it, an evenly spread ``share``
    when one sampled cell stands for the fleet), so the cells together replay the trace."""


    lengths = workload.lengths
    trace = _read_trace(lengths.path, base_dir)
    if lengths.target_rate_rps is not None:
        trace = traces.scale_to_rate(trace, lengths.target_rate_rps)
    elif lengths.time_scale is not None:
        trace = traces.time_scale(trace, lengths.time_scale)
    if growth != 1.0:
        trace = traces.time_scale(trace, 1.0 / growth)
    period = trace.duration_s
    rows = traces.cell_rows(len(trace), share, cell, num_cells)
    if rows.shape[0] < len(trace):
        trace = traces.take(trace, rows)
    if len(trace) == 0:  # a cell of a fleet larger than the trace: no requests
        return traces.to_request_batch(trace)
    batch = traces.to_request_batch(trace, duration_s=span_s, repeat=lengths.loop,
                                    period_s=period)
    batch.rejected |= (batch.prompt_len.astype(np.int64) + batch.output_len) > max_model_len
    return batch


def merge(parts: list[tuple]) -> Demand:
    """Concatenate batches (each with its tenant and workload index, and for a workflow
    workload its :class:`~capacitor.workload.agentic.WorkflowRows` fourth) and sort by send
    time, keeping prefix sources, gates, joins and segments consistent."""
    flows = [p[3] if len(p) > 3 else None for p in parts]
    parts = [p[:3] for p in parts]
    total = sum(len(b) for b, _, _ in parts)
    arrival = np.concatenate([b.arrival_s for b, _, _ in parts]) if parts else np.zeros(0)
    if np.all(arrival[1:] >= arrival[:-1]):  # one workload, or already in order
        order = None
        new_index = np.arange(total)
    else:
        order = np.argsort(arrival, kind="stable")
        new_index = np.empty(total, np.int64)
        new_index[order] = np.arange(total)

    def sort(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]
    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("prompt", "output", "src", "plen", "gate", "rej")}
    tenant, workload, session, prefix_key, seg_lens = [], [], [], [], []
    offset = seg_offset = 0
    for b, ten, wl in parts:
        n = len(b)
        idx = np.arange(n)
        src = b.prefix_src.astype(np.int64)
        is_req = (src >= 0) & (src < n)
        is_seg = src >= n
        new_src = np.full(n, -1, np.int64)
        new_src[is_req] = new_index[offset + src[is_req]]
        new_src[is_seg] = total + seg_offset + (src[is_seg] - n)
        gate = np.full(n, -1, np.int64)
        has_gate = b.gate >= 0
        gate[has_gate] = new_index[offset + b.gate[has_gate]]
        # session key: the first request of the session (its gate chain), every round alike
        root = _chain_root(np.where(has_gate, b.gate, idx).astype(np.int64))
        key = offset + root
        # prefix key: where the prompt's prefix chain ends, a shared segment or a request
        # that starts no earlier prefix
        proot = _chain_root(np.where(is_req, src, idx))
        psrc = src[proot]
        pkey = np.where(psrc >= n, total + seg_offset + (psrc - n), offset + proot)
        cols["prompt"].append(b.prompt_len)
        cols["output"].append(b.output_len)
        cols["src"].append(new_src)
        cols["plen"].append(b.prefix_len)
        cols["gate"].append(gate)
        cols["rej"].append(b.rejected)
        tenant.append(np.full(n, ten, np.int16))
        workload.append(np.full(n, wl, np.int16))
        session.append(key)
        prefix_key.append(pkey)
        seg_lens.append(b.segment_len)
        offset += n
        seg_offset += len(b.segment_len)

    def cat(name, dtype):
        return sort((np.concatenate(cols[name]) if parts else np.zeros(0)).astype(dtype))

    extra = _merge_workflows(parts, flows, new_index, sort) if any(
        f is not None for f in flows) else {}
    batch = RequestBatch(
        arrival_s=sort(arrival), prompt_len=cat("prompt", np.int32),
        output_len=cat("output", np.int32), prefix_src=cat("src", np.int32),
        prefix_len=cat("plen", np.int32), gate=cat("gate", np.int32),
        rejected=cat("rej", np.bool_),
        segment_len=np.concatenate(seg_lens).astype(np.int32) if seg_lens else
        np.zeros(0, np.int32),
        **extra.pop("batch", {}),
    )
    return Demand(**extra,batch=batch, tenant=sort(np.concatenate(tenant)) if parts else
                  np.zeros(0, np.int16),
                  workload=sort(np.concatenate(workload)) if parts else np.zeros(0, np.int16),
                  session=sort(np.concatenate(session)) if parts else np.zeros(0, np.int64),
                  prefix_key=sort(np.concatenate(prefix_key)) if parts else
                  np.zeros(0, np.int64))


def _merge_workflows(parts, flows, new_index: np.ndarray, sort) -> dict:
    """The workflow columns of :func:`merge`: the batch's delays, joins and cancel flags,
    and per request its workflow (numbered across the parts), step, delay kind and whether
    a subagent sent it (-1 / 0 / none for requests of other workloads)."""
    delay, cancel, jc, jg, wf, step, kind, sub = ([] for _ in range(8))
    offset = wf_offset = 0
    for (b, _, _), rows in zip(parts, flows, strict=True):
        n = len(b)
        if rows is None:
            delay.append(np.zeros(n))
            cancel.append(np.zeros(n, np.bool_))
            wf.append(np.full(n, -1, np.int64))
            step.append(np.full(n, -1, np.int32))
            kind.append(np.zeros(n, np.int8))
            sub.append(np.zeros(n, np.bool_))
        else:
            delay.append(b.gate_delay_s)
            cancel.append(b.cancel_if_gate_fails)
            jc.append(new_index[offset + b.join_child.astype(np.int64)])
            jg.append(new_index[offset + b.join_gate.astype(np.int64)])
            wf.append(rows.workflow + wf_offset)
            step.append(rows.step)
            kind.append(rows.delay_kind)
            sub.append(rows.subagent)
            wf_offset += rows.num_workflows
        offset += n
    child = np.concatenate(jc) if jc else np.zeros(0, np.int64)
    gate = np.concatenate(jg) if jg else np.zeros(0, np.int64)
    return dict(
        batch=dict(gate_delay_s=sort(np.concatenate(delay)),
                   cancel_if_gate_fails=sort(np.concatenate(cancel)),
                   join_child=child.astype(np.int32), join_gate=gate.astype(np.int32)),
        workflow=sort(np.concatenate(wf)), step=sort(np.concatenate(step)),
        delay_kind=sort(np.concatenate(kind)), subagent=sort(np.concatenate(sub)),
    )


__all__ = ["Demand", "arrival_times", "merge", "share_segment", "trace_batch",
           "workflow_rows", "workload_batch"]
