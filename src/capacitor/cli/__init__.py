"""The ``capacitor`` command line (typer): run, report, validate, calibrate, bench and scenario
checks here; plan (:mod:`capacitor.cli.plan`) and the catalogue listings
(:mod:`capacitor.cli.catalog`) in their own modules.

Exit codes everywhere: 0 success, 1 some rows failed (or an SLO was missed), 2 bad input.
Every :class:`~capacitor.errors.CapacitorError` becomes one red line on stderr and exit 2,
never a traceback. When stdout is not a terminal (a pipe, a file) tables are laid out at
their full width rather than cut at 80 columns.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from capacitor.cli.base import (  # noqa: F401  (EXIT_CODES, PIPE_WIDTH: the CLI's API)
    EXIT_CODES,
    PIPE_WIDTH,
    app,
    console,
    err_console,
    fail,
    scenario_app,
    user_errors,
)
from capacitor.errors import CalibrationError, ValidationDataError
from capacitor.report.error_tables import ape_table, pct
from capacitor.textio import check_output_file

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
    if report:  # before stdout: a reader that stops early (`| head`) leaves a whole run dir
        from capacitor.report.run_report import write_run_report

        info = write_run_report(out)
        with (out / "run.log").open("a", encoding="utf-8") as fh:
            fh.write(f"wrote report.html ({info.size_bytes / 1e6:.1f} MB) in "
                     f"{info.seconds:.2f} s wall, {info.cpu_seconds:.2f} s CPU\n")
    try:
        if as_json:
            print(result.summary.to_json(), end="")
        elif not quiet:
            print_run(console, result.summary)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped reading: the exit code is still the verdict
        console.on_broken_pipe()
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


# plan registers on ``app`` here (and the catalogues after bench): --help lists them in order
from capacitor.cli import plan as _plan  # noqa: E402,F401

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


from capacitor.cli import catalog as _catalog  # noqa: E402,F401


@scenario_app.command("schema")
@user_errors
def scenario_schema() -> None:
    """Print the scenario JSON Schema (every key with its description)."""
    from capacitor.scenario import scenario_json_schema

    print(json.dumps(scenario_json_schema(), indent=2))


@scenario_app.command("reference")
@user_errors
def scenario_reference_cmd() -> None:
    """Print the scenario reference in Markdown (docs/scenario-reference.md), generated from
    the JSON Schema."""
    from capacitor.scenario import scenario_json_schema
    from capacitor.scenario.reference import scenario_reference

    print(scenario_reference(scenario_json_schema()), end="")


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


