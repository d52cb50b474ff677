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

CSV_FIELDS = ("growth", "month", "deployment", "demand_rps", "replicas", "gpu", "capacity_rps",
              "capacity_high_rps", "status", "headroom_pct", "headroom_high_pct",
              "add_replicas", "add_gpus", "add_mw", "add_usd", "what_if")


def _usd(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e9:.3f} B" if abs(x) >= 1e9 else f"{x / 1e6:,.1f} M"


def runway_summary(result: dict[str, Any]) -> Table:
    """Per growth scenario and tier: the first failing month and the months of headroom;
    GPUs and MW to add by the last month; $/M tokens in the first and last month."""
    months = result["months"]
    table = Table(title=f"runway {months[0]} .. {months[-1]} ({len(months)} months): the "
                  "first month a tier's peak demand is above its capacity's band (fails) and "
                  "the first inside it (at the limit, within tolerance: the capacity search's "
                  "bracket and the hour's failure draw)", box=box.SIMPLE_HEAD)
    for col in ("growth", "tier", "at limit", "first failing", "months ok",
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
            table.add_row(escape(name) if i == 0 else "", tier,
                          t["first_at_limit_month"] or "none", fail,
                          str(t["months_of_headroom"]), *extra)
    return table


def runway_months(result: dict[str, Any], growth: str) -> Table:
    """Month by month for one growth scenario: the tightest deployment, the GPUs and MW to
    add to stay within SLO, the cost and $/M tokens."""
    g = result["growth"][growth]
    table = Table(title=f"runway month by month, growth {escape(growth)}", box=box.SIMPLE_HEAD)
    for col in ("month", "tightest", "headroom %", "at limit", "failing", "+GPUs", "+MW",
                "cost", "$/M tok"):
        table.add_column(col, justify="left" if col in ("month", "tightest") else "right",
                         no_wrap=True)
    for mon in g["monthly"]:
        rows = [r for r in g["rows"] if r["month"] == mon["month"]]
        tight = min(rows, key=lambda r: r["headroom_pct"] if r["headroom_pct"] is not None
                    else float("inf"))
        failing = [r["deployment"] for r in rows if r["status"] == "fails"]
        limit = [r["deployment"] for r in rows if r["status"] == "at_limit"]
        per_m = mon["usd_per_million_tokens"]
        table.add_row(mon["month"], tight["deployment"], f"{tight['headroom_pct']:+.1f}",
                      str(len(limit)) if limit else "-", str(len(failing)) if failing else "-",
                      f"{mon['add_gpus']:,}",
                      f"{mon['add_mw']:.1f}", _usd(mon["cost_usd"]),
                      "-" if per_m is None else f"{per_m:.3f}")
    return table


def whatif_table(result: dict[str, Any], growth: str) -> Table:
    """The base case and each what-if side by side for one growth scenario: per tier the
    first month at the limit and failing and the months of headroom, the most GPUs to add
    in any month (to stay within SLO), and the most beyond the base case's in any month
    (what the what-if itself costs)."""
    cases = {"base case": result["growth"][growth]}
    cases.update({name: w["growth"][growth] for name, w in result.get("what_if", {}).items()})
    tiers = list(result["growth"][growth]["tiers"])
    table = Table(title=f"what-ifs beside the base case, growth {escape(growth)}: per tier the "
                  "first month at the limit / failing (months of headroom)",
                  box=box.SIMPLE_HEAD)
    table.add_column("what-if", no_wrap=False)
    for tier in tiers:
        table.add_column(f"tier {tier}", justify="right", no_wrap=True)
    table.add_column("most +GPUs (month)", justify="right", no_wrap=True)
    table.add_column("most +GPUs over base (month)", justify="right", no_wrap=True)
    base = [m["add_gpus"] for m in cases["base case"]["monthly"]]
    for name, g in cases.items():
        cells = []
        for tier in tiers:
            t = g["tiers"][tier]
            cells.append(f"{t['first_at_limit_month'] or '-'} / "
                         f"{t['first_failing_month'] or 'none'} ({t['months_of_headroom']})")
        most = max(g["monthly"], key=lambda m: m["add_gpus"])
        cells.append(f"{most['add_gpus']:,} ({most['month']})" if most["add_gpus"] else "0")
        extra, month = max(((m["add_gpus"] - b, m["month"])  # the first month at the most
                            for m, b in zip(g["monthly"], base, strict=True)),
                           key=lambda x: x[0])
        cells.append(f"{extra:+,} ({month})" if extra > 0 else "0")
        table.add_row(escape(name), *cells)
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
    """runway.json (everything) and runway.csv (a row per what-if, growth, month and
    deployment; ``what_if`` empty for the base case)."""
    (out / "runway.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    with open(out / "runway.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for name, g in result["growth"].items():
            for r in g["rows"]:
                w.writerow({"what_if": "", "growth": name, **r})
        for label, case in result.get("what_if", {}).items():
            for name, g in case["growth"].items():
                for r in g["rows"]:
                    w.writerow({"what_if": label, "growth": name, **r})


def plan_table(result: Any, objective: str) -> Table:
    """The chosen shape per deployment with its replicas, GPUs, power, cost and margin."""
    title = f"plan: least {objective} serving the peak within every SLO"
    if result.at_limit:
        title += " (AT THE LIMIT: sized on the top of the capacity's band; margin of it)"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("deployment", "shape", "peak req/s", "per replica", "replicas", "GPUs",
                "MW", "$/month", "margin %"):
        table.add_column(col, justify="left" if col in ("deployment", "shape") else "right",
                         no_wrap=col in ("deployment", "shape"))
    for name, c in result.chosen.items():
        table.add_row(escape(name), escape(c.label), f"{result.peaks[name]:,.0f}",
                      f"{c.capacity_rps:.3f}", f"{c.replicas:,}", f"{c.gpus:,}",
                      f"{c.power_mw:.1f}", _usd(c.cost_usd_per_month), f"{c.margin_pct:+.1f}")
    return table


def pareto_table(result: Any, objective: str) -> Table:
    """Per deployment, the Pareto front of the objective against TTFT p99 (the chosen
    shape marked)."""
    from capacitor.planner.search import pareto

    table = Table(title=f"Pareto front: {objective} against the worst tenant's TTFT p99 at "
                  "the shape's capacity rate (* chosen)", box=box.SIMPLE_HEAD)
    for col in ("deployment", "shape", "replicas", "GPUs", "MW", "$/month", "TTFT p99 ms"):
        table.add_column(col, justify="left" if col in ("deployment", "shape") else "right",
                         no_wrap=True)
    for name, cands in result.sized.items():
        chosen = result.chosen.get(name)
        for c in pareto(cands, objective):
            mark = "*" if chosen is not None and c.label == chosen.label else ""
            table.add_row(escape(name), escape(c.label) + mark, f"{c.replicas:,}",
                          f"{c.gpus:,}", f"{c.power_mw:.1f}", _usd(c.cost_usd_per_month),
                          f"{c.ttft_p99_ms:,.0f}")
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
    """plan.json: ``objective``, ``seconds``, ``at_limit`` (and ``at_limit_reasons``: why
    no plan serves the peak for sure), ``candidates`` (``considered``,
    ``pruned_unbuildable``, ``sized``, ``combinations_visited``), ``peaks_rps``
    (deployment -> req/s), ``chosen`` (deployment -> candidate), ``pareto`` (deployment ->
    its Pareto front of the objective against TTFT p99, candidates by objective) and
    ``sized`` (deployment -> every sized candidate); a candidate's keys are
    :class:`capacitor.planner.search.Candidate`'s fields. :func:`capacitor.planner.run.
    run_plan` adds ``capacity_stats`` and ``verify``."""
    from dataclasses import asdict

    from capacitor.planner.search import pareto

    return {"objective": objective, "seconds": result.seconds, "at_limit": result.at_limit,
            "at_limit_reasons": result.reasons,
            "candidates": {"considered": result.considered, "pruned_unbuildable": result.pruned,
                           "sized": sum(len(v) for v in result.sized.values()),
                           "combinations_visited": result.combinations},
            "peaks_rps": result.peaks,
            "chosen": {n: asdict(c) for n, c in result.chosen.items()},
            "pareto": {n: [asdict(c) for c in pareto(v, objective)]
                       for n, v in result.sized.items()},
            "sized": {n: [asdict(c) for c in v] for n, v in result.sized.items()}}


__all__ = ["capacity_table", "chosen_scenario_yaml", "pareto_table", "plan_json", "plan_table",
           "runway_months", "runway_summary", "whatif_table", "write_runway"]
