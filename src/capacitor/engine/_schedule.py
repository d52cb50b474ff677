"""The scheduling decision of one step, as vLLM v1's scheduler makes it: running requests
first (decoders one token each, or 1 + k with MTP speculative decoding, the prefilling tail
a chunk), preempting from the tail when
KV blocks run out, then waiting requests in queue order while the token budget
(``max_num_batched_tokens``), the seats (``max_num_seqs``) and the blocks last.

Which waiting requests admission may see is ``clock[CUTOFF_S]`` (arrival at the engine by
then): with async scheduling the start of the step in flight, with a recv interval the last
poll for new requests (:func:`_poll_after_step`).

The step's prefill chunks go to the scratch arrays ``fleet.prefill_slot`` and
``fleet.prefill_tokens`` (``[:num_prefill]``); decoders are not listed (their count and
summed context are running totals).
"""

from __future__ import annotations

import math

import numba

from capacitor.engine._kernel_cache import (
    _allocate,
    _hit_blocks,
    _pin,
    _touch_range,
    _transfer,
    _unpin,
)
from capacitor.engine._kernel_util import _cdiv
from capacitor.engine._slots import (
    _preempt,
    _run_append,
    _slot_take,
    _wait_pop_front,
)
from capacitor.engine._speculative import _decode_pos, _spec_decode_need, _spec_slot_need
from capacitor.engine._state import (
    ADP_WAIT,
    CUTOFF_S,
    EVICTABLE,
    F_CTX0,
    F_DEC,
    F_HIT_BLOCKS,
    F_NEXT,
    F_NUM_COMPUTED,
    F_PRIVATE_BLOCKS,
    F_REQ,
    F_SCHEDULED,
    F_SEQ,
    F_STEP0,
    FREE_UNCACHED,
    LAST_TOKEN_S,
    NEXT_SEQ,
    NUM_DECODING,
    NUM_RUNNING,
    NUM_UNRELEASED,
    NUM_WAITING,
    RECV_COUNT,
    RECV_S,
    RUN_HEAD,
    RUN_TAIL,
    STEP,
    WAIT_HEAD,
)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _polls(recv_count, took_prompt, recv_interval):
    """Whether the scheduler polls for new requests before the next decision, and its
    decode-step count after: SGLang's ``SchedulerRecvSkipper`` counts 1 per decode-only step
    and polls when the count reaches ``recv_interval``, or at once after a step that took
    prompt tokens (``recv_interval`` 1: at every step). Returns ``(polled, recv_count)``."""
    if took_prompt or recv_count + 1 >= recv_interval:
        return True, 0
    return False, recv_count + 1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _poll_after_step(sched, clock, t, t_end, took_prompt, engine):
    """Set what the next step's decision sees (``clock[CUTOFF_S]``) after a step from ``t``
    to ``t_end``: arrivals by the time it is decided (the step's start with async
    scheduling, else its end: everything routed so far) if the scheduler polls before it
    (:func:`_polls`), else only arrivals by its last poll."""
    polled, recv_count = _polls(sched[RECV_COUNT], took_prompt, engine.recv_interval)
    sched[RECV_COUNT] = recv_count
    if polled:
        clock[RECV_S] = t if engine.async_scheduling else t_end
        clock[CUTOFF_S] = t if engine.async_scheduling else math.inf
    else:
        clock[CUTOFF_S] = clock[RECV_S]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _adp_holds_prompts(rep, fleet, outputs, engine):
    """TensorRT-LLM's attention-DP balancing at a decision (``EngineConfig``
    ``attention_dp_timeout_iters``; called once the running requests are scheduled): True
    when waiting requests must not be admitted now. Every decision at which fewer than
    ``adp_ranks`` visible requests wait counts towards the timeout; prompts are let in (and
    the count restarts) when that many wait, when fewer than that many decode, or at the
    timeout."""
    sched = rep.sched
    ranks = engine.adp_ranks
    visible = 0
    r = sched[WAIT_HEAD]
    for _ in range(sched[NUM_WAITING]):
        if visible >= ranks:
            break
        if outputs.send_s[r] + engine.ingress_s <= rep.clock[CUTOFF_S]:
            visible += 1
        r = fleet.wait_next[r]
    if visible >= ranks:
        sched[ADP_WAIT] = 0
        return False
    sched[ADP_WAIT] += 1
    if sched[ADP_WAIT] >= engine.adp_timeout_iters or sched[NUM_DECODING] < ranks:
        sched[ADP_WAIT] = 0
        return False
    return True


@numba.njit(cache=True, error_model="numpy", inline="always")
def _schedule_running(rep, fleet, kv, requests, outputs, engine):
    """Schedule the running requests. Returns ``(token_budget, num_prefill,
    preempted_any)``: the budget left for waiting requests.

    When the free blocks cover every decoder crossing a block boundary plus the prefilling
    tail's chunk (the common case) this is O(1); otherwise it walks the running list
    (:func:`_schedule_running_walk`)."""
    sched = rep.sched
    slots = rep.slots
    block_size = engine.block_size
    token_budget = engine.max_num_batched_tokens
    preempted_any = False
    num_prefill = 0
    tail = sched[RUN_TAIL]
    has_prefill = tail >= 0 and not slots[F_DEC, tail]
    # speculative decoding: a decoder verifies 1 + k tokens, allocations add k draft slots
    decode_width = 1 + engine.spec_tokens
    if engine.spec_tokens:
        need_decode = _spec_decode_need(rep.num_by_phase, sched[STEP], engine.spec_fp,
                                        engine.spec_tokens, block_size)
    else:
        need_decode = rep.num_by_phase[(-sched[STEP]) % block_size]
    need_prefill = 0
    chunk = 0
    if has_prefill:
        r = slots[F_REQ, tail]
        chunk = min(
            requests.prompt_len[r] + fleet.generated[r] - slots[F_NUM_COMPUTED, tail],
            token_budget - sched[NUM_DECODING] * decode_width,
        )
        need_prefill = (
            _cdiv(slots[F_NUM_COMPUTED, tail] + chunk + engine.spec_tokens, block_size)
            - slots[F_HIT_BLOCKS, tail]
            - slots[F_PRIVATE_BLOCKS, tail]
        )
    if sched[FREE_UNCACHED] + sched[EVICTABLE] >= need_decode + need_prefill:
        _allocate(sched, need_decode + need_prefill, kv)
        if has_prefill:
            slots[F_PRIVATE_BLOCKS, tail] += max(need_prefill, 0)
            fleet.prefill_slot[0] = tail
            fleet.prefill_tokens[0] = chunk
            num_prefill = 1
    else:
        num_prefill, preempted_any = _schedule_running_walk(
            rep, fleet, kv, requests, outputs, engine
        )
    token_budget -= sched[NUM_DECODING] * decode_width
    for k in range(num_prefill):
        token_budget -= fleet.prefill_tokens[k]
    return token_budget, num_prefill, preempted_any


@numba.njit(cache=True, error_model="numpy", inline="always")
def _lowest_priority(rep, requests, send_s, ingress_s):
    """The running request vLLM's priority policy preempts: the lowest priority (highest
    value), then the latest to arrive, then the highest id."""
    slots = rep.slots
    priority = requests.priority
    victim = rep.sched[RUN_HEAD]
    v = slots[F_NEXT, victim]
    while v >= 0:
        rv, rb = slots[F_REQ, v], slots[F_REQ, victim]
        if (priority[rv], send_s[rv] + ingress_s, rv) > (priority[rb], send_s[rb] + ingress_s, rb):
            victim = v
        v = slots[F_NEXT, v]
    return victim


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _schedule_running_walk(rep, fleet, kv, requests, outputs, engine):
    """Exactly vLLM's loop: walk the running requests in order, allocate each one's blocks,
    preempting from the tail (or the lowest priority) until they fit or it is the one
    preempted. Returns ``(num_prefill, preempted_any)``."""
    sched = rep.sched
    slots = rep.slots
    step = sched[STEP]
    block_size = engine.block_size
    token_budget = engine.max_num_batched_tokens
    prefill_slot = fleet.prefill_slot
    prefill_tokens = fleet.prefill_tokens
    num_prefill = 0
    preempted_any = False
    num_scheduled_decode = 0
    pos = _decode_pos(step, engine.spec_fp)  # the step, or its decode position (MTP)
    decode_width = 1 + engine.spec_tokens
    s = sched[RUN_HEAD]
    while s >= 0:
        r = slots[F_REQ, s]
        if slots[F_DEC, s]:
            ctx = slots[F_CTX0, s] + pos - slots[F_STEP0, s]
            if engine.spec_tokens:
                need = _spec_slot_need(ctx, step, engine)
            else:
                need = 1 if ctx % block_size == 0 else 0
            chunk = 1
        else:
            chunk = min(
                requests.prompt_len[r] + fleet.generated[r] - slots[F_NUM_COMPUTED, s],
                token_budget - num_scheduled_decode * decode_width,
            )
            need = (
                _cdiv(slots[F_NUM_COMPUTED, s] + chunk + engine.spec_tokens, block_size)
                - slots[F_HIT_BLOCKS, s]
                - slots[F_PRIVATE_BLOCKS, s]
            )
        ok = True
        while not _allocate(sched, need, kv):
            victim = sched[RUN_TAIL]
            extra_private = 0
            if engine.by_priority:
                victim = _lowest_priority(rep, requests, outputs.send_s, engine.ingress_s)
                if slots[F_SCHEDULED, victim] == step + 1:  # scheduled already: undo
                    if slots[F_DEC, victim]:
                        num_scheduled_decode -= 1
                        ctx_v = slots[F_CTX0, victim] + pos - slots[F_STEP0, victim]
                        if engine.spec_tokens:
                            extra_private = _spec_slot_need(ctx_v, step, engine)
                        elif not engine.reserve_full_request and ctx_v % block_size == 0:
                            extra_private = 1
                    else:
                        for a in range(num_prefill):
                            if prefill_slot[a] == victim:
                                prefill_slot[a] = prefill_slot[num_prefill - 1]
                                prefill_tokens[a] = prefill_tokens[num_prefill - 1]
                                num_prefill -= 1
                                break
            _preempt(
                victim, rep, kv, step, rep.clock[LAST_TOKEN_S], extra_private,
                fleet.generated, fleet.wait_next, requests, outputs, engine,
            )
            preempted_any = True
            if victim == s:
                ok = False
                break
        if not ok:
            if engine.by_priority:  # go on with the first request not yet scheduled
                s = sched[RUN_HEAD]
                while s >= 0 and slots[F_SCHEDULED, s] == step + 1:
                    s = slots[F_NEXT, s]
                continue
            break
        slots[F_SCHEDULED, s] = step + 1
        if slots[F_DEC, s]:
            num_scheduled_decode += 1
        else:
            slots[F_PRIVATE_BLOCKS, s] += max(need, 0)
            prefill_slot[num_prefill] = s
            prefill_tokens[num_prefill] = chunk
            num_prefill += 1
        if s == sched[RUN_TAIL]:
            break
        s = slots[F_NEXT, s]  # (read now: a priority preemption may have taken the next)
    return num_prefill, preempted_any


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _host_hit_blocks(r, num_tokens, kv):
    """:func:`_hit_blocks` in either tier (host tier only: compiled once, not inlined)."""
    return _hit_blocks(r, num_tokens, kv, True)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _load_host_hit(r, hit, total, sched, kv):
    """Blocks ``[hit, total)`` of ``r`` come back from the host tier, as if computed: they
    are touched there and join their owners' GPU cache. Returns how many moved to an
    ancestor's cache (host tier only: compiled once, not inlined)."""
    _touch_range(r, hit, total, sched, kv)
    return _transfer(r, hit * kv.block_size, total * kv.block_size, sched, kv)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _admit_waiting(rep, token_budget, num_prefill, fleet, kv, requests, outputs, engine):
    """Admit waiting requests in queue order while budget, seats and blocks last: each takes
    its prefix-cache hit (GPU, then host tier: loaded back as if computed) and a first
    chunk. Returns ``(num_prefill, loaded_blocks)``."""
    sched = rep.sched
    slots = rep.slots
    block_size = engine.block_size
    prompt_len = requests.prompt_len
    generated = fleet.generated
    loaded_blocks = 0
    while (
        sched[NUM_WAITING] > 0
        and token_budget > 0
        and sched[NUM_RUNNING] + sched[NUM_UNRELEASED] < engine.max_num_seqs
    ):
        r = sched[WAIT_HEAD]
        if outputs.send_s[r] + engine.ingress_s > rep.clock[CUTOFF_S]:
            break  # arrived after this step was decided (async scheduling)
        _pin(sched, r, kv)
        num_tokens = prompt_len[r] + generated[r]
        hit = 0
        total = 0
        if engine.enable_prefix_caching:
            hit = _hit_blocks(r, num_tokens, kv, False)
            total = hit
            if engine.num_cpu_blocks > 0:
                total = _host_hit_blocks(r, num_tokens, kv)
        computed = total * block_size
        from_prefill = engine.kv_from_prefill and generated[r] == 1
        if from_prefill:
            # disaggregated decode pool: the prompt's KV came from the prefill pool (the
            # first token was sampled there); its blocks are allocated here, and the step
            # (a decode for it) computes the first token's KV and emits the second; both
            # reach the client at its end (capacitor.engine._disagg)
            computed = prompt_len[r]
        chunk = min(num_tokens - computed, token_budget)
        # (speculative decoding: k draft slots beyond the tokens; 0 when off)
        need = _cdiv(computed + chunk + engine.spec_tokens, block_size) - hit
        if engine.reserve_full_request:  # blocks for the whole request, up front
            need = _cdiv(prompt_len[r] + requests.output_len[r] + engine.spec_tokens,
                         block_size) - hit
        if not _allocate(sched, need, kv):
            _unpin(sched, r, kv)
            break
        _wait_pop_front(sched, fleet.wait_next)
        s = _slot_take(sched, slots)
        slots[F_REQ, s] = r
        slots[F_DEC, s] = 0
        slots[F_NUM_COMPUTED, s] = computed
        slots[F_HIT_BLOCKS, s] = hit
        slots[F_PRIVATE_BLOCKS, s] = need
        slots[F_SEQ, s] = sched[NEXT_SEQ]
        sched[NEXT_SEQ] += 1
        _run_append(sched, slots, s)
        if total > hit:
            # host-tier hit: load the blocks back, as if computed
            loaded_blocks += total - hit
            moved = _load_host_hit(r, hit, total, sched, kv)
            slots[F_PRIVATE_BLOCKS, s] -= moved
            slots[F_HIT_BLOCKS, s] += moved
        if outputs.num_cached_tokens[r] < 0:
            outputs.num_cached_tokens[r] = total * block_size
        fleet.prefill_slot[num_prefill] = s
        fleet.prefill_tokens[num_prefill] = chunk
        num_prefill += 1
        token_budget -= chunk
    return num_prefill, loaded_blocks
