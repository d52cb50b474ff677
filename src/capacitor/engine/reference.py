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
* **Clients.** A request reaches the engine ``ingress_s`` after it is sent; its tokens
  reach the client ``egress_s`` after the step that made them. Rejected requests (longer
  than ``max_model_len``) get their error at the send time.

Simplifications are documented in the README (a used node is pinned whole; non-cached free
blocks are reused before evicting cached ones).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque

import numpy as np

from capacitor.engine.config import EngineConfig
from capacitor.engine.prefix_chain import normalise_prefix_chains
from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import ITL_BINS_PER_E, ITL_MIN_S, ITL_NUM_BINS, EngineResult
from capacitor.perf.step_time import prefill_pairs, step_time_s


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _itl_bin(gap_s: float) -> int:
    if gap_s <= ITL_MIN_S:
        return 0
    x = math.log(gap_s / ITL_MIN_S) * ITL_BINS_PER_E
    return ITL_NUM_BINS - 1 if x >= ITL_NUM_BINS - 1 else int(x)  # the last takes the rest


class _Cache:
    """Prefix-node block cache with per-block LRU bookkeeping (independent of the kernel's
    per-node counters): ``lru`` holds evictable blocks ``(node, j)`` oldest first."""

    def __init__(self, num_blocks: int, start: list[int], src: list[int], num_cpu_blocks: int):
        self.free_uncached = num_blocks
        self.num_cpu_blocks = num_cpu_blocks
        self.cpu: dict[int, set[int]] = {}
        self.cpu_lru: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.cached: dict[int, set[int]] = {}
        self.pins: dict[int, int] = {}
        self.lru: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.start = start
        self.src = src

    def chain(self, r: int) -> list[int]:
        out = [r]
        s = self.src[r]
        while s >= 0:
            out.append(s)
            s = self.src[s]
        return out

    def owner(self, r: int, j: int) -> int:
        node = r
        while j < self.start[node]:
            node = self.src[node]
        return node

    def num_free(self) -> int:
        return self.free_uncached + len(self.lru)

    def pin(self, r: int) -> None:
        for node in self.chain(r):
            self.pins[node] = self.pins.get(node, 0) + 1
            if self.pins[node] == 1:
                for j in self.cached.get(node, ()):
                    del self.lru[(node, j)]

    def unpin(self, r: int) -> None:
        for node in self.chain(r):
            self.pins[node] -= 1
            if self.pins[node] == 0:
                for j in sorted(self.cached.get(node, ()), reverse=True):
                    self.lru[(node, j)] = None

    def allocate(self, k: int) -> bool:
        if k <= 0:
            return True
        if self.num_free() < k:
            return False
        take = min(k, self.free_uncached)
        self.free_uncached -= take
        for _ in range(k - take):
            (node, j), _ = self.lru.popitem(last=False)
            self.cached[node].discard(j)
        return True

    def hit_blocks(self, r: int, num_tokens: int, block_size: int, tier: str = "gpu") -> int:
        """Leading blocks found on the GPU (``tier="gpu"``) or on GPU or host ("any")."""
        limit = (num_tokens - 1) // block_size
        j = 0
        while j < limit:
            node = self.owner(r, j)
            if j not in self.cached.get(node, ()) and (
                tier == "gpu" or j not in self.cpu.get(node, ())
            ):
                break
            j += 1
        return j

    def cpu_touch(self, node: int) -> None:
        """Write-through: the host tier holds every block the node has on the GPU; the
        node becomes most recently used there (its last block first out)."""
        if self.num_cpu_blocks <= 0:
            return
        blocks = self.cpu.setdefault(node, set())
        blocks.update(self.cached.get(node, ()))
        for j in sorted(blocks, reverse=True):
            self.cpu_lru.pop((node, j), None)
            self.cpu_lru[(node, j)] = None
        while len(self.cpu_lru) > self.num_cpu_blocks:
            (victim, j), _ = self.cpu_lru.popitem(last=False)
            self.cpu[victim].discard(j)


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
    src = [int(x) for x in src_arr]
    start = [int(x) // bs for x in plen_arr]
    shareable = [False] * len(src)
    for r in range(n):
        if batch.prefix_src[r] >= 0:
            shareable[int(batch.prefix_src[r])] = True
    prompt = [int(x) for x in batch.prompt_len]
    output = [int(x) for x in batch.output_len]
    cls = [0] * n if itl_class is None else [int(x) for x in itl_class]
    caching = config.enable_prefix_caching
    max_model_len = config.effective_max_model_len
    reserve_full = config.kv_reservation == "full_request"
    cache = _Cache(config.num_gpu_blocks, start, src, config.num_cpu_blocks if caching else 0)
    offload = caching and config.num_cpu_blocks > 0

    send = [math.nan] * n
    first = [math.nan] * n
    finish = [math.nan] * n
    completed = [False] * n
    preemptions = [0] * n
    cached_tokens = [-1] * n
    last_token = [0.0] * n
    generated = [0] * n
    computed = [0] * n
    decoding = [False] * n  # emitted a token and not preempted since
    ref_blocks = [0] * n  # blocks referenced in node caches
    private = [0] * n  # blocks allocated to the request alone
    hist = np.zeros((num_itl_classes, ITL_NUM_BINS), np.int64)
    itl_sum = np.zeros(num_itl_classes)
    itl_count = np.zeros(num_itl_classes, np.int64)

    children: dict[int, list[int]] = {}
    for i in range(n):
        if batch.gate[i] >= 0:
            children.setdefault(int(batch.gate[i]), []).append(i)
    conc = batch.concurrency
    next_closed = conc
    releases: list[tuple[float, int]] = []  # (engine arrival time, request)
    for i in range(n):
        if batch.gate[i] < 0 and (conc == 0 or i < conc):
            send[i] = float(batch.arrival_s[i])
            heapq.heappush(releases, (send[i] + config.ingress_s, i))

    def on_response(i: int, client_t: float) -> None:
        nonlocal next_closed
        for c in children.get(i, ()):
            send[c] = max(float(batch.arrival_s[c]), client_t)
            heapq.heappush(releases, (send[c] + config.ingress_s, c))
        if conc and next_closed < n:
            c = next_closed
            next_closed += 1
            send[c] = max(float(batch.arrival_s[c]), client_t)
            heapq.heappush(releases, (send[c] + config.ingress_s, c))

    def num_tokens(r: int) -> int:
        return prompt[r] + generated[r]

    def release_blocks(r: int, cache_own: bool) -> None:
        own_full = max(computed[r] // bs - start[r], 0)
        node_blocks = cache.cached.setdefault(r, set())
        freed = private[r]
        if cache_own and caching:
            grew = False
            for j in range(start[r], start[r] + own_full):
                if j not in node_blocks:
                    node_blocks.add(j)
                    freed -= 1
                    grew = True
            if grew:
                cache.cpu_touch(r)
        cache.free_uncached += freed
        private[r] = 0
        ref_blocks[r] = 0
        cache.unpin(r)

    def preempt(r: int) -> None:
        release_blocks(r, cache_own=True)
        computed[r] = 0
        decoding[r] = False
        preemptions[r] += 1

    def transfer(r: int, old: int, new: int) -> None:
        """Blocks of ancestors that ``r`` just computed join their owner's cache."""
        for j in range(old // bs, min(new // bs, start[r])):
            node = cache.owner(r, j)
            blocks = cache.cached.setdefault(node, set())
            if caching and j not in blocks and (j == start[node] or (j - 1) in blocks):
                blocks.add(j)
                private[r] -= 1
                ref_blocks[r] += 1
                cache.cpu_touch(node)

    waiting: deque[int] = deque()
    by_priority = config.scheduling_policy == "priority"
    prio = [0] * n if priority is None else [int(x) for x in priority]

    def key(i: int) -> tuple[int, float, int]:
        return (prio[i], send[i] + config.ingress_s, i)

    def enqueue(i: int, front: bool) -> None:
        if by_priority:  # vLLM's priority queue: (priority, arrival)
            pos = 0
            while pos < len(waiting) and key(waiting[pos]) <= key(i):
                pos += 1
            waiting.insert(pos, i)
        elif front:
            waiting.appendleft(i)
        else:
            waiting.append(i)

    running: list[int] = []
    async_sched = config.async_scheduling
    cutoff = math.inf  # admit only requests that reached the engine by then (async)
    zombies: list[int] = []  # finished in the last step, blocks not yet released (async)

    def release_zombies() -> None:
        for r in zombies:
            release_blocks(r, cache_own=shareable[r])
        zombies.clear()

    t = 0.0
    num_steps = 0
    busy = 0.0
    max_used = 0

    while True:
        while releases and releases[0][0] <= t:
            _, i = heapq.heappop(releases)
            if batch.rejected[i] or prompt[i] + output[i] > max_model_len:
                finish[i] = send[i]
                on_response(i, send[i])
            else:
                enqueue(i, front=False)
        if not running and not waiting:
            release_zombies()  # the empty step in flight completes
            cutoff = math.inf
            if not releases:
                break
            t = max(t, releases[0][0])
            continue

        budget = config.max_num_batched_tokens
        scheduled: list[tuple[int, int]] = []
        preempted_any = False
        loaded_blocks = 0
        idx = 0
        while idx < len(running) and budget > 0:
            r = running[idx]
            num_new = min(num_tokens(r) - computed[r], budget)
            fits = True
            while True:
                need = _cdiv(computed[r] + num_new, bs) - ref_blocks[r] - private[r]
                if cache.allocate(need):
                    private[r] += max(need, 0)
                    break
                if by_priority:
                    victim = max(running, key=key)
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
                preempt(victim)
                enqueue(victim, front=True)
                preempted_any = True
                if victim == r:
                    fits = False
                    break
            if not fits:
                if by_priority:
                    # NOTE(deviation): vLLM stops scheduling the running list here; we go on
                    # with the requests after it (the decode bookkeeping needs every running
                    # decode to advance each step).
                    continue
                break
            scheduled.append((r, num_new))
            budget -= num_new
            idx += 1
        if not preempted_any:
            while waiting and budget > 0 and len(running) + len(zombies) < config.max_num_seqs:
                r = waiting[0]
                if send[r] + config.ingress_s > cutoff:
                    break  # arrived after this step was decided (async scheduling)
                cache.pin(r)
                hit = cache.hit_blocks(r, num_tokens(r), bs) if caching else 0
                # blocks found only in host memory are loaded back (counted as computed)
                total = cache.hit_blocks(r, num_tokens(r), bs, "any") if offload else hit
                num_new = min(num_tokens(r) - total * bs, budget)
                need = _cdiv(total * bs + num_new, bs) - hit
                if reserve_full:  # blocks for the whole request, up front
                    need = _cdiv(prompt[r] + output[r], bs) - hit
                if not cache.allocate(need):
                    cache.unpin(r)
                    break
                waiting.popleft()
                computed[r] = total * bs
                ref_blocks[r] = hit
                private[r] = need
                if total > hit:
                    loaded_blocks += total - hit
                    touched = -1
                    for j in range(hit, total):  # root to leaf, each node once
                        node = cache.owner(r, j)
                        if node != touched:
                            cache.cpu_touch(node)
                            touched = node
                    transfer(r, hit * bs, total * bs)
                if cached_tokens[r] < 0:
                    cached_tokens[r] = total * bs
                running.append(r)
                scheduled.append((r, num_new))
                budget -= num_new

        release_zombies()
        if not scheduled:
            if not running and waiting and not preempted_any and cutoff == math.inf:
                raise RuntimeError("engine stalled: waiting request cannot be scheduled")
            cutoff = math.inf  # nothing in flight: the next decision sees every arrival
            continue

        used = config.num_gpu_blocks - cache.num_free()
        max_used = max(max_used, used)
        num_tok = 0
        num_prefill = 0
        pairs = 0
        dec_ctx = 0
        for r, q in scheduled:
            num_tok += q
            if decoding[r]:
                dec_ctx += computed[r] + 1
            else:
                num_prefill += 1
                pairs += prefill_pairs(q, computed[r])
        d = step_time_s(
            coeffs,
            float(num_tok),
            float(len(scheduled)),
            float(num_prefill),
            float(pairs),
            float(dec_ctx),
        )
        d += loaded_blocks * config.cpu_load_s_per_block
        t_end = t + d
        if async_sched:
            cutoff = t  # the next step was decided as this one started
        num_steps += 1
        busy += d
        client_t = t_end + config.egress_s
        finished: list[int] = []
        for r, q in scheduled:
            old = computed[r]
            computed[r] = old + q
            if old < start[r] * bs:
                transfer(r, old, computed[r])
            if computed[r] < num_tokens(r):
                continue  # partial prefill: no token this step
            decoding[r] = True
            generated[r] += 1
            if generated[r] == 1:
                first[r] = client_t
            elif cls[r] >= 0:
                gap = client_t - last_token[r]
                hist[cls[r], _itl_bin(gap)] += 1
                itl_sum[cls[r]] += gap
                itl_count[cls[r]] += 1
            last_token[r] = client_t
            if generated[r] == output[r]:
                finished.append(r)
        for r in finished:
            running.remove(r)
            if async_sched:
                zombies.append(r)
            else:
                release_blocks(r, cache_own=shareable[r])
            finish[r] = client_t
            completed[r] = True
            on_response(r, client_t)
        t = t_end

    return EngineResult(
        send_s=np.asarray(send, np.float64),
        first_token_s=np.asarray(first, np.float64),
        finish_s=np.asarray(finish, np.float64),
        completed=np.asarray(completed, np.bool_),
        num_preemptions=np.asarray(preemptions, np.int32),
        num_cached_tokens=np.maximum(np.asarray(cached_tokens, np.int32), 0),
        itl_hist=hist,
        itl_sum_s=itl_sum,
        itl_count=itl_count,
        num_steps=num_steps,
        busy_s=busy,
        max_blocks_used=max_used,
    )
