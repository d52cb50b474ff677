"""Small fast-kernel helpers: integer ceil-division, the release heap, ITL binning, and
releasing the clients that wait on an answer."""

from __future__ import annotations

import math

import numba

from capacitor.engine._state import _HEAP_SIZE, _NEXT_CLOSED
from capacitor.engine.result import ITL_BINS_PER_E, ITL_MIN_S, ITL_NUM_BINS


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cdiv(a, b):
    return -((-a) // b)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _heap_push(heap_t, heap_i, st, t, i):
    pos = st[_HEAP_SIZE]
    st[_HEAP_SIZE] += 1
    while pos > 0:
        parent = (pos - 1) >> 1
        pt = heap_t[parent]
        if pt < t or (pt == t and heap_i[parent] < i):
            break
        heap_t[pos] = pt
        heap_i[pos] = heap_i[parent]
        pos = parent
    heap_t[pos] = t
    heap_i[pos] = i


@numba.njit(cache=True, error_model="numpy", inline="always")
def _heap_pop(heap_t, heap_i, st):
    top = heap_i[0]
    size = st[_HEAP_SIZE] - 1
    st[_HEAP_SIZE] = size
    if size > 0:
        t = heap_t[size]
        i = heap_i[size]
        pos = 0
        while True:
            child = 2 * pos + 1
            if child >= size:
                break
            if child + 1 < size:
                ct, ci = heap_t[child], heap_i[child]
                dt, di = heap_t[child + 1], heap_i[child + 1]
                if dt < ct or (dt == ct and di < ci):
                    child += 1
            ct, ci = heap_t[child], heap_i[child]
            if t < ct or (t == ct and i < ci):
                break
            heap_t[pos] = ct
            heap_i[pos] = ci
            pos = child
        heap_t[pos] = t
        heap_i[pos] = i
    return top


@numba.njit(cache=True, error_model="numpy", inline="always")
def _itl_bin(gap):
    if gap <= ITL_MIN_S:
        return 0
    x = math.log(gap / ITL_MIN_S) * ITL_BINS_PER_E
    if x >= ITL_NUM_BINS - 1:  # the last bin takes everything longer (inf included)
        return ITL_NUM_BINS - 1
    return int(x)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _itl_bin_near(gap, b, edges):
    """:func:`_itl_bin` of ``gap``, whose previous gap fell in bin ``b``: the bin next to
    ``b`` by a table lookup when ``gap`` lies inside it, else by the logarithm."""
    nb = b + 1 if gap > edges[b + 1] else b - 1
    if 0 < nb < ITL_NUM_BINS - 1:
        lo, hi = _itl_bin_interior(nb, edges)
        if lo < gap < hi:
            return nb
    return _itl_bin(gap)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _itl_bin_interior(b, edges):
    """Gaps strictly between the two returned values fall in bin ``b`` by :func:`_itl_bin`
    (``edges`` is ``result.ITL_EDGES_S``; a margin of 1e-9 relative keeps the rounding of
    ``log`` and ``exp`` out of the question), so a run of similar gaps rarely needs the
    logarithm."""
    lo = -math.inf
    hi = math.inf
    if b > 0:
        lo = edges[b] * (1.0 + 1e-9)
    if b < ITL_NUM_BINS - 1:
        hi = edges[b + 1] * (1.0 - 1e-9)
    return lo, hi


@numba.njit(cache=True, error_model="numpy", inline="always")
def _add_gap_run(itl_hist, itl_sum, itl_count, dec_cls, b, steps, gap_sum):
    """``steps`` consecutive decode-only steps whose gaps (summing to ``gap_sum``) all fall
    in bin ``b``: each decoding request of each ITL class got one token per step."""
    for k in range(dec_cls.shape[0]):
        m = dec_cls[k]
        if m > 0:
            itl_hist[k, b] += m * steps
            itl_sum[k] += gap_sum * m
            itl_count[k] += m * steps


@numba.njit(cache=True, error_model="numpy", inline="always")
def _add_decode_gaps(itl_hist, itl_sum, itl_count, dec_cls, gap):
    """Every decoding request of each ITL class got one token ``gap`` seconds after its
    previous one (a step's decodes all advance together)."""
    _add_gap_run(itl_hist, itl_sum, itl_count, dec_cls, _itl_bin(gap), 1, gap)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _respond(
    i, client_t, n, arrival, send, ingress, child_gate, child_idx, conc, gst, heap_t, heap_i
):
    """Client ``i`` got its answer at ``client_t``: release what waits on it. (The kernel's
    finish path skips the call when nothing can wait: no gated requests, no closed-loop
    clients; it is costly enough to matter there.)"""
    lo = 0  # the first gate >= i (child_gate is sorted; a plain binary search is far
    hi = child_gate.shape[0]  # cheaper here than np.searchsorted's)
    while lo < hi:
        mid = (lo + hi) >> 1
        if child_gate[mid] < i:
            lo = mid + 1
        else:
            hi = mid
    k = lo
    while k < child_gate.shape[0] and child_gate[k] == i:
        c = child_idx[k]
        send[c] = max(arrival[c], client_t)
        _heap_push(heap_t, heap_i, gst, send[c] + ingress, c)
        k += 1
    if conc > 0 and gst[_NEXT_CLOSED] < n:
        c = gst[_NEXT_CLOSED]
        gst[_NEXT_CLOSED] += 1
        send[c] = max(arrival[c], client_t)
        _heap_push(heap_t, heap_i, gst, send[c] + ingress, c)
