"""The Pareto front of (interactivity, throughput) points, as InferenceMAX draws it:
throughput per GPU against tokens per second per user, where more of both is better.

A point is on the front when no other point is at least as good on both axes and better on
one. Walking the points from the highest interactivity down, a point is on the front when
its throughput beats every point seen so far.
"""

from __future__ import annotations

import numpy as np


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated when more ``x`` and more ``y`` are better, in
    ascending ``x`` (the order to draw the front's line). Points with a NaN coordinate are
    never on it; of exact duplicates, the first is kept.

    Example: ``x = [1, 2, 3, 4, 2]``, ``y = [5, 4, 1, 2, 3]`` -> ``[0, 1, 3]`` ((2, 3) is
    beaten by (2, 4); (3, 1) by (4, 2)).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x has shape {x.shape}, y {y.shape}")
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    # highest x first; among equal x, highest y first; then the original order
    order = ok[np.lexsort((ok, -y[ok], -x[ok]))]
    front = []
    best_y = -np.inf
    for i in order:
        if y[i] > best_y:
            front.append(i)
            best_y = y[i]
    return np.asarray(front[::-1], np.int64)


__all__ = ["pareto_front"]
