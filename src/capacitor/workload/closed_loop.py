"""Closed loop: ``concurrency`` clients, each sending its next request when the last returns.

This is how vLLM's ``benchmark_serving.py --max-concurrency C`` runs with the random dataset
and ``ignore_eos``: all ``num_requests`` prompts are made up front and a semaphore of ``C``
lets a new one go as soon as one finishes. In :class:`RequestBatch` terms: every
``arrival_s`` is 0, ``concurrency = C`` (the engine releases request ``j >= C`` at the
``(j - C + 1)``-th completion), and the first ``num_warmup_requests`` (by index) are
excluded from the metrics but still sent.

Input lengths are uniform integers in ``[round(min_length_fraction * isl), isl]`` (halves
round up, at least 1), output lengths likewise for ``osl``; both fixed when the fraction is
1.0. No prefix sharing (random token prompts). A request with ``prompt + output >
max_model_len`` is refused at once by the server (``rejected``).
"""

from __future__ import annotations

import math

import numpy as np

from capacitor.engine.requests import RequestBatch
from capacitor.errors import ConfigError
from capacitor.workload.stages import require_int as _int


def _fraction(value: object) -> float:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        f = math.nan
    if isinstance(value, bool) or not (0.0 < f <= 1.0):
        raise ConfigError(f"min_length_fraction: bad value {value!r}; expected a number in (0, 1]")
    return f


def _lengths(rng: np.random.Generator, full: int, fraction: float, n: int) -> np.ndarray:
    low = max(1, min(full, int(math.floor(fraction * full + 0.5))))
    if low == full:
        return np.full(n, full, np.int32)
    return rng.integers(low, full, size=n, endpoint=True).astype(np.int32)


def generate(
    *,
    concurrency: int,
    num_requests: int,
    isl: int,
    osl: int,
    min_length_fraction: float = 1.0,
    num_warmup_requests: int = 0,
    seed: int,
    max_model_len: int,
) -> RequestBatch:
    """``num_requests`` closed-loop requests for ``concurrency`` clients (see module docstring).

    ``num_requests`` may be below ``concurrency`` (then every request starts at once);
    ``num_warmup_requests`` must leave at least one measured request.
    """
    c = _int("concurrency", concurrency, 1)
    n = _int("num_requests", num_requests, 1)
    isl_ = _int("isl", isl, 1)
    osl_ = _int("osl", osl, 1)
    max_len = _int("max_model_len", max_model_len, 1)
    frac = _fraction(min_length_fraction)
    warm = _int("num_warmup_requests", num_warmup_requests, 0)
    if warm >= n:
        raise ConfigError(
            f"num_warmup_requests: bad value {num_warmup_requests!r}; expected fewer than "
            f"num_requests ({n}) so that some requests are measured"
        )
    rng = np.random.default_rng(seed)
    prompt = _lengths(rng, isl_, frac, n)
    output = _lengths(rng, osl_, frac, n)
    batch = RequestBatch.simple(
        np.zeros(n, np.float64), prompt, output, concurrency=c, num_warmup=warm
    )
    batch.rejected = prompt.astype(np.int64) + output > max_len
    return batch


__all__ = ["generate"]
