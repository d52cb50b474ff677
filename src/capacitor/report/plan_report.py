"""The HTML report of ``capacitor plan``: the runway month by month (demand against capacity
per deployment and growth scenario, the first failing month of each, the contracts' ramp
months and notice periods marked), the GPUs to add and the monthly cost, and, when a plan
was searched, the chosen configuration and its Pareto fronts.

It reads what the planner wrote (``runway.json``'s content, ``plan.json``'s) and the scenario
(for the contracts), and renders one self-contained page (:mod:`capacitor.report.page`).
"""

from __future__ import annotations

import html
from typing import Any

from capacitor.report.page import Section, render_page, table_html

_COLORS = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#bc4c00")
#: the page's file name in the plan's output directory
PLAN_REPORT = "report.html"


def _growth_label(name: str, growth: dict[str, Any]) -> str:
    factor = growth.get("factor_per_year")
    return f"{name} (own growth)" if factor is None else f"{name} ({factor:g}x/year)"


def _rows_by_deployment(growth: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in growth.get("rows", []):
        out.setdefault(row["deployment"], []).append(row)
    return out


def _mark(fig: Any, x0: str, x1: str, text: str, color: str, opacity: float,
          y: float) -> None:
    """A shaded band from month ``x0`` to month ``x1`` (a line when equal), labelled."""
    if x0 == x1:
        fig.add_shape(type="line", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1,
                      line={"color": color, "dash": "dot"})
    else:
        fig.add_shape(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1,
                      fillcolor=color, opacity=opacity, line={"width": 0})
    fig.add_annotation(x=x0, xref="x", y=y, yref="paper", text=text, showarrow=False,
                       xanchor="left", font={"size": 10, "color": color})


def _contract_marks(fig: Any, scenario: Any, months: list[str]) -> None:
    """Shade each contract's ramp months and its notice period before its end, and draw a
    line at its end. Only marks inside the runway's months are drawn."""
    if scenario is None or not months:
        return
    first, last = months[0], months[-1]
    for contract in scenario.economics.contracts:
        for month, discount in sorted(contract.ramp_discounts.items()):
            if first <= month <= last:
                _mark(fig, month, _months_after(month, 1), f"ramp -{100 * discount:.0f}%",
                      "#bf8700", 0.15, 1.04)
        if first <= contract.end <= last:
            _mark(fig, contract.end, contract.end, f"{contract.name} ends", "#59636e", 1.0,
                  1.09)
            if contract.notice_days:
                _mark(fig, max(_months_before(contract.end, contract.notice_days), first),
                      contract.end, f"{contract.notice_days}-day notice", "#59636e", 0.08,
                      0.02)


def _months_after(month: str, n: int) -> str:
    year, mon = (int(x) for x in month.split("-"))
    index = year * 12 + mon - 1 + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _months_before(month: str, days: int) -> str:
    """The month ``days`` days before the start of ``month`` ('YYYY-MM')."""
    return _months_after(month, (-days) // 30)  # whole 30-day months, rounded up


def _demand_figure(name: str, runway: dict[str, Any], scenario: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    months = runway["months"]
    capacity = None
    for k, (gname, growth) in enumerate(runway["growth"].items()):
        rows = _rows_by_deployment(growth).get(name, [])
        if not rows:
            continue
        color = _COLORS[k % len(_COLORS)]
        fig.add_trace(go.Scatter(x=[r["month"] for r in rows], y=[r["demand_rps"] for r in rows],
                                 mode="lines", name=_growth_label(gname, growth),
                                 line={"color": color}))
        fail = growth.get("first_failing_month", {}).get(name)
        hit = [r for r in rows if r["month"] == fail]
        if hit:
            fig.add_trace(go.Scatter(x=[fail], y=[hit[0]["demand_rps"]], mode="markers",
                                     marker={"symbol": "x", "size": 12, "color": color},
                                     name=f"{gname}: first miss {fail}", showlegend=True))
        capacity = capacity or rows
    if capacity:
        fig.add_trace(go.Scatter(x=[r["month"] for r in capacity],
                                 y=[r["capacity_rps"] for r in capacity], mode="lines",
                                 name="capacity (replicas as they stand)",
                                 line={"color": "#1f2328", "dash": "dash", "shape": "hv"}))
        if all("capacity_high_rps" in r for r in capacity):  # the band's top: at the limit
            fig.add_trace(go.Scatter(x=[r["month"] for r in capacity],
                                     y=[r["capacity_high_rps"] for r in capacity],
                                     mode="lines", name="capacity, top of the band (at the "
                                     "limit below it)", line={"color": "#59636e",
                                                             "dash": "dot", "shape": "hv"}))
    _contract_marks(fig, scenario, months)
    fig.update_layout(title=f"{name}: peak demand against capacity", xaxis_title="month",
                      yaxis_title="requests/s at the peak", yaxis_type="log", height=420,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _by_month_figure(runway: dict[str, Any], key: str, title: str, unit: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for k, (gname, growth) in enumerate(runway["growth"].items()):
        monthly = growth.get("monthly", [])
        fig.add_trace(go.Scatter(x=[m["month"] for m in monthly], y=[m[key] for m in monthly],
                                 mode="lines+markers", name=_growth_label(gname, growth),
                                 line={"color": _COLORS[k % len(_COLORS)]}))
    fig.update_layout(title=title, xaxis_title="month", yaxis_title=unit, height=380,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _tier_table(runway: dict[str, Any]) -> str:
    rows = []
    for gname, growth in runway["growth"].items():
        for tier, t in sorted(growth.get("tiers", {}).items()):
            rows.append([_growth_label(gname, growth), tier, ", ".join(t.get("deployments", [])),
                         t.get("first_at_limit_month") or "-",
                         t.get("first_failing_month") or "-",
                         t.get("months_of_headroom", "-"),
                         "yes" if t.get("lasts_the_term") else "no"])
    return table_html(["growth", "tier", "deployments", "first month at the limit",
                       "first failing month", "months of headroom", "lasts the term"], rows,
                      text_columns=(0, 2, 3, 4))


def runway_sections(runway: dict[str, Any], scenario: Any = None) -> list[Section]:
    """The runway's sections: per tier the first failing month, per deployment demand
    against capacity, the GPUs to add and the monthly cost by growth scenario."""
    months = runway.get("months", [])
    summary = Section("Runway").text(
        f"{len(months)} months, {months[0] if months else '-'} to "
        f"{months[-1] if months else '-'}: per growth scenario and tier, the first month "
        "peak demand is at the limit (inside the capacity's uncertainty band: a run of that "
        "hour may meet or miss) and the first it exceeds the band (an SLO missed, or demand "
        "throttled to keep it), for the fleet as it stands.").raw(_tier_table(runway))
    charts = Section("Demand against capacity").text(
        "Peak requests/s per growth scenario against the deployment's capacity (replicas up "
        "x goodput capacity per replica); an x marks each scenario's first failing month. "
        "Shaded: ramp months of the contracts, and each contract's notice period before its "
        "end.", "muted")
    for name in runway.get("deployments", {}):
        charts.figure(_demand_figure(name, runway, scenario))
    adds = Section("What to add, and what it costs").figure(
        _by_month_figure(runway, "add_gpus", "GPUs to add to stay within SLO", "GPUs")
    ).figure(_by_month_figure(runway, "cost_usd", "Monthly cost (contracts + added GPUs)",
                              "USD"))
    return [summary, charts, adds]


_CHOSEN_COLUMNS = (("gpu", "GPU"), ("site", "site"), ("tp", "tp"), ("pp", "pp"),
                   ("ep", "ep"), ("max_num_seqs", "max_num_seqs"), ("replicas", "replicas"),
                   ("gpus", "GPUs"), ("power_mw", "MW at TDP"),
                   ("cost_usd_per_month", "USD/month"), ("margin_pct", "margin %"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _candidates_figure(plan: dict[str, Any]) -> Any:
    """Every sized candidate's monthly cost (or GPUs, when unpriced) against its GPUs, per
    deployment, the chosen one circled."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for k, (name, sized) in enumerate(plan.get("sized", {}).items()):
        color = _COLORS[k % len(_COLORS)]
        fig.add_trace(go.Scatter(
            x=[c["gpus"] for c in sized], y=[c["cost_usd_per_month"] or 0.0 for c in sized],
            mode="markers", name=name, marker={"color": color, "size": 8},
            text=[f"{c['gpu']} tp{c['tp']} x{c['replicas']}" for c in sized]))
        chosen = plan.get("chosen", {}).get(name)
        if chosen:
            fig.add_trace(go.Scatter(
                x=[chosen["gpus"]], y=[chosen["cost_usd_per_month"] or 0.0], mode="markers",
                name=f"{name}: chosen", marker={"color": color, "size": 18,
                                                "symbol": "circle-open"}))
    fig.update_layout(title="Sized candidates: cost against GPUs", xaxis_title="GPUs",
                      yaxis_title="USD per month", height=420,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def plan_sections(plan: dict[str, Any]) -> list[Section]:
    """The plan search (``plan.json``'s content): the chosen shape per deployment, every
    candidate it sized, and the verification run's verdict."""
    section = Section("Chosen configuration").text(
        f"Objective: {plan.get('objective', '-')}. Shapes considered "
        f"{plan.get('candidates', {}).get('considered', '-')}, sized by capacity search "
        f"{plan.get('candidates', {}).get('sized', '-')}.")
    rows = [[name] + [_cell(c.get(key)) for key, _ in _CHOSEN_COLUMNS]
            for name, c in plan.get("chosen", {}).items()]
    section.raw(table_html(["deployment"] + [label for _, label in _CHOSEN_COLUMNS], rows,
                           text_columns=(0, 1, 2)))
    verify = plan.get("verify")
    if verify:
        section.raw(f'<div class="verdict {"ok" if verify.get("ok") else "miss"}">'
                    f"Verification run: {html.escape(str(verify.get('verdict', '-')))}</div>")
    if plan.get("sized"):
        section.figure(_candidates_figure(plan))
    return [section]


def plan_page(title: str, *, runway: dict[str, Any] | None = None,
              plan: dict[str, Any] | None = None, scenario: Any = None) -> str:
    """The plan's report page (see the module docstring)."""
    intro = f'<p class="muted">{html.escape(title)}</p>'
    sections: list[Section] = []
    if plan is not None:
        sections += plan_sections(plan)
    if runway is not None:
        sections += runway_sections(runway, scenario)
    return render_page(f"capacitor plan: {title}", intro, sections)


__all__ = ["PLAN_REPORT", "plan_page", "plan_sections", "runway_sections"]
