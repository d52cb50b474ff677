"""Workflow targets (``slo.workflow``): the figures they are judged on, from hand-made
workflow records, and the misses they give."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from capacitor.simulate.summary import _misses
from capacitor.simulate.summary_model import TenantWorkflows
from capacitor.simulate.workflows import COLUMNS, tenant_workflow_figures
from tests.factories import SMALL, make_scenario


def _scenario(**changes):
    g = copy.deepcopy(SMALL["workloads"][0])
    g["lengths"] = {"kind": "workflow", "preset": "coding-agent"}
    return make_scenario(workloads=[g, SMALL["workloads"][1]], **changes)


def _records(e2e, completed, tenant, weight, counted=None):
    m = len(e2e)
    rec = {k: np.zeros(m) for k in COLUMNS}
    rec.update(workload=np.zeros(m, np.int64), tenant=np.asarray(tenant, np.int64),
               e2e_s=np.asarray(e2e, float), completed=np.asarray(completed, bool),
               counted=np.ones(m, bool) if counted is None else np.asarray(counted, bool),
               weight=np.asarray(weight, float))
    return rec


def test_figures_by_hand():
    # gold (tenant 0): ten completed workflows of 1..10 s and two failed, weight 1, plus one
    # uncounted (warm-up) of 1000 s that must not count. p90 (linear): h = 9 x 0.9 = 8.1,
    # 9 + 0.1 x (10 - 9) = 9.1 s; p99: h = 8.91, 9 + 0.91 = 9.91 s; failed 2 / 12 = 16.667%
    e2e = [*range(1, 11), np.nan, np.nan, 1000.0]
    done = [True] * 10 + [False, False, True]
    counted = [True] * 12 + [False]
    # a second pool's workflow of tenant 0 at weight 2 would shift the p90: kept separate
    # here by giving it tenant 1 (bronze sends no workflows, so it is not reported)
    run = SimpleNamespace(scenario=_scenario(), digests=[
        SimpleNamespace(workflows=_records(e2e, done, [0] * 13, [1.0] * 13, counted)),
        SimpleNamespace(workflows=_records([5.0], [True], [1], [2.0])),
    ])
    figures = tenant_workflow_figures(run)
    assert set(figures) == {"gold"}
    gold = figures["gold"]
    assert gold.workflows == 12.0
    assert gold.e2e_p90_s == pytest.approx(9.1)
    assert gold.e2e_p99_s == pytest.approx(9.91)
    assert gold.failed_pct == pytest.approx(16.667)


def test_weights_count_as_repeats():
    # two pools: 1 s at weight 3 and 2 s at weight 1 -> sample 1 1 1 2; p90: h = 2.7,
    # 1 + 0.7 x (2 - 1) = 1.7 s
    run = SimpleNamespace(scenario=_scenario(), digests=[
        SimpleNamespace(workflows=_records([1.0], [True], [0], [3.0])),
        SimpleNamespace(workflows=_records([2.0], [True], [0], [1.0])),
    ])
    assert tenant_workflow_figures(run)["gold"].e2e_p90_s == pytest.approx(1.7)


@pytest.mark.parametrize(("key", "under", "over", "metric"), [
    ("e2e_p90_s", 9.0, 9.11, "workflow_e2e_p90_s"),  # figure 9.1
    ("e2e_p99_s", 9.9, 9.92, "workflow_e2e_p99_s"),  # figure 9.91
    ("max_failed_pct", 16.6, 16.7, "workflow_failed_pct"),  # figure 16.667
])
def test_a_target_just_under_the_figure_misses_and_just_over_holds(key, under, over, metric):
    flows = TenantWorkflows(workflows=12.0, failed_pct=16.667, e2e_p90_s=9.1, e2e_p99_s=9.91)
    stats = SimpleNamespace(ttft_ms=SimpleNamespace(p99=None), itl_ms=SimpleNamespace(p99=None),
                            e2e_ms=SimpleNamespace(p99=None), refused_pct=0.0,
                            workflows=flows)

    def misses(target):
        tenant = _scenario(**{"tenants.0.slo": {"ttft_p99_ms": None,
                                                "workflow": {key: target}}}).tenants[0]
        return _misses("gold", tenant, stats)
    (miss,) = misses(under)
    assert miss.metric == metric and miss.target == under
    if metric == "workflow_e2e_p90_s":
        assert miss.over_pct == pytest.approx(1.1)  # (9.1 - 9) / 9 = 1.1%
    assert misses(over) == []


def test_no_completed_workflow_misses_every_latency_target():
    flows = TenantWorkflows(workflows=3.0, failed_pct=100.0, e2e_p90_s=None, e2e_p99_s=None)
    tenant = _scenario(**{"tenants.0.slo": {"ttft_p99_ms": None,
                                            "workflow": {"e2e_p99_s": 60}}}).tenants[0]
    stats = SimpleNamespace(ttft_ms=SimpleNamespace(p99=None), itl_ms=SimpleNamespace(p99=None),
                            e2e_ms=SimpleNamespace(p99=None), refused_pct=0.0,
                            workflows=flows)
    (miss,) = _misses("gold", tenant, stats)
    assert miss.metric == "workflow_e2e_p99_s" and miss.value is None
