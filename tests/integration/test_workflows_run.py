"""Workflow workloads through a scenario run: every workflow ends once, completed or failed
with a cause; its end-to-end time splits into model, tool, think and wait time; the requests
carry their workflow; the run directory gains workflows.parquet."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from capacitor.engine.status import S_COMPLETED, S_PENDING, S_THROTTLED
from capacitor.errors import ScenarioError
from capacitor.scenario import scenario_json_schema
from capacitor.simulate import run_scenario
from capacitor.simulate.outputs import write_run_dir
from capacitor.simulate.summary import summarize
from capacitor.workload.agentic_presets import PRESETS
from tests.factories import SMALL, make_scenario


def _scenario(rate: float = 0.5, **changes):
    g = copy.deepcopy(SMALL["workloads"][0])
    g["name"] = "agent"
    g["arrival"] = {"kind": "poisson", "rate_rps": rate}
    g["lengths"] = {"kind": "workflow", "preset": "coding-agent"}
    return make_scenario(workloads=[g, SMALL["workloads"][1]], **changes)


@pytest.fixture(scope="module")
def run():
    return run_scenario(_scenario(**{"economics": {"gpu_hour_usd": {"H100": 2.0}}}))


def test_every_workflow_ends_once_and_its_time_splits_exactly(run):
    pool = run.pools[0]
    rec = run.digests[0].workflows
    d = pool.demand
    assert rec["workflow"].shape[0] > 20
    # every workflow's calls are its requests, each in one workflow
    assert rec["calls"].sum() == (d.workflow >= 0).sum()
    done = rec["completed"]
    assert done.sum() > 10
    # completed or failed, never both, never neither: a failed one names a cause
    assert np.all(done == (rec["failure"] == 0))
    parts = rec["model_s"] + rec["tool_s"] + rec["think_s"] + rec["wait_s"]
    np.testing.assert_allclose(parts[done], rec["e2e_s"][done], rtol=1e-9)
    assert np.all(rec["wait_s"][done] > -1e-6) and np.all(rec["model_s"][done] > 0)
    # model time = time to first token (queueing + prefill) + decode, each summed by hand
    # over a workflow's main-chain calls from the requests
    res = pool.result
    for i in np.flatnonzero(done)[:10]:
        mine = np.flatnonzero(d.workflow == rec["workflow"][i])
        main = mine[~d.subagent[mine]]
        ttft = sum(res.first_token_s[j] - res.send_s[j] for j in main)
        decode = sum(res.finish_s[j] - res.first_token_s[j] for j in main)
        assert rec["ttft_s"][i] == pytest.approx(ttft, rel=1e-9)
        assert rec["decode_s"][i] == pytest.approx(decode, rel=1e-9)
    assert np.all(rec["ttft_s"][done] > 0) and np.all(rec["decode_s"][done] > 0)
    # without subagents a call is sent exactly when the previous answered plus its tool or
    # think time, so nothing is left to wait for
    with_sub = np.isin(rec["workflow"], d.workflow[d.subagent])
    assert (done & ~with_sub).sum() > 5
    np.testing.assert_allclose(rec["wait_s"][done & ~with_sub], 0.0, atol=1e-6)
    # the chat workload's requests belong to no workflow and all ran
    other = d.workflow < 0
    assert other.sum() > 0 and np.all(pool.status[other] != S_PENDING)
    s = run.summary.workflows["agent"]["gold"]
    counted = rec["counted"]
    assert s.workflows == pytest.approx(counted.sum(), abs=0.05)
    assert s.completed + sum(s.failed.values()) == pytest.approx(s.workflows, abs=0.15)
    assert s.e2e_p50_s <= s.e2e_p90_s <= s.e2e_p99_s
    assert s.calls == pytest.approx(rec["calls"][done & counted].mean(), rel=1e-3)
    assert s.ttft_s + s.decode_s == pytest.approx(s.model_s, abs=2e-3)
    assert 0 < s.prefix_hit_rate < 1
    # $ per workflow: its mean tokens at the deployment's window price per million tokens
    price = run.summary.economics.deployments["d"].window.usd_per_million_total_tokens
    assert price > 0
    assert s.usd_per_workflow == pytest.approx(
        (s.input_tokens + s.output_tokens) / 1e6 * price, rel=1e-3)


def test_a_throttled_call_fails_its_workflow_and_nothing_after_it_is_sent():
    # gold may send 60 requests a minute: the agent's calls (and chat) overrun it
    run = run_scenario(_scenario(1.0, **{"tenants.0.rate_limits": {"requests_per_min": 60}}))
    pool, rec = run.pools[0], run.digests[0].workflows
    failed = ~rec["completed"]
    assert failed.sum() > 0 and np.all(rec["failure"][failed] == 1)  # 1: throttled
    d = pool.demand
    for wid in rec["workflow"][failed][:20]:
        mine = np.flatnonzero(d.workflow == wid)
        st = pool.status[mine]
        first = np.flatnonzero(st == S_THROTTLED)[0]
        # the calls before it completed; the ones after it on the chain were never sent
        assert np.all(st[:first] == S_COMPLETED)
        later = st[first + 1:]
        main_later = ~d.subagent[mine][first + 1:]
        assert np.all(later[main_later] == S_PENDING)
        assert np.all(np.isnan(pool.result.send_s[mine][first + 1:][main_later]))
    s = run.summary.workflows["agent"]["gold"]
    assert s.failed["throttled"] > 0


def test_run_directory_has_workflows_parquet_and_request_columns(run, tmp_path):
    write_run_dir(run, tmp_path, "name: x\n")
    wf = pq.read_table(tmp_path / "workflows.parquet").to_pydict()
    req = pq.read_table(tmp_path / "requests.parquet").to_pydict()
    assert len(wf["workflow"]) == run.digests[0].workflows["workflow"].shape[0]
    ids = np.asarray(req["workflow"])
    mine = ids[ids >= 0]
    assert set(mine.tolist()) == set(wf["workflow"])
    calls = dict(zip(*np.unique(mine, return_counts=True), strict=True))
    assert all(calls[w] == c for w, c in zip(wf["workflow"], wf["calls"], strict=True))
    assert np.all(np.asarray(req["workflow_step"])[ids < 0] == -1)
    assert set(wf["failure"]) <= {"none", "throttled", "shed", "invalid", "failed"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "agent" in summary["workflows"]


def test_the_schema_describes_workflow_workloads():
    text = json.dumps(scenario_json_schema())
    assert "WorkflowLengths" in text and "coding-agent" in text
    # the schema's Literal lists every preset
    assert set(PRESETS) == {"coding-agent", "support-agent", "deep-research", "rag-answer"}
    assert all(name in text for name in PRESETS)


def test_a_run_without_workflows_has_no_workflows_key():
    assert '"workflows"' not in run_scenario(make_scenario()).summary.to_json()


def _workflow_e2e_by_hand(run) -> np.ndarray:
    """Per counted workflow of the run, its end-to-end time from the requests: the last
    answer of its main chain (not a subagent's call) minus its first call's arrival."""
    pool = run.pools[0]
    d, res = pool.demand, pool.result
    out = []
    for wid in np.unique(d.workflow[d.workflow >= 0]):
        mine = np.flatnonzero(d.workflow == wid)
        if not pool.measured[mine[0]] or np.any(pool.status[mine] != S_COMPLETED):
            continue
        main = mine[~d.subagent[mine]]
        out.append(res.finish_s[main].max() - d.batch.arrival_s[mine[0]])
    return np.asarray(out)


def test_workflow_slo_flips_the_verdict_at_the_measured_p90(run):
    e2e = _workflow_e2e_by_hand(run)
    assert e2e.size > 10
    p90 = float(np.percentile(e2e, 90))  # exact fidelity: every workflow weighs 1
    flows = run.summary.tenants["gold"].workflows
    assert flows.e2e_p90_s == pytest.approx(p90, abs=1e-3)
    assert flows.failed_pct == 0.0 and flows.workflows == e2e.size
    assert "workflows" not in run.summary.tenants["bronze"].model_dump(exclude_none=True)

    def verdict(target_s: float):
        # the same run judged against other targets (the targets do not change the run);
        # no request targets, so only the workflow target can miss
        scenario = _scenario(**{"economics": {"gpu_hour_usd": {"H100": 2.0}},
                                "tenants.0.slo": {"workflow": {"e2e_p90_s": target_s}},
                                "tenants.1.slo": {"max_throttled_pct": 100}})
        return summarize(dataclasses.replace(run, scenario=scenario)).verdict
    below, above = verdict(p90 - 0.01), verdict(p90 + 0.01)
    assert not below.ok and [m.metric for m in below.misses] == ["workflow_e2e_p90_s"]
    assert below.misses[0].value == pytest.approx(p90, abs=1e-3)
    assert "tier 0 gold misses workflow_e2e_p90_s" in below.text
    assert above.ok, above.text


def test_workflow_slo_of_a_tenant_without_workflows_is_one_error_line():
    with pytest.raises(ScenarioError) as err:
        _scenario(**{"tenants.1.slo": {"workflow": {"e2e_p90_s": 60}}})
    text = str(err.value)
    assert "tenants[1].slo.workflow" in text and "'bronze'" in text and "\n" not in text


def test_workflow_slo_in_the_schema_and_absent_from_dumps_when_unset():
    text = json.dumps(scenario_json_schema())
    assert "WorkflowSLO" in text and "max_failed_pct" in text and "e2e_p90_s" in text
    assert "workflow" not in make_scenario().tenants[0].slo.model_dump()
    with_target = _scenario(**{"tenants.0.slo": {"workflow": {"max_failed_pct": 2}}})
    assert with_target.tenants[0].slo.model_dump()["workflow"]["max_failed_pct"] == 2


def _trace_scenario(tmp_path, arrival=None, **lengths):
    from tests.unit.test_session_trace import ROWS
    path = tmp_path / "sessions.jsonl"
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o,
                                        "hash_ids": h}) + "\n" for t, i, o, h in ROWS))
    g = copy.deepcopy(SMALL["workloads"][0])
    g["name"] = "replay"
    g["arrival"] = arrival
    g["lengths"] = {"kind": "workflow", "trace": str(path), **lengths}
    return make_scenario(workloads=[g, SMALL["workloads"][1]])


def test_a_session_trace_replays_as_workflows_with_its_gaps(tmp_path):
    # the six-call trace of tests/unit/test_session_trace.py (two sessions, 15.6 s long:
    # 13 s + one mean gap) tiled over the 70 s span: copies at 0, 15.6, ..., 62.4 s; the
    # last keeps its calls at 62.4, 63.4 and 67.4 s (< 70): 4 x 6 + 3 = 27 calls, 10 sessions
    run = run_scenario(_trace_scenario(tmp_path))
    pool = run.pools[0]
    d, res = pool.demand, pool.result
    mine = np.flatnonzero(d.workflow >= 0)
    assert mine.size == 27
    gated = mine[d.batch.gate[mine] >= 0]
    done = gated[pool.status[gated] == S_COMPLETED]
    assert done.size > 10
    # each continuing call is sent when the call it continues answered plus the gap
    parent = d.batch.gate[done]
    np.testing.assert_allclose(res.send_s[done],
                               res.finish_s[parent] + d.batch.gate_delay_s[done], atol=1e-9)
    assert set(np.round(d.batch.gate_delay_s[gated], 6)) <= {4.0, 5.0, 7.0, 12.0}
    rec = run.digests[0].workflows
    assert rec["workflow"].shape[0] == 10
    s = run.summary.workflows["replay"]["gold"]
    # think time of session A: 5 + 4 s on its main chain (call 4, 7 s after call 2, is a
    # side branch), of B: 12 s; the cut copy has A's first two calls (5 s) and B's first (0)
    assert rec["completed"].all()
    assert sorted(np.round(rec["think_s"], 6)) == [0.0, 5.0] + [9.0] * 4 + [12.0] * 4
    assert s.workflows == 8.0  # sessions starting after the 10 s warm-up: copies 1-4


def test_workflow_lengths_take_a_preset_or_a_trace(tmp_path):
    with pytest.raises(ScenarioError, match="exactly one"):
        _scenario(**{"workloads.0.lengths": {"kind": "workflow"}})
    with pytest.raises(ScenarioError, match="only with trace"):
        _scenario(**{"workloads.0.lengths": {"kind": "workflow", "preset": "coding-agent",
                                             "time_scale": 2}})
    scenario = _trace_scenario(tmp_path, time_scale=2.0)
    assert scenario.workloads[0].lengths.time_scale == 2.0
    with pytest.raises(ScenarioError, match="arrival"):
        _trace_scenario(tmp_path, arrival={"kind": "poisson", "rate_rps": 1})
    # a preset workload dumps as before (no trace keys)
    dumped = _scenario().workloads[0].lengths.model_dump()
    assert dumped == {"kind": "workflow", "preset": "coding-agent"}
