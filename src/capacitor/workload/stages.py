"""Load stages: ``RATE@SECONDS;RATE@SECONDS`` and the arrival times they produce.

A stage sends requests at ``rate_rps`` for ``duration_s`` seconds; stages run back to back.
Per the project's ``validate`` contract each stage sends exactly ``round(rate * seconds)``
requests (half rounds up), all inside ``[stage_start, stage_end)``:

- ``poisson``: a Poisson process conditioned on its count, i.e. the count's arrival times are
  independent uniforms on the stage window, sorted;
- ``constant``: evenly spaced, request ``k`` of the stage at ``stage_start + k / rate``.

How this differs from the tool that made the measured runs (kubernetes-sigs/inference-perf,
``inference_perf/loadgen/load_generator.py`` and ``load_timer.py``, read 2026): it sends
``int(rate * duration)`` requests per stage (floor, not round; equal for integral products),
starts each stage one second after the previous stage's requests have *all* finished (a
drain gap that depends on the server, not modelled here), and in recent versions its
``constant`` timer draws exponential gaps rescaled to end exactly at the stage end (a random
spacing like ``poisson`` here, not an even one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from capacitor.errors import ConfigError

ARRIVALS = ("poisson", "constant")
_FORM = "RATE@SECONDS;RATE@SECONDS (e.g. 2.5@600;6@600), rate >= 0, seconds > 0"


@dataclass(frozen=True)
class Stage:
    """``rate_rps`` requests per second for ``duration_s`` seconds."""

    rate_rps: float
    duration_s: float


def require_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (integral floats accepted), else a ConfigError
    naming the setting ``name`` (a validate column) and the value."""
    out: int | None = None
    if isinstance(value, Integral) and not isinstance(value, bool):
        out = int(value)
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    if out is None or out < minimum:
        raise ConfigError(f"{name}: bad value {value!r}; expected an integer >= {minimum}")
    return out


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"stages: bad value {text!r} ({why}); expected {_FORM}")


def _number(part: str, text: str, what: str) -> float:
    try:
        value = float(part)
    except ValueError:
        raise _bad(text, f"{what} {part.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(text, f"{what} {part.strip()!r} is not finite")
    return value


def parse_stages(text: str) -> list[Stage]:
    """Parse ``RATE@SECONDS;RATE@SECONDS`` (whitespace anywhere, one trailing ``;`` allowed).

    Raises :class:`ConfigError` naming ``stages``, the value and the expected form.
    """
    if not isinstance(text, str) or not text.strip():
        raise _bad(str(text) if text is not None else "", "empty")
    parts = text.strip().split(";")
    if parts[-1].strip() == "" and len(parts) > 1:
        parts = parts[:-1]
    stages: list[Stage] = []
    for part in parts:
        if part.count("@") != 1:
            raise _bad(text, f"stage {part.strip()!r} is not RATE@SECONDS")
        rate_text, seconds_text = part.split("@")
        rate = _number(rate_text, text, "rate")
        seconds = _number(seconds_text, text, "seconds")
        if rate < 0:
            raise _bad(text, f"rate {rate_text.strip()!r} is negative")
        if seconds <= 0:
            raise _bad(text, f"seconds {seconds_text.strip()!r} must be > 0")
        stages.append(Stage(rate, seconds))
    return stages


def stage_counts(stages: Sequence[Stage]) -> list[int]:
    """Requests each stage sends: ``round(rate * seconds)``, halves rounded up."""
    return [int(math.floor(s.rate_rps * s.duration_s + 0.5)) for s in stages]


def stage_starts(stages: Sequence[Stage]) -> np.ndarray:
    """Start time of each stage, seconds (stages run back to back from t = 0)."""
    durations = np.array([s.duration_s for s in stages], np.float64)
    return np.concatenate(([0.0], np.cumsum(durations)[:-1])) if len(stages) else durations


def arrival_times(stages: Sequence[Stage], arrival: str, rng: np.random.Generator) -> np.ndarray:
    """Send times of every request of every stage (float64, sorted, seconds from t = 0).

    ``arrival`` is ``poisson`` or ``constant`` (see the module docstring); ``rng`` is used
    only by ``poisson``.
    """
    kind = arrival.strip().lower() if isinstance(arrival, str) else arrival
    if kind not in ARRIVALS:
        valid = ", ".join(ARRIVALS)
        raise ConfigError(f"arrival: unknown value {arrival!r}; expected one of {valid}")
    counts = np.array(stage_counts(stages), np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.float64)
    starts = stage_starts(stages)
    durations = np.array([s.duration_s for s in stages], np.float64)
    rates = np.array([s.rate_rps for s in stages], np.float64)
    # NOTE: filled stage by stage in place (no per-request temporaries) for memory
    bounds = np.concatenate([[0], np.cumsum(counts)])
    if kind == "constant":
        t = np.empty(total, np.float64)
        for k in range(len(stages)):
            a, b = bounds[k], bounds[k + 1]
            t[a:b] = np.arange(b - a, dtype=np.float64)
            t[a:b] /= rates[k]
            t[a:b] += starts[k]
        return t
    # poisson: uniforms on each window; the windows are disjoint and ordered, so one global
    # sort sorts every stage.
    t = rng.random(total)
    for k in range(len(stages)):
        a, b = bounds[k], bounds[k + 1]
        t[a:b] *= durations[k]
        t[a:b] += starts[k]
        # keep t < stage end after rounding
        np.minimum(t[a:b], np.nextafter(starts[k] + durations[k], -np.inf), out=t[a:b])
    t.sort()
    return t


__all__ = [
    "ARRIVALS",
    "Stage",
    "arrival_times",
    "parse_stages",
    "require_int",
    "stage_counts",
    "stage_starts",
]
