"""The numba fast path of the replica simulator (semantics: :mod:`capacitor.engine.reference`).

Data layout, chosen so that no step touches decoding requests one by one:

* Running requests live in ``max_num_seqs`` *slots*, linked in admission order
  (``slot_prev`` / ``slot_next``). At most one running request is mid-prefill, and it is
  the tail (a partial prefill takes the whole remaining budget, so nothing is admitted
  after it).
* A decoding slot stores only where it started: context ``c0`` and step index ``g0``.
  Its context at step ``G`` is ``c0 + G - g0``, so the batch's summed context is the
  running total ``sum(c0 - g0) + n_dec * (G + 1)``. It needs a new KV block at step ``G``
  iff ``(c0 - g0) % block_size == (-G) % block_size``: a count per phase key gives the
  number of new blocks per step in O(1). Its last step ``g0 + remaining - 1`` is known at
  entry; slots are kept in a ring of per-step doubly linked buckets.
* Only when blocks run out does a step walk the running list (to preempt exactly as vLLM
  does); otherwise a decode-only step is O(1) plus O(1) per finishing request.
* Prefix-cache state is per node (cached block count, pin count, LRU links), never per
  block.

Every function here takes arrays and scalars only (no globals), so numba's on-disk cache
stays valid when configuration changes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from capacitor.engine._kernel_cache import (
    _allocate,
    _cpu_touch,
    _hit_blocks,
    _pin,
    _touch_range,
    _transfer,
    _unpin,
)
from capacitor.engine._kernel_util import _cdiv, _heap_pop, _heap_push, _itl_bin
from capacitor.engine._state import (
    _CPU_HEAD,
    _CPU_TAIL,
    _EVICTABLE,
    _FREE_UNCACHED,
    _HEAP_SIZE,
    _INIT_PTR,
    _LRU_HEAD,
    _LRU_TAIL,
    _N_DEC,
    _NEXT_CLOSED,
    _NUM_RUNNING,
    _NUM_STATE,
    _RUN_HEAD,
    _RUN_TAIL,
    _SEQ,
    _SUM_C0_G0,
    _WAIT_COUNT,
    _WAIT_HEAD,
)
from capacitor.perf.step_time import step_time_s_jit

STALLED = 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def simulate_kernel(
    arrival, prompt, output, rejected, itl_cls, init_order, init_identity, child_gate, child_idx,
    heap_cap,
    src, start, shareable, coeffs,
    max_num_seqs, budget_max, bs, num_blocks, caching, ingress, egress, conc, cpu_cap, cpu_load_s,
    reserve_full,
    max_depth, ring_size, num_classes,
    send, first, finish, completed, preemptions, cached_tokens,
    itl_hist, itl_sum, itl_count, stats,
):
    """Run one replica to completion. Output arrays are filled in place; ``finish`` holds
    a request's last client token time while it is unfinished. Returns 0, or STALLED."""
    n = prompt.shape[0]
    num_nodes = src.shape[0]
    st = np.zeros(_NUM_STATE, np.int64)
    st[_FREE_UNCACHED] = num_blocks
    st[_LRU_HEAD] = -1
    st[_LRU_TAIL] = -1
    st[_RUN_HEAD] = -1
    st[_RUN_TAIL] = -1
    st[_NEXT_CLOSED] = conc
    st[_CPU_HEAD] = -1
    st[_CPU_TAIL] = -1
    # NOTE: per-node and per-request state is int32 for memory (~100 bytes per request)
    cached = np.zeros(num_nodes, np.int32)
    pins = np.zeros(num_nodes, np.int32)
    lru_prev = np.full(num_nodes, -1, np.int32)
    lru_next = np.full(num_nodes, -1, np.int32)
    cpu_nodes = num_nodes if cpu_cap > 0 else 1
    cpu_cached = np.zeros(cpu_nodes, np.int32)
    cpu_prev = np.full(cpu_nodes, -1, np.int32)
    cpu_next = np.full(cpu_nodes, -1, np.int32)
    generated = np.zeros(n, np.int32)
    chain = np.zeros(max_depth + 1, np.int64)
    heap_t = np.zeros(heap_cap + 1, np.float64)
    heap_i = np.zeros(heap_cap + 1, np.int32)
    waitq = np.zeros(n + 1, np.int32)
    qcap = n + 1
    # slot state
    S = max_num_seqs
    slot_req = np.full(S, -1, np.int64)
    slot_prev = np.full(S, -1, np.int64)
    slot_next = np.full(S, -1, np.int64)
    slot_seq = np.zeros(S, np.int64)
    slot_dec = np.zeros(S, np.bool_)
    slot_computed = np.zeros(S, np.int64)  # prefill slots: tokens computed
    slot_c0 = np.zeros(S, np.int64)  # decode slots: computed at entry
    slot_g0 = np.zeros(S, np.int64)  # decode slots: first decode step
    slot_gen0 = np.zeros(S, np.int64)  # decode slots: generated at entry
    slot_ref = np.zeros(S, np.int64)
    slot_private = np.zeros(S, np.int64)  # prefill: now; decode: at entry
    slot_fin = np.zeros(S, np.int64)
    slot_bprev = np.full(S, -1, np.int64)
    slot_bnext = np.full(S, -1, np.int64)
    free_slots = np.arange(S - 1, -1, -1).astype(np.int64)
    num_free_slots = S
    bucket = np.full(ring_size, -1, np.int64)
    key_count = np.zeros(bs, np.int64)
    dec_cls = np.zeros(num_classes, np.int64)
    pf_slot = np.zeros(S, np.int64)
    pf_q = np.zeros(S, np.int64)
    fin_slots = np.zeros(S, np.int64)
    mask = ring_size - 1

    t = 0.0
    last_client_t = 0.0
    G = 0
    busy = 0.0
    max_used = 0
    num_init = n if init_identity else init_order.shape[0]

    while True:
        # ---- releases: merge the pre-sorted initial requests with the dynamic heap
        while True:
            it = math.inf
            ii = -1
            if st[_INIT_PTR] < num_init:
                ii = st[_INIT_PTR] if init_identity else init_order[st[_INIT_PTR]]
                it = send[ii] + ingress
            from_heap = False
            if st[_HEAP_SIZE] > 0:
                ht = heap_t[0]
                hi = heap_i[0]
                if ht < it or (ht == it and hi < ii):
                    it = ht
                    ii = hi
                    from_heap = True
            if ii < 0 or it > t:
                break
            if from_heap:
                _heap_pop(heap_t, heap_i, st)
            else:
                st[_INIT_PTR] += 1
            if rejected[ii]:
                finish[ii] = send[ii]
                resp_t = send[ii]
                k = np.searchsorted(child_gate, ii)
                while k < child_gate.shape[0] and child_gate[k] == ii:
                    c = child_idx[k]
                    send[c] = max(arrival[c], resp_t)
                    _heap_push(heap_t, heap_i, st, send[c] + ingress, c)
                    k += 1
                if conc > 0 and st[_NEXT_CLOSED] < n:
                    c = st[_NEXT_CLOSED]
                    st[_NEXT_CLOSED] += 1
                    send[c] = max(arrival[c], resp_t)
                    _heap_push(heap_t, heap_i, st, send[c] + ingress, c)
            else:
                waitq[(st[_WAIT_HEAD] + st[_WAIT_COUNT]) % qcap] = ii
                st[_WAIT_COUNT] += 1
        if st[_NUM_RUNNING] == 0 and st[_WAIT_COUNT] == 0:
            nt = math.inf
            if st[_INIT_PTR] < num_init:
                nt = send[st[_INIT_PTR] if init_identity else init_order[st[_INIT_PTR]]] + ingress
            if st[_HEAP_SIZE] > 0 and heap_t[0] < nt:
                nt = heap_t[0]
            if nt == math.inf:
                break
            if nt > t:
                t = nt
            continue

        # ---- decode-only stretch: while nothing can join, leave, or be preempted, a step
        # is O(1): no prefill, no admission possible, no arrival due, no finish this step.
        # NOTE: identical arithmetic to the general path below, for performance only.
        tail = st[_RUN_TAIL]
        if (tail >= 0 and slot_dec[tail]
                and (st[_WAIT_COUNT] == 0 or st[_NUM_RUNNING] >= max_num_seqs)):
            nt = math.inf
            if st[_INIT_PTR] < num_init:
                nt = send[st[_INIT_PTR] if init_identity else init_order[st[_INIT_PTR]]] + ingress
            if st[_HEAP_SIZE] > 0 and heap_t[0] < nt:
                nt = heap_t[0]
            n_dec = st[_N_DEC]
            while nt > t and bucket[G & mask] < 0:
                need = key_count[(-G) % bs]
                if st[_FREE_UNCACHED] >= need:
                    st[_FREE_UNCACHED] -= need
                elif not _allocate(st, need, cached, lru_prev, lru_next):
                    break
                used = num_blocks - st[_FREE_UNCACHED] - st[_EVICTABLE]
                if used > max_used:
                    max_used = used
                dec_ctx = st[_SUM_C0_G0] + n_dec * (G + 1)
                d = step_time_s_jit(coeffs, float(n_dec), float(n_dec), 0.0, 0.0, float(dec_ctx))
                t_end = t + d
                busy += d
                client_t = t_end + egress
                gap = client_t - last_client_t
                b = _itl_bin(gap)
                for k in range(num_classes):
                    m = dec_cls[k]
                    if m > 0:
                        itl_hist[k, b] += m
                        itl_sum[k] += gap * m
                        itl_count[k] += m
                last_client_t = client_t
                t = t_end
                G += 1
            if nt <= t:
                continue

        # ---- schedule: running requests first
        budget = budget_max
        preempted_any = False
        loaded_blocks = 0
        kidx = (-G) % bs
        n_pf = 0
        tail = st[_RUN_TAIL]
        has_p = tail >= 0 and not slot_dec[tail]
        need_dec = key_count[kidx]
        need_p = 0
        q_p = 0
        if has_p:
            r = slot_req[tail]
            q_p = min(prompt[r] + generated[r] - slot_computed[tail], budget - st[_N_DEC])
            need_p = _cdiv(slot_computed[tail] + q_p, bs) - slot_ref[tail] - slot_private[tail]
        if st[_FREE_UNCACHED] + st[_EVICTABLE] >= need_dec + need_p:
            _allocate(st, need_dec + need_p, cached, lru_prev, lru_next)
            if has_p:
                slot_private[tail] += max(need_p, 0)
                pf_slot[0] = tail
                pf_q[0] = q_p
                n_pf = 1
        else:
            # Slow path, exactly vLLM's loop: walk in order, preempt from the tail.
            s = st[_RUN_HEAD]
            n_sched_dec = 0
            while s >= 0:
                nxt = slot_next[s]
                r = slot_req[s]
                if slot_dec[s]:
                    c = slot_c0[s] + G - slot_g0[s]
                    need = 1 if c % bs == 0 else 0
                    q = 1
                else:
                    q = min(prompt[r] + generated[r] - slot_computed[s], budget - n_sched_dec)
                    need = _cdiv(slot_computed[s] + q, bs) - slot_ref[s] - slot_private[s]
                ok = True
                while not _allocate(st, need, cached, lru_prev, lru_next):
                    victim = st[_RUN_TAIL]
                    num_free_slots = _preempt(
                        victim, st, G, last_client_t, bs, caching, prompt, generated, finish,
                        preemptions, itl_cls, src, start, pins, cached, lru_prev, lru_next,
                        slot_req, slot_prev, slot_next, slot_dec, slot_computed, slot_c0, slot_g0,
                        slot_gen0, slot_ref, slot_private, slot_fin, slot_bprev, slot_bnext, bucket,
                        mask, key_count, dec_cls, free_slots, num_free_slots, waitq, qcap,
                        cpu_cached, cpu_prev, cpu_next, cpu_cap, reserve_full,
                    )
                    preempted_any = True
                    if victim == s:
                        ok = False
                        break
                if not ok:
                    break
                if slot_dec[s]:
                    n_sched_dec += 1
                else:
                    slot_private[s] += max(need, 0)
                    pf_slot[n_pf] = s
                    pf_q[n_pf] = q
                    n_pf += 1
                if s == st[_RUN_TAIL]:
                    break
                s = nxt
        budget -= st[_N_DEC]
        for k in range(n_pf):
            budget -= pf_q[k]

        # ---- then waiting requests, unless something was preempted
        if not preempted_any:
            while st[_WAIT_COUNT] > 0 and budget > 0 and st[_NUM_RUNNING] < max_num_seqs:
                r = waitq[st[_WAIT_HEAD]]
                _pin(st, r, src, pins, cached, lru_prev, lru_next)
                num_tok = prompt[r] + generated[r]
                hit = 0
                total = 0
                if caching:
                    hit = _hit_blocks(r, num_tok, bs, src, start, cached, chain, cpu_cached, False)
                    total = hit
                    if cpu_cap > 0:
                        total = _hit_blocks(r, num_tok, bs, src, start, cached, chain, cpu_cached,
                                            True)
                q = min(num_tok - total * bs, budget)
                need = _cdiv(total * bs + q, bs) - hit
                if reserve_full:  # blocks for the whole request, up front
                    need = _cdiv(prompt[r] + output[r], bs) - hit
                if not _allocate(st, need, cached, lru_prev, lru_next):
                    _unpin(st, r, src, pins, cached, lru_prev, lru_next)
                    break
                st[_WAIT_HEAD] = (st[_WAIT_HEAD] + 1) % qcap
                st[_WAIT_COUNT] -= 1
                num_free_slots -= 1
                s = free_slots[num_free_slots]
                slot_req[s] = r
                slot_dec[s] = False
                slot_computed[s] = total * bs
                slot_ref[s] = hit
                slot_private[s] = need
                slot_seq[s] = st[_SEQ]
                st[_SEQ] += 1
                _run_append(st, s, slot_prev, slot_next)
                if total > hit:
                    # host-tier hit: load the blocks back, as if computed
                    loaded_blocks += total - hit
                    _touch_range(r, hit, total, src, start, chain, st, cached, cpu_cached,
                                 cpu_prev, cpu_next, cpu_cap)
                    moved = _transfer(r, hit * bs, total * bs, bs, src, start, cached, chain, st,
                                      cpu_cached, cpu_prev, cpu_next, cpu_cap)
                    slot_private[s] -= moved
                    slot_ref[s] += moved
                if cached_tokens[r] < 0:
                    cached_tokens[r] = total * bs
                pf_slot[n_pf] = s
                pf_q[n_pf] = q
                n_pf += 1
                budget -= q

        n_dec = st[_N_DEC]
        if n_dec == 0 and n_pf == 0:
            if st[_NUM_RUNNING] == 0 and st[_WAIT_COUNT] > 0 and not preempted_any:
                return STALLED
            continue

        used = num_blocks - st[_FREE_UNCACHED] - st[_EVICTABLE]
        if used > max_used:
            max_used = used
        # ---- step duration
        num_tok = n_dec
        pairs = 0
        for k in range(n_pf):
            q = pf_q[k]
            num_tok += q
            pairs += q * slot_computed[pf_slot[k]] + q * (q + 1) // 2
        dec_ctx = st[_SUM_C0_G0] + n_dec * (G + 1)
        d = step_time_s_jit(coeffs, float(num_tok), float(n_dec + n_pf), float(n_pf),
                            float(pairs), float(dec_ctx))
        d += loaded_blocks * cpu_load_s
        t_end = t + d
        busy += d
        client_t = t_end + egress

        # ---- decode tokens: one gap per decoding request, all equal to this step's
        if n_dec > 0:
            gap = client_t - last_client_t
            b = _itl_bin(gap)
            for k in range(num_classes):
                m = dec_cls[k]
                if m > 0:
                    itl_hist[k, b] += m
                    itl_sum[k] += gap * m
                    itl_count[k] += m
        n_fin = 0
        s = bucket[G & mask]
        while s >= 0:
            fin_slots[n_fin] = s
            n_fin += 1
            s = slot_bnext[s]
        # ---- prefill chunks: progress, cache transfer, first tokens
        for k in range(n_pf):
            s = pf_slot[k]
            r = slot_req[s]
            old = slot_computed[s]
            new = old + pf_q[k]
            slot_computed[s] = new
            if caching and old < start[r] * bs:
                moved = _transfer(r, old, new, bs, src, start, cached, chain, st, cpu_cached,
                                  cpu_prev, cpu_next, cpu_cap)
                slot_private[s] -= moved
                slot_ref[s] += moved
            if new < prompt[r] + generated[r]:
                continue
            generated[r] += 1
            if generated[r] == 1:
                first[r] = client_t
            elif itl_cls[r] >= 0:
                gap = client_t - finish[r]
                c = itl_cls[r]
                itl_hist[c, _itl_bin(gap)] += 1
                itl_sum[c] += gap
                itl_count[c] += 1
            finish[r] = client_t
            if generated[r] == output[r]:
                fin_slots[n_fin] = s
                n_fin += 1
                continue
            # becomes a decoder from the next step
            slot_dec[s] = True
            slot_c0[s] = new
            slot_g0[s] = G + 1
            slot_gen0[s] = generated[r]
            fin = G + 1 + output[r] - generated[r] - 1
            slot_fin[s] = fin
            key = (new - (G + 1)) % bs
            if not reserve_full:  # reserved requests never allocate while decoding
                key_count[key] += 1
            st[_SUM_C0_G0] += new - (G + 1)
            st[_N_DEC] += 1
            if itl_cls[r] >= 0:
                dec_cls[itl_cls[r]] += 1
            head = bucket[fin & mask]
            slot_bprev[s] = -1
            slot_bnext[s] = head
            if head >= 0:
                slot_bprev[head] = s
            bucket[fin & mask] = s
        # ---- finishes, in admission order (as vLLM frees them)
        # insertion sort by admission sequence (few finish per step; no allocation)
        for a in range(1, n_fin):
            x = fin_slots[a]
            j = a - 1
            while j >= 0 and slot_seq[fin_slots[j]] > slot_seq[x]:
                fin_slots[j + 1] = fin_slots[j]
                j -= 1
            fin_slots[j + 1] = x
        for k in range(n_fin):
            s = fin_slots[k]
            r = slot_req[s]
            if slot_dec[s]:
                c = slot_c0[s] + G + 1 - slot_g0[s]
                private = slot_private[s]
                if not reserve_full:
                    private += _cdiv(c, bs) - _cdiv(slot_c0[s], bs)
                generated[r] = slot_gen0[s] + G + 1 - slot_g0[s]
                _decoder_leave(s, r, st, slot_c0, slot_g0, slot_fin, slot_bprev, slot_bnext,
                               bucket, mask, key_count, dec_cls, itl_cls, bs, reserve_full)
            else:
                c = slot_computed[s]
                private = slot_private[s]
            _release(r, c, private, shareable[r], st, bs, caching, src, start, pins, cached,
                     lru_prev, lru_next, cpu_cached, cpu_prev, cpu_next, cpu_cap)
            _run_remove(st, s, slot_prev, slot_next)
            slot_req[s] = -1
            free_slots[num_free_slots] = s
            num_free_slots += 1
            finish[r] = client_t
            completed[r] = True
            k2 = np.searchsorted(child_gate, r)
            while k2 < child_gate.shape[0] and child_gate[k2] == r:
                c2 = child_idx[k2]
                send[c2] = max(arrival[c2], client_t)
                _heap_push(heap_t, heap_i, st, send[c2] + ingress, c2)
                k2 += 1
            if conc > 0 and st[_NEXT_CLOSED] < n:
                c2 = st[_NEXT_CLOSED]
                st[_NEXT_CLOSED] += 1
                send[c2] = max(arrival[c2], client_t)
                _heap_push(heap_t, heap_i, st, send[c2] + ingress, c2)
        last_client_t = client_t
        t = t_end
        G += 1

    stats[0] = G
    stats[1] = max_used
    stats[2] = busy
    return 0


@numba.njit(cache=True, error_model="numpy")
def _run_append(st, s, slot_prev, slot_next):
    tail = st[_RUN_TAIL]
    slot_prev[s] = tail
    slot_next[s] = -1
    if tail >= 0:
        slot_next[tail] = s
    else:
        st[_RUN_HEAD] = s
    st[_RUN_TAIL] = s
    st[_NUM_RUNNING] += 1


@numba.njit(cache=True, error_model="numpy")
def _run_remove(st, s, slot_prev, slot_next):
    p = slot_prev[s]
    q = slot_next[s]
    if p >= 0:
        slot_next[p] = q
    else:
        st[_RUN_HEAD] = q
    if q >= 0:
        slot_prev[q] = p
    else:
        st[_RUN_TAIL] = p
    st[_NUM_RUNNING] -= 1


@numba.njit(cache=True, error_model="numpy")
def _decoder_leave(s, r, st, slot_c0, slot_g0, slot_fin, slot_bprev, slot_bnext, bucket, mask,
                   key_count, dec_cls, itl_cls, bs, reserve_full):
    key = (slot_c0[s] - slot_g0[s]) % bs
    if not reserve_full:
        key_count[key] -= 1
    st[_SUM_C0_G0] -= slot_c0[s] - slot_g0[s]
    st[_N_DEC] -= 1
    if itl_cls[r] >= 0:
        dec_cls[itl_cls[r]] -= 1
    p = slot_bprev[s]
    q = slot_bnext[s]
    if p >= 0:
        slot_bnext[p] = q
    else:
        bucket[slot_fin[s] & mask] = q
    if q >= 0:
        slot_bprev[q] = p
    slot_bprev[s] = -1
    slot_bnext[s] = -1


@numba.njit(cache=True, error_model="numpy")
def _release(r, computed, private, cache_own, st, bs, caching, src, start, pins, cached,
             lru_prev, lru_next, cpu_cached, cpu_prev, cpu_next, cpu_cap):
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
def _preempt(s, st, G, last_client_t, bs, caching, prompt, generated, finish, preemptions,
             itl_cls, src, start, pins, cached, lru_prev, lru_next, slot_req, slot_prev,
             slot_next, slot_dec, slot_computed, slot_c0, slot_g0, slot_gen0, slot_ref,
             slot_private, slot_fin, slot_bprev, slot_bnext, bucket, mask, key_count, dec_cls,
             free_slots, num_free_slots, waitq, qcap, cpu_cached, cpu_prev, cpu_next, cpu_cap,
             reserve_full):
    """Preempt the request in slot ``s`` (recompute): free its KV, put it at the front of
    the waiting queue. Returns the new number of free slots."""
    r = slot_req[s]
    if slot_dec[s]:
        c = slot_c0[s] + G - slot_g0[s]
        private = slot_private[s]
        if not reserve_full:
            private += _cdiv(c, bs) - _cdiv(slot_c0[s], bs)
        generated[r] = slot_gen0[s] + G - slot_g0[s]
        finish[r] = last_client_t
        _decoder_leave(s, r, st, slot_c0, slot_g0, slot_fin, slot_bprev, slot_bnext, bucket,
                       mask, key_count, dec_cls, itl_cls, bs, reserve_full)
    else:
        c = slot_computed[s]
        private = slot_private[s]
    _release(r, c, private, True, st, bs, caching, src, start, pins, cached, lru_prev, lru_next,
             cpu_cached, cpu_prev, cpu_next, cpu_cap)
    _run_remove(st, s, slot_prev, slot_next)
    slot_req[s] = -1
    slot_dec[s] = False
    free_slots[num_free_slots] = s
    preemptions[r] += 1
    head = (st[_WAIT_HEAD] - 1) % qcap
    st[_WAIT_HEAD] = head
    waitq[head] = r
    st[_WAIT_COUNT] += 1
    return num_free_slots + 1

