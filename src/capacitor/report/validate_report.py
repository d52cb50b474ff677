"""The HTML report of ``capacitor validate --measured``: how far the predictions are from the
measurements, per metric and per row, and where the error sits (by hardware, by engine, by
concurrency).

It reads what the run of ``validate`` produced (its :class:`~capacitor.validate.ValidateReport`:
predictions and absolute percentage errors, APE = |predicted - measured| / |measured| x 100),
the measured CSV (the measured values) and the experiments CSV (each row's hardware, engine
and concurrency), and writes one self-contained page (:mod:`capacitor.report.page`).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from capacitor.errors import ValidationDataError
from capacitor.report.page import Section, render_page, table_html
from capacitor.validate.metrics import read_csv, read_measured

#: Columns of the experiments CSV the error is broken down by (a blank cell is "-").
GROUP_COLUMNS = ("hardware", "engine", "concurrency")
_COLORS = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#bc4c00")


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _group_key(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then text; the blank group last."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1 if value != "-" else 2, 0.0, value)


def median_ape_by(ape: dict[str, dict[str, float]], groups: dict[str, str],
                  columns: list[str]) -> dict[str, dict[str, tuple[float, int]]]:
    """``{group: {metric: (median APE, rows)}}`` over the rows of each group that have an APE
    for the metric; ``groups`` maps a row id to its group (rows not in it are left out)."""
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for group in sorted(set(groups.values()), key=_group_key):
        ids = [rid for rid in ape if groups.get(rid) == group]
        cells = {}
        for col in columns:
            values = [ape[rid][col] for rid in ids if col in ape[rid]]
            if values:
                cells[col] = (float(np.median(values)), len(values))
        if cells:
            out[group] = cells
    return out


def _scatter_grid(report: Any, measured: dict[str, dict[str, float]]):
    """Predicted against measured per metric, log-log, with the y = x line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    columns = report.ape_columns
    num_cols = 3
    num_rows = max(1, math.ceil(len(columns) / num_cols))
    fig = make_subplots(rows=num_rows, cols=num_cols, subplot_titles=columns,
                        horizontal_spacing=0.08, vertical_spacing=0.25 / num_rows)
    preds = {str(p["id"]): p for p in report.predictions if not p.get("error")}
    for k, col in enumerate(columns):
        r, c = divmod(k, num_cols)
        ids = [rid for rid in report.ape if col in report.ape[rid]]
        x = [measured[rid][col] for rid in ids]
        y = [float(preds[rid][col]) for rid in ids]
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", text=ids, showlegend=False,
                                 marker={"size": 6, "color": _COLORS[0]},
                                 hovertemplate="%{text}: measured %{x:,.4g}, predicted "
                                 "%{y:,.4g}<extra></extra>"), row=r + 1, col=c + 1)
        positive = [v for v in x + y if v > 0]
        if positive:
            lo, hi = min(positive), max(positive)
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", showlegend=False,
                                     line={"color": "#8c959f", "dash": "dash", "width": 1},
                                     hoverinfo="skip"), row=r + 1, col=c + 1)
        fig.update_xaxes(type="log", row=r + 1, col=c + 1, gridcolor="#eaeef2")
        fig.update_yaxes(type="log", row=r + 1, col=c + 1, gridcolor="#eaeef2")
    fig.update_layout(height=300 * num_rows, plot_bgcolor="white",
                      title={"text": "Predicted (y) against measured (x); dashed: y = x",
                             "x": 0}, margin={"l": 50, "r": 20, "t": 80, "b": 40})
    return fig


def _group_figure(column: str, table: dict[str, dict[str, tuple[float, int]]],
                  metrics: list[str]):
    import plotly.graph_objects as go

    fig = go.Figure()
    groups = list(table)
    for i, metric in enumerate(metrics):
        fig.add_trace(go.Bar(x=groups, y=[table[g].get(metric, (None, 0))[0] for g in groups],
                             name=metric, marker_color=_COLORS[i % len(_COLORS)]))
    fig.update_layout(barmode="group", height=380, plot_bgcolor="white",
                      title={"text": f"Median APE by {column}, %", "x": 0},
                      margin={"l": 50, "r": 20, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(type="category", title=column)
    fig.update_yaxes(title="median APE, %", rangemode="tozero", gridcolor="#eaeef2")
    return fig


def build_validate_report(report: Any, experiments_path: Path, measured_path: Path) -> str:
    """The HTML page of a ``validate --measured`` run.

    Raises:
        ValidationDataError: the experiments or measured CSV cannot be read again.
    """
    _, rows = read_csv(experiments_path, ("id",), "experiments CSV")
    _, measured = read_measured(measured_path)
    cells = {r.get("id", ""): r for r in rows}
    columns = list(report.ape_columns)
    ran = len(report.predictions) - report.num_errors
    intro = [f"<p>{len(report.predictions)} experiments from "
             f"{html.escape(str(experiments_path))}, {ran} predicted, {report.num_errors} "
             f"failed; {len(report.ape)} compared with {html.escape(str(measured_path))}. "
             "APE = |predicted - measured| / |measured| x 100.</p>"]
    intro.append(table_html(("metric", "median APE %", "rows"),
                            [(c, _pct(report.median_ape.get(c)),
                              sum(c in e for e in report.ape.values())) for c in columns]))
    sections = []
    if columns and report.ape:
        sections.append(Section("Predicted against measured").figure(
            _scatter_grid(report, measured)))
    headline = [c for c in columns if c.endswith(("median_ms", "_per_s"))] or columns[:6]
    for column in GROUP_COLUMNS:
        groups = {rid: (cells.get(rid, {}).get(column) or "-") for rid in report.ape}
        table = median_ape_by(report.ape, groups, columns)
        section = Section(f"Error by {column}")
        if not table:
            sections.append(section.text("No row with a measurement."))
            continue
        section.figure(_group_figure(column, table, headline))
        section.raw(table_html([column, *columns],
                               [(g, *(f"{_pct(t[c][0])} ({t[c][1]})" if c in t else "-"
                                      for c in columns)) for g, t in table.items()]))
        sections.append(section.text("Each cell: median APE % (rows).", "muted"))
    error_rows = [(rid, *(_pct(e.get(c)) for c in columns)) for rid, e in report.ape.items()]
    sections.append(Section("Error per row (APE %)").raw(table_html(["id", *columns],
                                                                    error_rows)))
    failed = [(str(p["id"]), str(p["error"])) for p in report.predictions if p.get("error")]
    if failed:
        sections.append(Section("Rows that failed").raw(table_html(("id", "error"), failed,
                                                                   text_columns=(0, 1))))
    return render_page("capacitor validate: predicted against measured", "\n".join(intro),
                       sections)


def write_validate_report(report: Any, experiments_path: Path, measured_path: Path,
                          out: Path) -> Path:
    """Write :func:`build_validate_report` to ``out``.

    Raises:
        ValidationDataError: an input cannot be read again, or ``out`` cannot be written.
    """
    page = build_validate_report(report, Path(experiments_path), Path(measured_path))
    try:
        Path(out).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ValidationDataError(f"--report {out}: cannot be written ({exc})") from None
    return Path(out)


__all__ = ["GROUP_COLUMNS", "build_validate_report", "median_ape_by", "write_validate_report"]
