"""``capacitor plan``: capacity, runway and the cheapest fleet (:mod:`capacitor.planner`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from capacitor.cli.base import app, console, err_console, fail, user_errors

# ---- plan ----------------------------------------------------------------------------------


@app.command()
@user_errors
def plan(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (default: the embedded Colossus one).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory for runway.json / runway.csv, "
                                  "plan.json, scenario.yaml and report.html (default: none "
                                  "written).")
    ] = None,
    runway: Annotated[
        bool, typer.Option("--runway", help="Only the runway of the scenario as it stands: "
                           "month by month to the contracts' end, per growth scenario.")
    ] = False,
    growth: Annotated[
        list[str] | None, typer.Option("--growth", help="NAME=FACTOR_PER_YEAR: add or "
                                       "override a growth scenario (defaults: the scenario's "
                                       "own, conservative=2, base=4, aggressive=7, "
                                       "stress=10); repeatable.")
    ] = None,
    what_if: Annotated[
        list[str] | None, typer.Option("--what-if", help="NAME of an entry of the scenario's "
                                       "what_if: list, or KIND:FIELD=VALUE,... inline (KIND: "
                                       "contract_exit, site_outage, power_cap, agentic_shift, "
                                       "gpu_swap; fields as in the scenario schema), e.g. "
                                       "site_outage:site=colossus1,start=2026-09,months=2; "
                                       "repeatable. Each is walked alone beside the base "
                                       "case. Default: every what_if of the scenario.")
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="What the plan minimises: cost, gpus or power.")
    ] = "cost",
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Capacity cache (default "
                                  "$CAPACITOR_CACHE_DIR or ~/.cache/capacitor/capacity).")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run the chosen configuration "
                           "through the simulator (as capacitor run) and report its verdict.")
    ] = True,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write report.html into --out.")
    ] = False,
) -> None:
    """Plan capacity: the cheapest shapes and replica counts that serve the scenario's peak
    within every SLO under its GPU inventory and power caps, then the runway of the
    scenario as it stands, and under each what-if.

    Runway verdicts per month use the capacity's uncertainty band: "at limit" when the
    peak demand is above the capacity seen to meet every SLO (less the expected share of
    replicas in repair) but within the top of the capacity search's bracket (less two
    standard deviations of an hour's share in repair): a run of that hour may meet or
    miss; "failing" above the band. A plan that fits only within that band is printed
    AT THE LIMIT and the verification run decides. The plan also prints, per deployment,
    the Pareto front of the objective against TTFT p99.

    Exit 0 when a plan is found (and verified), 1 when no configuration can serve the
    demand (the reason is printed), the verification run misses an SLO or a plan at the
    limit is not verified, 2 on bad input. With --out, report.html charts the runway (demand
    against capacity per deployment and growth scenario, first failing months, contract ramp
    months and notice periods, GPUs to add, monthly cost) and the chosen configuration.
    """
    from capacitor.errors import PlanError
    from capacitor.planner import tables
    from capacitor.planner.run import CapacityLog, run_plan, scenario_runway
    from capacitor.planner.runway import parse_growth
    from capacitor.planner.search import OBJECTIVES
    from capacitor.planner.whatif import select
    from capacitor.scenario import load_scenario

    if out is not None and out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file; expected a directory")
    if objective not in OBJECTIVES:
        fail(f"--objective {objective!r}: valid values are {', '.join(OBJECTIVES)}")
    try:
        growths = parse_growth(growth or [])
    except PlanError as err:
        fail(str(err))
    spec = load_scenario(scenario)
    try:
        what_ifs = select(spec, what_if or [])
    except PlanError as err:
        fail(err.problems or str(err))
    try:
        with err_console.status("planning...") as status:
            def note(msg: str) -> None:
                status.update(escape(msg))

            planned = None if runway else run_plan(spec, objective, CapacityLog(
                cache_dir, note), verify=verify)
            way = scenario_runway(spec, growths, CapacityLog(cache_dir, note), what_ifs)
    except PlanError as err:
        fail(err.problems or str(err), code=1)
    if planned is not None:
        console.print(tables.plan_table(planned["result"], objective))
        console.print(tables.pareto_table(planned["result"], objective))
        for line in planned["lines"]:
            console.print(escape(line), soft_wrap=True)
    console.print(tables.capacity_table(way["capacity"]))
    console.print(tables.runway_summary(way))
    shown = "base" if "base" in way["growth"] else next(iter(way["growth"]))
    console.print(tables.runway_months(way, shown))
    if what_ifs:
        console.print(tables.whatif_table(way, shown))
    stats = way["capacity_stats"]
    err_console.print(f"runway: {len(way['months'])} months x {len(way['growth'])} growth "
                      f"scenarios in {way['seconds']:.1f} s ({stats['searches']} capacity "
                      f"searches, {stats['cache_hits']} from the cache, "
                      f"{stats['simulations']} simulations)")
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            tables.write_runway(way, out)
            if planned is not None:
                (out / "plan.json").write_text(json.dumps(planned["json"], indent=1) + "\n",
                                               encoding="utf-8")
                (out / "scenario.yaml").write_text(planned["yaml"], encoding="utf-8")
            if not no_report:
                from capacitor.report.plan_report import PLAN_REPORT, plan_page

                (out / PLAN_REPORT).write_text(plan_page(
                    spec.name, runway=way, plan=planned["json"] if planned else None,
                    scenario=spec), encoding="utf-8")
        except OSError as exc:
            fail(f"--out {out}: cannot write ({exc})")
        err_console.print(f"written to {escape(str(out))}")
    raise typer.Exit(0 if planned is None or planned["ok"] else 1)
