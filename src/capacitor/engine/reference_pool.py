"""Plain-Python reference for a pool of replicas behind a router: the semantics of
:func:`capacitor.engine.simulator.simulate_pool`, written plainly, for the tests.

This module imports nothing from the fast kernel. Each replica is a
:class:`capacitor.engine.reference.ReplicaEngine`, the single replica twin's engine, stepped
one scheduling iteration at a time. Around the replicas, one event loop takes, in time
order:

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

import numpy as np

from capacitor.engine.config import EngineConfig
from capacitor.engine.reference import ReplicaEngine, RequestState
from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import EngineResult
from capacitor.engine.status import S_COMPLETED, S_REJECTED, S_SHED
from capacitor.errors import ConfigError

_KEY_ROUTERS = ("session_affinity", "prefix_affinity")


class _Replica(ReplicaEngine):
    """One engine of :mod:`capacitor.engine.reference`, woken by the requests routed to it."""

    def __init__(self, state: RequestState):
        super().__init__(state)
        #: has work, or has not yet seen that it has none: its clock is a pending event
        self.awake = False

    def step(self) -> None:
        """One scheduling iteration at the replica's clock (a step, or none); an idle
        replica sleeps until a request is routed to it."""
        if self.is_idle():
            self.idle()
            self.awake = False
            return
        self.iterate()


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
    pool = RequestState(batch, config, np.asarray(coeffs, np.float64))
    pool.send = [float(x) for x in batch.arrival_s]
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
        replicas[k_rep].step()

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
        busy_s=sum(rep.busy_s for rep in replicas),
        max_blocks_used=max(rep.max_used for rep in replicas),
        status=status,
        replica=np.asarray(pool.replica, np.int32),
    )
