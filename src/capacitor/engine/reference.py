"""Plain-Python reference twin of the replica simulator: the semantics, written plainly.

This module imports nothing from the fast kernel. Tests run both on small cases and require
identical per-request results. It models a vLLM v1 engine:

* **Steps.** Each step the scheduler walks the running list in admission order giving each
  request ``min(tokens it still needs, remaining token budget)`` (decodes need 1; a
  partially prefilled request needs the rest of its prompt), allocating KV blocks as it
  goes. When blocks run out it preempts the *last* running request (recompute: its KV is
  freed, it goes to the front of the waiting queue) until the current one fits, or the
  current one is itself preempted. Only if nothing was preempted does it then admit waiting
  requests in FIFO order while the budget lasts and fewer than ``max_num_seqs`` run,
  stopping at the first that cannot get its blocks. The step's duration comes from
  :func:`capacitor.perf.step_time.step_time_s`; all its tokens appear at its end.
* **Prefix cache.** Full blocks are shared through prefix nodes (see
  :mod:`capacitor.engine.requests`). A cached block is either pinned (its node is used
  by a running request) or evictable; free blocks without cached content are used first,
  then evictable blocks in LRU order of their node's release, tail block first (vLLM
  frees a request's blocks in reverse order). A request's own blocks join the cache when it
  finishes (if some request uses it as a prefix) or is preempted (for its own resumption);
  blocks of shared ancestors (system prompts) join as soon as they are computed. A hit
  covers whole blocks and leaves at least one prompt token to compute.
* **Asynchronous scheduling** (``config.async_scheduling``, vLLM >= 0.14's default). Step
  N+1 is decided at the start of step N: only requests that reached the engine by then
  (``cutoff``) are admitted, and requests that finished in step N keep their blocks and their
  ``max_num_seqs`` seat (``zombies``) until it has been decided. When nothing was in flight
  (the engine idle, or the step just decided empty) the cutoff is lifted.
* **Attention-DP balancing** (``config.attention_dp_timeout_iters``, TensorRT-LLM
  ``attention_dp_config.enable_balance``): waiting requests are admitted only when at least
  ``attention_dp_ranks`` of them are visible, fewer than that many decode, or the decisions
  since prompts were last let in reach the timeout.
* **Recv interval** (``config.scheduler_recv_interval`` N, SGLang
  ``--scheduler-recv-interval``). The scheduler polls for new requests only after a step
  that took prompt tokens or after N decode-only steps; between polls the cutoff stays at
  the last poll.
* **MTP speculative decoding** (``config.num_speculative_tokens`` = k > 0,
  :mod:`capacitor.perf.speculative`). A decoder takes ``1 + k`` tokens of the budget (the
  verify pass) and emits ``pos(G + 1) - pos(G)`` tokens in the replica's step ``G`` (at most
  what it still owes), ``pos(G) = (G * L_fp) >> SPEC_FP_BITS`` for the expected tokens per step
  ``L``; its computed tokens grow by as many. Every allocation targets the tokens it covers
  plus ``k`` draft slots; a decoder's covers the tokens the step emits (all ``pos`` says,
  even past its last token). The step costs the verify pass plus the draft passes
  (:func:`capacitor.perf.speculative.spec_step_time_s`).
* **Clients.** A request reaches the engine ``ingress_s`` after it is sent; its tokens
  reach the client ``egress_s`` after the step that made them. Rejected requests (longer
  than ``max_model_len``) get their error at the send time.

Simplifications are documented in the README (a used node is pinned whole; non-cached free
blocks are reused before evicting cached ones).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from capacitor.engine.config import EngineConfig
from capacitor.engine.prefix_chain import normalise_prefix_chains
from capacitor.engine.reference_cache import BlockCache
from capacitor.engine.reference_clients import Clients
from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import ITL_BINS_PER_E, ITL_MIN_S, ITL_NUM_BINS, EngineResult
from capacitor.engine.status import S_COMPLETED, S_LOST, S_PENDING
from capacitor.perf.speculative import SPEC_FP_BITS, spec_step_time_s
from capacitor.perf.step_time import prefill_pairs, step_time_s


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _itl_bin(gap_s: float) -> int:
    if gap_s <= ITL_MIN_S:
        return 0
    x = math.log(gap_s / ITL_MIN_S) * ITL_BINS_PER_E
    return ITL_NUM_BINS - 1 if x >= ITL_NUM_BINS - 1 else int(x)  # the last takes the rest


class RequestState:
    """Per-request state of one run, shared by the replicas of a pool (a request is on one
    replica at a time). Plain lists, indexed by request; prefix nodes (requests, then
    segments) for the cache's ``start`` and ``src``."""

    def __init__(
        self,
        batch: RequestBatch,
        config: EngineConfig,
        coeffs: np.ndarray,
        *,
        itl_class: np.ndarray | None = None,
        num_itl_classes: int = 1,
        priority: np.ndarray | None = None,
    ):
        n = len(batch)
        bs = config.block_size
        src_arr, plen_arr, _ = normalise_prefix_chains(
            batch.prefix_src,
            batch.prefix_len,
            batch.prompt_len,
            batch.output_len,
            batch.segment_len,
            bs,
        )
        self.config = config
        self.coeffs = coeffs
        self.src = [int(x) for x in src_arr]
        self.start = [int(x) // bs for x in plen_arr]  # first block a node owns
        self.shareable = [False] * len(self.src)  # some request uses the node as a prefix
        for r in range(n):
            if batch.prefix_src[r] >= 0:
                self.shareable[int(batch.prefix_src[r])] = True
        self.prompt = [int(x) for x in batch.prompt_len]
        self.output = [int(x) for x in batch.output_len]
        self.itl_class = [0] * n if itl_class is None else [int(x) for x in itl_class]
        self.priority = [0] * n if priority is None else [int(x) for x in priority]
        self.send = [math.nan] * n
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.status = [S_PENDING] * n
        self.replica = [-1] * n
        self.preemptions = [0] * n
        self.cached_tokens = [-1] * n
        self.last_token = [0.0] * n
        self.generated = [0] * n
        self.computed = [0] * n  # vLLM's num_computed_tokens
        self.decoding = [False] * n  # emitted a token and not preempted since
        self.ref_blocks = [0] * n  # blocks referenced in node caches
        self.private = [0] * n  # blocks allocated to the request alone
        self.hist = np.zeros((num_itl_classes, ITL_NUM_BINS), np.int64)
        self.itl_sum = np.zeros(num_itl_classes)
        self.itl_count = np.zeros(num_itl_classes, np.int64)

    def num_tokens(self, r: int) -> int:
        """Tokens request ``r`` has to have computed before its next token: prompt + output
        so far."""
        return self.prompt[r] + self.generated[r]


class ReplicaEngine:
    """One replica's engine (see the module docstring), advanced one scheduling iteration
    at a time by :meth:`iterate`; its driver delivers requests with :meth:`enqueue`."""

    def __init__(self, state: RequestState):
        self.state = state
        cfg = state.config
        self.caching = cfg.enable_prefix_caching
        self.offload = self.caching and cfg.num_cpu_blocks > 0
        self.by_priority = cfg.scheduling_policy == "priority"
        self.t = 0.0
        self.num_steps = 0
        self.busy_s = 0.0
        self.max_used = 0
        self.spec_k = cfg.num_speculative_tokens  # MTP draft tokens per step (0: off)
        self.spec_fp = cfg.tokens_per_step_fp
        self.draft_coeffs = np.asarray(cfg.draft_coeffs, np.float64)
        #: the decode pool of a disaggregated deployment: a request fresh from the prefill
        #: pool (one token out) is admitted with its prompt's KV computed
        #: (:mod:`capacitor.engine.reference_disagg`)
        self.kv_from_prefill = False
        self.reset()

    def reset(self) -> None:
        """Empty: nothing running or waiting, every KV block free (a fresh cache)."""
        s, cfg = self.state, self.state.config
        self.cache = BlockCache(cfg.num_gpu_blocks, s.start, s.src,
                            cfg.num_cpu_blocks if self.caching else 0)
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.zombies: list[int] = []  # finished in the last step, blocks not yet released
        self.cutoff = math.inf  # admit only requests that reached the engine by then
        self.last_poll = 0.0  # when the scheduler last polled for new requests
        self.decode_steps_unpolled = 0
        self.adp_wait = 0  # decisions since attention-DP balancing last let prompts in

    # -- queues -----------------------------------------------------------------------------

    def key(self, i: int) -> tuple[int, float, int]:
        """vLLM's priority order: (priority, arrival at the engine, request)."""
        s = self.state
        return (s.priority[i], s.send[i] + s.config.ingress_s, i)

    def enqueue(self, i: int, front: bool = False) -> None:
        """Request ``i`` joins the waiting queue (at the front: a preempted request)."""
        waiting = self.waiting
        if self.by_priority:  # vLLM's priority queue: (priority, arrival)
            pos = 0
            while pos < len(waiting) and self.key(waiting[pos]) <= self.key(i):
                pos += 1
            waiting.insert(pos, i)
        elif front:
            waiting.appendleft(i)
        else:
            waiting.append(i)

    def is_idle(self) -> bool:
        return not self.running and not self.waiting

    def idle(self) -> None:
        """Nothing to run: the empty step in flight completes, and the next decision sees
        every arrival."""
        self.release_zombies()
        self.cutoff = math.inf

    def spec_emit(self, g: int) -> int:
        """MTP: tokens each decoder emits in step ``g`` (``pos(g + 1) - pos(g)``)."""
        return ((g + 1) * self.spec_fp >> SPEC_FP_BITS) - (g * self.spec_fp >> SPEC_FP_BITS)

    # -- KV blocks --------------------------------------------------------------------------

    def release_blocks(self, r: int, cache_own: bool) -> None:
        s, cache, bs = self.state, self.cache, self.state.config.block_size
        own_full = max(s.computed[r] // bs - s.start[r], 0)
        node_blocks = cache.cached.setdefault(r, set())
        freed = s.private[r]
        if cache_own and self.caching:
            grew = False
            for j in range(s.start[r], s.start[r] + own_full):
                if j not in node_blocks:
                    node_blocks.add(j)
                    freed -= 1
                    grew = True
            if grew:
                cache.cpu_touch(r)
        cache.free_uncached += freed
        s.private[r] = 0
        s.ref_blocks[r] = 0
        cache.unpin(r)

    def preempt(self, r: int) -> None:
        """Recompute preemption: ``r``'s KV is freed (its own blocks cached for its
        resumption) and it starts over."""
        s = self.state
        self.release_blocks(r, cache_own=True)
        s.computed[r] = 0
        s.decoding[r] = False
        s.preemptions[r] += 1

    def transfer(self, r: int, old: int, new: int) -> None:
        """Blocks of ancestors that ``r`` just computed join their owner's cache."""
        s, cache, bs = self.state, self.cache, self.state.config.block_size
        for j in range(old // bs, min(new // bs, s.start[r])):
            node = cache.owner(r, j)
            blocks = cache.cached.setdefault(node, set())
            if self.caching and j not in blocks and (j == s.start[node] or (j - 1) in blocks):
                blocks.add(j)
                s.private[r] -= 1
                s.ref_blocks[r] += 1
                cache.cpu_touch(node)

    def release_zombies(self) -> None:
        for r in self.zombies:
            self.release_blocks(r, cache_own=self.state.shareable[r])
        self.zombies.clear()

    # -- one scheduling iteration -----------------------------------------------------------

    def _schedule_running(self) -> tuple[list[tuple[int, int]], int, bool]:
        """Running requests first, in admission order, each ``min(tokens it needs, budget
        left)``, preempting from the back when blocks run out. Returns (scheduled
        ``(request, num_new_tokens)``, token budget left, whether anything was preempted)."""
        s, cache, bs = self.state, self.cache, self.state.config.block_size
        running = self.running
        budget = s.config.max_num_batched_tokens
        scheduled: list[tuple[int, int]] = []
        preempted_any = False
        num_drafts = self.spec_k
        full = s.config.kv_reservation == "full_request"
        idx = 0
        while idx < len(running) and budget > 0:
            r = running[idx]
            num_new = min(s.num_tokens(r) - s.computed[r], budget)
            covered = num_new
            if num_drafts:  # MTP: a decoder verifies 1 + k tokens; allocations add k slots
                if s.decoding[r]:
                    num_new = min(num_new + num_drafts, budget)
                    covered = self.spec_emit(self.num_steps)
                covered += num_drafts
            fits = True
            while True:
                need = _cdiv(s.computed[r] + covered, bs) - s.ref_blocks[r] - s.private[r]
                if num_drafts and full and s.decoding[r]:
                    need = 0  # reserved up front for the whole request and its draft slots
                if cache.allocate(need):
                    s.private[r] += max(need, 0)
                    break
                if self.by_priority:
                    victim = max(running, key=self.key)
                    pos = running.index(victim)
                    running.remove(victim)
                    if pos < idx:  # already scheduled this step: undo that
                        for k, (q_r, q_n) in enumerate(scheduled):
                            if q_r == victim:
                                budget += q_n
                                del scheduled[k]
                                break
                        idx -= 1
                else:
                    victim = running.pop()
                self.preempt(victim)
                self.enqueue(victim, front=True)
                preempted_any = True
                if victim == r:
                    fits = False
                    break
            if not fits:
                if self.by_priority:
                    # NOTE(deviation): vLLM stops scheduling the running list here; we go on
                    # with the requests after it (the decode bookkeeping needs every running
                    # decode to advance each step).
                    continue
                break
            scheduled.append((r, num_new))
            budget -= num_new
            idx += 1
        return scheduled, budget, preempted_any

    def _admit_waiting(self, scheduled: list[tuple[int, int]], budget: int) -> int:
        """Waiting requests in queue order while the budget lasts and fewer than
        ``max_num_seqs`` run, stopping at the first that cannot get its blocks; appends to
        ``scheduled`` and returns the blocks loaded back from host memory."""
        s, cache, cfg = self.state, self.cache, self.state.config
        bs = cfg.block_size
        loaded_blocks = 0
        while (self.waiting and budget > 0
               and len(self.running) + len(self.zombies) < cfg.max_num_seqs):
            r = self.waiting[0]
            if s.send[r] + cfg.ingress_s > self.cutoff:
                break  # arrived after this step was decided (async scheduling)
            cache.pin(r)
            hit = cache.hit_blocks(r, s.num_tokens(r), bs) if self.caching else 0
            # blocks found only in host memory are loaded back (counted as computed)
            total = cache.hit_blocks(r, s.num_tokens(r), bs, "any") if self.offload else hit
            computed = total * bs
            from_prefill = self.kv_from_prefill and s.generated[r] == 1
            if from_prefill:
                computed = s.prompt[r]  # disaggregated decode: the prompt's KV arrived
            num_new = min(s.num_tokens(r) - computed, budget)
            k = self.spec_k  # MTP: k draft slots beyond the tokens (0 when off)
            need = _cdiv(computed + num_new + k, bs) - hit
            if cfg.kv_reservation == "full_request":  # blocks for the whole request, up front
                need = _cdiv(s.prompt[r] + s.output[r] + k, bs) - hit
            if not cache.allocate(need):
                cache.unpin(r)
                break
            self.waiting.popleft()
            s.computed[r] = computed
            s.ref_blocks[r] = hit
            s.private[r] = need
            if total > hit:
                loaded_blocks += total - hit
                touched = -1
                for j in range(hit, total):  # root to leaf, each node once
                    node = cache.owner(r, j)
                    if node != touched:
                        cache.cpu_touch(node)
                        touched = node
                self.transfer(r, hit * bs, total * bs)
            if s.cached_tokens[r] < 0:
                s.cached_tokens[r] = total * bs
            self.running.append(r)
            scheduled.append((r, num_new))
            budget -= num_new
        return loaded_blocks

    def _kv_first_step(self, r: int) -> bool:
        """Whether ``r``, not yet decoding, runs its first step on a disaggregated decode
        replica (its prompt's KV transferred, its first token sampled by the prefill pool):
        a decode step for it (the transferred request joins the running decode batch
        without a prefill forward), its first token streamed with its second."""
        return self.kv_from_prefill and self.state.generated[r] == 1

    def _step_time_s(self, scheduled: list[tuple[int, int]], loaded_blocks: int) -> float:
        """The step's duration from its batch composition (:mod:`capacitor.perf.step_time`)
        plus loading host blocks back."""
        s = self.state
        num_tokens = num_prefill = pairs = decode_ctx_tokens = num_first = 0
        for r, q in scheduled:
            num_tokens += q
            if s.decoding[r]:
                decode_ctx_tokens += s.computed[r] + 1 + self.spec_k
            elif self._kv_first_step(r):  # a decode of the first token's KV, drafts later
                num_first += 1
                decode_ctx_tokens += s.computed[r] + 1
            else:
                num_prefill += 1
                pairs += prefill_pairs(q, s.computed[r])
        if self.spec_k:
            d = spec_step_time_s(
                s.coeffs, self.draft_coeffs, self.spec_k, float(num_tokens),
                float(len(scheduled) - num_prefill - num_first), float(len(scheduled)),
                float(num_prefill), float(pairs), float(decode_ctx_tokens),
            )
            return d + loaded_blocks * s.config.cpu_load_s_per_block
        d = step_time_s(
            s.coeffs,
            float(num_tokens),
            float(len(scheduled)),
            float(num_prefill),
            float(pairs),
            float(decode_ctx_tokens),
        )
        d += loaded_blocks * s.config.cpu_load_s_per_block
        return d

    def _emit_tokens(self, scheduled: list[tuple[int, int]], client_t: float) -> list[int]:
        """Advance every scheduled request; those whose prompt is done emit a token (seen by
        the client at ``client_t``). Returns the requests that generated their last token."""
        s, bs = self.state, self.state.config.block_size
        finished: list[int] = []
        emit = self.spec_emit(self.num_steps - 1) if self.spec_k else 1  # counted already
        for r, q in scheduled:
            old = s.computed[r]
            if self.spec_k and s.decoding[r]:  # MTP: the step's tokens, at most those owed
                num_emitted = min(emit, s.output[r] - s.generated[r])
                s.computed[r] = old + num_emitted
                s.generated[r] += num_emitted - 1  # the last one is counted below
            else:
                s.computed[r] = old + q
            if old < s.start[r] * bs:
                self.transfer(r, old, s.computed[r])
            if s.computed[r] < s.num_tokens(r):
                continue  # partial prefill: no token this step
            kv_first = self._kv_first_step(r)
            s.decoding[r] = True
            s.generated[r] += 1
            cls = s.itl_class[r]
            if s.generated[r] == 1 or kv_first:
                # a transferred request's first token comes with its second
                s.first[r] = client_t
            elif cls >= 0:
                gap = client_t - s.last_token[r]
                s.hist[cls, _itl_bin(gap)] += 1
                s.itl_sum[cls] += gap
                s.itl_count[cls] += 1
            s.last_token[r] = client_t
            if s.generated[r] == s.output[r]:
                finished.append(r)
        return finished

    def _adp_holds_prompts(self, scheduled: list[tuple[int, int]]) -> bool:
        """TensorRT-LLM's attention-DP balancing at this decision: hold the waiting requests
        back unless every rank has one (``attention_dp_ranks`` of them visible), some rank
        decodes nothing (fewer decoders than ranks) or the decisions without a full set of
        prompts have reached ``attention_dp_timeout_iters``."""
        s, cfg = self.state, self.state.config
        ranks = cfg.attention_dp_ranks
        visible = sum(1 for r in self.waiting if s.send[r] + cfg.ingress_s <= self.cutoff)
        if visible >= ranks:
            self.adp_wait = 0
            return False
        self.adp_wait += 1
        decoding = sum(1 for r, _ in scheduled if s.decoding[r])
        if self.adp_wait >= cfg.attention_dp_timeout_iters or decoding < ranks:
            self.adp_wait = 0
            return False
        return True

    def _poll(self, took_prompt: bool, t_end: float) -> None:
        """What the next decision (at this step's start with async scheduling, else at its
        end) sees. The scheduler polls for new requests before it unless a recv interval
        N > 1 holds it back: then it polls after a step that took prompt tokens or after
        N decode-only steps since its last poll, and otherwise sees only what had arrived
        by that poll (``last_poll``)."""
        cfg = self.state.config
        decided = self.t if cfg.async_scheduling else t_end
        self.decode_steps_unpolled += 1
        if took_prompt or self.decode_steps_unpolled >= cfg.scheduler_recv_interval:
            self.decode_steps_unpolled = 0
            self.last_poll = decided
            self.cutoff = decided if cfg.async_scheduling else math.inf
        else:
            self.cutoff = self.last_poll

    def iterate(self) -> tuple[list[int], float]:
        """One scheduling iteration at the replica's clock (the engine must not be idle): a
        step, or none when nothing could be scheduled. Returns the requests it finished and
        the time their clients saw their last token."""
        s, cfg = self.state, self.state.config
        scheduled, budget, preempted_any = self._schedule_running()
        loaded_blocks = 0
        held = cfg.attention_dp_timeout_iters > 0 and self._adp_holds_prompts(scheduled)
        if not preempted_any and not held:
            loaded_blocks = self._admit_waiting(scheduled, budget)
        self.release_zombies()
        if not scheduled:
            if not self.running and self.waiting and not preempted_any and (
                self.cutoff == math.inf
            ):
                raise RuntimeError("engine stalled: waiting request cannot be scheduled")
            self.cutoff = math.inf  # nothing in flight: the next decision sees every arrival
            return [], self.t
        self.max_used = max(self.max_used, cfg.num_gpu_blocks - self.cache.num_free())
        took_prompt = any(not s.decoding[r] for r, _ in scheduled)
        d = self._step_time_s(scheduled, loaded_blocks)
        t_end = self.t + d
        self._poll(took_prompt, t_end)
        self.num_steps += 1
        self.busy_s += d
        client_t = t_end + cfg.egress_s
        finished = self._emit_tokens(scheduled, client_t)
        for r in finished:
            self.running.remove(r)
            if cfg.async_scheduling:
                self.zombies.append(r)
            else:
                self.release_blocks(r, cache_own=s.shareable[r])
            s.finish[r] = client_t
            s.status[r] = S_COMPLETED
        self.t = t_end
        return finished, client_t

    def fail(self, now: float) -> list[int]:
        """The replica fails at ``now``: running requests are lost (their clients see the
        error then); returns the waiting ones (to be routed again) and leaves the replica
        empty, with a fresh cache and its clock at ``now``."""
        s = self.state
        self.release_zombies()  # finished requests leave first (their clients have them)
        for r in self.running:
            s.status[r] = S_LOST
            s.finish[r] = now
        back = list(self.waiting)
        self.reset()
        self.t = now
        return back


def simulate(
    batch: RequestBatch,
    config: EngineConfig,
    coeffs: np.ndarray,
    *,
    itl_class: np.ndarray | None = None,
    num_itl_classes: int = 1,
    priority: np.ndarray | None = None,
) -> EngineResult:
    """Simulate one replica serving ``batch``; see the module docstring for the model.
    ``priority`` (lower first) matters with ``config.scheduling_policy == "priority"``."""
    batch.check()
    s = RequestState(batch, config, coeffs, itl_class=itl_class,
                     num_itl_classes=num_itl_classes, priority=priority)
    engine = ReplicaEngine(s)
    max_model_len = config.effective_max_model_len

    clients = Clients(batch, s.send, config.ingress_s)
    releases, on_response = clients.releases, clients.on_response

    while True:
        while releases and releases[0][0] <= engine.t:
            _, i = heapq.heappop(releases)
            if batch.rejected[i] or s.prompt[i] + s.output[i] > max_model_len:
                s.finish[i] = s.send[i]
                on_response(i, s.send[i], ok=False)
            else:
                engine.enqueue(i)
        if engine.is_idle():
            engine.idle()
            if not releases:
                break
            engine.t = max(engine.t, releases[0][0])
            continue
        finished, client_t = engine.iterate()
        for r in finished:
            on_response(r, client_t)

    return EngineResult(
        send_s=np.asarray(s.send, np.float64),
        first_token_s=np.asarray(s.first, np.float64),
        finish_s=np.asarray(s.finish, np.float64),
        completed=np.asarray(s.status, np.int8) == S_COMPLETED,
        num_preemptions=np.asarray(s.preemptions, np.int32),
        num_cached_tokens=np.maximum(np.asarray(s.cached_tokens, np.int32), 0),
        itl_hist=s.hist,
        itl_sum_s=s.itl_sum,
        itl_count=s.itl_count,
        num_steps=engine.num_steps,
        busy_s=engine.busy_s,
        max_blocks_used=engine.max_used,
    )
