"""The ``capacitor`` command line (typer): run, report, validate, catalogue listings, bench.

Exit codes everywhere: 0 success, 1 some rows failed (or an SLO was missed), 2 bad input.
Every :class:`~capacitor.errors.CapacitorError` becomes one red line on stderr and exit 2,
never a traceback. When stdout is not a terminal (a pipe, a file) tables are laid out at
their full width rather than cut at 80 columns.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from capacitor.errors import CalibrationError, CapacitorError, ValidationDataError
from capacitor.report.error_tables import ape_table, pct
from capacitor.textio import check_output_file

EXIT_CODES = ("Exit codes: 0 success; 1 an SLO was missed (run) or a row failed (validate); "
              "2 bad input (one line on stderr names the field and the value).")
#: Console width when stdout is not a terminal: wide enough that no table is cut or wrapped.
PIPE_WIDTH = 1000

app = typer.Typer(
    name="capacitor",
    help="Digital twin of an LLM inference fleet: can this fleet deliver this demand?",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without <bool>, whole in a pipe
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="The bundled model catalogue.", invoke_without_command=True,
                         rich_markup_mode=None)
scenario_app = typer.Typer(help="Scenario files: schema and checks.", no_args_is_help=True,
                           rich_markup_mode=None)
app.add_typer(models_app, name="models")
app.add_typer(scenario_app, name="scenario")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"capacitor {version('capacitor')}")
        except PackageNotFoundError:
            print("capacitor (not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Digital twin of an LLM inference fleet: can this fleet deliver this demand?"""
    for out in (console, err_console):  # a pipe or a file: whole tables, never cut at 80
        out.width = PIPE_WIDTH if not out.is_terminal else None  # type: ignore[assignment]



def fail(message: str | tuple[str, ...], code: int = 2) -> NoReturn:
    """One red line on stderr per problem (``message`` is one), then exit with ``code``."""
    for problem in [message] if isinstance(message, str) else message:
        err_console.print(f"[bold red]error:[/] {escape(' '.join(problem.split()))}",
                          soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn CapacitorError into one red line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CapacitorError as exc:
            fail(exc.problems or str(exc))

    return wrapper  # type: ignore[return-value]


# ---- validate ------------------------------------------------------------------------------


@app.command()
@user_errors
def validate(
    experiments: Annotated[Path, typer.Argument(
        help="Experiments CSV: one experiment per row (columns in the README, section "
             "'validate: experiments CSV -> predictions CSV').")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions CSV to write.")],
    measured: Annotated[
        Path | None, typer.Option("--measured", help="Measured CSV: print the error per row "
                                  "and write the HTML report.")
    ] = None,
    profile: Annotated[Path | None, typer.Option("--profile", help="Engine profile YAML.")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="With --measured: the HTML report to write, "
                                  "or a directory to write it into (default: --out with .html "
                                  "for its suffix).")
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="With --measured: write no "
                                            "HTML report.")] = False,
) -> None:
    """Predict every experiment of EXPERIMENTS.csv into PREDICTIONS.csv.

    With --measured, print the absolute percentage error per row and metric and write an
    HTML report beside the predictions: predicted against measured per metric, the error
    table, and the error by hardware, engine and concurrency.

    Exit codes: 0 every row ran, 1 some row failed, 2 bad input.
    """
    from capacitor.report.progress import StepProgress
    from capacitor.validate import run_validate

    check_output_file(out, f"--out {out}", ValidationDataError, name="predictions.csv")
    html_out = None
    if measured is not None and not no_report:
        html_out = report if report is not None else out.with_suffix(".html")
        if html_out.is_dir():  # a directory: the report goes into it, named after --out
            html_out = html_out / out.with_suffix(".html").name
        if html_out.resolve() == out.resolve():
            fail(f"--report {html_out}: is the --out file; give another name")
        check_output_file(html_out, f"--report {html_out}", ValidationDataError,
                          name="report.html")
    elif report is not None:
        fail("--report needs --measured (the report compares predictions with measurements)")
    _announce_compile()
    with StepProgress(err_console, "validate", "rows") as progress:
        result = run_validate(experiments, out, measured, profile,
                              progress=lambda done, total, row_id, error: progress.update(
                                  done, total, row_id))
    for pred in result.predictions:
        if pred["error"]:
            err_console.print(
                f"[yellow]row {escape(str(pred['id']))}:[/] {escape(str(pred['error']))}",
                soft_wrap=True,
            )
    rows, bad = len(result.predictions), result.num_errors
    err_console.print(
        f"{rows - bad}/{rows} rows ran, {bad} failed; "
        f"predictions in {escape(str(result.out_path))} ({result.elapsed_s:.1f} s)",
        soft_wrap=True,
    )
    if measured is not None:
        console.print(ape_table(result, console.width))
    if html_out is not None:
        from capacitor.report.validate_report import write_validate_report

        write_validate_report(result, experiments, measured, html_out)
        err_console.print(f"report {escape(str(html_out))}", soft_wrap=True)
    raise typer.Exit(result.exit_code)


# ---- calibrate -------------------------------------------------------------------------------


@app.command()
@user_errors
def calibrate(
    experiments: Annotated[
        list[Path], typer.Option("--experiments", help="Experiments CSV (repeat for more files).")
    ],
    measured: Annotated[
        list[Path],
        typer.Option("--measured", help="Measured CSV for each --experiments, in the same order."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Profile YAML to write.")],
    profile: Annotated[
        Path | None, typer.Option("--profile", help="Prior profile YAML (default: shipped).")
    ] = None,
    leave_out: Annotated[
        str, typer.Option("--leave-out", help="Out-of-sample check: model, hardware or none.")
    ] = "model",
    max_evaluations: Annotated[
        int, typer.Option(
            "--max-evaluations",
            help="Trust-region steps per fit (each step also re-simulates the rows once per "
                 "free constant, for its Jacobian).",
        )
    ] = 60,
    starts: Annotated[
        int, typer.Option(
            "--starts",
            help="Optimizer starts averaged per fit: the prior and points drawn from it "
                 "(fixed seed). More starts cost proportionally more time and steady the "
                 "constants the rows hardly tell apart.",
        )
    ] = 4,
) -> None:
    """Fit the step-time constants to measured runs and write a profile for --profile.

    Prints the in-sample and leave-one-out median absolute percentage error per metric.
    The shipped profile is never changed.
    """
    from capacitor.calibrate import median_by_metric, run_calibrate

    if len(experiments) != len(measured):
        fail(f"got {len(experiments)} --experiments but {len(measured)} --measured files; "
             "give one measured file per experiments file")
    if leave_out not in ("model", "hardware", "none"):
        fail(f"--leave-out {leave_out!r}: valid values are model, hardware and none")
    if max_evaluations < 1:
        fail(f"--max-evaluations={max_evaluations}: must be >= 1")
    if starts < 1:
        fail(f"--starts={starts}: must be >= 1")
    check_output_file(out, f"--out {out}", CalibrationError, name="profile.yaml")
    with err_console.status("calibrating...") as status:
        report = run_calibrate(
            list(zip(experiments, measured, strict=True)), out, profile_path=profile,
            leave_out=leave_out, max_nfev=max_evaluations, starts=starts,
            progress=lambda msg: status.update(escape(msg)),
        )
    table = Table(title=f"median absolute percentage error (%), {report['rows']} rows, "
                        f"{report['free_constants']} free constants", box=box.SIMPLE_HEAD)
    table.add_column("metric")
    table.add_column("in sample", justify="right")
    has_loo = "out_of_sample" in report
    if has_loo:
        table.add_column(f"leave one {leave_out} out", justify="right")
    ins = median_by_metric(report["in_sample"])
    loo = median_by_metric(report["out_of_sample"]) if has_loo else {}
    for metric, value in ins.items():
        cells = [pct(value)] + ([pct(loo.get(metric))] if has_loo else [])
        table.add_row(metric, *cells)
    console.print(table)
    mults = Table(title="fitted multipliers on the prior", box=box.SIMPLE_HEAD)
    mults.add_column("constant")
    mults.add_column("x prior", justify="right")
    for name, value in report["multipliers"].items():
        mults.add_row(escape(name), f"{value:.3f}")
    console.print(mults)
    for warning in report.get("warnings", []):
        err_console.print(f"[yellow]check:[/yellow] {escape(warning)} (it may stand in for a "
                          "cost the model lacks; see README, Fidelity)")
    err_console.print(f"profile written to {escape(str(out))}; use it with --profile")


# ---- run -----------------------------------------------------------------------------------


@app.command()
@user_errors
def run(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (default: the embedded Colossus one).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run directory (default runs/<scenario>-<UTC time>); "
                     "must be new or empty unless --force."),
    ] = None,
    profile: Annotated[Path | None, typer.Option("--profile", help="Engine profile YAML.")] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="local, or ray (pools as parallel Ray tasks).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster address (default: local).")
    ] = None,
    fidelity: Annotated[
        str | None, typer.Option("--fidelity", help="exact or sampled: overrides the "
                                 "scenario's simulation.fidelity.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Pools simulated at once by the local backend, on "
                     "threads (default: one per CPU); results do not depend on it."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (on "
                                          "stdout; nothing else goes there).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and "
                                        "the JSON with --json); the exit code is the "
                                        "verdict.")] = False,
    requests: Annotated[bool, typer.Option("--requests/--no-requests", help="Write "
                                           "requests.parquet, one row per simulated request "
                                           "(the report's latency curves need it).")] = True,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html "
                                         "into the run directory.")] = True,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the JSON Schema of summary.json (every "
                           "field with its unit) and exit.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write into an --out directory that is not empty "
                           "(files of the same name are overwritten).")
    ] = False,
) -> None:
    """Simulate a fleet scenario and say whether it serves its demand within SLO.

    The run directory gets scenario.yaml, summary.json, timeline.parquet, requests.parquet
    (unless --no-requests) and report.html (unless --no-report; rebuild it with capacitor
    report RUN_DIR). --schema prints the JSON Schema of summary.json and exits 0 without
    simulating.

    Exit codes: 0 every tier's SLO holds, 1 some SLO is missed, 2 bad input.
    """
    if schema:
        from capacitor.simulate.summary_model import summary_json_schema

        print(json.dumps(summary_json_schema(), indent=2))
        raise typer.Exit(0)
    import datetime as dt

    from capacitor.parallel import default_workers
    from capacitor.perf.profile import load_profile
    from capacitor.report.progress import StepProgress
    from capacitor.report.terminal import print_run
    from capacitor.scenario import dump_resolved, load_scenario, power_warnings
    from capacitor.simulate import run_scenario, shard_sizes
    from capacitor.simulate.outputs import RequestsWriter, write_run_dir

    if backend not in ("local", "ray"):
        fail(f"--backend {backend!r}: valid values are local and ray")
    if ray_address is not None and backend != "ray":
        fail("--ray-address needs --backend ray")
    if fidelity not in (None, "exact", "sampled"):
        fail(f"--fidelity {fidelity!r}: valid values are exact and sampled")
    if workers is not None and workers < 1:
        fail(f"--workers {workers}: must be at least 1")
    if workers is not None and backend != "local":
        fail("--workers is for the local backend (Ray runs as many pools as the cluster has CPUs)")
    started = time.perf_counter()
    spec = load_scenario(scenario)
    load_profile(profile)  # a bad profile fails before the run directory is made
    for warning in power_warnings(spec):
        if not quiet:
            err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if fidelity is not None:
        spec = spec.model_copy(update={"simulation": spec.simulation.model_copy(
            update={"fidelity": fidelity})})
    base_dir = scenario.parent if scenario is not None else None
    if out is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path("runs") / f"{spec.name}-{stamp}"
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file; expected a run directory (new or empty)")
    if out.is_dir() and any(out.iterdir()) and not force:
        fail(f"--out {out}: directory is not empty; give a new or empty directory, or --force "
             "to overwrite its files")
    try:
        out.mkdir(parents=True, exist_ok=True)
        writer = RequestsWriter(out / "requests.parquet", spec) if requests else None
    except OSError as exc:
        fail(f"--out {out}: cannot write the run directory ({exc})")
    if not quiet and backend == "local":  # Ray's workers compile in their own processes
        _announce_compile()
    pools = sum(len(shard_sizes(spec, d)) for d in range(len(spec.deployments)))
    with StepProgress(err_console, "simulating", "pools", quiet=quiet) as progress:
        progress.update(0, pools)
        try:
            result = run_scenario(spec, profile_path=str(profile) if profile else None,
                                  base_dir=base_dir, backend=backend,
                                  progress=lambda name, done, total: progress.update(
                                      done, total, name),
                                  ray_address=ray_address, requests_sink=writer,
                                  keep_pools=False, workers=workers or default_workers())
        finally:
            if writer is not None:
                writer.close()
    try:
        write_run_dir(result, out, dump_resolved(spec), requests_written=True)
        wall_s = time.perf_counter() - started
        log = f"simulated {result.num_simulated} requests in {wall_s:.2f} s wall\n"
        (out / "run.log").write_text(log, encoding="utf-8")
    except OSError as exc:
        fail(f"--out {out}: cannot write the run directory ({exc})")
    if as_json:
        print(result.summary.to_json(), end="")
    elif not quiet:
        print_run(console, result.summary)
    if report:
        from capacitor.report.run_report import write_run_report

        info = write_run_report(out)
        with (out / "run.log").open("a", encoding="utf-8") as fh:
            fh.write(f"wrote report.html ({info.size_bytes / 1e6:.1f} MB) in "
                     f"{info.seconds:.2f} s wall, {info.cpu_seconds:.2f} s CPU\n")
    if not quiet:
        made = (f"; report {escape(str(out / 'report.html'))} ({info.seconds:.1f} s)"
                if report else "")
        err_console.print(f"{result.num_simulated:,} requests simulated in {wall_s:.1f} s; run "
                          f"directory {escape(str(out))}{made}", soft_wrap=True)
    raise typer.Exit(0 if result.summary.verdict.ok else 1)


def _announce_compile() -> None:
    """Say so before the one-time numba compile of the kernel (minutes, silent otherwise)."""
    from capacitor.simulate.compile_cache import COMPILE_ESTIMATE_S, kernel_compile_pending

    if kernel_compile_pending():
        err_console.print(f"compiling the simulation kernel (once; cached for later runs): "
                          f"about {COMPILE_ESTIMATE_S / 60:.1f} minutes", soft_wrap=True)


@app.command("report")
@user_errors
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by capacitor run.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file to write (default "
                                  "RUN_DIR/report.html, overwritten).")
    ] = None,
) -> None:
    """(Re)build a run's report.html from its files (summary.json, timeline.parquet,
    requests.parquet, scenario.yaml): one self-contained page that opens offline.

    Exit codes: 0 written, 2 the run directory cannot be read or the file written.
    """
    from capacitor.report.run_report import write_run_report

    info = write_run_report(run_dir, out)
    err_console.print(f"report {escape(str(info.path))} ({info.size_bytes / 1e6:.1f} MB, "
                      f"{info.seconds:.1f} s)", soft_wrap=True)
# ---- plan ----------------------------------------------------------------------------------


@app.command()
@user_errors
def plan(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (default: the embedded Colossus one).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory for runway.json / runway.csv, "
                                  "plan.json and scenario.yaml (default: none written).")
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
) -> None:
    """Plan capacity: the cheapest shapes and replica counts that serve the scenario's peak
    within every SLO under its GPU inventory and power caps, then the runway of the
    scenario as it stands (the first month each tier's peak demand exceeds capacity).

    Exit 0 when a plan is found (and verified), 1 when no configuration can serve the
    demand (the reason is printed) or the verification run misses an SLO, 2 on bad input.
    """
    from capacitor.errors import PlanError
    from capacitor.planner import tables
    from capacitor.planner.run import CapacityLog, run_plan, scenario_runway
    from capacitor.planner.runway import parse_growth
    from capacitor.planner.search import OBJECTIVES
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
        with err_console.status("planning...") as status:
            def note(msg: str) -> None:
                status.update(escape(msg))

            planned = None if runway else run_plan(spec, objective, CapacityLog(
                cache_dir, note), verify=verify)
            way = scenario_runway(spec, growths, CapacityLog(cache_dir, note))
    except PlanError as err:
        fail(err.problems or str(err), code=1)
    if planned is not None:
        console.print(tables.plan_table(planned["result"], objective))
        for line in planned["lines"]:
            console.print(escape(line), soft_wrap=True)
    console.print(tables.capacity_table(way["capacity"]))
    console.print(tables.runway_summary(way))
    console.print(tables.runway_months(way, "base" if "base" in way["growth"]
                                       else next(iter(way["growth"]))))
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
        except OSError as exc:
            fail(f"--out {out}: cannot write ({exc})")
        err_console.print(f"written to {escape(str(out))}")
    raise typer.Exit(0 if planned is None or planned["ok"] else 1)


# ---- catalogues ----------------------------------------------------------------------------


@app.command()
@user_errors
def gpus() -> None:
    """The GPU catalogue."""
    from capacitor.catalog.hardware import list_gpus

    headers = ("name", "family", "GiB", "TB/s", "BF16", "FP8", "FP4", "link GB/s", "TDP W")
    rows = []
    for g in list_gpus():
        tf = [_num(g.dense_tflops.get(k), sep="") for k in ("bf16", "fp8", "fp4")]
        link = f"{g.interconnect} {g.interconnect_gb_s:.0f}"
        mem, bw = _num(g.memory_gib), _num(g.hbm_tb_s, 2)
        rows.append((g.name, g.family, mem, bw, *tf, link, _num(g.tdp_w, sep="")))
    table = Table(title="GPUs (dense TFLOPS per precision)", box=None, header_style="bold")
    for i, col in enumerate(headers):
        width = max(len(r[i]) for r in [headers, *rows])
        table.add_column(col, justify="left" if i < 2 else "right", min_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _num(value: float | None, digits: int = 0, sep: str = ",") -> str:
    return "-" if value is None else f"{value:{sep}.{digits}f}"


@models_app.callback()
@user_errors
def models(ctx: typer.Context) -> None:
    """The bundled model catalogue (``models show NAME``, ``models import CONFIG.json``)."""
    if ctx.invoked_subcommand is not None:
        return
    from capacitor.catalog.models import list_models

    table = Table(title="models (capacitor models show NAME for one)")
    table.add_column("name", overflow="fold")
    for col in ("params B", "active B", "layers", "experts", "dtype"):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    for m in list_models():
        experts = f"{m.num_experts_per_tok}/{m.num_experts}" if m.num_experts else "-"
        params = (f"{n / 1e9:.1f}" for n in (m.param_count(), m.active_param_count()))
        table.add_row(m.name, *params, str(m.num_layers), experts, m.weight_dtype)
    console.print(table)


def _print_spec(spec: Any) -> None:
    table = Table(title=spec.name, show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        table.add_row(f.name, ", ".join(value) if isinstance(value, tuple) else str(value))
    table.add_row("[bold]parameters", f"{spec.param_count():,} ({spec.param_count() / 1e9:.2f} B)")
    table.add_row("[bold]active parameters", f"{spec.active_param_count():,}")
    table.add_row("[bold]KV bytes/token (16-bit)", f"{spec.kv_bytes_per_token(2):,.0f}")
    console.print(table)


@models_app.command("show")
@user_errors
def models_show(name: Annotated[str, typer.Argument(help="Bundled name or HF repo id.")]) -> None:
    """A bundled model's architecture and parameter counts."""
    from capacitor.catalog.models import resolve_model

    _print_spec(resolve_model(name))


@models_app.command("import")
@user_errors
def models_import(
    config: Annotated[Path, typer.Argument(help="A Hugging Face config.json.")],
) -> None:
    """Parse a Hugging Face config.json (and the generation_config.json beside it, whose
    top-p / top-k defaults decide the sampler's cost) and print the spec capacitor reads."""
    from capacitor.catalog.models import load_config_file

    _print_spec(load_config_file(config))


# ---- bench and what arrives later ----------------------------------------------------------


@app.command()
@user_errors
def bench() -> None:
    """Simulator speed on the standard workloads (beside the reference implementation)."""
    try:
        from capacitor.bench import run_bench
    except ModuleNotFoundError as exc:
        if exc.name not in ("capacitor.bench", "capacitor"):
            raise
        fail("capacitor bench is not available in this build (capacitor.bench is missing)")
    code = run_bench()
    raise typer.Exit(code if isinstance(code, int) else 0)


@scenario_app.command("schema")
@user_errors
def scenario_schema() -> None:
    """Print the scenario JSON Schema (every key with its description)."""
    from capacitor.scenario import scenario_json_schema

    print(json.dumps(scenario_json_schema(), indent=2))


@scenario_app.command("check")
@user_errors
def scenario_check(file: Annotated[Path, typer.Argument(help="Scenario YAML.")]) -> None:
    """Validate a scenario file and print what it describes (exit 2 on a problem)."""
    from capacitor.scenario import load_scenario, summary_lines

    for line in summary_lines(load_scenario(file)):
        console.print(escape(line), soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. A usage error (a flag's value of the wrong type, an unknown
    flag, a missing argument) is one red line naming the flag and the value, exit 2, instead
    of click's usage panel."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args, prog_name="capacitor", standalone_mode=False)
    except typer.Abort:
        raise SystemExit(1) from None
    except typer.TyperException as exc:  # typer's click: usage errors, bad parameters
        if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
            exc.show()  # type: ignore[attr-defined]  # `capacitor` alone: the help
            raise SystemExit(getattr(exc, "exit_code", 2)) from None
        message = exc.format_message().rstrip(".")
        param = getattr(exc, "param", None)
        if isinstance(exc, typer.BadParameter) and param is not None:
            value = _given_value(args, param.opts)
            if value is not None:
                message = f"{message} (got {value!r})"
        ctx = getattr(exc, "ctx", None)
        hint = f"; see {ctx.command_path} --help" if ctx is not None else ""
        try:
            fail(message + hint, getattr(exc, "exit_code", 2))
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _given_value(args: list[str], opts: list[str]) -> str | None:
    """The value given on the command line for the option spelled ``opts``, if any."""
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(opt + "="):
                return arg[len(opt) + 1:]
    return None


if __name__ == "__main__":
    main()
