"""The charts of a run's report (plotly figures), each from numbers the run wrote or
:mod:`capacitor.report.run_metrics` derived from them:

- :func:`latency_cdf_figure`  a latency metric's CDF per tier, each tenant's p99 target
- :func:`timeline_figure`     per minute: arrivals, completions, goodput; refusals by cause;
                              requests in the system and replicas up
- :func:`power_figure`        each site's facility power per minute against its cap
- :func:`deployment_figure`   batch occupancy, busy time, prefix-cache hits, availability
- :func:`frontier_figure`     output tokens/s per GPU against tokens/s per user, Pareto front
- :func:`cost_figure`         $ per million tokens: fleet, tiers, deployments
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capacitor.engine.status import REFUSAL_CAUSES
from capacitor.report.pareto import pareto_front
from capacitor.simulate.digest import MINUTE_S

_COLORS = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#bc4c00")
_CAUSE_COLORS = {"throttled": "#bf8700", "shed": "#cf222e", "invalid": "#8c959f",
                 "failed": "#8250df"}
_METRIC_LABELS = {"ttft_ms": ("TTFT", "time to first token, ms", "ttft_p99_ms"),
                  "e2e_ms": ("E2E", "end-to-end latency, ms", "e2e_p99_ms")}


def mw_text(mw: float | None) -> str:
    """Power in MW with the digits its size needs: ``300 MW``, ``4.2 MW``, ``0.125 MW``."""
    if mw is None:
        return "-"
    digits = 0 if abs(mw) >= 100 else 1 if abs(mw) >= 1 else 3
    return f"{mw:,.{digits}f} MW"


def _go():
    import plotly.graph_objects as go

    return go


def _layout(fig, title: str, height: int = 420, **kwargs: Any):
    # NOTE: for performance, plain colours rather than a named template (plotly deep-copies
    # a template on every figure: a second per report).
    fig.update_layout(title={"text": title, "x": 0}, height=height, plot_bgcolor="white",
                      margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      legend={"orientation": "h", "y": -0.2}, **kwargs)
    fig.update_xaxes(gridcolor="#eaeef2", zerolinecolor="#d0d7de", linecolor="#d0d7de")
    fig.update_yaxes(gridcolor="#eaeef2", zerolinecolor="#d0d7de", linecolor="#d0d7de")
    return fig


def latency_cdf_figure(metric: str, cdfs: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]],
                       tenants: dict[str, Any]):
    """CDF of ``metric`` (``ttft_ms`` or ``e2e_ms``) per tier, log x; each tenant's p99 target
    a dashed vertical line in its tier's colour, the 99 % level a dotted horizontal one. A
    tier meets a target when its curve crosses 99 % left of the line."""
    go = _go()
    short, axis, target_key = _METRIC_LABELS[metric]
    fig = go.Figure()
    tiers = sorted({tier for tier, m in cdfs if m == metric})
    for i, tier in enumerate(tiers):
        x, frac = cdfs[(tier, metric)]
        names = sorted(n for n, t in tenants.items() if t.tier == tier)
        color = _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=x, y=frac, mode="lines", line={"color": color, "shape": "hv"},
                                 name=f"tier {tier} ({', '.join(names)})",
                                 hovertemplate="%{x:,.0f} ms: %{y:.2%}<extra></extra>"))
        for name in names:  # a target is a legend entry: labels on the chart would collide
            target = getattr(tenants[name].slo, target_key)
            if target is not None:
                fig.add_trace(go.Scatter(x=[target, target], y=[0, 1], mode="lines",
                                         line={"color": color, "dash": "dash", "width": 1},
                                         name=f"{name} p99 target {target:,.0f} ms",
                                         hovertemplate=f"{name}: p99 target {target:,.0f} ms"
                                         "<extra></extra>"))
    fig.add_hline(y=0.99, line={"color": "#59636e", "dash": "dot", "width": 1},
                  annotation_text="p99", annotation_position="bottom right")
    fig.update_xaxes(type="log", title=axis)
    fig.update_yaxes(title="share of completed requests", tickformat=".0%", range=[0, 1.02])
    return _layout(fig, f"{short} per tier against each tenant's p99 target")


def timeline_figure(timeline: dict[str, np.ndarray], goodput: np.ndarray | None,
                    warmup_s: float):
    """Fleet-wide per minute (sites summed): arrivals, completions and goodput; refusals by
    cause (stacked); requests in the system and replicas up. The warm-up is shaded."""
    from plotly.subplots import make_subplots

    go = _go()
    minutes = np.unique(timeline["minute"]).astype(np.int64)

    def total(col: str) -> np.ndarray:
        return np.bincount(timeline["minute"].astype(np.int64), weights=timeline[col],
                           minlength=minutes.size)[:minutes.size]

    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        specs=[[{}], [{}], [{"secondary_y": True}]],
                        subplot_titles=("requests per minute", "refused per minute, by cause",
                                        "requests in the system and replicas up"))
    for col, name, color in (("arrivals", "arrivals", _COLORS[0]),
                             ("completed", "completed", _COLORS[2])):
        fig.add_trace(go.Scatter(x=minutes, y=total(col), name=name, line={"color": color}),
                      row=1, col=1)
    if goodput is not None:
        fig.add_trace(go.Scatter(x=minutes, y=goodput[:minutes.size], name="goodput (within "
                                 "TTFT and E2E targets)", line={"color": _COLORS[3],
                                                                "dash": "dash"}), row=1, col=1)
    for cause in REFUSAL_CAUSES:
        fig.add_trace(go.Bar(x=minutes, y=total(cause), name=cause,
                             marker_color=_CAUSE_COLORS.get(cause)), row=2, col=1)
    fig.add_trace(go.Scatter(x=minutes, y=total("in_system"), name="requests in the system",
                             line={"color": _COLORS[4]}), row=3, col=1)
    fig.add_trace(go.Scatter(x=minutes, y=total("replicas_up"), name="replicas up",
                             line={"color": _COLORS[5]}), row=3, col=1, secondary_y=True)
    if warmup_s > 0:
        fig.add_vrect(x0=-0.5, x1=warmup_s / MINUTE_S - 0.5, fillcolor="#8c959f", opacity=0.15,
                      line_width=0, annotation_text="warm-up (not counted)",
                      annotation_position="top left", row="all", col=1)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="minute of the simulated span", row=3, col=1)
    fig.update_yaxes(title="replicas up", row=3, col=1, secondary_y=True, rangemode="tozero")
    return _layout(fig, "Timeline (fleet, per minute)", height=820)


def power_figure(timeline: dict[str, np.ndarray], sites: dict[str, Any]):
    """Each site's facility power per minute (MW), its cap dashed in the same colour."""
    go = _go()
    fig = go.Figure()
    names = np.asarray(timeline["site"]).astype(str)
    for i, (name, site) in enumerate(sites.items()):
        sel = names == name
        color = _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=timeline["minute"][sel], y=timeline["power_mw"][sel],
                                 name=f"{name} power", line={"color": color}))
        fig.add_hline(y=site.power_cap_mw, line={"color": color, "dash": "dash"},
                      annotation_text=f"{name} cap {mw_text(site.power_cap_mw)}",
                      annotation_position="top left")
        if site.uncapped_power_mw_peak is not None:
            fig.add_hline(y=site.uncapped_power_mw_peak, line={"color": color, "dash": "dot"},
                          annotation_text=f"{name} uncapped peak "
                          f"{mw_text(site.uncapped_power_mw_peak)}")
    fig.update_xaxes(title="minute of the simulated span")
    fig.update_yaxes(title="facility power, MW", rangemode="tozero")
    return _layout(fig, "Site power against the cap")


def deployment_figure(deployments: dict[str, Any]):
    """Per deployment, % : time-averaged batch occupancy (running / max_num_seqs), busy time,
    prefix-cache hit rate of prompt tokens, availability."""
    go = _go()
    names = list(deployments)
    fig = go.Figure()
    bars = (("batch_occupancy", "batch occupancy"), ("utilization", "busy (executing steps)"),
            ("prefix_hit_rate", "prefix-cache hit rate"), ("availability", "availability"))
    for i, (key, label) in enumerate(bars):
        values = [getattr(deployments[n], key) for n in names]
        fig.add_trace(go.Bar(x=names, y=[None if v is None else 100 * v for v in values],
                             name=label, marker_color=_COLORS[i],
                             hovertemplate="%{x}: %{y:.2f}%<extra>" + label + "</extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="%", range=[0, 105])
    return _layout(fig, "Deployments: batch occupancy, busy time, prefix hits, availability")


def frontier_figure(points: dict[str, tuple[float, float]]):
    """``{deployment: (tokens/s per user, output tokens/s per GPU)}`` as points, the Pareto
    front (more of both is better) as a line through the points on it."""
    go = _go()
    names = list(points)
    x = np.array([points[n][0] for n in names], np.float64)
    y = np.array([points[n][1] for n in names], np.float64)
    front = pareto_front(x, y)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers+text", text=names,
                             textposition="top center", name="deployments",
                             marker={"size": 11, "color": _COLORS[0]},
                             hovertemplate="%{text}: %{x:.1f} tok/s/user, %{y:,.0f} tok/s/GPU"
                             "<extra></extra>"))
    if front.size:
        fig.add_trace(go.Scatter(x=x[front], y=y[front], mode="lines", name="Pareto front",
                                 line={"color": _COLORS[1], "dash": "dash"}))
    fig.update_xaxes(title="interactivity: output tokens/s per user (median, after the first "
                     "token)", rangemode="tozero")
    fig.update_yaxes(title="output tokens/s per GPU", rangemode="tozero")
    return _layout(fig, "Throughput per GPU against interactivity")


def cost_figure(economics: Any):
    """$ per million output tokens and per million input + output tokens, over the month (an
    estimate) and over the window, for the fleet, each tier and each deployment."""
    go = _go()
    rows = [("fleet", economics.month_estimate, economics.window)]
    rows += [(f"tier {k}", v.month_estimate, v.window) for k, v in economics.tiers.items()]
    rows += [(k, v.month_estimate, v.window) for k, v in economics.deployments.items()]
    labels = [r[0] for r in rows]
    fig = go.Figure()
    series = (("month (estimate)", 1, "output", _COLORS[0]),
              ("window", 2, "output", _COLORS[5]),
              ("month (estimate)", 1, "total", "#80ccff"),
              ("window", 2, "total", "#a5d6a7"))
    for period, j, kind, color in series:
        values = [getattr(r[j], f"usd_per_million_{kind}_tokens") for r in rows]
        fig.add_trace(go.Bar(x=labels, y=values, name=f"$/M {kind} tokens, {period}",
                             marker_color=color, hovertemplate="%{x}: $%{y:,.3f}<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="USD per million tokens", rangemode="tozero")
    return _layout(fig, "Cost per million tokens")


__all__ = ["cost_figure", "deployment_figure", "frontier_figure", "latency_cdf_figure",
           "mw_text", "power_figure", "timeline_figure"]
