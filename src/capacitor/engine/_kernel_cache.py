"""Prefix-cache bookkeeping of the fast kernel: per-node block counts, pins and LRU lists.

A node is a request's own tokens (or a shared segment); its blocks follow its parent's::

    chain:    segment s  <-  request a  <-  request r        (kv.parent: leaf to root)
    blocks:   [0 ........ start(a)) [start(a) .. start(r)) [start(r) .. )
                                     \\__ a's own blocks __/

A node's cached blocks are its leading own blocks (contiguous from its first own block):
computation fills them from the head and eviction takes them from the tail, so one count per
node suffices. A node with cached blocks and no pin is in the GPU LRU list; with host-tier
blocks it is in the host LRU list. Counters and list heads live in the replica's row
``sched`` (:mod:`capacitor.engine._state`); the arrays in a
:class:`capacitor.engine._records.KVCache`.
"""

from __future__ import annotations

import numba

from capacitor.engine._state import (
    CPU_HEAD,
    CPU_TOTAL,
    EVICTABLE,
    FREE_UNCACHED,
    LRU_HEAD,
)


@numba.njit(cache=True, error_model="numpy")
def _list_remove(sched, head_at, node, prev, nxt):
    """Unlink ``node`` from the list whose head is ``sched[head_at]`` (tail: next index)."""
    p = prev[node]
    q = nxt[node]
    if p >= 0:
        nxt[p] = q
    else:
        sched[head_at] = q
    if q >= 0:
        prev[q] = p
    else:
        sched[head_at + 1] = p
    prev[node] = -1
    nxt[node] = -1


@numba.njit(cache=True, error_model="numpy")
def _list_append(sched, head_at, node, prev, nxt):
    """Append ``node`` to the list whose head is ``sched[head_at]`` (tail: next index)."""
    tail = sched[head_at + 1]
    prev[node] = tail
    nxt[node] = -1
    if tail >= 0:
        nxt[tail] = node
    else:
        sched[head_at] = node
    sched[head_at + 1] = node


@numba.njit(cache=True, error_model="numpy")
def _cpu_tier_write(sched, node, cached, cpu_cached, cpu_prev, cpu_next, num_cpu_blocks):
    """Write-through to the host tier (capacity ``num_cpu_blocks``): it holds every block the
    node has on the GPU, and the node becomes its most recently used (evicted last, tail
    block first). A node is in the host LRU iff it holds blocks."""
    was_in = cpu_cached[node] > 0
    if cached[node] > cpu_cached[node]:
        sched[CPU_TOTAL] += cached[node] - cpu_cached[node]
        cpu_cached[node] = cached[node]
    if cpu_cached[node] == 0:
        return
    if was_in:
        _list_remove(sched, CPU_HEAD, node, cpu_prev, cpu_next)
    _list_append(sched, CPU_HEAD, node, cpu_prev, cpu_next)
    while sched[CPU_TOTAL] > num_cpu_blocks:
        h = sched[CPU_HEAD]
        x = min(sched[CPU_TOTAL] - num_cpu_blocks, cpu_cached[h])
        cpu_cached[h] -= x
        sched[CPU_TOTAL] -= x
        if cpu_cached[h] == 0:
            _list_remove(sched, CPU_HEAD, h, cpu_prev, cpu_next)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _cpu_touch(sched, node, kv):
    """:func:`_cpu_tier_write` when there is a host tier."""
    if kv.num_cpu_blocks <= 0:
        return
    _cpu_tier_write(
        sched, node, kv.cached, kv.cpu_cached, kv.cpu_prev, kv.cpu_next, kv.num_cpu_blocks
    )


@numba.njit(cache=True, error_model="numpy", inline="always")
def _pin(sched, r, kv):
    """Request ``r`` holds its chain: nodes with a first pin leave the GPU LRU list."""
    node = r
    while node >= 0:
        kv.pins[node] += 1
        if kv.pins[node] == 1 and kv.cached[node] > 0:
            _list_remove(sched, LRU_HEAD, node, kv.lru_prev, kv.lru_next)
            sched[EVICTABLE] -= kv.cached[node]
        node = kv.parent[node]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _unpin(sched, r, kv):
    """Request ``r`` lets go of its chain: nodes with no pin left join the GPU LRU list."""
    node = r
    while node >= 0:
        kv.pins[node] -= 1
        if kv.pins[node] == 0 and kv.cached[node] > 0:
            _list_append(sched, LRU_HEAD, node, kv.lru_prev, kv.lru_next)
            sched[EVICTABLE] += kv.cached[node]
        node = kv.parent[node]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _allocate(sched, num_blocks, kv):
    """Take ``num_blocks`` free blocks (uncached first, then LRU evictions, tail blocks of
    the least recently used node first). False, taking nothing, if too few."""
    if num_blocks <= 0:
        return True
    if sched[FREE_UNCACHED] + sched[EVICTABLE] < num_blocks:
        return False
    take = min(num_blocks, sched[FREE_UNCACHED])
    sched[FREE_UNCACHED] -= take
    rest = num_blocks - take
    cached = kv.cached
    while rest > 0:
        node = sched[LRU_HEAD]
        x = min(rest, cached[node])
        cached[node] -= x
        sched[EVICTABLE] -= x
        rest -= x
        if cached[node] == 0:
            _list_remove(sched, LRU_HEAD, node, kv.lru_prev, kv.lru_next)
    return True


@numba.njit(cache=True, error_model="numpy", inline="always")
def _fill_chain(r, kv):
    """``kv.chain[:depth]``: ``r`` and its ancestors, leaf first; returns ``depth``."""
    depth = 0
    node = r
    while node >= 0:
        kv.chain[depth] = node
        depth += 1
        node = kv.parent[node]
    return depth


@numba.njit(cache=True, error_model="numpy", inline="always")
def _hit_blocks(r, num_tokens, kv, any_tier):
    """Leading blocks of ``r``'s ``num_tokens`` tokens found in the GPU cache, or with
    ``any_tier`` in the GPU or host cache (never the block of the last token: vLLM
    recomputes it to get logits)."""
    chain = kv.chain
    start = kv.start_block
    cached = kv.cached
    cpu_cached = kv.cpu_cached
    depth = _fill_chain(r, kv)
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
    limit = (num_tokens - 1) // kv.block_size
    return min(hit, limit)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _transfer(r, old, new, sched, kv):
    """``r`` computed tokens ``[old, new)``: the ancestor blocks among them join their
    owner's cache (when next in line); returns how many."""
    start = kv.start_block
    hi = min(new // kv.block_size, start[r])
    j = old // kv.block_size
    if j >= hi:
        return 0
    chain = kv.chain
    depth = _fill_chain(r, kv)
    moved = 0
    k = depth - 1
    while j < hi:
        # owner of block j: the deepest chain node whose range starts at or below j
        while k > 0 and start[chain[k - 1]] <= j:
            k -= 1
        node = chain[k]
        if kv.cached[node] == j - start[node]:
            kv.cached[node] += 1
            moved += 1
            _cpu_touch(sched, node, kv)
        j += 1
    return moved


@numba.njit(cache=True, error_model="numpy", inline="always")
def _touch_range(r, lo, hi, sched, kv):
    """Touch in the host tier, root to leaf, each chain node owning a block in ``[lo, hi)``."""
    start = kv.start_block
    chain = kv.chain
    depth = _fill_chain(r, kv)
    for k in range(depth - 1, -1, -1):
        node = chain[k]
        end = start[chain[k - 1]] if k > 0 else hi
        if start[node] < hi and end > lo and start[node] < end:
            _cpu_touch(sched, node, kv)
