"""Typed cells of one experiments row: :class:`Row`, its parsers, and :class:`RowError`
(one line naming the column and the value)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from capacitor.errors import ValidationDataError

REQUIRED_COLUMNS = ("id", "model", "hardware", "workload")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class RowError(ValidationDataError):
    """One experiments row cannot run; the message names the column and its value."""

    def __init__(self, column: str, value: object, reason: str) -> None:
        shown = f"{column}={value!r}" if value not in ("", None) else f"{column} (blank)"
        super().__init__(f"{shown}: {reason}")
        self.column = column


def integer(minimum: int = 1, maximum: int = 2**31 - 1) -> Callable[[str], int]:
    """Parser of an integer cell (``128`` or ``128.0``) in [``minimum``, ``maximum``] (the
    default maximum is the simulator's 32-bit counts)."""

    def parse(text: str) -> int:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value.is_integer():
            raise ValueError("not an integer")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if value > maximum:
            raise ValueError(f"must be <= {maximum:,}")
        return int(value)

    return parse


def fraction(text: str) -> float:
    """Parser of a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not 0.0 < value <= 1.0:
        raise ValueError("must be in (0, 1]")
    return value


def unit_interval(text: str) -> float:
    """Parser of a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be in [0, 1]")
    return value


def at_least_one(text: str) -> float:
    """Parser of a finite number >= 1 (a mean count of rounds)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1.0):
        raise ValueError("expected a number >= 1")
    return value


def boolean(text: str) -> bool:
    """Parser of true/false, 1/0, yes/no (any case)."""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise ValueError("not a boolean (true/false, 1/0, yes/no)")


def one_of(options: tuple[str, ...]) -> Callable[[str], str]:
    """Parser of a case-insensitive choice; returns it lower-cased."""

    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError(f"unknown; expected one of {', '.join(options)}")
        return text.lower()

    return parse


COUNT, COUNT0 = integer(1), integer(0)
Parser = Callable[[str], Any]


class Row:
    """Typed access to the cells of one experiments row (a missing column reads as blank)."""

    def __init__(self, cells: dict[str, str], base_dir: str | Path) -> None:
        self.cells = cells
        self.base_dir = Path(base_dir)
        self.workload = ""

    def text(self, col: str) -> str:
        return self.cells.get(col, "")

    def get(self, col: str, parse: Parser = str, default: Any = None, *, required: bool = False):
        """``parse(cell)``, or ``default`` when blank; RowError naming the column otherwise."""
        text = self.text(col)
        if not text:
            if required:
                who = "every row" if col in REQUIRED_COLUMNS else f"workload={self.workload}"
                raise RowError(col, "", f"missing (needed by {who})")
            return default
        try:
            return parse(text)
        except ValueError as exc:
            raise RowError(col, text, str(exc)) from None

    def model_ref(self) -> str:
        """``model`` as given, or as a path relative to the experiments file when one exists."""
        ref = self.get("model", required=True)
        here, there = Path(ref), self.base_dir / ref
        if not here.exists() and (there.is_file() or (there / "config.json").is_file()):
            return str(there)
        return ref


__all__ = ["COUNT", "COUNT0", "REQUIRED_COLUMNS", "Parser", "Row", "RowError", "boolean",
           "fraction", "integer", "one_of", "unit_interval", "at_least_one"]
