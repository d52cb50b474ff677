"""What every ``capacitor`` command shares: the typer apps, the consoles, the exit codes and
the one-line error handling (:func:`fail`, :func:`user_errors`)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from capacitor.errors import CapacitorError

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

class _Console(Console):
    """A rich Console whose reader may stop reading (``capacitor run | head``): the rest of
    its output is dropped and the command goes on to its own exit code (rich's default exits
    1, which would say that an SLO was missed)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())
        except (OSError, ValueError):  # not a file descriptor: nothing more is written anyway
            pass


console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)

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
