"""``report.html`` of a run: one self-contained page built from the run directory's files
(:func:`write_run_report`), so ``capacitor report RUN_DIR`` rebuilds exactly what
``capacitor run`` wrote.

The page opens with the verdict and the headline numbers, then one section per builder of
:data:`SECTIONS` (latency against the targets, the timeline, power, deployments, the
throughput-interactivity frontier, costs, assumptions and caveats). A section builder takes
the :class:`RunContext` and returns a :class:`~capacitor.report.page.Section`, or None when
the run has nothing for it; a new view of a run (e.g. a workflow breakdown: model vs tool vs
queue vs think time, once workflows exist) is one more builder in :data:`SECTIONS`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capacitor.errors import RunDirError
from capacitor.report import run_charts
from capacitor.report.assumptions import commented_fields, source_of
from capacitor.report.page import Section, render_page, table_html
from capacitor.report.run_files import RunFiles, read_run
from capacitor.report.run_metrics import (
    LATENCY_METRICS,
    goodput_per_minute,
    interactivity_by_deployment,
    slos_by_tenant,
    tier_cdfs,
)

REPORT_NAME = "report.html"


@dataclass(frozen=True, slots=True)
class RunContext:
    """A run read back, and what the sections share."""

    files: RunFiles
    num_minutes: int


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """Where the report went, its size and how long it took to build (wall and CPU)."""

    path: Path
    size_bytes: int
    seconds: float
    cpu_seconds: float


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _headline(ctx: RunContext) -> str:
    s = ctx.files.summary
    v = s.verdict
    cls = "ok" if v.ok else "miss"
    parts = [f'<div class="verdict {cls}"><b>{"Serves its demand" if v.ok else "Misses"}'
             f"</b>: {html.escape(v.text)}</div>"]
    window = s.window
    parts.append(f'<p class="muted">{html.escape(s.scenario)}: window of '
                 f"{window.duration_s:,.0f} s after {window.warmup_s:,.0f} s of warm-up, "
                 f"{html.escape(window.month or 'the rates as written')}; fidelity "
                 f"{s.fidelity}, seed {s.seed}.</p>")
    for note in s.notes:
        parts.append(f'<div class="note">{html.escape(note)}</div>')
    requests = s.totals.requests or 0.0
    goodput = sum(t.goodput_rps or 0.0 for t in s.tenants.values())
    refused = sum((t.requests or 0.0) * (t.refused_pct or 0.0) / 100 for t in s.tenants.values())
    peak = max((x.power_mw_peak or 0.0 for x in s.sites.values()), default=0.0)
    cap = sum(x.power_cap_mw for x in s.sites.values())
    gpus = sum(x.gpus for x in s.sites.values())
    cells = [
        (f"{requests / window.duration_s:,.0f}" if window.duration_s else "-",
         "requests/s arrived"),
        (f"{goodput:,.0f}", "goodput, requests/s within TTFT and E2E targets"),
        (f"{100 * refused / requests:.2f}%" if requests else "-", "refused (throttled + shed)"),
        (f"{run_charts.mw_text(peak).removesuffix(' MW')} / {run_charts.mw_text(cap)}",
         "peak power / cap (all sites)"),
        (f"{gpus:,}", "GPUs"),
        (f"${_num(s.economics.window.usd_per_million_output_tokens, 2)}",
         "per million output tokens (window)"),
        (f"${_num(s.economics.window_cost_usd)}", "cost of the window"),
    ]
    parts.append('<div class="headline">' + "".join(
        f"<div><b>{html.escape(a)}</b><span>{html.escape(b)}</span></div>" for a, b in cells)
        + "</div>")
    rows = []
    misses = {(m.tenant, m.metric) for m in v.misses}
    for name, t in sorted(s.tenants.items(), key=lambda kv: (kv[1].tier, kv[0])):
        missed = sorted(metric for tenant, metric in misses if tenant == name)
        rows.append((name, t.tier, _num(t.requests), _num(t.refused_pct, 2),
                     f"{_num(t.ttft_ms.p50)} / {_num(t.ttft_ms.p99)}",
                     f"{_num(t.itl_ms.p50, 1)} / {_num(t.itl_ms.p99, 1)}",
                     f"{_num(t.e2e_ms.p50)} / {_num(t.e2e_ms.p99)}", _num(t.goodput_rps, 1),
                     "misses " + ", ".join(missed) if missed else "met"))
    parts.append(table_html(("tenant", "tier", "requests", "refused %", "TTFT p50/p99 ms",
                             "ITL p50/p99 ms", "E2E p50/p99 ms", "goodput req/s", "SLO"),
                            rows, text_columns=(0, 8)))
    return "\n".join(parts)


def _latency(ctx: RunContext) -> Section | None:
    section = Section("Latency against the targets")
    req = ctx.files.requests
    if req is None:
        return section.text("requests.parquet was not written (capacitor run --no-requests), "
                            "so the latency distributions are not drawn; the percentiles are "
                            "in the table above.", "note")
    cdfs = tier_cdfs(req)
    section.text("Each curve is the share of a tier's completed requests (sent after the "
                 "warm-up, each weighted by its deployment's scale) at or under a latency. A "
                 "tier meets a p99 target when its curve crosses the 99 % line left of the "
                 "target. ITL targets are judged on the summary's per-token percentiles "
                 "(table above); requests.parquet holds TTFT and E2E per request.")
    for metric in LATENCY_METRICS:
        section.figure(run_charts.latency_cdf_figure(metric, cdfs, ctx.files.summary.tenants))
    return section


def _timeline(ctx: RunContext) -> Section:
    files = ctx.files
    goodput = None
    section = Section("Timeline")
    if files.requests is not None:
        slos = slos_by_tenant(files.scenario)
        goodput = goodput_per_minute(files.requests, slos, ctx.num_minutes)
    else:
        section.text("Goodput per minute needs requests.parquet (not written).", "note")
    section.text("Per minute of the simulated span, all sites: requests arriving, completing "
                 "and completing within their tenant's TTFT and E2E targets (by the minute they "
                 "finished); refusals by cause; requests in the system (queued or running) and "
                 "replicas up.")
    return section.figure(run_charts.timeline_figure(files.timeline, goodput,
                                                     files.summary.window.warmup_s))


def _power(ctx: RunContext) -> Section:
    s = ctx.files.summary
    section = Section("Power")
    if s.power_cap is not None:
        section.text(s.power_cap.text, "note")
    return section.figure(run_charts.power_figure(ctx.files.timeline, s.sites))


def _deployments(ctx: RunContext) -> Section:
    s = ctx.files.summary
    section = Section("Deployments")
    section.text("Batch occupancy is running sequences over max_num_seqs, time-averaged; the "
                 "run does not record KV-cache occupancy, so it is not drawn.")
    section.figure(run_charts.deployment_figure(s.deployments))
    rows = [(name, d.gpu, f"{d.replicas:,} ({d.simulated_replicas:,})", _num(d.completed),
             _num(d.preemptions), _num(d.output_tokens_per_s), _num(d.gpu_power_w_mean, 1),
             _num(d.joules_per_output_token, 3)) for name, d in s.deployments.items()]
    return section.raw(table_html(("deployment", "GPU", "replicas (simulated)", "completed",
                                   "preempted", "output tok/s", "W per GPU", "J per output token"),
                                  rows, text_columns=(0, 1)))


def _frontier(ctx: RunContext) -> Section | None:
    req = ctx.files.requests
    section = Section("Throughput and interactivity")
    if req is None:
        return section.text("Interactivity per user needs requests.parquet (not written).",
                            "note")
    users = interactivity_by_deployment(req)
    per_replica = {d["name"]: int(d.get("tp") or 1) * int(d.get("pp") or 1)
                   for d in ctx.files.scenario.get("deployments") or []}
    points = {}
    for name, d in ctx.files.summary.deployments.items():
        gpus = d.replicas * per_replica.get(name, 0)
        if name in users and gpus and d.output_tokens_per_s is not None:
            points[name] = (users[name], d.output_tokens_per_s / gpus)
    if not points:
        return section.text("No deployment completed a request of two or more output tokens.",
                            "note")
    section.text("Each deployment at its operating point in the window: output tokens/s per "
                 "GPU (fleet-wide, over its replicas x tp x pp GPUs) against the median output "
                 "tokens/s a user sees after the first token, as InferenceMAX draws them; the "
                 "dashed line joins the points no other beats on both.")
    return section.figure(run_charts.frontier_figure(points))


def _costs(ctx: RunContext) -> Section:
    eco = ctx.files.summary.economics
    section = Section("Costs")
    section.text(f"The window cost ${_num(eco.window_cost_usd)}: "
                 f"${_num(eco.usd_per_gpu_hour_effective, 2)} per GPU-hour effective; energy "
                 f"{_num(eco.energy_mwh, 1)} MWh. The month figures are an estimate from the "
                 "demand profile; the window figures are what the simulated window did.")
    section.figure(run_charts.cost_figure(eco))
    rows = [(name, c.month, _num(c.month_fee_usd), _num(c.term_total_usd), c.months_left,
             _num(c.usd_per_gpu_hour, 2), c.earliest_exit, _num(c.exit_cost_usd))
            for name, c in eco.contracts.items()]
    if rows:
        section.raw(table_html(("contract", "month", "month fee $", "term total $",
                                "months left", "$/GPU-hour", "earliest exit", "exit cost $"),
                               rows, text_columns=(0, 1, 6)))
    return section


def _assumptions(ctx: RunContext) -> Section:
    from capacitor.scenario import read_scenario_source

    section = Section("Assumptions, sources and caveats")
    notes = ctx.files.summary.notes
    section.text("Caveats the run reported (summary.json notes): "
                 + (" | ".join(notes) if notes else "none."))
    deps = ctx.files.summary.deployments
    if any(d.validated is not None for d in deps.values()):
        section.text("Which numbers lie beyond validated data: a deployment whose configuration "
                     "(engine, GPU, architecture, precision, tp, disaggregation, speculative "
                     "decoding) no measured run covers is an extrapolation, and so is every "
                     "number built on it (its latencies, its tenants' verdicts, its power and "
                     "costs). The simulator's errors inside the validated classes are in the "
                     "README (Fidelity) and in the report of capacitor validate --measured.")
        rows = [(name, "yes" if d.validated else "EXTRAPOLATED", d.validity or "")
                for name, d in deps.items()]
        section.raw(table_html(("deployment", "validated", "basis"), rows,
                               text_columns=(0, 1, 2)))
    else:
        section.text("Which numbers lie beyond validated data: this run's summary predates the "
                     "validated-envelope check, so nothing is marked.")
    origin = source_of(ctx.files.scenario_text)
    text = read_scenario_source(origin) if origin else None
    if text is None:
        section.text(f"The scenario file this run came from ({origin or 'not named'}) cannot be "
                     "read, so its comments (the sources of its numbers) are not shown.", "note")
    else:
        fields = commented_fields(text)
        flagged = sum(f.is_assumption for f in fields)
        section.text(f"From the comments of {origin}: {len(fields)} commented settings, "
                     f"{flagged} of them marked ASSUMPTION (our choice, not a published figure).")
        rows = [(f.path, f.value, "ASSUMPTION" if f.is_assumption else "", f.comment)
                for f in fields]
        section.raw(table_html(("setting", "value", "", "basis (the file's comment)"), rows,
                               text_columns=(0, 1, 2, 3)))
    return section.raw("<details><summary>scenario.yaml of the run (resolved)</summary><pre>"
                       + html.escape(ctx.files.scenario_text) + "</pre></details>")


#: The page's sections, in order (see the module doc).
SECTIONS: tuple[Callable[[RunContext], Section | None], ...] = (
    _latency, _timeline, _power, _deployments, _frontier, _costs, _assumptions)


def build_run_report(run_dir: Path) -> str:
    """The HTML of the report of ``run_dir``.

    Raises:
        RunDirError: see :func:`~capacitor.report.run_files.read_run`.
    """
    files = read_run(run_dir)
    minutes = files.timeline.get("minute")
    num_minutes = int(np.max(minutes)) + 1 if minutes is not None and minutes.size else 0
    ctx = RunContext(files=files, num_minutes=num_minutes)
    sections = [s for s in (build(ctx) for build in SECTIONS) if s is not None]
    return render_page(f"capacitor: {files.summary.scenario}", _headline(ctx), sections)


def write_run_report(run_dir: Path, out: Path | None = None) -> ReportInfo:
    """Build the report of ``run_dir`` into ``out`` (default ``run_dir/report.html``).

    Raises:
        RunDirError: the run directory cannot be read, or the report cannot be written.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    out = Path(run_dir) / REPORT_NAME if out is None else Path(out)
    page = build_run_report(Path(run_dir))
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise RunDirError(f"{out}: cannot write the report ({exc})") from None
    return ReportInfo(path=out, size_bytes=len(page.encode()),
                      seconds=time.perf_counter() - started,
                      cpu_seconds=time.process_time() - cpu_started)


__all__ = ["REPORT_NAME", "SECTIONS", "ReportInfo", "RunContext", "build_run_report",
           "write_run_report"]
