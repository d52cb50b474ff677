"""Empirical CDFs of weighted samples, thinned to a fixed number of points for a chart.

A simulated request stands for ``scale`` requests of the fleet (its deployment's replicas /
simulated replicas), so a tier's latency distribution weighs each request by its scale:

    F(x) = (sum of the weights of the samples <= x) / (sum of all weights)

The chart needs the curve, not every sample: of millions of requests, :func:`cdf_points`
keeps the samples where ``F`` first reaches ``k / max_points`` (``k = 1 .. max_points``),
so the steps between kept points are at most ``1 / max_points`` high. A report of the
default run stays small (a few thousand points per tier) whatever the number of requests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cdf_points(groups: Sequence[tuple[np.ndarray, float]],
               max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """``(x, F(x))`` of the weighted empirical CDF of samples given as ``(values, weight)``
    groups (every value of a group weighs ``weight``), ascending in ``x``.

    Every distinct value is a point when there are at most ``max_points`` of them; otherwise
    the first value at which ``F`` reaches each level ``k / max_points``. ``F`` is the
    weighted fraction of the samples ``<= x``, so the last point has ``F = 1``. NaN and
    infinite values (requests that never finished) and groups of weight <= 0 are dropped;
    no samples give two empty arrays.

    Example: one group ``([40, 10, 30, 20], 1.0)`` gives ``x = [10, 20, 30, 40]``,
    ``F = [0.25, 0.5, 0.75, 1.0]``.
    """
    if max_points < 1:
        raise ValueError(f"max_points={max_points}: must be at least 1")
    # NOTE: for performance, each group is sorted on its own (NumPy sorts floats far faster
    # than it argsorts them) and the sorted runs are merged by a stable argsort, which
    # finds the runs and merges them in linear time per run.
    runs, weights = [], []
    for values, weight in groups:
        values = np.asarray(values)
        values = np.sort(values[np.isfinite(values)])
        if weight > 0 and values.size:
            runs.append(values)
            weights.append(np.full(values.size, float(weight)))
    if not runs:
        return np.empty(0), np.empty(0)
    x = np.concatenate(runs)
    w = np.concatenate(weights)
    if len(runs) > 1:
        order = np.argsort(x, kind="stable")
        x, w = x[order], w[order]
    x = x.astype(np.float64)
    cum = np.cumsum(w)
    frac = cum / cum[-1]
    last_of_run = np.append(x[1:] != x[:-1], True)  # F(x) counts every sample equal to x
    x, frac = x[last_of_run], frac[last_of_run]
    frac[-1] = 1.0  # the cumulative sum may round just below its own total
    if x.size <= max_points:
        return x, frac
    levels = np.arange(1, max_points + 1) / max_points
    idx = np.unique(np.minimum(np.searchsorted(frac, levels - 1e-12), x.size - 1))
    return x[idx], frac[idx]


__all__ = ["cdf_points"]
