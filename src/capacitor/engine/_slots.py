"""Running-request slots and waiting lists of one replica: the admission-ordered running
list, the decoders' finish ring, leaving (finish) and preemption.

``rep`` is a :class:`capacitor.engine._records.Replica`: views of one replica's rows. A
decoding slot sits in the bucket of the step that emits its last token; the ring of
buckets is a power of two long, longer than any output, so ``step & mask`` never wraps
onto a live bucket::

    finish_ring:  [ step & mask ] -> slot -> slot -> -1     (F_RING_NEXT / F_RING_PREV)

A waiting list is singly linked through ``wait_next`` (per request), FCFS or ordered by
(priority, engine arrival, id) as vLLM's priority queue orders it.
"""

from __future__ import annotations

import numba

from capacitor.engine._kernel_cache import _cpu_touch, _unpin
from capacitor.engine._kernel_util import _cdiv
from capacitor.engine._speculative import _decode_pos, _spec_join
from capacitor.engine._state import (
    F_CTX0,
    F_DEC,
    F_FREE_STACK,
    F_GENERATED0,
    F_LAST_STEP,
    F_NEXT,
    F_NUM_COMPUTED,
    F_PREV,
    F_PRIVATE_BLOCKS,
    F_REQ,
    F_RING_NEXT,
    F_RING_PREV,
    F_STEP0,
    FREE_UNCACHED,
    NUM_DECODING,
    NUM_FREE_SLOTS,
    NUM_RUNNING,
    NUM_UNRELEASED,
    NUM_WAITING,
    RUN_HEAD,
    RUN_TAIL,
    SUM_CTX0_MINUS_STEP0,
    U_COMPUTED,
    U_PRIVATE,
    U_REQ,
    WAIT_HEAD,
    WAIT_TAIL,
)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _run_append(sched, slots, s):
    """Slot ``s`` joins the running list at the tail."""
    tail = sched[RUN_TAIL]
    slots[F_PREV, s] = tail
    slots[F_NEXT, s] = -1
    if tail >= 0:
        slots[F_NEXT, tail] = s
    else:
        sched[RUN_HEAD] = s
    sched[RUN_TAIL] = s
    sched[NUM_RUNNING] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _run_remove(sched, slots, s):
    """Slot ``s`` leaves the running list."""
    p = slots[F_PREV, s]
    q = slots[F_NEXT, s]
    if p >= 0:
        slots[F_NEXT, p] = q
    else:
        sched[RUN_HEAD] = q
    if q >= 0:
        slots[F_PREV, q] = p
    else:
        sched[RUN_TAIL] = p
    sched[NUM_RUNNING] -= 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _slot_take(sched, slots):
    """A free slot (popped from the free stack)."""
    sched[NUM_FREE_SLOTS] -= 1
    return slots[F_FREE_STACK, sched[NUM_FREE_SLOTS]]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _slot_free(sched, slots, s):
    """Slot ``s`` goes back on the free stack."""
    slots[F_REQ, s] = -1
    slots[F_DEC, s] = 0
    slots[F_FREE_STACK, sched[NUM_FREE_SLOTS]] = s
    sched[NUM_FREE_SLOTS] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _wait_push_back(sched, wait_next, i):
    wait_next[i] = -1
    if sched[NUM_WAITING] == 0:
        sched[WAIT_HEAD] = i
    else:
        wait_next[sched[WAIT_TAIL]] = i
    sched[WAIT_TAIL] = i
    sched[NUM_WAITING] += 1


@numba.njit(cache=True, error_model="numpy")
def _wait_push_front(sched, wait_next, i):
    if sched[NUM_WAITING] == 0:
        wait_next[i] = -1
        sched[WAIT_TAIL] = i
    else:
        wait_next[i] = sched[WAIT_HEAD]
    sched[WAIT_HEAD] = i
    sched[NUM_WAITING] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _wait_insert(sched, wait_next, i, priority, send_s, ingress_s):
    """Insert ``i`` into the waiting list ordered by (priority, engine arrival, index), as
    vLLM's priority queue orders requests."""
    ki = (priority[i], send_s[i] + ingress_s, i)
    prev = -1
    cur = sched[WAIT_HEAD] if sched[NUM_WAITING] > 0 else -1
    for _ in range(sched[NUM_WAITING]):
        if (priority[cur], send_s[cur] + ingress_s, cur) > ki:
            break
        prev = cur
        cur = wait_next[cur]
    if prev < 0:
        _wait_push_front(sched, wait_next, i)
    elif prev == sched[WAIT_TAIL]:
        _wait_push_back(sched, wait_next, i)
    else:
        wait_next[i] = wait_next[prev]
        wait_next[prev] = i
        sched[NUM_WAITING] += 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _wait_pop_front(sched, wait_next):
    i = sched[WAIT_HEAD]
    sched[WAIT_HEAD] = wait_next[i]
    sched[NUM_WAITING] -= 1
    return i


@numba.njit(cache=True, error_model="numpy", inline="always")
def _decoder_join(s, r, step, rep, itl_class, num_generated, output_len, block_size,
                  reserve_full_request, spec_fp):
    """Slot ``s`` (request ``r``, its prompt done, ``num_generated`` tokens out) decodes
    from step ``step``: it joins the phase counts, the running totals and the bucket of its
    last step. Its decode position (``F_STEP0``) is the step, or with speculative decoding
    (``spec_fp`` > 0) ``pos(step)`` (:mod:`capacitor.engine._speculative`)."""
    slots = rep.slots
    ctx0 = slots[F_NUM_COMPUTED, s]
    pos0 = step
    last = step + output_len - num_generated - 1
    if spec_fp:
        pos0, last = _spec_join(step, output_len - num_generated, spec_fp)
    slots[F_DEC, s] = 1
    slots[F_CTX0, s] = ctx0
    slots[F_STEP0, s] = pos0
    slots[F_GENERATED0, s] = num_generated
    slots[F_LAST_STEP, s] = last
    if not reserve_full_request:  # reserved requests never allocate while decoding
        rep.num_by_phase[(ctx0 - pos0) % block_size] += 1
    rep.sched[SUM_CTX0_MINUS_STEP0] += ctx0 - pos0
    rep.sched[NUM_DECODING] += 1
    if itl_class[r] >= 0:
        rep.num_by_class[itl_class[r]] += 1
    ring = rep.finish_ring
    mask = ring.shape[0] - 1
    head = ring[last & mask]
    slots[F_RING_PREV, s] = -1
    slots[F_RING_NEXT, s] = head
    if head >= 0:
        slots[F_RING_PREV, head] = s
    ring[last & mask] = s


@numba.njit(cache=True, error_model="numpy", inline="always")
def _decoder_leave(s, r, rep, itl_class, block_size, reserve_full_request):
    """Remove a decoding slot from the phase counts, running totals and its bucket."""
    slots = rep.slots
    offset = slots[F_CTX0, s] - slots[F_STEP0, s]
    if not reserve_full_request:
        rep.num_by_phase[offset % block_size] -= 1
    rep.sched[SUM_CTX0_MINUS_STEP0] -= offset
    rep.sched[NUM_DECODING] -= 1
    if itl_class[r] >= 0:
        rep.num_by_class[itl_class[r]] -= 1
    p = slots[F_RING_PREV, s]
    q = slots[F_RING_NEXT, s]
    if p >= 0:
        slots[F_RING_NEXT, p] = q
    else:
        ring = rep.finish_ring
        ring[slots[F_LAST_STEP, s] & (ring.shape[0] - 1)] = q
    if q >= 0:
        slots[F_RING_PREV, q] = p
    slots[F_RING_PREV, s] = -1
    slots[F_RING_NEXT, s] = -1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _release(r, num_computed, private_blocks, cache_own, sched, kv):
    """Free a leaving request's blocks; its own full blocks join its node's cache."""
    freed = private_blocks
    if cache_own and kv.enable_caching:
        own_full = num_computed // kv.block_size - kv.start_block[r]
        if own_full > kv.cached[r]:
            freed -= own_full - kv.cached[r]
            kv.cached[r] = own_full
            _cpu_touch(sched, r, kv)
    sched[FREE_UNCACHED] += freed
    _unpin(sched, r, kv)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _release_unreleased_all(rep, shareable, kv):
    """:func:`_release_unreleased` when there are some (compiled once, not inlined)."""
    sched = rep.sched
    unreleased = rep.unreleased
    for k in range(sched[NUM_UNRELEASED]):
        r = unreleased[U_REQ, k]
        _release(
            r, unreleased[U_COMPUTED, k], unreleased[U_PRIVATE, k], shareable[r], sched, kv
        )
    sched[NUM_UNRELEASED] = 0


@numba.njit(cache=True, error_model="numpy", inline="always")
def _slot_progress(s, slots, pos, block_size, reserve_full_request, num_draft_slots):
    """(tokens computed, private blocks, generated) of a slot at decode position ``pos``
    (:func:`capacitor.engine._speculative._decode_pos` of the step, before its tokens;
    generated: -1 for a prefilling slot). Its blocks cover its tokens plus
    ``num_draft_slots`` (speculative decoding's k, else 0)."""
    if slots[F_DEC, s]:
        ctx = slots[F_CTX0, s] + pos - slots[F_STEP0, s]
        private = slots[F_PRIVATE_BLOCKS, s]
        if not reserve_full_request:
            private += (_cdiv(ctx + num_draft_slots, block_size)
                        - _cdiv(slots[F_CTX0, s] + num_draft_slots, block_size))
        return ctx, private, slots[F_GENERATED0, s] + pos - slots[F_STEP0, s]
    return slots[F_NUM_COMPUTED, s], slots[F_PRIVATE_BLOCKS, s], -1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _preempt(s, rep, kv, step, last_token_s, extra_private, generated, wait_next, requests,
             outputs, engine):
    """Preempt the request in slot ``s`` (recompute): free its KV (``extra_private``: blocks
    it was given earlier in this step), put it back in the replica's waiting queue (at the
    front, or in (priority, arrival) order under the priority policy)."""
    slots = rep.slots
    sched = rep.sched
    r = slots[F_REQ, s]
    ctx, private, gen = _slot_progress(s, slots, _decode_pos(step, engine.spec_fp),
                                       engine.block_size, engine.reserve_full_request,
                                       engine.spec_tokens)
    private += extra_private
    if slots[F_DEC, s]:
        generated[r] = gen
        outputs.finish_s[r] = last_token_s
        _decoder_leave(s, r, rep, requests.itl_class, engine.block_size,
                       engine.reserve_full_request)
    _release(r, ctx, private, True, sched, kv)
    _run_remove(sched, slots, s)
    _slot_free(sched, slots, s)
    outputs.num_preemptions[r] += 1
    if engine.by_priority:
        _wait_insert(sched, wait_next, r, requests.priority, outputs.send_s, engine.ingress_s)
    else:
        _wait_push_front(sched, wait_next, r)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _release_unreleased(rep, shareable, kv):
    """Async scheduling: release the requests that finished in the last step, in admission
    order, once the next step has been decided."""
    if rep.sched[NUM_UNRELEASED] > 0:
        _release_unreleased_all(rep, shareable, kv)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _wait_insert_once(sched, wait_next, i, priority, send_s, ingress_s):
    """:func:`_wait_insert`, compiled once (not inlined)."""
    _wait_insert(sched, wait_next, i, priority, send_s, ingress_s)
