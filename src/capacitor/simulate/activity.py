"""What a pool's GPUs did, per minute: the HBM and tensor-core seconds of its engine work
(:func:`capacitor.fleet.power.roofline_seconds`), from the per-request records of a simulated
pool. The power model (:mod:`capacitor.fleet.power`) turns them, over the minute's busy
seconds, into the shares ``u_mem`` and ``u_comp`` of the step time.

Each request's prefill (its uncached prompt tokens, after ``num_cached_tokens``, and their
causal attention pairs) counts in the minute of its first token; its decode (``output - 1``
tokens, the ``k``-th reading ``prompt + k`` context tokens) spreads evenly from its first
token to its finish. Decode work of requests that do not complete (lost to a failure, or
running at the end of the span) is not counted. Engine steps are not recorded per minute; a
minute's steps are estimated as its sequence-steps (decode tokens + one per prefill) over the
mean batch (``seq_s / busy_s``, the step-time-weighted running sequences), so the weights
streamed per step count once per step. Work after the span counts in its last minute, as the
kernel's busy seconds do.
"""

from __future__ import annotations

import numpy as np

from capacitor.engine.status import S_COMPLETED
from capacitor.fleet.power import roofline_seconds


def _by_minute(t_s: np.ndarray, amount: np.ndarray, m: int, bin_s: float) -> np.ndarray:
    """``amount`` summed by the bin of ``t_s`` (later times in the last bin)."""
    minute = np.minimum((t_s / bin_s).astype(np.int64), m - 1)
    return np.bincount(minute, weights=amount, minlength=m)[:m].astype(np.float64)


def spread_by_minute(start_s: np.ndarray, end_s: np.ndarray, amount: np.ndarray,
                     m: int, bin_s: float) -> np.ndarray:
    """``amount[i]`` spread evenly over ``[start_s[i], end_s[i]]`` and summed per bin of
    ``bin_s`` seconds (all of it at ``start_s`` when the interval is empty; after bin
    ``m - 1``, in it).

    Cumulative form: by time ``e`` a request has spread ``r (min(e, b) - min(e, a))`` with
    ``r = amount / (b - a)``, so ``W(e) = sum_{a<e} r (e - a) - sum_{b<e} r (e - b)``,
    evaluated at the minute edges from sorted starts and ends and their running sums.
    """
    a = np.asarray(start_s, np.float64)
    b = np.maximum(np.asarray(end_s, np.float64), a)
    w = np.asarray(amount, np.float64)
    point = b <= a
    out = _by_minute(a[point], w[point], m, bin_s)
    a, b, w = a[~point], b[~point], w[~point]
    if a.size == 0 or m == 1:
        if a.size:
            out[0] += w.sum()
        return out
    r = w / (b - a)
    edges = np.arange(1, m) * bin_s

    def ramp(t: np.ndarray) -> np.ndarray:  # sum over t_i < e of r_i (e - t_i)
        order = np.argsort(t, kind="stable")
        ts, rs = t[order], r[order]
        cr = np.concatenate(([0.0], np.cumsum(rs)))
        crt = np.concatenate(([0.0], np.cumsum(rs * ts)))
        k = np.searchsorted(ts, edges, side="left")
        return cr[k] * edges - crt[k]

    cum = ramp(a) - ramp(b)
    cum = np.concatenate(([0.0], cum, [w.sum()]))
    return out + np.diff(cum)


def minute_work(pool, coeffs: np.ndarray, busy_s: np.ndarray, seq_s: np.ndarray,
                m: int, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """``(memory_s, compute_s)`` per bin of ``bin_s`` seconds (a minute) of ``pool`` (a
    :class:`~capacitor.simulate.records.PoolRun`) whose step-time coefficients are ``coeffs``;
    ``busy_s`` and ``seq_s`` are its busy and sequence seconds per bin (all replicas)."""
    res = pool.result
    batch = pool.demand.batch
    prompt = batch.prompt_len.astype(np.float64)
    out_len = batch.output_len.astype(np.float64)
    first = res.first_token_s
    started = np.isfinite(first)
    cached = np.minimum(res.num_cached_tokens.astype(np.float64), prompt)
    q = np.where(started, prompt - cached, 0.0)
    pairs = q * cached + q * (q + 1.0) / 2.0
    t0 = np.where(started, first, 0.0)
    prefill_tokens = _by_minute(t0, q, m, bin_s)
    prefill_pairs = _by_minute(t0, pairs, m, bin_s)
    prefills = _by_minute(t0, started.astype(np.float64), m, bin_s)
    done = started & (pool.status == S_COMPLETED) & np.isfinite(res.finish_s)
    n = np.maximum(out_len[done] - 1.0, 0.0)
    ctx = n * prompt[done] + n * (n + 1.0) / 2.0
    decode_tokens = spread_by_minute(first[done], res.finish_s[done], n, m, bin_s)
    decode_ctx = spread_by_minute(first[done], res.finish_s[done], ctx, m, bin_s)
    seq_steps = decode_tokens + prefills
    steps = np.divide(seq_steps * busy_s, seq_s, out=np.zeros(m), where=seq_s > 0)
    return roofline_seconds(coeffs, steps=steps, tokens=decode_tokens + prefill_tokens,
                            prefill_pairs=prefill_pairs, decode_ctx_tokens=decode_ctx)


__all__ = ["minute_work", "spread_by_minute"]
