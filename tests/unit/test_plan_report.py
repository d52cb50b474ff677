"""The plan's report: the runway's charts mark what the runway and the contracts say."""

from __future__ import annotations

from types import SimpleNamespace

from capacitor.report.plan_report import _demand_figure, _months_before, plan_page

MONTHS = ["2026-07", "2026-08", "2026-09", "2026-10"]


def _rows(dep: str, demand: list[float], capacity: float) -> list[dict]:
    return [{"month": m, "deployment": dep, "demand_rps": d, "capacity_rps": capacity,
             "headroom_pct": 100 * (capacity / d - 1), "add_replicas": 0, "add_gpus": 0,
             "add_mw": 0.0, "add_usd": None} for m, d in zip(MONTHS, demand, strict=True)]


RUNWAY = {
    "months": MONTHS,
    "deployments": {"a": {"replicas": 2, "capacity_rps": 10.0}},
    "growth": {
        "scenario": {"factor_per_year": None, "first_failing_month": {},
                     "tiers": {"0": {"deployments": ["a"], "first_failing_month": None,
                                     "months_of_headroom": 4, "lasts_the_term": True}},
                     "monthly": [{"month": m, "add_gpus": 0, "cost_usd": 100.0}
                                 for m in MONTHS],
                     "rows": _rows("a", [5, 5, 5, 5], 10.0)},
        "stress": {"factor_per_year": 10.0, "first_failing_month": {"a": "2026-09"},
                   "tiers": {"0": {"deployments": ["a"], "first_failing_month": "2026-09",
                                   "months_of_headroom": 2, "lasts_the_term": False}},
                   "monthly": [{"month": m, "add_gpus": g, "cost_usd": 100.0 + g}
                               for m, g in zip(MONTHS, [0, 0, 8, 16], strict=True)],
                   "rows": _rows("a", [5, 8, 12, 20], 10.0)},
    },
}

CONTRACT = SimpleNamespace(name="lease", end="2026-10", notice_days=90,
                           ramp_discounts={"2026-07": 0.5, "2026-08": 0.25})
SCENARIO = SimpleNamespace(economics=SimpleNamespace(contracts=[CONTRACT]))


def test_the_first_failing_month_is_marked_on_its_growth_line() -> None:
    fig = _demand_figure("a", RUNWAY, SCENARIO)
    marks = [t for t in fig.data if t.mode == "markers"]
    assert len(marks) == 1  # only the stress scenario fails
    assert tuple(marks[0].x) == ("2026-09",) and tuple(marks[0].y) == (12,)
    capacity = [t for t in fig.data if t.name.startswith("capacity")]
    assert tuple(capacity[0].y) == (10.0,) * 4


def test_ramp_months_notice_and_end_are_marked() -> None:
    fig = _demand_figure("a", RUNWAY, SCENARIO)
    texts = [a.text for a in fig.layout.annotations]
    assert "ramp -50%" in texts and "ramp -25%" in texts
    assert "lease ends" in texts and "90-day notice" in texts
    # 90 days before 2026-10: three 30-day months, from 2026-07
    notice = [s for s in fig.layout.shapes if s.x1 == "2026-10" and s.x0 != s.x1]
    assert notice and notice[0].x0 == "2026-07"


def test_months_before() -> None:
    assert _months_before("2026-10", 90) == "2026-07"
    assert _months_before("2026-01", 31) == "2025-11"  # 31 days: two months, rounded up
    assert _months_before("2026-03", 30) == "2026-02"


def test_the_page_is_self_contained_with_a_chart_per_deployment() -> None:
    page = plan_page("t", runway=RUNWAY, scenario=SCENARIO)
    assert page.count('id="chart-') == 3  # demand for a; GPUs to add; monthly cost
    assert "<script src=" not in page and '<link rel="stylesheet"' not in page
    assert "2026-09" in page and "first failing month" in page
