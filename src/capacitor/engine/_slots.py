"""Running-request slots of one replica: admission-ordered list, completion buckets,
leaving (finish) and preemption. ``sl`` is the replica's ``slots[rep]`` (fields x slots)."""

from __future__ import annotations

import numba

from capacitor.engine._kernel_cache import _cpu_touch, _unpin
from capacitor.engine._kernel_util import _cdiv
from capacitor.engine._state import (
    _FREE_UNCACHED,
    _N_DEC,
    _N_ZOMBIE,
    _NUM_FREE_SLOTS,
    _NUM_RUNNING,
    _RUN_HEAD,
    _RUN_TAIL,
    _SUM_C0_G0,
    _WAIT_COUNT,
    _WAIT_HEAD,
    _WAIT_TAIL,
    F_BNEXT,
    F_BPREV,
    F_C0,
    F_COMPUTED,
    F_DEC,
    F_FIN,
    F_FREE,
    F_G0,
    F_GEN0,
    F_NEXT,
    F_PREV,
    F_PRIVATE,
    F_REQ,
)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _run_append(st, sl, s):
    tail = st[_RUN_TAIL]
    sl[F_PREV, s] = tail
    sl[F_NEXT, s] = -1
    if tail >= 0:
        sl[F_NEXT, tail] = s
    else:
        st[_RUN_HEAD] = s
    st[_RUN_TAIL] = s
    st[_NUM_RUNNING] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _run_remove(st, sl, s):
    p = sl[F_PREV, s]
    q = sl[F_NEXT, s]
    if p >= 0:
        sl[F_NEXT, p] = q
    else:
        st[_RUN_HEAD] = q
    if q >= 0:
        sl[F_PREV, q] = p
    else:
        st[_RUN_TAIL] = p
    st[_NUM_RUNNING] -= 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _slot_free(st, sl, s):
    sl[F_REQ, s] = -1
    sl[F_DEC, s] = 0
    sl[F_FREE, st[_NUM_FREE_SLOTS]] = s
    st[_NUM_FREE_SLOTS] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _wait_push_back(st, wait_next, i):
    wait_next[i] = -1
    if st[_WAIT_COUNT] == 0:
        st[_WAIT_HEAD] = i
    else:
        wait_next[st[_WAIT_TAIL]] = i
    st[_WAIT_TAIL] = i
    st[_WAIT_COUNT] += 1


@numba.njit(cache=True, error_model="numpy")
def _wait_push_front(st, wait_next, i):
    if st[_WAIT_COUNT] == 0:
        wait_next[i] = -1
        st[_WAIT_TAIL] = i
    else:
        wait_next[i] = st[_WAIT_HEAD]
    st[_WAIT_HEAD] = i
    st[_WAIT_COUNT] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _wait_insert(st, wait_next, i, prio, send, ingress):
    """Insert ``i`` into the waiting list ordered by (priority, engine arrival, index), as
    vLLM's priority queue orders requests."""
    ki = (prio[i], send[i] + ingress, i)
    prev = -1
    cur = st[_WAIT_HEAD] if st[_WAIT_COUNT] > 0 else -1
    for _ in range(st[_WAIT_COUNT]):
        if (prio[cur], send[cur] + ingress, cur) > ki:
            break
        prev = cur
        cur = wait_next[cur]
    if prev < 0:
        _wait_push_front(st, wait_next, i)
    elif prev == st[_WAIT_TAIL]:
        _wait_push_back(st, wait_next, i)
    else:
        wait_next[i] = wait_next[prev]
        wait_next[prev] = i
        st[_WAIT_COUNT] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _wait_pop_front(st, wait_next):
    i = st[_WAIT_HEAD]
    st[_WAIT_HEAD] = wait_next[i]
    st[_WAIT_COUNT] -= 1
    return i


@numba.njit(cache=True, error_model="numpy", inline="always")
def _decoder_leave(s, r, st, sl, bucket, mask, key_count, dec_cls, itl_cls, bs, reserve_full):
    """Remove a decoding slot from the phase counts, running totals and its bucket."""
    key = (sl[F_C0, s] - sl[F_G0, s]) % bs
    if not reserve_full:
        key_count[key] -= 1
    st[_SUM_C0_G0] -= sl[F_C0, s] - sl[F_G0, s]
    st[_N_DEC] -= 1
    if itl_cls[r] >= 0:
        dec_cls[itl_cls[r]] -= 1
    p = sl[F_BPREV, s]
    q = sl[F_BNEXT, s]
    if p >= 0:
        sl[F_BNEXT, p] = q
    else:
        bucket[sl[F_FIN, s] & mask] = q
    if q >= 0:
        sl[F_BPREV, q] = p
    sl[F_BPREV, s] = -1
    sl[F_BNEXT, s] = -1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _release(
    r,
    computed,
    private,
    cache_own,
    st,
    bs,
    caching,
    src,
    start,
    pins,
    cached,
    lru_prev,
    lru_next,
    cpu_cached,
    cpu_prev,
    cpu_next,
    cpu_cap,
):
    """Free a leaving request's blocks; its own full blocks join its node's cache."""
    freed = private
    if cache_own and caching:
        own_full = computed // bs - start[r]
        if own_full > cached[r]:
            freed -= own_full - cached[r]
            cached[r] = own_full
            _cpu_touch(st, r, cached, cpu_cached, cpu_prev, cpu_next, cpu_cap)
    st[_FREE_UNCACHED] += freed
    _unpin(st, r, src, pins, cached, lru_prev, lru_next)


@numba.njit(cache=True, error_model="numpy")
def _release_zombies(
    st,
    zomb,
    shareable,
    bs,
    caching,
    src,
    start,
    pins,
    cached,
    lru_prev,
    lru_next,
    cpu_cached,
    cpu_prev,
    cpu_next,
    cpu_cap,
):
    """Async scheduling: release the requests that finished in the last step (``zomb`` rows:
    request, tokens computed, private blocks), in admission order, once the next step has
    been decided."""
    for k in range(st[_N_ZOMBIE]):
        r = zomb[0, k]
        _release(
            r,
            zomb[1, k],
            zomb[2, k],
            shareable[r],
            st,
            bs,
            caching,
            src,
            start,
            pins,
            cached,
            lru_prev,
            lru_next,
            cpu_cached,
            cpu_prev,
            cpu_next,
            cpu_cap,
        )
    st[_N_ZOMBIE] = 0


@numba.njit(cache=True, error_model="numpy", inline="always")
def _slot_progress(s, sl, G, bs, reserve_full):
    """(tokens computed, private blocks, generated) of a slot before step ``G``'s tokens."""
    if sl[F_DEC, s]:
        c = sl[F_C0, s] + G - sl[F_G0, s]
        private = sl[F_PRIVATE, s]
        if not reserve_full:
            private += _cdiv(c, bs) - _cdiv(sl[F_C0, s], bs)
        return c, private, sl[F_GEN0, s] + G - sl[F_G0, s]
    return sl[F_COMPUTED, s], sl[F_PRIVATE, s], -1


@numba.njit(cache=True, error_model="numpy")
def _preempt(
    s,
    st,
    sl,
    G,
    last_client_t,
    bs,
    caching,
    generated,
    finish,
    preemptions,
    itl_cls,
    src,
    start,
    pins,
    cached,
    lru_prev,
    lru_next,
    bucket,
    mask,
    key_count,
    dec_cls,
    wait_next,
    cpu_cached,
    cpu_prev,
    cpu_next,
    cpu_cap,
    reserve_full,
    extra_private,
    by_priority,
    prio,
    send,
    ingress,
):
    """Preempt the request in slot ``s`` (recompute): free its KV (``extra_private``: blocks
    it was given earlier in this step), put it back in the replica's waiting queue (at the
    front, or in (priority, arrival) order under the priority policy)."""
    r = sl[F_REQ, s]
    c, private, gen = _slot_progress(s, sl, G, bs, reserve_full)
    private += extra_private
    if sl[F_DEC, s]:
        generated[r] = gen
        finish[r] = last_client_t
        _decoder_leave(s, r, st, sl, bucket, mask, key_count, dec_cls, itl_cls, bs, reserve_full)
    _release(
        r,
        c,
        private,
        True,
        st,
        bs,
        caching,
        src,
        start,
        pins,
        cached,
        lru_prev,
        lru_next,
        cpu_cached,
        cpu_prev,
        cpu_next,
        cpu_cap,
    )
    _run_remove(st, sl, s)
    _slot_free(st, sl, s)
    preemptions[r] += 1
    if by_priority:
        _wait_insert(st, wait_next, r, prio, send, ingress)
    else:
        _wait_push_front(st, wait_next, r)
