"""What a replica simulation returns: per-request client-visible times and ITL histograms.

Times are client-visible seconds on the run's clock: ``send_s`` is when the client sent the
request (after any session or closed-loop wait), ``first_token_s`` / ``finish_s`` when the
first / last token reached it (engine time plus egress). A rejected request has
``completed = False``, ``first_token_s = nan`` and ``finish_s = send_s``.

Inter-token latencies are not stored per token (a million requests have hundreds of
millions of gaps). Every gap is added to a log-spaced histogram whose bins are
``ITL_BIN_REL_WIDTH`` wide relative to their value, together with the exact sum and count,
so the mean is exact and quantiles are exact to within that relative width. The width,
0.1%, is far below any difference the twin resolves, and keeps a class's histogram (24,000
bins) small enough to stay in cache while the kernel adds runs of similar gaps to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ITL_MIN_S = 1e-6  # lower edge of the first histogram bin
ITL_BINS_PER_E = 1_000.0  # bins per factor e: relative bin width ~1e-3
ITL_NUM_BINS = 24_000  # covers 1 us .. ~2.6e4 s
ITL_BIN_REL_WIDTH = 1.0 / ITL_BINS_PER_E
# lower edge of every bin and the upper edge of the last, seconds (read-only)
ITL_EDGES_S = ITL_MIN_S * np.exp(np.arange(ITL_NUM_BINS + 1) / ITL_BINS_PER_E)
ITL_EDGES_S.flags.writeable = False


def itl_bin_value_s(index: np.ndarray) -> np.ndarray:
    """Geometric centre of histogram bin ``index``, seconds."""
    return ITL_MIN_S * np.exp((np.asarray(index, np.float64) + 0.5) / ITL_BINS_PER_E)


def latency_bins(seconds: np.ndarray) -> np.ndarray:
    """Histogram bin of each latency (seconds; the same log-spaced bins as the ITL
    histograms, so any latency histogram is exact to ``ITL_BIN_REL_WIDTH``)."""
    s = np.asarray(seconds, np.float64)
    b = np.log(np.fmax(s, ITL_MIN_S) / ITL_MIN_S)  # fmax: NaN -> the first bin
    b *= ITL_BINS_PER_E
    np.clip(b, 0, ITL_NUM_BINS - 1, out=b)
    return b.astype(np.int64)  # truncation is the floor here (b >= 0)


@dataclass(slots=True)
class EngineResult:
    """Outcome of one replica run.

    Attributes:
        send_s, first_token_s, finish_s: per request, client-visible seconds (float64).
        completed: request generated all its output tokens (bool).
        num_preemptions: times the request was preempted (recomputed) (int32).
        num_cached_tokens: prompt tokens served from the prefix cache at first schedule.
        itl_hist: int64[num_classes, ITL_NUM_BINS] gap counts per ITL class.
        itl_sum_s: float64[num_classes] exact sum of gaps per class.
        itl_count: int64[num_classes] number of gaps per class.
        num_steps: engine steps executed.
        busy_s: total duration of those steps.
        max_blocks_used: peak KV blocks held by running requests on any replica.
        status: per request (int8): 1 completed, 2 rejected (longer than max_model_len),
            3 shed by admission control, 4 lost to a replica failure (see engine.status).
        replica: per request, the replica the router chose (-1: never routed).
        busy_bins: per replica and time bin, seconds spent in engine steps.
        seq_bins: the same, each step weighted by its number of sequences (batch
            occupancy x time).
        decode_replica, kv_arrival_s: disaggregated deployments only
            (:mod:`capacitor.engine.disaggregated`): per request, the decode replica and
            when its KV reached the decode pool (-1 / NaN: never).
    """

    send_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    completed: np.ndarray
    num_preemptions: np.ndarray
    num_cached_tokens: np.ndarray
    itl_hist: np.ndarray
    itl_sum_s: np.ndarray
    itl_count: np.ndarray
    num_steps: int
    busy_s: float
    max_blocks_used: int
    status: np.ndarray | None = None
    replica: np.ndarray | None = None
    busy_bins: np.ndarray | None = None
    seq_bins: np.ndarray | None = None
    decode_replica: np.ndarray | None = None
    kv_arrival_s: np.ndarray | None = None

    def itl_quantiles_s(self, qs: list[float], itl_class: int = 0) -> np.ndarray:
        """Quantiles (0..1) of the inter-token gaps of one class, seconds.

        Uses the same linear interpolation between order statistics as
        ``numpy.percentile`` over the full gap list, with each gap taken at its bin centre.
        Returns NaN when the class has no gaps.
        """
        counts = self.itl_hist[itl_class]
        total = int(counts.sum())
        if total == 0:
            return np.full(len(qs), np.nan)
        nz = np.nonzero(counts)[0]
        cum = np.cumsum(counts[nz])
        values = itl_bin_value_s(nz)
        out = []
        for q in qs:
            pos = q * (total - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, total - 1)
            v_lo = values[np.searchsorted(cum, lo + 1)]
            v_hi = values[np.searchsorted(cum, hi + 1)]
            out.append(v_lo + (v_hi - v_lo) * (pos - lo))
        return np.asarray(out)

    def itl_mean_s(self, itl_class: int = 0) -> float:
        """Exact mean inter-token gap of one class, seconds (NaN if none)."""
        n = int(self.itl_count[itl_class])
        return float(self.itl_sum_s[itl_class] / n) if n else float("nan")
