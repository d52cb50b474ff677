"""Terminal tables and files of ``capacitor plan``: runway.json / runway.csv, plan.json and the
chosen configuration's scenario.yaml."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml
from rich import box
from rich.markup import escape
from rich.table import Table

CSV_FIELDS = ("growth", "month", "deployment", "demand_rps", "capacity_rps", "headroom_pct",
              "add_replicas", "add_gpus", "add_mw", "add_usd")


def _usd(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e9:.3f} B" if abs(x) >= 1e9 else f"{x / 1e6:,.1f} M"


def runway_summary(result: dict[str, Any]) -> Table:
    """Per growth scenario and tier: the first failing month and the months of headroom;
    GPUs and MW to add by the last month; $/M tokens in the first and last month."""
    months = result["months"]
    table = Table(title=f"runway {months[0]} .. {months[-1]} ({len(months)} months): the "
                  "first month a tier's peak demand exceeds capacity", box=box.SIMPLE_HEAD)
    for col in ("growth", "tier", "first failing", "months ok",
                f"+GPUs by {months[-1]}", "+MW", "$/M tok first", "last"):
        table.add_column(col, justify="left" if col in ("growth", "tier") else "right",
                         no_wrap=col == "growth")
    for name, g in result["growth"].items():
        factor = "own" if g["factor_per_year"] is None else f"{g['factor_per_year']:g}x/yr"
        name = f"{name} ({factor})"
        last, first = g["monthly"][-1], g["monthly"][0]
        for i, (tier, t) in enumerate(g["tiers"].items()):
            fail = t["first_failing_month"] or "none"
            per_m = [m["usd_per_million_tokens"] for m in (first, last)]
            extra = [f"{last['add_gpus']:,}", f"{last['add_mw']:.1f}",
                     *("-" if x is None else f"{x:.3f}" for x in per_m)] if i == 0 \
                else ["", "", "", ""]
            table.add_row(escape(name) if i == 0 else "", tier, fail,
                          str(t["months_of_headroom"]), *extra)
    return table


def runway_months(result: dict[str, Any], growth: str) -> Table:
    """Month by month for one growth scenario: the tightest deployment, the GPUs and MW to
    add to stay within SLO, the cost and $/M tokens."""
    g = result["growth"][growth]
    table = Table(title=f"runway month by month, growth {escape(growth)}", box=box.SIMPLE_HEAD)
    for col in ("month", "tightest", "headroom %", "failing", "+GPUs", "+MW", "cost",
                "$/M tok"):
        table.add_column(col, justify="left" if col in ("month", "tightest") else "right",
                         no_wrap=True)
    for mon in g["monthly"]:
        rows = [r for r in g["rows"] if r["month"] == mon["month"]]
        tight = min(rows, key=lambda r: r["headroom_pct"] if r["headroom_pct"] is not None
                    else float("inf"))
        failing = [r["deployment"] for r in rows if r["demand_rps"] > r["capacity_rps"]]
        per_m = mon["usd_per_million_tokens"]
        table.add_row(mon["month"], tight["deployment"], f"{tight['headroom_pct']:+.1f}",
                      str(len(failing)) if failing else "-", f"{mon['add_gpus']:,}",
                      f"{mon['add_mw']:.1f}", _usd(mon["cost_usd"]),
                      "-" if per_m is None else f"{per_m:.3f}")
    return table


def capacity_table(searches: list[dict[str, Any]]) -> Table:
    """The per-replica capacity of each shape the command used."""
    table = Table(title="goodput capacity per replica (requests/s meeting every SLO)",
                  box=box.SIMPLE_HEAD)
    for col in ("deployment", "cell", "meets", "misses", "runs", "seconds", "cached"):
        table.add_column(col, justify="left" if col == "deployment" else "right",
                         no_wrap=True)
    for c in searches:
        table.add_row(escape(c["deployment"]), str(c["cell_replicas"]), f"{c['rate_rps']:.3f}",
                      f"{c['miss_rps']:.3f}", str(c["runs"]), f"{c['seconds']:.1f}",
                      "yes" if c["cached"] else "no")
    return table


def write_runway(result: dict[str, Any], out: Path) -> None:
    """runway.json (everything) and runway.csv (a row per growth, month and deployment)."""
    (out / "runway.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    with open(out / "runway.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for name, g in result["growth"].items():
            for r in g["rows"]:
                w.writerow({"growth": name, **r})


def plan_table(result: Any, objective: str) -> Table:
    """The chosen shape per deployment with its replicas, GPUs, power, cost and margin."""
    table = Table(title=f"plan: least {objective} serving the peak within every SLO",
                  box=box.SIMPLE_HEAD)
    for col in ("deployment", "shape", "peak req/s", "per replica", "replicas", "GPUs",
                "MW", "$/month", "margin %"):
        table.add_column(col, justify="left" if col in ("deployment", "shape") else "right",
                         no_wrap=col in ("deployment", "shape"))
    for name, c in result.chosen.items():
        table.add_row(escape(name), escape(c.label), f"{result.peaks[name]:,.0f}",
                      f"{c.capacity_rps:.3f}", f"{c.replicas:,}", f"{c.gpus:,}",
                      f"{c.power_mw:.1f}", _usd(c.cost_usd_per_month), f"{c.margin_pct:+.1f}")
    return table


def chosen_scenario_yaml(scenario: Any, result: Any) -> str:
    """The scenario with every planned deployment reshaped and sized as chosen."""
    data = scenario.model_dump(mode="json")
    for dep in data["deployments"]:
        c = result.chosen.get(dep["name"])
        if c is None:
            continue
        dep.update({"site": c.site, "gpu": c.gpu, "tp": c.tp, "pp": c.pp, "ep": c.ep,
                    "max_num_seqs": c.max_num_seqs, "replicas": c.replicas})
    header = f"# capacitor plan: the chosen configuration of {scenario.name}\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def plan_json(result: Any, objective: str) -> dict[str, Any]:
    from dataclasses import asdict

    return {"objective": objective, "seconds": result.seconds,
            "candidates": {"considered": result.considered, "pruned_unbuildable": result.pruned,
                           "sized": sum(len(v) for v in result.sized.values()),
                           "combinations_visited": result.combinations},
            "peaks_rps": result.peaks,
            "chosen": {n: asdict(c) for n, c in result.chosen.items()},
            "sized": {n: [asdict(c) for c in v] for n, v in result.sized.items()}}


__all__ = ["capacity_table", "chosen_scenario_yaml", "plan_json", "plan_table",
           "runway_months", "runway_summary", "write_runway"]
