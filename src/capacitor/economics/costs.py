"""Unit costs: GPU-hours, energy, and what a token or a GPU-hour effectively costs.

All functions are plain arithmetic, vectorised over NumPy arrays (a scalar in gives a float
out), with the unit in every name:

- ``gpu_hour_cost_usd = num_gpus * hours * usd_per_gpu_hour`` (rented capacity);
- ``energy_mwh = sum(power_mw) / (3600 / interval_s)`` (a power time series to energy);
- ``energy_cost_usd = mwh * usd_per_mwh``;
- ``usd_per_million_tokens = cost_usd / (output_tokens / 1e6)``; with no tokens it is ``inf``
  when something was spent and ``nan`` when nothing was (there is no unit cost to report);
- ``effective_usd_per_gpu_hour = cost_usd / (gpus * hours)`` (what a contract, or any bill,
  comes to per GPU-hour);
- ``window_cost_usd``: a contract's share of its monthly fee for a simulated window (e.g. the
  peak hour): ``monthly_cost(month) * window_s / (days_in(month) * 86400)``.

Reference prices (``../shared/data/fleet/fleet_facts.csv``, third-party, dated): H100 on-demand
$2.23 (CoreWeave) to $3.50-5.00 (hyperscalers) per GPU-hour; reserved $1.79-1.85; AWS p5 list
$12.29 per GPU-hour; a self-hosted DeepSeek-V3 estimate of $0.20 per million output tokens
(LMSYS). They are inputs to choose, not defaults.
"""

from __future__ import annotations

import numpy as np

from capacitor.economics.contracts import Contract, days_in_month, monthly_cost
from capacitor.errors import ConfigError

SECONDS_PER_HOUR = 3600.0


def _nonneg(fn: str, name: str, value: object) -> np.ndarray:
    try:
        a = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{fn}: bad {name}={value!r}; expected numbers >= 0") from None
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ConfigError(f"{fn}: bad {name}={value!r}; expected finite numbers >= 0")
    return a


def _out(a: np.ndarray) -> float | np.ndarray:
    return float(a) if np.ndim(a) == 0 else a


def gpu_hour_cost_usd(num_gpus: float | np.ndarray, hours: float | np.ndarray,
                      usd_per_gpu_hour: float | np.ndarray) -> float | np.ndarray:
    """Cost of ``num_gpus`` GPUs for ``hours`` at ``usd_per_gpu_hour``."""
    fn = "gpu_hour_cost_usd"
    return _out(_nonneg(fn, "num_gpus", num_gpus) * _nonneg(fn, "hours", hours)
                * _nonneg(fn, "usd_per_gpu_hour", usd_per_gpu_hour))


def energy_mwh(power_mw: float | np.ndarray, interval_s: float) -> float:
    """Energy of a power series sampled every ``interval_s`` seconds (each sample the mean
    power over its interval), MWh."""
    fn = "energy_mwh"
    p = _nonneg(fn, "power_mw", power_mw)
    dt = _nonneg(fn, "interval_s", interval_s)
    if dt.ndim != 0:
        raise ConfigError(f"{fn}: bad interval_s={interval_s!r}; expected one number")
    if dt <= 0:
        raise ConfigError(f"{fn}: bad interval_s={interval_s!r}; expected a number > 0")
    # NOTE: divided by the intervals per hour (60 for minutes, exact) so that the fleet
    # summary's energy keeps the bytes it had when it summed minutes and divided by 60.
    return float(p.sum() / (SECONDS_PER_HOUR / dt))


def energy_cost_usd(mwh: float | np.ndarray, usd_per_mwh: float | np.ndarray) -> float | np.ndarray:
    """Cost of ``mwh`` megawatt-hours at ``usd_per_mwh``."""
    fn = "energy_cost_usd"
    return _out(_nonneg(fn, "mwh", mwh) * _nonneg(fn, "usd_per_mwh", usd_per_mwh))


def usd_per_million_tokens(cost_usd: float | np.ndarray,
                           output_tokens: float | np.ndarray) -> float | np.ndarray:
    """``cost_usd`` per million ``output_tokens`` (inf / nan with no tokens: see module doc)."""
    fn = "usd_per_million_tokens"
    cost = _nonneg(fn, "cost_usd", cost_usd)
    tokens = _nonneg(fn, "output_tokens", output_tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(cost / (tokens / 1e6))


def effective_usd_per_gpu_hour(cost_usd: float | np.ndarray, gpus: float | np.ndarray,
                               hours: float | np.ndarray) -> float | np.ndarray:
    """What ``cost_usd`` comes to per GPU-hour over ``gpus`` GPUs for ``hours``."""
    fn = "effective_usd_per_gpu_hour"
    cost = _nonneg(fn, "cost_usd", cost_usd)
    gpu_hours = _nonneg(fn, "gpus", gpus) * _nonneg(fn, "hours", hours)
    if np.any(gpu_hours <= 0):
        raise ConfigError(f"{fn}: bad gpus={gpus!r} x hours={hours!r}; expected > 0 GPU-hours")
    return _out(cost / gpu_hours)


def window_cost_usd(contract: Contract, month: str, window_s: float) -> float:
    """The share of ``contract``'s fee for ``month`` that a window of ``window_s`` seconds
    inside that month carries (the fee spread evenly over the month's seconds)."""
    seconds = float(_nonneg("window_cost_usd", "window_s", window_s))
    return monthly_cost(contract, month) * seconds / (days_in_month(month) * 86_400.0)


__all__ = [
    "SECONDS_PER_HOUR",
    "effective_usd_per_gpu_hour",
    "energy_cost_usd",
    "energy_mwh",
    "gpu_hour_cost_usd",
    "usd_per_million_tokens",
    "window_cost_usd",
]
