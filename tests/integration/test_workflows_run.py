"""Workflow workloads through a scenario run: every workflow ends once, completed or failed
with a cause; its end-to-end time splits into model, tool, think and wait time; the requests
carry their workflow; the run directory gains workflows.parquet."""

from __future__ import annotations

import copy
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from capacitor.engine.status import S_COMPLETED, S_PENDING, S_THROTTLED
from capacitor.scenario import scenario_json_schema
from capacitor.simulate import run_scenario
from capacitor.simulate.outputs import write_run_dir
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
    assert set(PRESETS) == {"coding-agent"}  # the schema's Literal lists every preset


def test_a_run_without_workflows_has_no_workflows_key():
    assert '"workflows"' not in run_scenario(make_scenario()).summary.to_json()
