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


def spread_by_minute(start_s: np.ndarray, end_s: np.ndarray, amount: np.ndarray,
                     m: int, bin_s: float) -> np.ndarray:
    """``amount[i]`` spread evenly over ``[start_s[i], end_s[i]]`` and summed per bin of
    ``bin_s`` seconds (all of it at ``start_s`` when the interval is empty; after bin
    ``m - 1``, in it).

    Cumulative form: by time ``e`` a request has spread ``r (min(e, b) - min(e, a))`` with
    ``r = amount / (b - a)``, so ``W(e) = sum_{a<e} r (e - a) - sum_{b<e} r (e - b)``; at a
    bin edge ``e_j = j bin_s`` the sum over ``t < e_j`` is the sum over the bins before ``j``
    of ``t``, so per-bin sums of ``r`` and ``r t`` and their running totals give it (no sort).
    """
    return _spread(start_s, end_s, [amount], m, bin_s)[0]


def _spread(start_s: np.ndarray, end_s: np.ndarray, amounts: list[np.ndarray], m: int,
            bin_s: float) -> list[np.ndarray]:
    """:func:`spread_by_minute` of several amounts over the same intervals."""
    a = np.asarray(start_s, np.float64)
    b = np.maximum(np.asarray(end_s, np.float64), a)
    span = b - a
    point = span <= 0.0
    ka = np.minimum((a / bin_s).astype(np.int64), m - 1)
    kb = np.minimum((b / bin_s).astype(np.int64), m - 1)
    edges = np.arange(1, m) * bin_s
    inv = np.divide(1.0, span, out=np.zeros_like(span), where=~point)
    outs = []
    for amount in amounts:
        w = np.asarray(amount, np.float64)
        out = np.bincount(ka[point], weights=w[point], minlength=m)[:m].astype(np.float64)
        if m == 1:
            out[0] += w[~point].sum()
            outs.append(out)
            continue
        r = w * inv  # 0 for the empty intervals, counted above

        def ramp(t: np.ndarray, k: np.ndarray, r=r) -> np.ndarray:
            # at each edge e: sum over t_i < e of r_i (e - t_i)
            cr = np.cumsum(np.bincount(k, weights=r, minlength=m))[:-1]
            crt = np.cumsum(np.bincount(k, weights=r * t, minlength=m))[:-1]
            return cr * edges - crt

        cum = ramp(a, ka) - ramp(b, kb)
        cum = np.concatenate(([0.0], cum, [w[~point].sum()]))
        outs.append(out + np.diff(cum))
    return outs


def minute_work(pool, coeffs: np.ndarray, busy_s: np.ndarray, seq_s: np.ndarray,
                m: int, bin_s: float, *, prefill: bool = True,
                decode: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(memory_s, compute_s)`` per bin of ``bin_s`` seconds (a minute) of ``pool`` (a
    :class:`~capacitor.simulate.records.PoolRun`) whose step-time coefficients are ``coeffs``;
    ``busy_s`` and ``seq_s`` are its busy and sequence seconds per bin (all replicas).
    ``prefill`` / ``decode`` False leaves that phase's work out (the other pool of a
    disaggregated deployment does it)."""
    res = pool.result
    first = res.first_token_s
    started = np.isfinite(first)
    t0 = first[started]
    prompt = pool.demand.batch.prompt_len[started].astype(np.float64)
    out_len = pool.demand.batch.output_len[started].astype(np.float64)
    cached = np.minimum(res.num_cached_tokens[started], prompt)
    q = prompt - cached
    k = np.minimum((t0 / bin_s).astype(np.int64), m - 1)
    prefill_tokens = np.bincount(k, weights=q, minlength=m)[:m]
    prefill_pairs = np.bincount(k, weights=q * cached + q * (q + 1.0) / 2.0, minlength=m)[:m]
    prefills = np.bincount(k, minlength=m)[:m].astype(np.float64)
    if not prefill:
        prefill_tokens, prefill_pairs, prefills = np.zeros(m), np.zeros(m), np.zeros(m)
    finish = res.finish_s[started]
    done = (pool.status[started] == S_COMPLETED) & np.isfinite(finish)
    n = np.maximum(out_len[done] - 1.0, 0.0)
    ctx = n * prompt[done] + n * (n + 1.0) / 2.0
    decode_tokens, decode_ctx = _spread(t0[done], finish[done], [n, ctx], m, bin_s)
    if not decode:
        decode_tokens, decode_ctx = np.zeros(m), np.zeros(m)
    seq_steps = decode_tokens + prefills
    steps = np.divide(seq_steps * busy_s, seq_s, out=np.zeros(m), where=seq_s > 0)
    return roofline_seconds(coeffs, steps=steps, tokens=decode_tokens + prefill_tokens,
                            prefill_pairs=prefill_pairs, decode_ctx_tokens=decode_ctx)


def disagg_minutes(pool, m: int, bin_s: float):
    """A disaggregated cell's ``(busy_s, seq_s, memory_s, compute_s, busy_total_s)`` per bin
    in unit-seconds: each pool's worker rows of the kernel's busy bins (prefill workers then
    decode workers), its own work (prefill on the prefill pool, decode on the decode pool,
    :func:`minute_work` with its coefficients) weighted by its GPUs per worker over the GPUs
    of a unit, so that over the cell's units they are the GPU-weighted busy, HBM and
    tensor-core shares the power model reads (exact while no GPU's stepping draw is clipped
    at TDP or a power limit); ``seq_s`` is the running sequences of both pools, unweighted
    (over the seats of a unit, ``max_num_seqs`` of the PoolRun)."""
    cell, res = pool.disagg, pool.result
    cols = min(m, res.busy_bins.shape[1])
    busy, seq, memory, compute = np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m)
    total, start = 0.0, 0
    for i, (workers, tp, coeffs) in enumerate(zip(cell.workers, cell.tp, cell.coeffs,
                                                  strict=True)):
        rows = slice(start, start + workers)
        start += workers
        b, q = np.zeros(m), np.zeros(m)
        b[:cols] = res.busy_bins[rows, :cols].sum(axis=0)
        q[:cols] = res.seq_bins[rows, :cols].sum(axis=0)
        mem, comp = minute_work(pool, coeffs, b, q, m, bin_s, prefill=i == 0, decode=i == 1)
        weight = tp / pool.gpus_per_replica
        busy += weight * b
        seq += q
        memory += weight * mem
        compute += weight * comp
        total += weight * float(res.busy_bins[rows].sum())
    return busy, seq, memory, compute, total


__all__ = ["disagg_minutes", "minute_work", "spread_by_minute"]
