"""Weighted percentiles: the one definition the summary's latency and workflow figures use
(NumPy's linear method; see :func:`weighted_percentiles`)."""

from __future__ import annotations

import math

import numpy as np

#: The percentiles summaries report.
PCTS = (50, 90, 99)


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, pcts=PCTS) -> list[float]:
    """Percentiles of ``values`` where each value counts ``weight`` times; NaN when empty.

    The definition is NumPy's default (``numpy.percentile(..., method="linear")``, Hyndman
    and Fan's type 7), the one vLLM's ``benchmark_serving`` and inference-perf report and
    ``capacitor validate`` uses: the sample sorted, the ``p``-th percentile at the 0-based
    position ``h = (n - 1) * p / 100``, interpolated linearly between the order statistics
    ``floor(h)`` and ``floor(h) + 1``. Here ``n`` is the total weight and order statistic
    ``i`` is the value whose cumulative weight first exceeds ``i``, so with integer weights
    the result is ``numpy.percentile(numpy.repeat(values, weights), pcts)`` to the last bit
    (the same index and interpolation arithmetic as NumPy's), without building the repeat::

        values  1   2   3   4      weights 1 1 1 2  ->  sample 1 2 3 4 4
        p50: h = 2    -> 3;   p90: h = 3.6 -> 4;   p25: h = 1 -> 2

    A pool's requests weigh its scale (replicas / simulated replicas), which need not be
    an integer; the same formula applies.
    """
    ok = np.isfinite(values) & (weights > 0)
    v, w = values[ok], weights[ok]
    if v.size == 0:
        return [math.nan] * len(pcts)
    order = np.argsort(v, kind="stable")
    v, cw = v[order], np.cumsum(w[order])
    n = cw[-1]
    out = []
    for p in pcts:
        q = p / 100.0
        h = (n - 1.0) * q  # NumPy's position for "linear", evaluated the same way
        below = math.floor(h)
        if h >= n - 1:
            a = b = v[-1]
        elif h < 0:
            a = b = v[0]
        else:
            a = v[min(int(np.searchsorted(cw, below, side="right")), v.size - 1)]
            b = v[min(int(np.searchsorted(cw, below + 1, side="right")), v.size - 1)]
        t = h - below
        # NumPy's _lerp: from the nearer end, so t = 1 gives b exactly
        out.append(float(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t))
    return out


__all__ = ["PCTS", "weighted_percentiles"]
