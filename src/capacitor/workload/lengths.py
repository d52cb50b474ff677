"""Token-length distributions for prompts and outputs, as int32 arrays.

Each function returns ``n`` token counts (int32, every value >= 1) and draws only from the
``np.random.Generator`` it is given:

- :func:`fixed`: every request the same length.
- :func:`uniform`: integers uniform on ``[min_tokens, max_tokens]`` (both ends included), as
  vLLM's ``benchmark_serving.py`` random dataset draws them.
- :func:`lognormal`: ``exp(N(mu, sigma**2))`` rounded to an integer and clipped to
  ``[min_tokens, max_tokens]``. It is parameterised by its arithmetic mean (before clipping),
  ``mean_tokens = exp(mu + sigma**2 / 2)``, and either ``sigma`` (the log-space standard
  deviation) or a 99th percentile ``p99_tokens = exp(mu + z99 * sigma)`` with z99 = 2.3263.
  Given the mean ``m`` and p99 ``q`` the two equations give ``sigma**2 - 2 z99 sigma +
  2 ln(q / m) = 0``, whose smaller root ``sigma = z99 - sqrt(z99**2 - 2 ln(q / m))`` is used
  (the larger one puts most of the mass far below the mean). A solution exists only for
  ``m < q <= m * exp(z99**2 / 2)`` (about 15 x the mean). Request-length distributions of
  production LLM traces are heavy-tailed and roughly lognormal (e.g. the Azure 2023 traces in
  ``../shared/data/traces``: code input mean 2,048 / p99 7,436 tokens).
- :func:`empirical`: resample (with replacement) from observed lengths, e.g. a trace's.

Clipping moves the realised mean a little (by the mass outside the bounds).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from statistics import NormalDist

import numpy as np

from capacitor.errors import ConfigError

#: The standard normal's 99th percentile.
Z99 = NormalDist().inv_cdf(0.99)
_INT32_MAX = int(np.iinfo(np.int32).max)


def _count(fn: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, Integral) or int(n) < 0:
        raise ConfigError(f"{fn}: bad n={n!r}; expected an integer >= 0")
    return int(n)


def _tokens(fn: str, name: str, value: object, minimum: float = 1) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or value < minimum or value > _INT32_MAX:
        raise ConfigError(f"{fn}: bad {name}={value!r}; expected a number of tokens >= "
                          f"{minimum:g} and <= {_INT32_MAX}")
    return float(value)


def _rng(fn: str, rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"{fn}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def fixed(n: int, tokens: int) -> np.ndarray:
    """``n`` copies of ``tokens`` (an integer >= 1)."""
    count = _count("fixed", n)
    if isinstance(tokens, bool) or not isinstance(tokens, Integral):
        raise ConfigError(f"fixed: bad tokens={tokens!r}; expected an integer >= 1")
    _tokens("fixed", "tokens", tokens)
    return np.full(count, int(tokens), np.int32)


def uniform(n: int, min_tokens: int, max_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integers uniform on ``[min_tokens, max_tokens]``, both ends included."""
    fn = "uniform"
    count = _count(fn, n)
    lo = _tokens(fn, "min_tokens", min_tokens)
    hi = _tokens(fn, "max_tokens", max_tokens)
    if not (lo.is_integer() and hi.is_integer()):
        raise ConfigError(f"{fn}: min_tokens={min_tokens!r} and max_tokens={max_tokens!r} "
                          "must be integers")
    if hi < lo:
        raise ConfigError(f"{fn}: bad max_tokens={max_tokens!r}; expected >= min_tokens="
                          f"{min_tokens!r}")
    return _rng(fn, rng).integers(int(lo), int(hi), size=count, endpoint=True, dtype=np.int32)


def lognormal_sigma(mean_tokens: float, p99_tokens: float) -> float:
    """The log-space sigma of the lognormal with arithmetic mean ``mean_tokens`` and 99th
    percentile ``p99_tokens`` (see the module docstring); ConfigError when none exists."""
    m = _tokens("lognormal", "mean_tokens", mean_tokens)
    q = _tokens("lognormal", "p99_tokens", p99_tokens)
    log_ratio = math.log(q / m)
    limit = m * math.exp(Z99 * Z99 / 2.0)
    if log_ratio <= 0.0 or Z99 * Z99 - 2.0 * log_ratio < 0.0:
        raise ConfigError(
            f"lognormal: bad p99_tokens={p99_tokens!r}; with mean_tokens={mean_tokens!r} a "
            f"lognormal needs mean < p99 <= {limit:.0f}"
        )
    return Z99 - math.sqrt(Z99 * Z99 - 2.0 * log_ratio)


def lognormal(n: int, mean_tokens: float, rng: np.random.Generator, *,
              sigma: float | None = None, p99_tokens: float | None = None,
              min_tokens: int = 1, max_tokens: int | None = None) -> np.ndarray:
    """``n`` lognormal token counts with arithmetic mean ``mean_tokens`` (before clipping),
    shaped by exactly one of ``sigma`` or ``p99_tokens``, rounded and clipped to
    ``[min_tokens, max_tokens]`` (``max_tokens`` None: no upper bound below 2**31)."""
    fn = "lognormal"
    count = _count(fn, n)
    mean = _tokens(fn, "mean_tokens", mean_tokens)
    if (sigma is None) == (p99_tokens is None):
        raise ConfigError(f"{fn}: give exactly one of sigma={sigma!r} or "
                          f"p99_tokens={p99_tokens!r}")
    if sigma is not None:
        s = _tokens(fn, "sigma", sigma, minimum=0)
        if s > 10:
            raise ConfigError(f"{fn}: bad sigma={sigma!r}; expected 0 <= sigma <= 10")
    else:
        s = lognormal_sigma(mean, p99_tokens)  # type: ignore[arg-type]
    lo = _tokens(fn, "min_tokens", min_tokens)
    hi = _INT32_MAX if max_tokens is None else _tokens(fn, "max_tokens", max_tokens)
    if hi < lo:
        raise ConfigError(f"{fn}: bad max_tokens={max_tokens!r}; expected >= min_tokens="
                          f"{min_tokens!r}")
    mu = math.log(mean) - s * s / 2.0
    x = _rng(fn, rng).lognormal(mu, s, count)
    np.rint(x, out=x)
    np.clip(x, math.ceil(lo), math.floor(hi), out=x)
    return x.astype(np.int32)


def empirical(n: int, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` lengths drawn with replacement from the observed ``values`` (each >= 1)."""
    fn = "empirical"
    count = _count(fn, n)
    pool = np.asarray(values)
    if pool.ndim != 1 or pool.size == 0 or not np.issubdtype(pool.dtype, np.integer):
        raise ConfigError(f"{fn}: values must be a non-empty 1-D integer array, got "
                          f"shape {pool.shape} dtype {pool.dtype}")
    if pool.min() < 1 or pool.max() > _INT32_MAX:
        raise ConfigError(f"{fn}: values must be token counts in [1, {_INT32_MAX}], got "
                          f"min {pool.min()} max {pool.max()}")
    return pool[_rng(fn, rng).integers(0, pool.size, size=count)].astype(np.int32)


__all__ = ["Z99", "empirical", "fixed", "lognormal", "lognormal_sigma", "uniform"]
