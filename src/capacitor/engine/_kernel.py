"""The numba fast path: many replicas of one pool behind a router, one event loop.

Semantics per replica are :mod:`capacitor.engine.reference`'s (the simulator with one replica
reproduces it exactly). Data layout, chosen so that no step touches decoding requests one
by one:

* Running requests live in ``max_num_seqs`` *slots* per replica (``slots[rep, field, s]``),
  linked in admission order. At most one running request is mid-prefill, and it is the tail
  (a partial prefill takes the whole remaining budget, so nothing is admitted after it).
* A decoding slot stores only where it started: context ``c0`` and step index ``g0``. Its
  context at step ``G`` is ``c0 + G - g0``, so the batch's summed context is the running
  total ``sum(c0 - g0) + n_dec * (G + 1)``. It needs a new KV block at step ``G`` iff
  ``(c0 - g0) % block_size == (-G) % block_size``: a count per phase key gives the number of
  new blocks per step in O(1). Its last step ``g0 + remaining - 1`` is known at entry; slots
  are kept in a ring of per-step doubly linked buckets.
* Only when blocks run out does a step walk the running list (to preempt exactly as vLLM
  does); otherwise a decode-only step is O(1) plus O(1) per finishing request.
* Prefix-cache state is per node (cached block count, pin count, LRU links), never per block.
  Each replica has its own copy of every shared segment (node ``n + rep * S + s``); a
  request whose source ran on another replica shares only what that replica also holds.

The event loop takes, in time order, either the next *release* (a request sent: from the
pre-sorted initial list or the heap of dynamic releases — session rounds, closed-loop
clients) which the router assigns to a replica, or the next *replica event* (a replica whose
clock is earliest runs one scheduling iteration). Releases at the same time go first, as a
single engine pulls every arrival due before it schedules. When the router's candidates for
every release are known in advance (``look``, :mod:`capacitor.engine._lookahead`) there is
no replica heap: before a release is routed, each replica it may reach runs up to it, and
after the last release every replica runs to the end.

A stretch of decode-only steps runs in a tight loop that takes the step's fixed terms once
(:func:`capacitor.perf.step_time.step_time_head_touched_s`; the same floating-point sum)
and adds runs of inter-token gaps that share a histogram bin at once. The fraction of MoE experts a
step touches is looked up by token count in a table the kernel fills with the step model's
own expression. Slot fields are laid out slot by slot, so a slot's fields share cache lines.

Every function takes arrays and scalars only (no globals), so numba's on-disk cache stays
valid when configuration changes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from capacitor.engine._kernel_cache import (
    _allocate,
    _hit_blocks,
    _pin,
    _touch_range,
    _transfer,
    _unpin,
)
from capacitor.engine._kernel_util import (
    _add_decode_gaps,
    _add_gap_run,
    _cdiv,
    _heap_pop,
    _heap_push,
    _itl_bin,
    _itl_bin_interior,
    _itl_bin_near,
    _respond,
)
from capacitor.engine._pool import (
    _bind_source,
    _fail_replica,
    _flush_finished,
    _reset_replica,
    _route,
)
from capacitor.engine._slots import (
    _decoder_leave,
    _preempt,
    _release,
    _release_zombies,
    _run_append,
    _run_remove,
    _slot_free,
    _slot_progress,
    _wait_insert,
    _wait_pop_front,
    _wait_push_back,
)
from capacitor.engine._state import (
    _ACTIVE,
    _BUSY,
    _CUTOFF,
    _EVICTABLE,
    _FREE_UNCACHED,
    _G,
    _HEAP_SIZE,
    _INIT_PTR,
    _LAST_CLIENT_T,
    _MAX_USED,
    _N_DEC,
    _N_ZOMBIE,
    _NEXT_CLOSED,
    _NUM_FREE_SLOTS,
    _NUM_RUNNING,
    _NUM_STATE,
    _NUM_STATE_F,
    _PEND_N,
    _RUN_HEAD,
    _RUN_TAIL,
    _SEQ,
    _SUM_C0_G0,
    _T,
    _WAIT_COUNT,
    _WAIT_HEAD,
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
    F_PRIVATE,
    F_REF,
    F_REQ,
    F_SCHED,
    F_SEQ,
    NUM_SLOT_FIELDS,
    S_COMPLETED,
    S_REJECTED,
    S_SHED,
)
from capacitor.perf.step_time import (
    C_MOE_TOPK_FRACTION,
    moe_touched_fraction,
    moe_touched_lookup,
    step_time_attention_s,
    step_time_comm_s,
    step_time_head_touched_s,
    step_time_touched_s,
)

STALLED = 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def fleet_kernel(
    arrival,
    prompt,
    output,
    rejected,
    itl_cls,
    init_order,
    init_identity,
    child_gate,
    child_idx,
    heap_cap,
    orig_src,
    orig_plen,
    src,
    start,
    node_rep,
    num_segments,
    shareable,
    coeffs,
    num_replicas,
    policy,
    route_key,
    pick2,
    max_queue,
    fail_t,
    fail_rep,
    fail_repair_s,
    tenant,
    max_concurrent,
    ttft_limit_s,
    prefill_tokens_per_s,
    by_priority,
    prio,
    max_num_seqs,
    budget_max,
    bs,
    num_blocks,
    caching,
    ingress,
    egress,
    conc,
    cpu_cap,
    cpu_load_s,
    reserve_full,
    async_sched,
    max_depth,
    ring_size,
    num_classes,
    send,
    first,
    finish,
    status,
    replica,
    preemptions,
    cached_tokens,
    itl_hist,
    itl_sum,
    itl_count,
    itl_edges,
    stats,
    busy_bins,
    seq_bins,
    bin_s,
    look,
    look_cand,
    look_next,
    look_first,
):
    """Run a pool of ``num_replicas`` identical replicas to completion. Per-request outputs
    are filled in place (``finish`` holds the last client token time while unfinished);
    ``stats`` gets [steps, peak KV blocks, busy seconds] summed over replicas;
    ``busy_bins[rep, k]`` the busy seconds of steps starting in ``[k, k+1) * bin_s`` (the last
    bin takes everything later) and ``seq_bins`` the same weighted by the step's sequences.
    ``look`` lets a replica step on until the next release that may reach it
    (:mod:`capacitor.engine._lookahead`: ``look_cand`` / ``look_next`` / ``look_first``)
    instead of the next release anywhere. Returns 0, or STALLED."""
    n = prompt.shape[0]
    R = num_replicas
    num_nodes = n + R * num_segments
    gst = np.zeros(_NUM_STATE, np.int64)
    gst[_NEXT_CLOSED] = conc
    st = np.zeros((R, _NUM_STATE), np.int64)
    stf = np.zeros((R, _NUM_STATE_F), np.float64)
    stf[:, _CUTOFF] = math.inf
    S = max_num_seqs
    # indexed [rep, field, slot] but laid out slot by slot: a slot's fields share a cache line
    slots = np.zeros((R, S, NUM_SLOT_FIELDS), np.int64).transpose(0, 2, 1)
    bucket = np.empty((R, ring_size), np.int32)
    key_count = np.empty((R, bs), np.int64)
    dec_cls = np.empty((R, num_classes), np.int64)
    for rep in range(R):
        _reset_replica(st[rep], slots[rep], bucket[rep], key_count[rep], dec_cls[rep], num_blocks)
    outstanding = np.zeros(R, np.int64)
    pend = np.zeros((R, S), np.int64)  # per replica: requests finished in the last step
    # async scheduling, per replica: requests finished in the last step whose blocks are
    # released once the next step is decided (request, tokens computed, private blocks)
    zomb = np.zeros((R, 3, S if async_sched else 1), np.int64)
    inflight = np.zeros(max_concurrent.shape[0], np.int64)  # per tenant, routed & unfinished
    # MoE experts touched by a step of T tokens, by T (a power per step is costly); the
    # same expression as step_time_s, so the same floating-point values
    touched_tab = np.zeros(budget_max + 1 if coeffs[C_MOE_TOPK_FRACTION] > 0.0 else 0)
    for T in range(touched_tab.shape[0]):
        touched_tab[T] = moe_touched_fraction(coeffs, float(T))
    # NOTE: per-node and per-request state is int32 for memory (~100 bytes per request)
    # src / start: the prefix chains as bound to replicas (see _bind_source); with one
    # replica binding changes nothing, so the caller passes the original chains themselves
    cached = np.zeros(num_nodes, np.int32)
    pins = np.zeros(num_nodes, np.int32)
    lru_prev = np.full(num_nodes, -1, np.int32)
    lru_next = np.full(num_nodes, -1, np.int32)
    cpu_nodes = num_nodes if cpu_cap > 0 else 1
    cpu_cached = np.zeros(cpu_nodes, np.int32)
    cpu_prev = np.full(cpu_nodes, -1, np.int32)
    cpu_next = np.full(cpu_nodes, -1, np.int32)
    generated = np.zeros(n, np.int32)
    wait_next = np.full(n, -1, np.int32)
    chain = np.zeros(max_depth + 2, np.int64)
    heap_t = np.zeros(heap_cap + 1, np.float64)
    heap_i = np.zeros(heap_cap + 1, np.int32)
    rh_state = np.zeros(_NUM_STATE, np.int64)  # replica-event heap size lives at _HEAP_SIZE
    rh_t = np.zeros(R + 1, np.float64)
    rh_r = np.zeros(R + 1, np.int32)
    pf_slot = np.zeros(S, np.int64)
    pf_q = np.zeros(S, np.int64)
    fin_slots = np.zeros(S, np.int64)
    num_init = n if init_identity else init_order.shape[0]
    inv_bin = 1.0 / bin_s
    last_bin = busy_bins.shape[1] - 1
    down_until = np.full(R, -math.inf)
    # per replica: the ITL bin its last decode-only gap fell in, and that bin's interior
    gap_b = np.ones(R, np.int64)
    gap_lo = np.full(R, math.inf)
    gap_hi = np.full(R, -math.inf)
    nxt_pos = look_first.copy()  # per replica: the next release position that may reach it
    fail_ptr = 0
    end_ptr = 0

    while True:
        # the next release: pre-sorted initial requests merged with the dynamic heap
        it = math.inf
        ii = -1
        if gst[_INIT_PTR] < num_init:
            ii = gst[_INIT_PTR] if init_identity else init_order[gst[_INIT_PTR]]
            it = send[ii] + ingress
        from_heap = False
        if gst[_HEAP_SIZE] > 0:
            ht = heap_t[0]
            hi = heap_i[0]
            if ht < it or (ht == it and hi < ii):
                it = ht
                ii = hi
                from_heap = True
        t_rep = rh_t[0] if rh_state[_HEAP_SIZE] > 0 else math.inf
        look_rep = -1
        if look:
            # no replica heap: before a release is routed, each replica it may reach runs
            # up to it; after the last release, every replica runs to the end
            if ii >= 0:
                pos = gst[_INIT_PTR]
                for s_ in range(2):
                    c_ = look_cand[pos, s_]
                    if c_ >= 0 and st[c_, _ACTIVE] and stf[c_, _T] < it:
                        look_rep = c_
                        break
            else:
                while end_ptr < R and not st[end_ptr, _ACTIVE]:
                    end_ptr += 1
                if end_ptr < R:
                    look_rep = end_ptr
            if look_rep >= 0:
                t_rep = -math.inf
        t_fail = fail_t[fail_ptr] if fail_ptr < fail_t.shape[0] else math.inf
        if t_fail < it and t_fail <= t_rep:
            # ---- a replica fails: running requests are lost, waiting ones re-routed
            rep = fail_rep[fail_ptr]
            fail_ptr += 1
            now = t_fail
            if st[rep, _ACTIVE] and stf[rep, _T] > now:
                now = stf[rep, _T]  # the step in progress completes first
            _flush_finished(st[rep], pend, rep, tenant, inflight, outstanding, prompt, output)
            _release_zombies(
                st[rep],
                zomb[rep],
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
            )
            _fail_replica(
                rep,
                now,
                st[rep],
                stf[rep],
                slots[rep],
                bucket[rep],
                key_count[rep],
                dec_cls[rep],
                src,
                cached,
                pins,
                lru_next,
                cpu_cached,
                cpu_next,
                wait_next,
                status,
                finish,
                n,
                arrival,
                send,
                ingress,
                child_gate,
                child_idx,
                conc,
                gst,
                heap_t,
                heap_i,
                num_blocks,
                tenant,
                inflight,
            )
            outstanding[rep] = 0
            down_until[rep] = now + fail_repair_s[fail_ptr - 1]
            continue
        if ii >= 0 and it <= t_rep:
            if from_heap:
                _heap_pop(heap_t, heap_i, gst)
            else:
                if look:
                    pos = gst[_INIT_PTR]
                    for s_ in range(2):
                        c_ = look_cand[pos, s_]
                        if c_ >= 0:
                            nxt_pos[c_] = look_next[pos, s_]
                gst[_INIT_PTR] += 1
            refused = S_REJECTED if rejected[ii] else 0  # too long: HTTP 400 at once
            rep = -1
            k_t = 0
            if not refused:
                rep = _route(ii, policy, R, gst, outstanding, route_key, pick2, down_until, it)
                replica[ii] = rep
                refuse = rep < 0 or (max_queue > 0 and st[rep, _WAIT_COUNT] >= max_queue)
                k_t = tenant[ii] if tenant.shape[0] > 1 else 0
                if not refuse and 0 < max_concurrent[k_t] <= inflight[k_t]:
                    refuse = True  # the tenant's concurrent-request limit
                if not refuse and ttft_limit_s > 0:
                    # predicted TTFT: the prompts waiting ahead (and this one) at the
                    # replica's prefill rate, after the step in progress
                    queued = float(prompt[ii])
                    j = st[rep, _WAIT_HEAD]
                    for _ in range(st[rep, _WAIT_COUNT]):
                        queued += prompt[j] + generated[j]
                        j = wait_next[j]
                    predicted = queued / prefill_tokens_per_s + max(stf[rep, _T] - it, 0.0)
                    refuse = predicted > ttft_limit_s
                if refuse:
                    refused = S_SHED
            if refused:
                status[ii] = refused
                finish[ii] = send[ii]
                _respond(
                    ii,
                    send[ii],
                    n,
                    arrival,
                    send,
                    ingress,
                    child_gate,
                    child_idx,
                    conc,
                    gst,
                    heap_t,
                    heap_i,
                )
                continue
            if R > 1:
                _bind_source(
                    ii, rep, n, num_segments, bs, orig_src, orig_plen, node_rep, src, start
                )
            outstanding[rep] += prompt[ii] + output[ii]
            if by_priority:
                _wait_insert(st[rep], wait_next, ii, prio, send, ingress)
            else:
                _wait_push_back(st[rep], wait_next, ii)
            inflight[k_t] += 1
            if st[rep, _NUM_RUNNING] == 0 and st[rep, _WAIT_COUNT] == 1 and it > stf[rep, _T]:
                stf[rep, _T] = it  # an idle replica wakes at the arrival
            if st[rep, _ACTIVE] == 0:
                st[rep, _ACTIVE] = 1
                if it > stf[rep, _T]:
                    stf[rep, _T] = it
                if not look:
                    _heap_push(rh_t, rh_r, rh_state, stf[rep, _T], rep)
            continue
        if look_rep >= 0:
            rep = look_rep
        else:
            if rh_state[_HEAP_SIZE] == 0:
                break
            t_popped = rh_t[0]
            rep = _heap_pop(rh_t, rh_r, rh_state)
            if stf[rep, _T] > t_popped:  # its clock moved on (woken later, or failed): requeue
                _heap_push(rh_t, rh_r, rh_state, stf[rep, _T], rep)
                continue
        # ---- scheduling iterations of replica ``rep`` from its clock, for as long as it holds
        # the earliest event: in lockstep, until the next release anywhere or another
        # replica's earlier event (it then re-enters the replica heap); with ``look``, until
        # the next release that may reach it (run again before that release is routed). (The
        # body of the engine, kept in this function because a call with this many array
        # arguments costs more than the steps it runs -- NOTE: for performance only.)
        sr = st[rep]
        sf = stf[rep]
        sl = slots[rep]
        bk = bucket[rep]
        kc = key_count[rep]
        dc = dec_cls[rep]
        while True:
            _flush_finished(sr, pend, rep, tenant, inflight, outstanding, prompt, output)
            until_t = math.inf  # next release anywhere (inlined for performance)
            if look:  # ... or the next that may reach this replica
                if nxt_pos[rep] < num_init:
                    until_t = send[nxt_pos[rep] if init_identity else init_order[nxt_pos[rep]]]
                    until_t += ingress
            else:
                if gst[_INIT_PTR] < num_init:
                    q_ = gst[_INIT_PTR]
                    until_t = send[q_ if init_identity else init_order[q_]] + ingress
                if gst[_HEAP_SIZE] > 0 and heap_t[0] < until_t:
                    until_t = heap_t[0]
            for _once in range(1):
                n = prompt.shape[0]
                mask = bk.shape[0] - 1
                t = sf[_T]
                G = sr[_G]
                # ---- decode-only stretch: while nothing can join, leave, or be preempted, a step
                # is O(1): no prefill, no admission possible, no arrival due, no finish this step.
                # Admission is impossible when nothing waits, every seat is taken (finished
                # requests awaiting release included) or, with async scheduling, the first
                # waiting request arrived after the step was decided (``cutoff``).
                # NOTE: identical arithmetic to the general path below, for performance only.
                tail = sr[_RUN_TAIL]
                if tail >= 0 and sl[F_DEC, tail] and until_t > t and bk[G & mask] < 0:
                    n_dec = sr[_N_DEC]
                    last_client_t = sf[_LAST_CLIENT_T]
                    busy = sf[_BUSY]
                    max_used = sr[_MAX_USED]
                    cutoff = sf[_CUTOFF]
                    free_u = sr[_FREE_UNCACHED]
                    evictable = sr[_EVICTABLE]
                    kidx = (-G) % bs
                    dec_ctx = sr[_SUM_C0_G0] + n_dec * (G + 1)
                    # when the first waiting request may take a seat (it joins once a step is
                    # decided after its arrival); nothing is routed here, so this holds
                    # until the last step's finishes leave
                    join_t = math.inf
                    if sr[_WAIT_COUNT] > 0 and sr[_NUM_RUNNING] + sr[_N_ZOMBIE] < max_num_seqs:
                        join_t = send[sr[_WAIT_HEAD]] + ingress
                    # ITL: a run of steps whose gaps share a histogram bin is added at once
                    gb = gap_b[rep]
                    g_lo = gap_lo[rep]
                    g_hi = gap_hi[rep]
                    g_steps = 0
                    g_sum = 0.0
                    # the batch's shape is fixed: only its context grows (same arithmetic
                    # as step_time_s: head + attention + communication)
                    touched = moe_touched_lookup(touched_tab, coeffs, n_dec)
                    head_s = step_time_head_touched_s(
                        coeffs, float(n_dec), float(n_dec), 0.0, touched
                    )
                    comm_s = step_time_comm_s(coeffs, float(n_dec))
                    zombies = sr[_N_ZOMBIE]
                    G_in = G
                    while True:
                        if join_t <= cutoff:
                            break  # someone may join: the general path decides
                        need = kc[kidx]
                        if free_u >= need:
                            free_u -= need
                        else:
                            sr[_FREE_UNCACHED] = free_u
                            ok = _allocate(sr, need, cached, lru_prev, lru_next)
                            free_u = sr[_FREE_UNCACHED]
                            evictable = sr[_EVICTABLE]
                            if not ok:
                                break
                        if zombies > 0:  # decided: the last step's finishes leave
                            zombies = 0
                            sr[_FREE_UNCACHED] = free_u
                            for zk in range(sr[_N_ZOMBIE]):  # (inlined: a call per step is costly)
                                zr = zomb[rep, 0, zk]
                                _release(
                                    zr,
                                    zomb[rep, 1, zk],
                                    zomb[rep, 2, zk],
                                    shareable[zr],
                                    sr,
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
                            sr[_N_ZOMBIE] = 0
                            free_u = sr[_FREE_UNCACHED]
                            evictable = sr[_EVICTABLE]
                            if sr[_WAIT_COUNT] > 0 and sr[_NUM_RUNNING] < max_num_seqs:
                                join_t = send[sr[_WAIT_HEAD]] + ingress
                        d = head_s + step_time_attention_s(coeffs, 0.0, float(dec_ctx)) + comm_s
                        t_end = t + d
                        busy += d
                        bi = min(int(t * inv_bin), last_bin)
                        busy_bins[rep, bi] += d
                        seq_bins[rep, bi] += d * n_dec
                        client_t = t_end + egress
                        gap = client_t - last_client_t
                        if not (g_lo < gap < g_hi):
                            if g_steps > 0:
                                _add_gap_run(itl_hist, itl_sum, itl_count, dc, gb, g_steps, g_sum)
                            gb = _itl_bin_near(gap, gb, itl_edges)
                            g_lo, g_hi = _itl_bin_interior(gb, itl_edges)
                            g_steps = 0
                            g_sum = 0.0
                        g_steps += 1
                        g_sum += gap
                        last_client_t = client_t
                        if async_sched:
                            cutoff = t  # the next step was decided as this one started
                        t = t_end
                        G += 1
                        dec_ctx += n_dec
                        kidx = kidx - 1 if kidx > 0 else bs - 1
                        if until_t <= t or bk[G & mask] >= 0:
                            break
                    sr[_FREE_UNCACHED] = free_u
                    if G > G_in:
                        # blocks in use only grow after the first step's releases
                        used = num_blocks - free_u - evictable
                        if used > max_used:
                            max_used = used
                        if g_steps > 0:
                            _add_gap_run(itl_hist, itl_sum, itl_count, dc, gb, g_steps, g_sum)
                        gap_b[rep] = gb
                        gap_lo[rep] = g_lo
                        gap_hi[rep] = g_hi
                        sf[_CUTOFF] = cutoff
                        sf[_T] = t
                        sf[_LAST_CLIENT_T] = last_client_t
                        sf[_BUSY] = busy
                        sr[_MAX_USED] = max_used
                        sr[_G] = G
                    if until_t <= t:
                        break

                last_client_t = sf[_LAST_CLIENT_T]
                # ---- schedule: running requests first
                budget = budget_max
                preempted_any = False
                loaded_blocks = 0
                kidx = (-G) % bs
                n_pf = 0
                tail = sr[_RUN_TAIL]
                has_p = tail >= 0 and not sl[F_DEC, tail]
                need_dec = kc[kidx]
                need_p = 0
                q_p = 0
                if has_p:
                    r = sl[F_REQ, tail]
                    q_p = min(prompt[r] + generated[r] - sl[F_COMPUTED, tail], budget - sr[_N_DEC])
                    need_p = (
                        _cdiv(sl[F_COMPUTED, tail] + q_p, bs)
                        - sl[F_REF, tail]
                        - sl[F_PRIVATE, tail]
                    )
                if sr[_FREE_UNCACHED] + sr[_EVICTABLE] >= need_dec + need_p:
                    _allocate(sr, need_dec + need_p, cached, lru_prev, lru_next)
                    if has_p:
                        sl[F_PRIVATE, tail] += max(need_p, 0)
                        pf_slot[0] = tail
                        pf_q[0] = q_p
                        n_pf = 1
                else:
                    # Slow path, exactly vLLM's loop: walk in order, preempt from the tail.
                    s = sr[_RUN_HEAD]
                    n_sched_dec = 0
                    while s >= 0:
                        nxt = sl[F_NEXT, s]
                        r = sl[F_REQ, s]
                        if sl[F_DEC, s]:
                            c = sl[F_C0, s] + G - sl[F_G0, s]
                            need = 1 if c % bs == 0 else 0
                            q = 1
                        else:
                            q = min(
                                prompt[r] + generated[r] - sl[F_COMPUTED, s], budget - n_sched_dec
                            )
                            need = (
                                _cdiv(sl[F_COMPUTED, s] + q, bs) - sl[F_REF, s] - sl[F_PRIVATE, s]
                            )
                        ok = True
                        while not _allocate(sr, need, cached, lru_prev, lru_next):
                            victim = sr[_RUN_TAIL]
                            extra = 0
                            if by_priority:
                                # the lowest-priority, latest-arriving running request
                                victim = sr[_RUN_HEAD]
                                v = sl[F_NEXT, victim]
                                while v >= 0:
                                    rv, rb = sl[F_REQ, v], sl[F_REQ, victim]
                                    if (prio[rv], send[rv] + ingress, rv) > (
                                        prio[rb],
                                        send[rb] + ingress,
                                        rb,
                                    ):
                                        victim = v
                                    v = sl[F_NEXT, v]
                                if sl[F_SCHED, victim] == G + 1:  # scheduled already: undo
                                    if sl[F_DEC, victim]:
                                        n_sched_dec -= 1
                                        cv = sl[F_C0, victim] + G - sl[F_G0, victim]
                                        if not reserve_full and cv % bs == 0:
                                            extra = 1
                                    else:
                                        for a in range(n_pf):
                                            if pf_slot[a] == victim:
                                                pf_slot[a] = pf_slot[n_pf - 1]
                                                pf_q[a] = pf_q[n_pf - 1]
                                                n_pf -= 1
                                                break
                            _preempt(
                                victim,
                                sr,
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
                                bk,
                                mask,
                                kc,
                                dc,
                                wait_next,
                                cpu_cached,
                                cpu_prev,
                                cpu_next,
                                cpu_cap,
                                reserve_full,
                                extra,
                                by_priority,
                                prio,
                                send,
                                ingress,
                            )
                            preempted_any = True
                            if victim == s:
                                ok = False
                                break
                        if not ok:
                            if by_priority:  # go on with the first request not yet scheduled
                                s = sr[_RUN_HEAD]
                                while s >= 0 and sl[F_SCHED, s] == G + 1:
                                    s = sl[F_NEXT, s]
                                continue
                            break
                        sl[F_SCHED, s] = G + 1
                        if sl[F_DEC, s]:
                            n_sched_dec += 1
                        else:
                            sl[F_PRIVATE, s] += max(need, 0)
                            pf_slot[n_pf] = s
                            pf_q[n_pf] = q
                            n_pf += 1
                        if s == sr[_RUN_TAIL]:
                            break
                        s = sl[F_NEXT, s]  # (not nxt: a priority preemption may have taken it)
                budget -= sr[_N_DEC]
                for k in range(n_pf):
                    budget -= pf_q[k]

                # ---- then waiting requests, unless something was preempted
                if not preempted_any:
                    while (
                        sr[_WAIT_COUNT] > 0
                        and budget > 0
                        and sr[_NUM_RUNNING] + sr[_N_ZOMBIE] < max_num_seqs
                    ):
                        r = sr[_WAIT_HEAD]
                        if send[r] + ingress > sf[_CUTOFF]:
                            break  # arrived after this step was decided (async scheduling)
                        _pin(sr, r, src, pins, cached, lru_prev, lru_next)
                        num_tok = prompt[r] + generated[r]
                        hit = 0
                        total = 0
                        if caching:
                            hit = _hit_blocks(
                                r, num_tok, bs, src, start, cached, chain, cpu_cached, False
                            )
                            total = hit
                            if cpu_cap > 0:
                                total = _hit_blocks(
                                    r, num_tok, bs, src, start, cached, chain, cpu_cached, True
                                )
                        q = min(num_tok - total * bs, budget)
                        need = _cdiv(total * bs + q, bs) - hit
                        if reserve_full:  # blocks for the whole request, up front
                            need = _cdiv(prompt[r] + output[r], bs) - hit
                        if not _allocate(sr, need, cached, lru_prev, lru_next):
                            _unpin(sr, r, src, pins, cached, lru_prev, lru_next)
                            break
                        _wait_pop_front(sr, wait_next)
                        sr[_NUM_FREE_SLOTS] -= 1
                        s = sl[F_FREE, sr[_NUM_FREE_SLOTS]]
                        sl[F_REQ, s] = r
                        sl[F_DEC, s] = 0
                        sl[F_COMPUTED, s] = total * bs
                        sl[F_REF, s] = hit
                        sl[F_PRIVATE, s] = need
                        sl[F_SEQ, s] = sr[_SEQ]
                        sr[_SEQ] += 1
                        _run_append(sr, sl, s)
                        if total > hit:
                            # host-tier hit: load the blocks back, as if computed
                            loaded_blocks += total - hit
                            _touch_range(
                                r,
                                hit,
                                total,
                                src,
                                start,
                                chain,
                                sr,
                                cached,
                                cpu_cached,
                                cpu_prev,
                                cpu_next,
                                cpu_cap,
                            )
                            moved = _transfer(
                                r,
                                hit * bs,
                                total * bs,
                                bs,
                                src,
                                start,
                                cached,
                                chain,
                                sr,
                                cpu_cached,
                                cpu_prev,
                                cpu_next,
                                cpu_cap,
                            )
                            sl[F_PRIVATE, s] -= moved
                            sl[F_REF, s] += moved
                        if cached_tokens[r] < 0:
                            cached_tokens[r] = total * bs
                        pf_slot[n_pf] = s
                        pf_q[n_pf] = q
                        n_pf += 1
                        budget -= q

                # the last step's finishes leave once this step is decided (async scheduling)
                for zk in range(sr[_N_ZOMBIE]):  # (inlined: a call per step is costly)
                    zr = zomb[rep, 0, zk]
                    _release(
                        zr,
                        zomb[rep, 1, zk],
                        zomb[rep, 2, zk],
                        shareable[zr],
                        sr,
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
                sr[_N_ZOMBIE] = 0
                n_dec = sr[_N_DEC]
                if n_dec == 0 and n_pf == 0:
                    if (
                        sr[_NUM_RUNNING] == 0
                        and sr[_WAIT_COUNT] > 0
                        and not preempted_any
                        and sf[_CUTOFF] == math.inf
                    ):
                        return STALLED
                    sf[_CUTOFF] = math.inf  # nothing in flight: the next decision sees all
                    break

                used = num_blocks - sr[_FREE_UNCACHED] - sr[_EVICTABLE]
                if used > sr[_MAX_USED]:
                    sr[_MAX_USED] = used
                # ---- step duration
                num_tok = n_dec
                pairs = 0
                for k in range(n_pf):
                    q = pf_q[k]
                    num_tok += q
                    pairs += q * sl[F_COMPUTED, pf_slot[k]] + q * (q + 1) // 2
                dec_ctx = sr[_SUM_C0_G0] + n_dec * (G + 1)
                touched = moe_touched_lookup(touched_tab, coeffs, num_tok)
                d = step_time_touched_s(
                    coeffs,
                    float(num_tok),
                    float(n_dec + n_pf),
                    float(n_pf),
                    float(pairs),
                    float(dec_ctx),
                    touched,
                )
                d += loaded_blocks * cpu_load_s
                t_end = t + d
                if async_sched:
                    sf[_CUTOFF] = t  # the next step was decided as this one started
                sf[_BUSY] += d
                busy_bins[rep, min(int(t * inv_bin), last_bin)] += d
                seq_bins[rep, min(int(t * inv_bin), last_bin)] += d * (n_dec + n_pf)
                client_t = t_end + egress

                # ---- decode tokens: one gap per decoding request, all equal to this step's
                if n_dec > 0:
                    _add_decode_gaps(itl_hist, itl_sum, itl_count, dc, client_t - last_client_t)
                n_fin = 0
                s = bk[G & mask]
                while s >= 0:
                    fin_slots[n_fin] = s
                    n_fin += 1
                    s = sl[F_BNEXT, s]
                # ---- prefill chunks: progress, cache transfer, first tokens
                for k in range(n_pf):
                    s = pf_slot[k]
                    r = sl[F_REQ, s]
                    old = sl[F_COMPUTED, s]
                    new = old + pf_q[k]
                    sl[F_COMPUTED, s] = new
                    if caching and old < start[r] * bs:
                        moved = _transfer(
                            r,
                            old,
                            new,
                            bs,
                            src,
                            start,
                            cached,
                            chain,
                            sr,
                            cpu_cached,
                            cpu_prev,
                            cpu_next,
                            cpu_cap,
                        )
                        sl[F_PRIVATE, s] -= moved
                        sl[F_REF, s] += moved
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
                    sl[F_DEC, s] = 1
                    sl[F_C0, s] = new
                    sl[F_G0, s] = G + 1
                    sl[F_GEN0, s] = generated[r]
                    fin = G + 1 + output[r] - generated[r] - 1
                    sl[F_FIN, s] = fin
                    key = (new - (G + 1)) % bs
                    if not reserve_full:  # reserved requests never allocate while decoding
                        kc[key] += 1
                    sr[_SUM_C0_G0] += new - (G + 1)
                    sr[_N_DEC] += 1
                    if itl_cls[r] >= 0:
                        dc[itl_cls[r]] += 1
                    head = bk[fin & mask]
                    sl[F_BPREV, s] = -1
                    sl[F_BNEXT, s] = head
                    if head >= 0:
                        sl[F_BPREV, head] = s
                    bk[fin & mask] = s
                # ---- finishes, in admission order (as vLLM frees them)
                # insertion sort by admission sequence (few finish per step; no allocation)
                for a in range(1, n_fin):
                    x = fin_slots[a]
                    j = a - 1
                    while j >= 0 and sl[F_SEQ, fin_slots[j]] > sl[F_SEQ, x]:
                        fin_slots[j + 1] = fin_slots[j]
                        j -= 1
                    fin_slots[j + 1] = x
                for k in range(n_fin):
                    s = fin_slots[k]
                    r = sl[F_REQ, s]
                    if sl[F_DEC, s]:
                        c, private, gen = _slot_progress(s, sl, G + 1, bs, reserve_full)
                        generated[r] = gen
                        _decoder_leave(s, r, sr, sl, bk, mask, kc, dc, itl_cls, bs, reserve_full)
                    else:
                        c = sl[F_COMPUTED, s]
                        private = sl[F_PRIVATE, s]
                    if async_sched:  # released once the next step is decided
                        z = sr[_N_ZOMBIE]
                        zomb[rep, 0, z] = r
                        zomb[rep, 1, z] = c
                        zomb[rep, 2, z] = private
                        sr[_N_ZOMBIE] = z + 1
                    else:
                        _release(
                            r,
                            c,
                            private,
                            shareable[r],
                            sr,
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
                    _run_remove(sr, sl, s)
                    _slot_free(sr, sl, s)
                    finish[r] = client_t
                    status[r] = S_COMPLETED
                    # the router sees the finish at the step's end, not its start
                    pend[rep, sr[_PEND_N]] = r
                    sr[_PEND_N] += 1
                    if conc > 0 or child_gate.shape[0] > 0:  # someone may wait on it
                        _respond(
                            r,
                            client_t,
                            n,
                            arrival,
                            send,
                            ingress,
                            child_gate,
                            child_idx,
                            conc,
                            gst,
                            heap_t,
                            heap_i,
                        )
                sf[_LAST_CLIENT_T] = client_t
                sf[_T] = t_end
                sr[_G] = G + 1
                break
            if sr[_NUM_RUNNING] == 0 and sr[_WAIT_COUNT] == 0 and sr[_PEND_N] == 0:
                sr[_ACTIVE] = 0
                break
            now = sf[_T]
            nxt = math.inf
            if look:  # nothing else couples the replicas: stop only at a release it may get
                if nxt_pos[rep] < num_init:
                    nxt = send[nxt_pos[rep] if init_identity else init_order[nxt_pos[rep]]]
                    nxt += ingress
                if nxt <= now:
                    break
                continue
            if gst[_INIT_PTR] < num_init:
                nxt = send[gst[_INIT_PTR] if init_identity else init_order[gst[_INIT_PTR]]]
                nxt += ingress
            if gst[_HEAP_SIZE] > 0 and heap_t[0] < nxt:
                nxt = heap_t[0]
            if nxt <= now or (
                rh_state[_HEAP_SIZE] > 0 and (rh_t[0] < now or (rh_t[0] == now and rh_r[0] < rep))
            ):
                _heap_push(rh_t, rh_r, rh_state, now, rep)
                break

    for rep in range(R):
        stats[0] += st[rep, _G]
        stats[1] = max(stats[1], st[rep, _MAX_USED])
        stats[2] += stf[rep, 2]
    return 0
