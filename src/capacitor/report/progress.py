"""Progress of a long step on stderr: a live bar on a terminal; when stderr is a file or a
pipe (CI logs, ``capacitor run 2>run.log``), one plain line every :data:`LINE_EVERY_S`
seconds, so a long run is never silent and a log never fills with redraws; nothing with
``quiet``.

    with StepProgress(err_console, "simulating", "pools", quiet=False) as progress:
        ... progress.update(done, total, "large_h100")
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Seconds between two progress lines when stderr is not a terminal.
LINE_EVERY_S = 15.0


class StepProgress:
    """Counts ``unit`` (pools, rows) done out of a total while ``label`` runs."""

    def __init__(self, console: Console, label: str, unit: str, *, quiet: bool = False,
                 every_s: float = LINE_EVERY_S) -> None:
        self.console = console
        self.label = label
        self.unit = unit
        self.quiet = quiet
        self.every_s = every_s
        self.done = 0
        self.total: int | None = None
        self.description = ""
        self._bar: Progress | None = None
        self._task = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> StepProgress:
        self._started = time.perf_counter()
        if self.quiet:
            return self
        if self.console.is_terminal:  # the bar starts with the first update: bad input
            self._bar = Progress(TextColumn(f"[bold]{escape(self.label)}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn(escape(self.unit)),
                                 TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=self.console, transient=True)  # shows no bar
            self._task = self._bar.add_task("", total=self.total)
        else:
            self._thread = threading.Thread(target=self._lines, daemon=True)
            self._thread.start()
        return self

    def line(self) -> str:
        """The plain progress line: ``simulating: 3/5 pools, 12 s (large_h100)``."""
        total = "?" if self.total is None else f"{self.total:,}"
        elapsed = time.perf_counter() - self._started
        where = f" ({self.description})" if self.description else ""
        return f"{self.label}: {self.done:,}/{total} {self.unit}, {elapsed:.0f} s{where}"

    def _lines(self) -> None:
        while not self._stop.wait(self.every_s):
            self.console.print(escape(self.line()), soft_wrap=True, highlight=False)

    def update(self, done: int, total: int | None, description: str = "") -> None:
        """``done`` of ``total`` finished, the last one named ``description``."""
        self.done, self.total, self.description = done, total, description
        if self._bar is not None:
            if not self._bar.live.is_started:
                self._bar.start()
            self._bar.update(self._task, completed=done, total=total,
                             description=escape(description))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None and self._bar.live.is_started:
            self._bar.stop()


__all__ = ["LINE_EVERY_S", "StepProgress"]
