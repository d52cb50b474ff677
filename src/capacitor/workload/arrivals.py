"""Open-loop arrival processes: when requests are sent, as sorted float64 seconds.

Every generator returns the send times of one window as a sorted float64 array in
``[0, duration_s)`` (seconds from the start of the window) and draws only from the
``np.random.Generator`` it is given, so the same seed gives the same stream. The models:

- :func:`poisson`: a homogeneous Poisson process of ``rate_rps``: the count is
  Poisson(``rate_rps * duration_s``) and, given the count, the times are independent uniforms
  on the window (the standard construction; exact, no per-event loop).
- :func:`constant`: evenly spaced sends, request ``k`` at ``k / rate_rps``.
- :func:`diurnal`: a non-homogeneous Poisson process whose rate follows a 24 h sinusoid,
  ``mean_rate_rps * (1 + (peak_to_mean - 1) * cos(2 pi (t - peak_hour * 3600) / 86400))``,
  with ``t`` in seconds since midnight; it peaks at ``peak_hour`` at ``peak_to_mean`` times the
  daily mean and its 24 h average is ``mean_rate_rps``. Sampled by thinning (Lewis and Shedler
  1979): a Poisson process at the window's maximum rate, each point kept with probability
  ``rate(t) / max_rate``. ``peak_to_mean`` is in ``[1, 2]`` so the rate never goes negative.
- :func:`bursty`: a two-state Markov-modulated Poisson process (MMPP): a *gap* state sending at
  ``rate_rps`` and a *burst* state sending at ``burst_rate_rps``, with exponentially distributed
  sojourns of mean ``mean_gap_s`` and ``mean_burst_s``. The initial state is drawn from the
  stationary distribution (P(burst) = mean_burst / (mean_burst + mean_gap)), so the process is
  stationary from t = 0 and its long-run rate is the time-weighted average
  (:func:`mmpp_mean_rate_rps`).
- :func:`growth_factor` / :func:`apply_growth`: compound monthly demand growth,
  ``(1 + monthly_growth_pct / 100) ** months``.

Fixed request counts per stage (the ``validate`` contract) live in
:mod:`capacitor.workload.stages`; this module is for scenario demand, where the count is random.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from capacitor.errors import ConfigError

SECONDS_PER_DAY = 86_400.0


def _number(fn: str, name: str, value: object, *, minimum: float | None = None,
            maximum: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite float within bounds, else a one-line ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(f"{fn}: bad {name}={value!r}; expected a finite number")
    x = float(value)
    if minimum is not None and (x <= minimum if strict else x < minimum):
        op = ">" if strict else ">="
        raise ConfigError(f"{fn}: bad {name}={value!r}; expected {op} {minimum:g}")
    if maximum is not None and x > maximum:
        raise ConfigError(f"{fn}: bad {name}={value!r}; expected <= {maximum:g}")
    return x


def _rng(fn: str, rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"{fn}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _clip_below(t: np.ndarray, duration_s: float) -> np.ndarray:
    """Keep every time strictly below ``duration_s`` after float rounding (in place)."""
    np.minimum(t, np.nextafter(duration_s, -np.inf), out=t)
    return t


def poisson(rate_rps: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Homogeneous Poisson send times at ``rate_rps`` over ``[0, duration_s)``, sorted."""
    rate = _number("poisson", "rate_rps", rate_rps, minimum=0.0)
    duration = _number("poisson", "duration_s", duration_s, minimum=0.0, strict=True)
    gen = _rng("poisson", rng)
    n = int(gen.poisson(rate * duration))
    t = gen.random(n)
    t *= duration
    t.sort()
    return _clip_below(t, duration)


def constant(rate_rps: float, duration_s: float,
             rng: np.random.Generator | None = None) -> np.ndarray:
    """Evenly spaced send times ``k / rate_rps`` in ``[0, duration_s)`` (``rng`` is unused;
    it is accepted so every process has the same call shape)."""
    rate = _number("constant", "rate_rps", rate_rps, minimum=0.0)
    duration = _number("constant", "duration_s", duration_s, minimum=0.0, strict=True)
    if rate == 0.0:
        return np.zeros(0, np.float64)
    n = int(math.ceil(rate * duration))
    t = np.arange(n, dtype=np.float64) / rate
    return t[t < duration]


def diurnal_rate_rps(t_s: np.ndarray | float, mean_rate_rps: float, peak_to_mean: float,
                     peak_hour: float) -> np.ndarray:
    """The diurnal rate at ``t_s`` seconds since midnight (vectorised; see module docstring)."""
    amplitude = peak_to_mean - 1.0
    phase = 2.0 * np.pi * (np.asarray(t_s, np.float64) - peak_hour * 3600.0) / SECONDS_PER_DAY
    return mean_rate_rps * (1.0 + amplitude * np.cos(phase))


def diurnal(mean_rate_rps: float, peak_to_mean: float, peak_hour: float, start_s: float,
            duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Send times of the sinusoidal 24 h process over ``[start_s, start_s + duration_s)``,
    returned relative to ``start_s`` (so in ``[0, duration_s)``), sorted.

    ``start_s`` is seconds since midnight of the first day (it may exceed 86,400 for later
    days); ``peak_hour`` is the hour of day of the maximum, in ``[0, 24)``.
    """
    fn = "diurnal"
    mean = _number(fn, "mean_rate_rps", mean_rate_rps, minimum=0.0)
    p2m = _number(fn, "peak_to_mean", peak_to_mean, minimum=1.0, maximum=2.0)
    hour = _number(fn, "peak_hour", peak_hour, minimum=0.0)
    if hour >= 24.0:
        raise ConfigError(f"{fn}: bad peak_hour={peak_hour!r}; expected 0 <= peak_hour < 24")
    start = _number(fn, "start_s", start_s)
    duration = _number(fn, "duration_s", duration_s, minimum=0.0, strict=True)
    gen = _rng(fn, rng)
    end = start + duration
    # The maximum over the window: the peak if a daily peak falls inside it, else an endpoint
    # (between two peaks the cosine falls to its trough and rises again).
    peak_s = hour * 3600.0
    first_peak = peak_s + SECONDS_PER_DAY * math.ceil((start - peak_s) / SECONDS_PER_DAY)
    if first_peak <= end:
        max_rate = mean * p2m
    else:
        max_rate = float(np.max(diurnal_rate_rps(np.array([start, end]), mean, p2m, hour)))
    if max_rate <= 0.0:
        return np.zeros(0, np.float64)
    candidates = poisson(max_rate, duration, gen)
    keep = gen.random(candidates.shape[0]) * max_rate < diurnal_rate_rps(
        candidates + start, mean, p2m, hour
    )
    return candidates[keep]


def mmpp_mean_rate_rps(rate_rps: float, burst_rate_rps: float, mean_burst_s: float,
                       mean_gap_s: float) -> float:
    """Long-run rate of the two-state MMPP: the sojourn-time-weighted average of the rates."""
    return (rate_rps * mean_gap_s + burst_rate_rps * mean_burst_s) / (mean_gap_s + mean_burst_s)


def mmpp_states(mean_burst_s: float, mean_gap_s: float, duration_s: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The MMPP's state path over ``[0, duration_s)``: ``(boundaries_s, in_burst)`` where
    sojourn ``k`` spans ``[boundaries_s[k], boundaries_s[k + 1])`` and ``in_burst[k]`` says
    whether it is a burst. Stationary start; sojourns exponential."""
    p_burst = mean_burst_s / (mean_burst_s + mean_gap_s)
    first_burst = bool(rng.random() < p_burst)
    means = np.array([mean_gap_s, mean_burst_s]) if not first_burst else np.array(
        [mean_burst_s, mean_gap_s])
    chunk = 2 * int(duration_s / (mean_burst_s + mean_gap_s)) + 16
    lengths: list[np.ndarray] = []
    total = 0.0
    while total < duration_s:
        # alternate states: even sojourns have the first state's mean, odd ones the other's
        draw = rng.exponential(1.0, chunk) * np.resize(means, chunk)
        lengths.append(draw)
        total += float(draw.sum())
    cuts = np.concatenate([[0.0], np.cumsum(np.concatenate(lengths))])
    k = int(np.searchsorted(cuts, duration_s, side="left"))  # cuts[k] >= duration_s
    bounds = np.minimum(cuts[: k + 1], duration_s)
    in_burst = (np.arange(k) % 2 == 0) == first_burst
    return bounds, in_burst


def bursty(rate_rps: float, burst_rate_rps: float, mean_burst_s: float, mean_gap_s: float,
           duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Send times of a two-state MMPP (see module docstring) over ``[0, duration_s)``, sorted.

    ``rate_rps`` is the rate between bursts, ``burst_rate_rps`` the rate inside one.
    """
    fn = "bursty"
    base = _number(fn, "rate_rps", rate_rps, minimum=0.0)
    burst = _number(fn, "burst_rate_rps", burst_rate_rps, minimum=0.0)
    mb = _number(fn, "mean_burst_s", mean_burst_s, minimum=0.0, strict=True)
    mg = _number(fn, "mean_gap_s", mean_gap_s, minimum=0.0, strict=True)
    duration = _number(fn, "duration_s", duration_s, minimum=0.0, strict=True)
    gen = _rng(fn, rng)
    bounds, in_burst = mmpp_states(mb, mg, duration, gen)
    starts = bounds[:-1]
    lengths = np.diff(bounds)
    counts = gen.poisson(np.where(in_burst, burst, base) * lengths)
    t = np.repeat(starts, counts) + gen.random(int(counts.sum())) * np.repeat(lengths, counts)
    t.sort()
    return _clip_below(t, duration)


def growth_factor(monthly_growth_pct: float, months: float | np.ndarray) -> float | np.ndarray:
    """Compound growth after ``months`` at ``monthly_growth_pct`` % a month:
    ``(1 + pct / 100) ** months`` (10 %/month for 12 months is 1.1**12 = 3.138)."""
    pct = _number("growth_factor", "monthly_growth_pct", monthly_growth_pct, minimum=-100.0,
                  strict=True)
    m = np.asarray(months, np.float64)
    if not np.all(np.isfinite(m)):
        raise ConfigError(f"growth_factor: bad months={months!r}; expected finite numbers")
    out = (1.0 + pct / 100.0) ** m
    return float(out) if out.ndim == 0 else out


def apply_growth(rate_rps: float | np.ndarray, monthly_growth_pct: float,
                 months: float | np.ndarray) -> float | np.ndarray:
    """``rate_rps`` grown for ``months`` months at ``monthly_growth_pct`` % a month."""
    rate = np.asarray(rate_rps, np.float64)
    if not np.all(np.isfinite(rate)) or np.any(rate < 0):
        raise ConfigError(f"apply_growth: bad rate_rps={rate_rps!r}; expected finite rates >= 0")
    out = rate * growth_factor(monthly_growth_pct, months)
    return float(out) if np.ndim(out) == 0 else out


__all__ = [
    "SECONDS_PER_DAY",
    "apply_growth",
    "bursty",
    "constant",
    "diurnal",
    "diurnal_rate_rps",
    "growth_factor",
    "mmpp_mean_rate_rps",
    "mmpp_states",
    "poisson",
]
