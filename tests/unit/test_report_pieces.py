"""The HTML report's pieces against hand-computed oracles: weighted CDFs, the Pareto front,
goodput per minute, interactivity, median errors by group, the comments of a scenario file,
the compile check, and progress lines in a pipe."""

from __future__ import annotations

import io
import time
from html.parser import HTMLParser

import numpy as np
import pytest
from rich.console import Console

from capacitor.report.assumptions import commented_fields, source_of
from capacitor.report.cdf import cdf_points
from capacitor.report.page import Section, render_page, table_html
from capacitor.report.pareto import pareto_front
from capacitor.report.progress import StepProgress
from capacitor.report.run_files import CompletedRequests
from capacitor.report.run_metrics import (
    goodput_per_minute,
    interactivity_by_deployment,
    tier_cdfs,
)
from capacitor.report.validate_report import median_ape_by
from capacitor.scenario.policies import SLO


def test_cdf_of_four_known_latencies():
    x, f = cdf_points([(np.array([40.0, 10.0, 30.0, 20.0]), 1.0)])
    # sorted 10 < 20 < 30 < 40, each 1/4 of the weight: F = 1/4, 2/4, 3/4, 4/4
    assert x.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert f.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_cdf_weighs_groups_merges_ties_and_drops_unfinished():
    # 10 and 20 weigh 1 each, 30 weighs 2: total 4 -> F(10) = 1/4, F(20) = 2/4, F(30) = 4/4;
    # NaN and inf (never finished) are dropped; a zero-weight group counts for nothing
    x, f = cdf_points([(np.array([20.0, 10.0, np.nan]), 1.0), (np.array([30.0, np.inf]), 2.0),
                       (np.array([5.0]), 0.0)])
    assert x.tolist() == [10.0, 20.0, 30.0]
    assert f.tolist() == [0.25, 0.5, 1.0]
    # ties: two samples at 10 and one at 20 -> F(10) = 2/3 (every sample <= 10), F(20) = 1
    x, f = cdf_points([(np.array([10.0, 20.0, 10.0]), 1.0)])
    assert x.tolist() == [10.0, 20.0]
    assert f == pytest.approx([2 / 3, 1.0])
    assert [a.size for a in cdf_points([(np.array([]), 1.0)])] == [0, 0]


def test_cdf_thins_to_the_first_sample_at_each_level():
    # 1..10, equal weights: F(k) = k / 10. Five levels 0.2, 0.4, ..., 1.0 are first reached
    # at 2, 4, 6, 8, 10.
    x, f = cdf_points([(np.arange(1.0, 11.0), 1.0)], max_points=5)
    assert x.tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert f == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_pareto_front_of_five_known_points():
    # (x, y) = (1, 5), (2, 4), (3, 1), (4, 2), (2, 3): (3, 1) is beaten by (4, 2), (2, 3) by
    # (2, 4); the front in ascending x is points 0, 1, 3.
    front = pareto_front(np.array([1, 2, 3, 4, 2.0]), np.array([5, 4, 1, 2, 3.0]))
    assert front.tolist() == [0, 1, 3]
    # equal y: the point with more x dominates; a NaN point is never on the front
    assert pareto_front(np.array([3.0, 4.0, np.nan]), np.array([2.0, 2.0, 9.0])).tolist() == [1]


def _requests(**cols) -> CompletedRequests:
    n = len(cols["ttft_ms"])
    base = dict(tenant=np.zeros(n, np.int64), tenant_names=["a"], tier=np.zeros(n, np.int16),
                deployment=np.zeros(n, np.int64), deployment_names=["d"],
                arrival_s=np.zeros(n), output_tokens=np.full(n, 11, np.int32),
                counted=np.ones(n, bool), weight=np.ones(n))
    base.update(cols)
    return CompletedRequests(**{k: np.asarray(v) if k not in ("tenant_names",
                                                               "deployment_names") else v
                                for k, v in base.items()})


def test_goodput_per_minute_counts_requests_within_ttft_and_e2e_targets_by_finish_minute():
    # tenant a: TTFT <= 500 ms and E2E <= 5000 ms. Four requests:
    #   sent 10 s, TTFT 100, E2E 1000   -> good, finishes at 11 s  -> minute 0
    #   sent 50 s, TTFT 600, E2E 1000   -> TTFT over target: not good
    #   sent 58 s, TTFT 100, E2E 4000   -> good, finishes at 62 s  -> minute 1
    #   sent 70 s, TTFT 100, E2E 6000   -> E2E over target: not good
    # weights 2, 2, 3, 3 (two deployments' scales): minute 0 = 2, minute 1 = 3, minute 2 = 0
    req = _requests(arrival_s=[10.0, 50.0, 58.0, 70.0],
                    ttft_ms=np.array([100, 600, 100, 100], np.float32),
                    e2e_ms=np.array([1000, 1000, 4000, 6000], np.float32),
                    weight=[2.0, 2.0, 3.0, 3.0])
    slo = SLO(ttft_p99_ms=500, e2e_p99_ms=5000)
    assert goodput_per_minute(req, {"a": slo}, 3).tolist() == [2.0, 3.0, 0.0]
    # no E2E target: the fourth request (E2E 6 s, finishing at 76 s, minute 1) is good too
    assert goodput_per_minute(req, {"a": SLO(ttft_p99_ms=500)}, 3).tolist() == [2.0, 6.0, 0.0]


def test_interactivity_is_tokens_after_the_first_over_decode_time():
    # 11 output tokens, first at 100 ms, last at 1100 ms: 10 tokens in 1 s = 10 tok/s;
    # 21 tokens, TTFT 200, E2E 2200: 20 tokens in 2 s = 10; 5 tokens, 100 -> 500: 4 in 0.4 s
    # = 10. A one-token request has no decode and is left out; one not counted too.
    req = _requests(ttft_ms=np.array([100, 200, 100, 50, 10], np.float32),
                    e2e_ms=np.array([1100, 2200, 500, 60, 20], np.float32),
                    output_tokens=[11, 21, 5, 1, 2], counted=[True, True, True, True, False])
    assert interactivity_by_deployment(req) == {"d": pytest.approx(10.0)}


def test_tier_cdfs_weigh_each_request_by_its_deployment_scale():
    # tier 0: 10 ms on deployment 0 (scale 1) and 20 ms on deployment 1 (scale 3): F(10) =
    # 1/4, F(20) = 1. The uncounted 5 ms request (warm-up) is not in it.
    req = _requests(ttft_ms=np.array([10, 20, 5], np.float32),
                    e2e_ms=np.array([10, 20, 5], np.float32),
                    deployment=[0, 1, 0], deployment_names=["d0", "d1"],
                    weight=[1.0, 3.0, 1.0], counted=[True, True, False])
    x, f = tier_cdfs(req)[(0, "ttft_ms")]
    assert x.tolist() == [10.0, 20.0]
    assert f.tolist() == [0.25, 1.0]


def test_median_error_by_group():
    # H100 rows r1, r2, r5: ttft APE 10, 30, 80 -> median 30 (the mean would be 40), 3 rows;
    # B200 row r3: 5. r4 has no group and is left out.
    ape = {"r1": {"ttft": 10.0, "tpot": 1.0}, "r2": {"ttft": 30.0}, "r3": {"ttft": 5.0},
           "r4": {"ttft": 99.0}, "r5": {"ttft": 80.0}}
    groups = {"r1": "H100", "r2": "H100", "r3": "B200", "r5": "H100"}
    table = median_ape_by(ape, groups, ["ttft", "tpot"])
    assert table == {"B200": {"ttft": (5.0, 1)},
                     "H100": {"ttft": (30.0, 3), "tpot": (1.0, 1)}}
    # numbers sort as numbers: concurrency 4 before 16
    assert list(median_ape_by(ape, {"r1": "16", "r2": "4"}, ["ttft"])) == ["4", "16"]


SCENARIO = """\
# header of the file: about the whole scenario

sites:
  - name: east
    # ASSUMPTION: our choice
    pue: 1.3
    gpus:
      H100: 8   # from the inventory
description: >-
  text with a colon: not a key
# the tenants
tenants:
  - name: t
    tier: 0
"""


def test_comments_are_paired_with_the_keys_they_annotate():
    fields = {f.path: f for f in commented_fields(SCENARIO)}
    # the header is cut from `sites` by a blank line; `description` is a block scalar
    assert list(fields) == ["sites[east].pue", "sites[east].gpus.H100", "tenants"]
    assert fields["sites[east].pue"].value == "1.3"
    assert fields["sites[east].pue"].is_assumption
    assert fields["sites[east].gpus.H100"].comment == "from the inventory"
    assert not fields["sites[east].gpus.H100"].is_assumption
    assert source_of("# resolved scenario from examples/a.yaml\nname: x\n") == "examples/a.yaml"
    assert source_of("name: x\n") is None


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.script_src: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
            if tag == "script" and name == "src":
                self.script_src.append(value or "")


def test_page_is_self_contained():
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    page = render_page("t <x>", "<p>intro</p>", [
        Section("s").text("a & b").figure(fig).raw(table_html(("k", "v"), [("a", 1)]))])
    parser = _Attributes()
    parser.feed(page)
    assert parser.urls == [] and parser.script_src == []
    assert page.count("<script") == 2  # plotly.js once, then the chart's own call
    assert "a &amp; b" in page and "t &lt;x&gt;" in page
    assert 'id="chart-1"' in page


def test_compile_check_reads_the_cache_index(monkeypatch):
    from capacitor.engine import _kernel
    from capacitor.simulate.compile_cache import kernel_compile_pending

    cache_file = getattr(getattr(_kernel.fleet_kernel, "_cache", None), "_cache_file", None)
    if cache_file is None:  # NUMBA_DISABLE_JIT: a plain function, nothing to compile
        assert kernel_compile_pending() is None
        return
    monkeypatch.setattr(cache_file, "_load_index", lambda: {})
    assert kernel_compile_pending() is True
    monkeypatch.setattr(cache_file, "_load_index", lambda: {("sig",): "overload"})
    assert kernel_compile_pending() is False
    monkeypatch.setattr(cache_file, "_load_index", lambda: 1 / 0)
    assert kernel_compile_pending() is None


def test_progress_prints_plain_lines_in_a_pipe_and_nothing_when_quiet():
    out = io.StringIO()
    console = Console(file=out, width=200)  # a StringIO is not a terminal
    with StepProgress(console, "simulating", "pools", every_s=0.05) as progress:
        progress.update(2, 5, "large_h100")
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("simulating: 2/5 pools, ") for line in lines)
    assert lines[0].endswith("s (large_h100)")
    quiet = io.StringIO()
    with StepProgress(Console(file=quiet), "x", "y", quiet=True, every_s=0.01) as progress:
        progress.update(1, 2)
        time.sleep(0.05)
    assert quiet.getvalue() == ""
