"""Prefix-cache bookkeeping of the fast kernel: per-node block counts, pins and LRU lists.

A node's cached blocks are its leading own blocks (contiguous from its first own block):
computation fills them from the head and eviction takes them from the tail, so one count per
node suffices. A node with cached blocks and no pin is in the GPU LRU list; with host-tier
blocks it is in the host LRU list. Scalars live in the shared int64 state vector ``st``.
"""

from __future__ import annotations

import numba

from capacitor.engine._state import (
    _CPU_HEAD,
    _CPU_TOTAL,
    _EVICTABLE,
    _FREE_UNCACHED,
    _LRU_HEAD,
)


@numba.njit(cache=True, error_model="numpy")
def _list_remove(st, head_at, node, prev, nxt):
    p = prev[node]
    q = nxt[node]
    if p >= 0:
        nxt[p] = q
    else:
        st[head_at] = q
    if q >= 0:
        prev[q] = p
    else:
        st[head_at + 1] = p
    prev[node] = -1
    nxt[node] = -1


@numba.njit(cache=True, error_model="numpy")
def _list_append(st, head_at, node, prev, nxt):
    tail = st[head_at + 1]
    prev[node] = tail
    nxt[node] = -1
    if tail >= 0:
        nxt[tail] = node
    else:
        st[head_at] = node
    st[head_at + 1] = node


@numba.njit(cache=True, error_model="numpy")
def _lru_remove(st, node, lru_prev, lru_next):
    _list_remove(st, _LRU_HEAD, node, lru_prev, lru_next)


@numba.njit(cache=True, error_model="numpy")
def _lru_append(st, node, lru_prev, lru_next):
    _list_append(st, _LRU_HEAD, node, lru_prev, lru_next)


@numba.njit(cache=True, error_model="numpy")
def _cpu_touch(st, node, cached, cpu_cached, cpu_prev, cpu_next, cpu_cap):
    """Write-through to the host tier (capacity ``cpu_cap`` blocks; 0 = no tier): it holds
    every block the node has on the GPU, and the node becomes its most recently used
    (evicted last, tail block first). A node is in the host LRU iff it holds blocks."""
    if cpu_cap <= 0:
        return
    was_in = cpu_cached[node] > 0
    if cached[node] > cpu_cached[node]:
        st[_CPU_TOTAL] += cached[node] - cpu_cached[node]
        cpu_cached[node] = cached[node]
    if cpu_cached[node] == 0:
        return
    if was_in:
        _list_remove(st, _CPU_HEAD, node, cpu_prev, cpu_next)
    _list_append(st, _CPU_HEAD, node, cpu_prev, cpu_next)
    while st[_CPU_TOTAL] > cpu_cap:
        h = st[_CPU_HEAD]
        x = min(st[_CPU_TOTAL] - cpu_cap, cpu_cached[h])
        cpu_cached[h] -= x
        st[_CPU_TOTAL] -= x
        if cpu_cached[h] == 0:
            _list_remove(st, _CPU_HEAD, h, cpu_prev, cpu_next)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _pin(st, r, src, pins, cached, lru_prev, lru_next):
    node = r
    while node >= 0:
        pins[node] += 1
        if pins[node] == 1 and cached[node] > 0:
            _lru_remove(st, node, lru_prev, lru_next)
            st[_EVICTABLE] -= cached[node]
        node = src[node]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _unpin(st, r, src, pins, cached, lru_prev, lru_next):
    node = r
    while node >= 0:
        pins[node] -= 1
        if pins[node] == 0 and cached[node] > 0:
            _lru_append(st, node, lru_prev, lru_next)
            st[_EVICTABLE] += cached[node]
        node = src[node]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _allocate(st, k, cached, lru_prev, lru_next):
    """Take ``k`` free blocks (uncached first, then LRU evictions). False if too few."""
    if k <= 0:
        return True
    if st[_FREE_UNCACHED] + st[_EVICTABLE] < k:
        return False
    take = min(k, st[_FREE_UNCACHED])
    st[_FREE_UNCACHED] -= take
    rest = k - take
    while rest > 0:
        node = st[_LRU_HEAD]
        x = min(rest, cached[node])
        cached[node] -= x
        st[_EVICTABLE] -= x
        rest -= x
        if cached[node] == 0:
            _lru_remove(st, node, lru_prev, lru_next)
    return True


@numba.njit(cache=True, error_model="numpy", inline="always")
def _hit_blocks(r, num_tokens, bs, src, start, cached, chain, cpu_cached, any_tier):
    """Leading blocks of ``r``'s ``num_tokens`` tokens found in the GPU cache, or with
    ``any_tier`` in the GPU or host cache."""
    depth = 0
    node = r
    while node >= 0:
        chain[depth] = node
        depth += 1
        node = src[node]
    hit = 0
    done = False
    for k in range(depth - 1, 0, -1):
        node = chain[k]
        end = start[chain[k - 1]]
        held = cached[node]
        if any_tier and cpu_cached[node] > held:
            held = cpu_cached[node]
        covered = start[node] + held
        if covered < end:
            hit = covered
            done = True
            break
        hit = end
    if not done:
        held = cached[r]
        if any_tier and cpu_cached[r] > held:
            held = cpu_cached[r]
        hit = start[r] + held
    limit = (num_tokens - 1) // bs
    return min(hit, limit)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _transfer(
    r, old, new, bs, src, start, cached, chain, st, cpu_cached, cpu_prev, cpu_next, cpu_cap
):
    """Ancestor blocks ``r`` just computed join their owner's cache; returns how many."""
    hi = min(new // bs, start[r])
    j = old // bs
    if j >= hi:
        return 0
    depth = 0
    node = r
    while node >= 0:
        chain[depth] = node
        depth += 1
        node = src[node]
    moved = 0
    k = depth - 1
    while j < hi:
        # owner of block j: the deepest chain node whose range starts at or below j
        while k > 0 and start[chain[k - 1]] <= j:
            k -= 1
        node = chain[k]
        if cached[node] == j - start[node]:
            cached[node] += 1
            moved += 1
            _cpu_touch(st, node, cached, cpu_cached, cpu_prev, cpu_next, cpu_cap)
        j += 1
    return moved


@numba.njit(cache=True, error_model="numpy")
def _touch_range(r, lo, hi, src, start, chain, st, cached, cpu_cached, cpu_prev, cpu_next, cpu_cap):
    """Touch, root to leaf, each chain node owning a block in ``[lo, hi)``."""
    depth = 0
    node = r
    while node >= 0:
        chain[depth] = node
        depth += 1
        node = src[node]
    for k in range(depth - 1, -1, -1):
        node = chain[k]
        end = start[chain[k - 1]] if k > 0 else hi
        if start[node] < hi and end > lo and start[node] < end:
            _cpu_touch(st, node, cached, cpu_cached, cpu_prev, cpu_next, cpu_cap)
