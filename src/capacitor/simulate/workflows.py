"""Workflows as the unit of demand: one record per workflow of a pool (its calls reduced),
the per type and tenant figures of ``summary.json`` (``workflows``), and
``workflows.parquet``.

A workflow (:mod:`capacitor.workload.agentic`) **completes** when every one of its calls
completed; it **fails** when a call got no answer (throttled, shed, invalid, or lost with a
failed replica; the earliest such call names the cause) — the calls after it are never sent.
No call times out in this model. Every workflow ends exactly once: the engine runs until each
sent call is answered.

Its end-to-end time (arrival of the workflow to the last answer of its main chain, which
comes after every subagent has joined) splits exactly into four parts along the main
chain, whose calls follow one another:

* ``model_s``: the main chain's calls at the server, send to last token; it splits into
  ``ttft_s`` (send to first token: queueing for a batch slot and KV blocks, then prefill,
  chunked among other requests' steps) and ``decode_s`` (first to last token). The engine
  does not record when a request is first scheduled, so queueing is not separated from
  prefill: ``ttft_s`` bounds it from above, and the part a loaded fleet adds shows as
  ``ttft_s`` growing against an idle one;
* ``tool_s`` and ``think_s``: the tool rounds and the human think time before its calls;
* ``wait_s``: the rest, waiting on subagents that took longer than the tool round.

Counts are scaled by the pool's replicas / simulated replicas (sampled fidelity), and
percentiles weight each workflow the same way.

LIMITATION: tenant rate limits and quotas (:mod:`capacitor.fleet.admission`) decide before
the engine runs, on each request's earliest send time; a workflow's calls all carry the
workflow's start, so the limits see them as one burst at the start (the first call
refused fails the workflow). Rate-limited workflow tenants are judged too harshly.
"""

from __future__ import annotations

import numpy as np

from capacitor.engine.status import CAUSE_NUMBER, REFUSAL_CAUSES, REFUSED, S_COMPLETED
from capacitor.simulate.percentiles import weighted_percentiles
from capacitor.simulate.summary_model import TenantWorkflows, WorkflowStats
from capacitor.workload.agentic import DELAY_THINK, DELAY_TOOL

#: Per workflow id: the routing cell's first replica x CELL_ID + the workflow's number in it
#: (unique in a deployment, the same in ``requests.parquet`` and ``workflows.parquet``).
CELL_ID = 1_000_000_000
#: ``failure`` of a workflow that completed.
NOT_FAILED = "none"
#: The columns of one record per workflow.
COLUMNS = ("workflow", "workload", "tenant", "arrival_s", "completed", "failure", "e2e_s",
           "model_s", "ttft_s", "decode_s", "tool_s", "think_s", "wait_s", "calls", "input_tokens",
           "cached_tokens", "output_tokens", "counted", "weight")


def has_workflows(scenario) -> bool:
    """True when a workload of ``scenario`` is made of workflows."""
    return any(w.lengths.kind == "workflow" for w in scenario.workloads)


def request_workflow_ids(pool) -> np.ndarray:
    """Per request of ``pool`` its workflow id (:data:`CELL_ID`), -1 for other requests."""
    wf = pool.demand.workflow
    if wf.shape[0] == 0:
        return np.full(len(pool.status), -1, np.int64)
    return np.where(wf >= 0, pool.replica_offset * CELL_ID + wf, -1)


def workflow_records(pool) -> dict[str, np.ndarray] | None:
    """One record per workflow of ``pool`` (a :class:`~capacitor.simulate.PoolRun`), as
    columns (:data:`COLUMNS`; ``failure`` a cause number as ``CAUSE_NUMBER``, 0 none), or
    None when it has no workflows."""
    d = pool.demand
    if d.workflow.shape[0] == 0 or not np.any(d.workflow >= 0):
        return None
    res, b = pool.result, d.batch
    rows = np.flatnonzero(d.workflow >= 0)
    ids, inv = np.unique(d.workflow[rows], return_inverse=True)
    m = ids.shape[0]
    status = pool.status[rows]
    send, finish = res.send_s[rows], res.finish_s[rows]

    def per(values, where=None) -> np.ndarray:
        w = values if where is None else np.where(where, values, 0)
        return np.bincount(inv, w.astype(np.float64), minlength=m)

    calls = np.bincount(inv, minlength=m)
    done = per(status == S_COMPLETED) == calls
    first = np.zeros(m, np.int64)
    first[inv[::-1]] = rows[::-1]  # the workflow's first row (rows are in order)
    arrival = b.arrival_s[first]
    # the cause: the earliest refused call (by the time it was answered)
    failure = np.zeros(m, np.int64)
    refused = np.isin(status, REFUSED)
    if refused.any():
        r = np.flatnonzero(refused)
        order = r[np.lexsort((finish[r], inv[r]))]
        wf_first, at = np.unique(inv[order], return_index=True)
        failure[wf_first] = np.asarray(CAUSE_NUMBER)[status[order[at]]]
    main = ~d.subagent[rows]
    kind = d.delay_kind[rows]
    delay = b.gate_delay_s[rows]
    end = np.full(m, -np.inf)
    np.maximum.at(end, inv, np.where(main & np.isfinite(finish), finish, -np.inf))
    e2e = np.where(done, end - arrival, np.nan)
    model = per(finish - send, main & (status == S_COMPLETED))
    ttft = per(res.first_token_s[rows] - send, main & (status == S_COMPLETED))
    tool = per(delay, main & (kind == DELAY_TOOL))
    think = per(delay, main & (kind == DELAY_THINK))
    cached = np.maximum(res.num_cached_tokens[rows], 0)
    return {
        "workflow": pool.replica_offset * CELL_ID + ids,
        "workload": d.workload[first].astype(np.int64),
        "tenant": d.tenant[first].astype(np.int64),
        "arrival_s": arrival,
        "completed": done,
        "failure": failure,
        "e2e_s": e2e,
        "model_s": np.where(done, model, np.nan),
        "ttft_s": np.where(done, ttft, np.nan),
        "decode_s": np.where(done, model - ttft, np.nan),
        "tool_s": np.where(done, tool, np.nan),
        "think_s": np.where(done, think, np.nan),
        "wait_s": np.where(done, e2e - model - tool - think, np.nan),
        "calls": calls.astype(np.int64),
        "input_tokens": per(b.prompt_len[rows]),
        "cached_tokens": per(cached),
        "output_tokens": per(b.output_len[rows], status == S_COMPLETED),
        "counted": pool.measured[first],
        "weight": np.full(m, pool.scale),
    }


def concat(a: dict | None, b: dict | None) -> dict | None:
    """Two pools' records as one (either may be None)."""
    if a is None or b is None:
        return a if b is None else {k: v.copy() for k, v in b.items()}
    return {k: np.concatenate([a[k], b[k]]) for k in COLUMNS}


def failure_names() -> list[str]:
    """``failure`` numbers -> names: ``none`` then the refusal causes."""
    return [NOT_FAILED, *REFUSAL_CAUSES]


def _empty_records() -> dict[str, np.ndarray]:
    records = {k: np.zeros(0, np.float64 if k.endswith("_s") or k.endswith("tokens")
                           or k == "weight" else np.int64) for k in COLUMNS}
    records["completed"] = np.zeros(0, np.bool_)
    records["counted"] = np.zeros(0, np.bool_)
    return records


def _round(x: float, digits: int = 3) -> float | None:
    return None if not np.isfinite(x) else round(float(x), digits)


def _stats(r: dict, sel: np.ndarray, window_s: float,
           usd_per_mtok: float | None) -> WorkflowStats:
    """The figures of the records ``sel`` selects (see :class:`WorkflowStats`), priced at
    ``usd_per_mtok`` (input + output tokens)."""
    w = r["weight"]
    done = sel & r["completed"]
    wd = w[done]
    total = float(wd.sum())

    def mean(col: str) -> float | None:
        return _round(float((r[col][done] * wd).sum()) / total) if total > 0 else None
    failed = {name: _round(float(w[sel & (r["failure"] == k)].sum()), 1)
              for k, name in enumerate(failure_names()) if k > 0}
    p50, p90, p99 = weighted_percentiles(r["e2e_s"][done], wd)
    inp = float((r["input_tokens"][done] * wd).sum())
    tokens = (inp + float((r["output_tokens"][done] * wd).sum())) / total if total > 0 else 0.0
    usd = _round(tokens / 1e6 * usd_per_mtok, 4) if usd_per_mtok is not None and tokens else None
    return WorkflowStats(
        workflows=_round(float(w[sel].sum()), 1), completed=_round(total, 1),
        completed_per_hour=_round(total / window_s * 3600.0, 1) if window_s > 0 else 0.0,
        failed=failed, e2e_p50_s=_round(p50), e2e_p90_s=_round(p90), e2e_p99_s=_round(p99),
        model_s=mean("model_s"), ttft_s=mean("ttft_s"), decode_s=mean("decode_s"),
        tool_s=mean("tool_s"), think_s=mean("think_s"),
        wait_s=mean("wait_s"), calls=mean("calls"), input_tokens=mean("input_tokens"),
        cached_tokens=mean("cached_tokens"), output_tokens=mean("output_tokens"),
        prefix_hit_rate=_round(float((r["cached_tokens"][done] * wd).sum()) / inp, 4)
        if inp > 0 else None,
        usd_per_workflow=usd,
    )


def _run_records(run) -> dict[str, np.ndarray]:
    """Every deployment's workflow records of ``run``, as one."""
    records = None
    for d in run.digests:
        records = concat(records, d.workflows)
    return _empty_records() if records is None else records


def tenant_workflow_figures(run) -> dict[str, TenantWorkflows]:
    """Per tenant that sends a workflow workload, what its ``slo.workflow`` is judged on:
    all its counted workflows together (every workflow workload and deployment), each
    weighted by its pool's scale; the failed share is of the workflows started."""
    scenario = run.scenario
    names = [t.name for t in scenario.tenants]
    senders = sorted({names.index(w.tenant) for w in scenario.workloads
                      if w.lengths.kind == "workflow"})
    if not senders:
        return {}
    r = _run_records(run)
    flows = np.isin(r["workload"], [k for k, w in enumerate(scenario.workloads)
                                    if w.lengths.kind == "workflow"])
    out = {}
    for t in senders:
        sel = flows & (r["tenant"] == t) & r["counted"]
        started = float(r["weight"][sel].sum())
        done = sel & r["completed"]
        failed = started - float(r["weight"][done].sum())
        _, p90, p99 = weighted_percentiles(r["e2e_s"][done], r["weight"][done])
        out[names[t]] = TenantWorkflows(
            workflows=_round(started, 1),
            failed_pct=_round(100.0 * failed / started) if started > 0 else 0.0,
            e2e_p90_s=_round(p90), e2e_p99_s=_round(p99))
    return out


def workflow_summaries(run, economics) -> dict[str, dict[str, WorkflowStats]] | None:
    """``summary.json``'s ``workflows``: per workflow workload, per tenant that sends it, its
    counted workflows' figures (``economics``: the summary's, for the deployments' unit
    costs); None when no workload is made of workflows."""
    scenario = run.scenario
    if not has_workflows(scenario):
        return None
    records = _run_records(run)
    out: dict[str, dict[str, WorkflowStats]] = {}
    for k, wl in enumerate(scenario.workloads):
        if wl.lengths.kind != "workflow":
            continue
        t = [x.name for x in scenario.tenants].index(wl.tenant)
        sel = (records["workload"] == k) & (records["tenant"] == t) & records["counted"]
        basis = economics.deployments.get(wl.deployment)
        price = basis.window.usd_per_million_total_tokens if basis is not None else None
        out[wl.name] = {wl.tenant: _stats(records, sel, run.window_s, price)}
    return out


def workflows_table(digests, scenario):
    """``workflows.parquet``'s table: one row per workflow of every deployment (``digests``:
    the run's :class:`~capacitor.simulate.digest.PoolDigest` s), names for the indices."""
    import pyarrow as pa

    def dictionary(idx, names):
        return pa.DictionaryArray.from_arrays(np.asarray(idx, np.int32), pa.array(names))
    deps = [d.name for d in scenario.deployments]
    records, dep = None, []
    for d in digests:
        if d.workflows is not None:
            records = concat(records, d.workflows)
            dep.append(np.full(d.workflows["workflow"].shape[0], deps.index(d.name)))
    if records is None:
        records = _empty_records()
    return pa.table({
        "deployment": dictionary(np.concatenate(dep) if dep else np.zeros(0), deps),
        **{k: records[k] for k in ("workflow", "arrival_s")},
        "workload": dictionary(records["workload"], [w.name for w in scenario.workloads]),
        "tenant": dictionary(records["tenant"], [t.name for t in scenario.tenants]),
        "completed": records["completed"],
        "failure": dictionary(records["failure"], failure_names()),
        **{k: records[k] for k in COLUMNS[6:] if k not in ("weight",)},
        "weight": records["weight"],
    })


__all__ = ["CELL_ID", "COLUMNS", "NOT_FAILED", "concat", "failure_names", "has_workflows",
           "request_workflow_ids", "tenant_workflow_figures", "workflow_records",
           "workflow_summaries", "workflows_table"]
