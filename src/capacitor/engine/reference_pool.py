"""Plain-Python reference for a pool of replicas behind a router: the semantics of
:func:`capacitor.engine.simulator.simulate_pool`, written plainly, for the tests.

This module imports nothing from the fast kernel. Each replica is the engine of
:mod:`capacitor.engine.reference` (the same scheduling step, written out again as a
replica object that steps one iteration at a time; its KV cache is
:class:`capacitor.engine.reference._Cache`). Around the replicas, one event loop takes, in
time order:

* **Failures** (after releases at the same time, before replica steps). At ``time_s``
  replica ``replica`` fails: the step it has in progress completes (its clock is the end of
  that step), then its running requests are lost (status ``LOST``, their clients see the
  error then), its waiting requests go back to the router at once, and its KV cache is
  gone. It takes no request until ``repair_s`` later. (The kernel does this only when a
  release falls in every step of the failing replica; see tests/unit/test_pool_reference.)
* **Releases**: a request reaching the router at ``send + ingress`` (initial requests in
  arrival order, re-routed ones from a heap ordered by (time, request)). Releases go before
  replica steps at the same time, as a single engine pulls every arrival due before it
  schedules. A request too long for ``max_model_len`` is rejected at once (status
  ``REJECTED``, not routed). Otherwise the router picks a replica: round robin (a counter
  over routed requests) or ``route_key % num_replicas``; if that replica is down, the next
  replica up (in index order, wrapping); if none is up the request is shed (status
  ``SHED``). It is also shed when its replica already has ``max_queue`` requests waiting.
* **Replica iterations**: the replica with the earliest clock (ties: lowest index) runs one
  scheduling iteration of :mod:`capacitor.engine.reference`'s engine. A replica wakes at
  the release of a request routed to it while it is idle.

Scope (the rest raises :class:`~capacitor.errors.ConfigError`): routing ``round_robin``,
``session_affinity`` and ``prefix_affinity``; shared prefixes only through shared segments
(no request sharing another request's prefix, no session gates, no closed loop); FCFS
scheduling; no host (CPU) KV tier; no tenant limits, no predicted-TTFT shedding.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from capacitor.engine.config import EngineConfig
from capacitor.engine.prefix_chain import normalise_prefix_chains
from capacitor.engine.reference import _Cache, _cdiv, _itl_bin
from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import ITL_NUM_BINS, EngineResult
from capacitor.engine.status import S_COMPLETED, S_LOST, S_REJECTED, S_SHED
from capacitor.errors import ConfigError
from capacitor.perf.step_time import prefill_pairs, step_time_s

_KEY_ROUTERS = ("session_affinity", "prefix_affinity")


class _Pool:
    """Per-request state shared by the replicas (a request is on one replica at a time)."""

    def __init__(self, batch: RequestBatch, config: EngineConfig, coeffs: np.ndarray):
        n = len(batch)
        bs = config.block_size
        src_arr, plen_arr, _ = normalise_prefix_chains(
            batch.prefix_src, batch.prefix_len, batch.prompt_len, batch.output_len,
            batch.segment_len, bs,
        )
        self.config = config
        self.coeffs = coeffs
        self.src = [int(x) for x in src_arr]
        self.start = [int(x) // bs for x in plen_arr]
        self.shareable = [False] * len(self.src)
        for r in range(n):
            if batch.prefix_src[r] >= 0:
                self.shareable[int(batch.prefix_src[r])] = True
        self.prompt = [int(x) for x in batch.prompt_len]
        self.output = [int(x) for x in batch.output_len]
        self.send = [float(x) for x in batch.arrival_s]
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.status = [0] * n
        self.replica = [-1] * n
        self.preemptions = [0] * n
        self.cached_tokens = [-1] * n
        self.last_token = [0.0] * n
        self.generated = [0] * n
        self.computed = [0] * n
        self.decoding = [False] * n
        self.ref_blocks = [0] * n
        self.private = [0] * n
        self.hist = np.zeros((1, ITL_NUM_BINS), np.int64)
        self.itl_sum = np.zeros(1)
        self.itl_count = np.zeros(1, np.int64)


class _Replica:
    """One engine of :mod:`capacitor.engine.reference`, stepped one iteration at a time."""

    def __init__(self, pool: _Pool):
        self.pool = pool
        self.t = 0.0
        self.num_steps = 0
        self.busy = 0.0
        self.max_used = 0
        #: has work, or has not yet seen that it has none: its clock is a pending event
        self.awake = False
        self.reset()

    def reset(self) -> None:
        """Empty: nothing running or waiting, every KV block free (a fresh cache)."""
        p = self.pool
        self.cache = _Cache(p.config.num_gpu_blocks, p.start, p.src, 0)
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.zombies: list[int] = []
        self.cutoff = math.inf

    # -- the engine of reference.simulate, per replica ------------------------------------

    def _num_tokens(self, r: int) -> int:
        return self.pool.prompt[r] + self.pool.generated[r]

    def _release_blocks(self, r: int, cache_own: bool) -> None:
        p, cache, bs = self.pool, self.cache, self.pool.config.block_size
        own_full = max(p.computed[r] // bs - p.start[r], 0)
        node_blocks = cache.cached.setdefault(r, set())
        freed = p.private[r]
        if cache_own and p.config.enable_prefix_caching:
            for j in range(p.start[r], p.start[r] + own_full):
                if j not in node_blocks:
                    node_blocks.add(j)
                    freed -= 1
        cache.free_uncached += freed
        p.private[r] = 0
        p.ref_blocks[r] = 0
        cache.unpin(r)

    def _transfer(self, r: int, old: int, new: int) -> None:
        """Blocks of ancestors that ``r`` just computed join their owner's cache."""
        p, cache, bs = self.pool, self.cache, self.pool.config.block_size
        for j in range(old // bs, min(new // bs, p.start[r])):
            node = cache.owner(r, j)
            blocks = cache.cached.setdefault(node, set())
            if p.config.enable_prefix_caching and j not in blocks and (
                j == p.start[node] or (j - 1) in blocks
            ):
                blocks.add(j)
                p.private[r] -= 1
                p.ref_blocks[r] += 1

    def release_zombies(self) -> None:
        for r in self.zombies:
            self._release_blocks(r, cache_own=self.pool.shareable[r])
        self.zombies.clear()

    def iterate(self) -> None:
        """One scheduling iteration at the replica's clock (a step, or none)."""
        p, cfg, cache, bs = self.pool, self.pool.config, self.cache, self.pool.config.block_size
        if not self.running and not self.waiting:
            self.release_zombies()  # the empty step in flight completes
            self.cutoff = math.inf
            self.awake = False  # idle until a request is routed here
            return
        budget = cfg.max_num_batched_tokens
        scheduled: list[tuple[int, int]] = []
        preempted_any = False
        idx = 0
        while idx < len(self.running) and budget > 0:
            r = self.running[idx]
            num_new = min(self._num_tokens(r) - p.computed[r], budget)
            fits = True
            while True:
                need = _cdiv(p.computed[r] + num_new, bs) - p.ref_blocks[r] - p.private[r]
                if cache.allocate(need):
                    p.private[r] += max(need, 0)
                    break
                victim = self.running.pop()  # preempt the last running request (recompute)
                self._release_blocks(victim, cache_own=True)
                p.computed[victim] = 0
                p.decoding[victim] = False
                p.preemptions[victim] += 1
                self.waiting.appendleft(victim)
                preempted_any = True
                if victim == r:
                    fits = False
                    break
            if not fits:
                break
            scheduled.append((r, num_new))
            budget -= num_new
            idx += 1
        if not preempted_any:
            while (
                self.waiting
                and budget > 0
                and len(self.running) + len(self.zombies) < cfg.max_num_seqs
            ):
                r = self.waiting[0]
                if p.send[r] + cfg.ingress_s > self.cutoff:
                    break  # arrived after this step was decided (async scheduling)
                cache.pin(r)
                num_tok = self._num_tokens(r)
                hit = cache.hit_blocks(r, num_tok, bs) if cfg.enable_prefix_caching else 0
                num_new = min(num_tok - hit * bs, budget)
                need = _cdiv(hit * bs + num_new, bs) - hit
                if cfg.kv_reservation == "full_request":
                    need = _cdiv(p.prompt[r] + p.output[r], bs) - hit
                if not cache.allocate(need):
                    cache.unpin(r)
                    break
                self.waiting.popleft()
                p.computed[r] = hit * bs
                p.ref_blocks[r] = hit
                p.private[r] = need
                if p.cached_tokens[r] < 0:
                    p.cached_tokens[r] = hit * bs
                self.running.append(r)
                scheduled.append((r, num_new))
                budget -= num_new
        self.release_zombies()
        if not scheduled:
            if not self.running and self.waiting and not preempted_any and (
                self.cutoff == math.inf
            ):
                raise RuntimeError("engine stalled: waiting request cannot be scheduled")
            self.cutoff = math.inf  # nothing in flight: the next decision sees every arrival
            return

        self.max_used = max(self.max_used, cfg.num_gpu_blocks - cache.num_free())
        num_tok = num_prefill = pairs = dec_ctx = 0
        for r, q in scheduled:
            num_tok += q
            if p.decoding[r]:
                dec_ctx += p.computed[r] + 1
            else:
                num_prefill += 1
                pairs += prefill_pairs(q, p.computed[r])
        d = step_time_s(p.coeffs, float(num_tok), float(len(scheduled)), float(num_prefill),
                        float(pairs), float(dec_ctx))
        t_end = self.t + d
        if cfg.async_scheduling:
            self.cutoff = self.t  # the next step was decided as this one started
        self.num_steps += 1
        self.busy += d
        client_t = t_end + cfg.egress_s
        finished: list[int] = []
        for r, q in scheduled:
            old = p.computed[r]
            p.computed[r] = old + q
            if old < p.start[r] * bs:
                self._transfer(r, old, p.computed[r])
            if p.computed[r] < self._num_tokens(r):
                continue  # partial prefill: no token this step
            p.decoding[r] = True
            p.generated[r] += 1
            if p.generated[r] == 1:
                p.first[r] = client_t
            else:
                gap = client_t - p.last_token[r]
                p.hist[0, _itl_bin(gap)] += 1
                p.itl_sum[0] += gap
                p.itl_count[0] += 1
            p.last_token[r] = client_t
            if p.generated[r] == p.output[r]:
                finished.append(r)
        for r in finished:
            self.running.remove(r)
            if cfg.async_scheduling:
                self.zombies.append(r)
            else:
                self._release_blocks(r, cache_own=p.shareable[r])
            p.finish[r] = client_t
            p.status[r] = S_COMPLETED
        self.t = t_end

    def fail(self, now: float) -> list[int]:
        """The replica fails at ``now``: running requests are lost; returns the waiting ones
        (to be routed again) and leaves the replica empty with its clock at ``now``."""
        p = self.pool
        self.release_zombies()  # finished requests leave first (their clients have them)
        for r in self.running:
            p.status[r] = S_LOST
            p.finish[r] = now
        back = list(self.waiting)
        self.reset()
        self.t = now
        return back


def simulate_pool(
    batch: RequestBatch,
    config: EngineConfig,
    coeffs: np.ndarray,
    *,
    num_replicas: int,
    routing: str = "round_robin",
    route_key: np.ndarray | None = None,
    max_queue: int = 0,
    failures: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> EngineResult:
    """Simulate ``num_replicas`` identical replicas behind a router serving ``batch``; the
    arguments mean what they mean for :func:`capacitor.engine.simulator.simulate_pool`
    (see the module docstring for the model and its scope).

    Raises:
        ConfigError: an argument or a feature outside this reference's scope.
    """
    batch.check()
    n = len(batch)
    if routing != "round_robin" and routing not in _KEY_ROUTERS:
        raise ConfigError(f"reference pool: routing={routing!r} is not modelled here")
    if routing in _KEY_ROUTERS and (route_key is None or np.shape(route_key) != (n,)):
        raise ConfigError(f"routing={routing!r} needs a route_key per request")
    if num_replicas < 1 or max_queue < 0:
        raise ConfigError("num_replicas must be >= 1 and max_queue >= 0")
    if np.any(batch.gate >= 0) or batch.concurrency or np.any(
        (batch.prefix_src >= 0) & (batch.prefix_src < n)
    ):
        raise ConfigError("reference pool: only shared segments (no gates, no closed loop, "
                          "no request-to-request prefixes)")
    if config.scheduling_policy != "fcfs" or (
        config.enable_prefix_caching and config.num_cpu_blocks > 0
    ):
        raise ConfigError("reference pool: FCFS scheduling and no host KV tier only")
    pool = _Pool(batch, config, np.asarray(coeffs, np.float64))
    replicas = [_Replica(pool) for _ in range(num_replicas)]
    down_until = [-math.inf] * num_replicas
    rejected = batch.rejected | (
        batch.prompt_len.astype(np.int64) + batch.output_len > config.effective_max_model_len
    )
    fail_events = [] if failures is None else sorted(
        zip(*(np.asarray(a).tolist() for a in failures), strict=True), key=lambda f: f[0]
    )
    initial = sorted(range(n), key=lambda i: (pool.send[i], i))
    next_initial = 0
    rerouted: list[tuple[float, int]] = []  # (release time, request)
    round_robin = 0

    def route(i: int, now: float) -> int:
        nonlocal round_robin
        if num_replicas == 1:
            return 0 if down_until[0] <= now else -1
        if routing == "round_robin":
            first = round_robin % num_replicas
            round_robin += 1
        else:
            first = int(route_key[i]) % num_replicas
        for k in range(num_replicas):  # the first choice, or the next replica that is up
            rep = (first + k) % num_replicas
            if down_until[rep] <= now:
                return rep
        return -1

    while True:
        it, ii = math.inf, -1
        if next_initial < n:
            ii = initial[next_initial]
            it = pool.send[ii] + config.ingress_s
        if rerouted and (rerouted[0][0], rerouted[0][1]) < (it, ii if ii >= 0 else n):
            it, ii = rerouted[0]
        busy = [(rep.t, k) for k, rep in enumerate(replicas) if rep.awake]
        t_rep, k_rep = min(busy) if busy else (math.inf, -1)
        t_fail = fail_events[0][0] if fail_events else math.inf
        if t_fail < it and t_fail <= t_rep:
            _, k, repair_s = fail_events.pop(0)
            rep = replicas[int(k)]
            now = max(t_fail, rep.t) if rep.awake else t_fail
            for i in rep.fail(now):
                heapq.heappush(rerouted, (now, i))
            down_until[int(k)] = now + repair_s
            continue
        if ii >= 0 and it <= t_rep:
            if rerouted and rerouted[0] == (it, ii):
                heapq.heappop(rerouted)
            else:
                next_initial += 1
            if rejected[ii]:
                pool.status[ii] = S_REJECTED
                pool.finish[ii] = pool.send[ii]
                continue
            k = route(ii, it)
            pool.replica[ii] = k
            if k < 0 or (max_queue > 0 and len(replicas[k].waiting) >= max_queue):
                pool.status[ii] = S_SHED
                pool.finish[ii] = pool.send[ii]
                continue
            rep = replicas[k]
            if not rep.running and not rep.waiting:
                rep.t = max(rep.t, it)  # an idle replica wakes at the arrival
            rep.waiting.append(ii)
            rep.awake = True
            continue
        if k_rep < 0:
            break
        replicas[k_rep].iterate()

    status = np.asarray(pool.status, np.int8)
    return EngineResult(
        send_s=np.asarray(pool.send, np.float64),
        first_token_s=np.asarray(pool.first, np.float64),
        finish_s=np.asarray(pool.finish, np.float64),
        completed=status == S_COMPLETED,
        num_preemptions=np.asarray(pool.preemptions, np.int32),
        num_cached_tokens=np.maximum(np.asarray(pool.cached_tokens, np.int32), 0),
        itl_hist=pool.hist,
        itl_sum_s=pool.itl_sum,
        itl_count=pool.itl_count,
        num_steps=sum(rep.num_steps for rep in replicas),
        busy_s=sum(rep.busy for rep in replicas),
        max_blocks_used=max(rep.max_used for rep in replicas),
        status=status,
        replica=np.asarray(pool.replica, np.int32),
    )
