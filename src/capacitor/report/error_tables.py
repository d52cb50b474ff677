"""Error tables for the terminal: absolute percentage error (APE) per row and metric of
``capacitor validate --measured``, with the median per metric in the footer."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table


def ape_table(report: Any, console_width: int) -> Table:
    """Absolute percentage error per row and metric, and the median per metric, in a console
    ``console_width`` columns wide (the id column takes what the metrics leave)."""
    table = Table(title="absolute percentage error (%)", show_footer=True, box=box.SIMPLE_HEAD)
    rows = [[pct(e.get(c)) for c in report.ape_columns] for e in report.ape.values()]
    columns = []
    for j, col in enumerate(report.ape_columns):
        footer = pct(report.median_ape.get(col))
        header = col.removesuffix("_ms").replace("_", "\n")
        width = max(len(x) for x in [footer, *header.split(), *(r[j] for r in rows)])
        columns.append((header, footer, width))
    id_width = max(12, console_width - sum(w + 3 for *_, w in columns) - 4)
    table.add_column("id", footer="median", no_wrap=True, overflow="ellipsis", max_width=id_width)
    for header, footer, width in columns:
        table.add_column(header, justify="right", footer=footer, min_width=width)
    for rid, cells in zip(report.ape, rows, strict=True):
        table.add_row(escape(rid), *cells)
    return table


def pct(value: float | None) -> str:
    """A percentage to one decimal (none from 1000 up); ``-`` for None."""
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


__all__ = ["ape_table", "pct"]
