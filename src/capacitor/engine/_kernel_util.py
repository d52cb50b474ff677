"""Small fast-kernel helpers: integer ceil-division, the (time, id) heap, ITL binning, and
releasing the clients that wait on an answer.

The heap (:class:`capacitor.engine._records.Heap`) is an array heap: the children of entry
``k`` are ``2k + 1`` and ``2k + 2``; ties in time go to the lower id, so runs are
deterministic whatever the push order::

    index:   0 | 1  2 | 3  4  5  6 | ...
    level:   0 |  1   |     2      |
"""

from __future__ import annotations

import math

import numba

from capacitor.engine._state import NEXT_CLOSED
from capacitor.engine.result import ITL_BINS_PER_E, ITL_MIN_S, ITL_NUM_BINS


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cdiv(a, b):
    return -((-a) // b)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _heap_push(heap, t, i):
    """Add ``(t, i)``."""
    heap_t = heap.time_s
    heap_i = heap.index
    pos = heap.size[0]
    heap.size[0] = pos + 1
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
def _heap_pop(heap):
    """Remove the least ``(t, i)``; returns ``i``."""
    heap_t = heap.time_s
    heap_i = heap.index
    top = heap_i[0]
    size = heap.size[0] - 1
    heap.size[0] = size
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
def _release_joined(c, ok, client_t, arrival_s, send_s, ingress_s, releases, heap):
    """A gate of request ``c`` answered at ``client_t`` (``ok``: with its last token) under
    ``releases.joins``: ``c`` is cancelled (sent to the router at once, which answers it
    with nothing, so its own dependents learn of it) when the gate failed and it asks so;
    else it is sent ``gate_delay_s`` after its last gate answers. ``send_s`` keeps the
    latest send time so far (NaN until the first answer)."""
    pending = releases.pending
    if pending[c] <= 0:  # cancelled already
        return
    if not ok and releases.cancel_if_gate_fails[c]:
        pending[c] = -1
        send_s[c] = math.nan
        _heap_push(heap, client_t, c)
        return
    t = client_t + releases.gate_delay_s[c]
    s = send_s[c]
    if not s >= arrival_s[c]:  # NaN: the first of its gates to answer
        s = arrival_s[c]
    send_s[c] = max(s, t)
    pending[c] -= 1
    if pending[c] == 0:
        _heap_push(heap, send_s[c] + ingress_s, c)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _respond(i, ok, client_t, arrival_s, send_s, ingress_s, releases, router, heap):
    """Client ``i`` got its answer at ``client_t`` (``ok``: all of it; else an error or
    nothing): release what waits on it. (The kernel's finish path skips the call when
    nothing can wait: no gated requests, no closed-loop clients; it is costly enough to
    matter there.)"""
    lo = 0  # the first gate >= i (child_gate is sorted; a plain binary search is far
    child_gate = releases.child_gate  # cheaper here than np.searchsorted's)
    child_idx = releases.child_idx
    hi = child_gate.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if child_gate[mid] < i:
            lo = mid + 1
        else:
            hi = mid
    k = lo
    while k < child_gate.shape[0] and child_gate[k] == i:
        c = child_idx[k]
        if releases.joins:
            _release_joined(c, ok, client_t, arrival_s, send_s, ingress_s, releases, heap)
        else:
            send_s[c] = max(arrival_s[c], client_t)
            _heap_push(heap, send_s[c] + ingress_s, c)
        k += 1
    if releases.concurrency > 0 and router[NEXT_CLOSED] < arrival_s.shape[0]:
        c = router[NEXT_CLOSED]
        router[NEXT_CLOSED] += 1
        send_s[c] = max(arrival_s[c], client_t)
        _heap_push(heap, send_s[c] + ingress_s, c)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _respond_once(i, ok, client_t, arrival_s, send_s, ingress_s, releases, router, heap):
    """:func:`_respond`, compiled once (not inlined)."""
    _respond(i, ok, client_t, arrival_s, send_s, ingress_s, releases, router, heap)
