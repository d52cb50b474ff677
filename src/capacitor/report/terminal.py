"""The terminal view of a fleet run: the verdict first, then per-tier latency and refusals by
cause, per-deployment load, site power against its cap, each contract's standing, and unit
costs over the month (an estimate) beside the window's (rich tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from capacitor.fleet.power import format_power

if TYPE_CHECKING:
    from capacitor.simulate.summary_model import RunSummary


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def print_run(console: Console, summary: RunSummary) -> None:
    """Print ``summary`` (what ``summary.json`` holds)."""
    verdict = summary.verdict
    style = "bold green" if verdict.ok else "bold red"
    window = summary.window
    console.print(
        f"[{style}]{escape(summary.scenario)}: {escape(verdict.text)}[/]", soft_wrap=True
    )
    console.print(
        f"window {window.duration_s:,.0f} s (after {window.warmup_s:,.0f} s "
        f"warm-up) of {window.month or 'the rates as written'}, "
        f"fidelity {summary.fidelity}, seed {summary.seed}"
    )
    for note in summary.notes:  # what the numbers above need to be read with
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    tiers = Table(title="tenants", box=box.SIMPLE_HEAD)
    for col in (
        "tenant",
        "tier",
        "requests",
        "refused %",
        "TTFT p50/p99 ms",
        "ITL p50/p99 ms",
        "E2E p50/p99 ms",
        "goodput req/s",
        "SLO",
    ):
        tiers.add_column(col, justify="left" if col in ("tenant", "SLO") else "right")
    misses = {(m.tenant, m.metric) for m in verdict.misses}
    for name, t in sorted(summary.tenants.items(), key=lambda kv: (kv[1].tier, kv[0])):
        missed = [metric for (tenant, metric) in misses if tenant == name]
        slo = "[red]misses " + ", ".join(sorted(missed)) + "[/]" if missed else "[green]met[/]"
        tiers.add_row(
            escape(name),
            str(t.tier),
            _num(t.requests),
            _num(t.refused_pct, 2),
            f"{_num(t.ttft_ms.p50)} / {_num(t.ttft_ms.p99)}",
            f"{_num(t.itl_ms.p50, 1)} / {_num(t.itl_ms.p99, 1)}",
            f"{_num(t.e2e_ms.p50)} / {_num(t.e2e_ms.p99)}",
            _num(t.goodput_rps, 1),
            slo,
        )
    console.print(tiers)
    causes = Table(title="refusals by cause, % of requests", box=box.SIMPLE_HEAD,
                   caption="refused % = throttled + shed, judged against max_throttled_pct; "
                   "invalid (over max_model_len) and failed (lost to a replica failure) are "
                   "not judged")
    for col in ("tenant", "throttled", "shed", "invalid", "failed"):
        causes.add_column(col, justify="left" if col == "tenant" else "right")
    for name, t in sorted(summary.tenants.items(), key=lambda kv: (kv[1].tier, kv[0])):
        r = t.refusals
        causes.add_row(escape(name), *(_num(v, 2) for v in (
            r.throttled_pct, r.shed_pct, r.invalid_pct, r.failed_pct)))
    console.print(causes)
    deps = Table(title="deployments", box=box.SIMPLE_HEAD)
    for col in (
        "deployment",
        "GPU",
        "replicas (simulated)",
        "completed",
        "preempted",
        "prefix hits",
        "batch occupancy",
        "output tok/s",
        "availability",
        "validated",
    ):
        deps.add_column(col, justify="left" if col in ("deployment", "GPU") else "right")
    for name, d in summary.deployments.items():
        deps.add_row(
            escape(name),
            d.gpu,
            f"{d.replicas:,} ({d.simulated_replicas:,})",
            _num(d.completed),
            _num(d.preemptions),
            "-" if d.prefix_hit_rate is None else f"{100 * d.prefix_hit_rate:.1f}%",
            f"{100 * (d.batch_occupancy or 0):.0f}%",
            _num(d.output_tokens_per_s),
            f"{100 * (d.availability or 0):.2f}%",
            "-" if d.validated is None else "yes" if d.validated else "[yellow]extrapolated[/]",
        )
    console.print(deps)
    eco = summary.economics
    drawn = any(s.power_mw_mean for s in summary.sites.values())
    for name, s in summary.sites.items():
        flag = " [red](at cap)[/]" if s.at_cap else ""
        if s.gpu_power_limit_pct is not None:
            flag = (f" [red](power-capped: GPUs limited to {s.gpu_power_limit_pct:.1f}% of TDP; "
                    f"uncapped peak {format_power(s.uncapped_power_mw_peak)})[/]")
        energy = format_power(s.energy_mwh, "Wh", positive=bool(s.power_mw_mean))
        console.print(
            f"site {escape(name)}: {s.gpus:,} GPUs, power "
            f"{format_power(s.power_mw_mean)} mean / {format_power(s.power_mw_peak)} peak of "
            f"{format_power(s.power_cap_mw)} cap{flag}, {energy}"
        )
    if summary.power_cap is not None:
        for name, c in summary.power_cap.tenants.items():
            console.print(
                f"power cap cost for {escape(name)}: TTFT p99 {_num(c.ttft_p99_ms_uncapped)} -> "
                f"{_num(c.ttft_p99_ms)} ms, ITL p99 {_num(c.itl_p99_ms_uncapped, 1)} -> "
                f"{_num(c.itl_p99_ms, 1)} ms, goodput {_num(c.goodput_rps_uncapped, 2)} -> "
                f"{_num(c.goodput_rps, 2)} req/s")
    console.print(
        f"cost of the window ${_num(eco.window_cost_usd)}; "
        f"${_num(eco.usd_per_million_output_tokens, 2)} per million output tokens; "
        f"${_num(eco.usd_per_gpu_hour_effective, 2)} per GPU-hour effective; energy "
        f"{format_power(eco.energy_mwh, 'Wh', positive=drawn)}"
        + (f" (${_num(eco.energy_cost_usd)})" if eco.energy_cost_usd is not None else "")
    )
    for name, c in eco.contracts.items():
        console.print(
            f"contract {escape(name)}: ${_num(c.term_total_usd)} over the term; {c.month} fee "
            f"${_num(c.month_fee_usd)} (ramp discount {100 * (c.month_ramp_discount or 0):.0f}%"
            f"), {c.months_left} months left, ${_num(c.usd_per_gpu_hour, 2)} per GPU-hour; "
            f"notice on {c.notice_given} (either party) ends billing {c.earliest_exit}: "
            f"${_num(c.exit_cost_usd)} still billed"
        )
    costs = Table(title="$ per million tokens: month (estimate from the demand profile) | "
                  "window", box=box.SIMPLE_HEAD)
    for col in ("", "input", "output", "total", "input (window)", "output (window)",
                "total (window)"):
        costs.add_column(col, justify="left" if not col else "right")
    rows = [("fleet", eco.month_estimate, eco.window)]
    rows += [(f"tier {k}", v.month_estimate, v.window) for k, v in eco.tiers.items()]
    rows += [(k, v.month_estimate, v.window) for k, v in eco.deployments.items()]
    for label, month, window in rows:
        costs.add_row(escape(label), *(
            _num(getattr(u, f"usd_per_million_{kind}_tokens"), 3)
            for u in (month, window) for kind in ("input", "output", "total")))
    console.print(costs)
