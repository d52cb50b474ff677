"""Plain-Python reference for disaggregated prefill/decode serving: the semantics of
:func:`capacitor.engine.disaggregated.simulate_disaggregated` (its module docstring states
the model), written plainly, for the tests.

This module imports nothing from the fast kernel. A prefill pool and a decode pool of
:class:`capacitor.engine.reference.ReplicaEngine` s, each pool with its own
:class:`~capacitor.engine.reference.RequestState` (its engine settings, step-time
coefficients and per-request progress; the prefill pool's requests have one output token).
One event loop takes, in time order:

* **Failures** (after releases at the same time, before replica steps): at ``time_s``
  worker ``worker`` (``[0, P)`` prefill, ``P + j`` decode worker ``j``) fails: the step it
  has in progress completes, then its running requests are lost (status ``LOST``, their
  clients see the error then) and its KV is gone. A prefill worker's waiting requests go
  back to the prefill router at once; a decode worker's are lost too (their KV was
  there). It takes nothing until ``repair_s`` later: the routers pass over it.
* **Releases** (before replica steps at the same time): a client's request reaching the
  prefill router (ordered by (time, request)), or the KV of request ``i`` reaching the decode
  router (ordered as ``n + i``: after client releases at the same time). A request too long
  for either pool is rejected at once. Each router picks round robin over its pool (its own
  counter), or the next worker up after it (wrapping); an idle replica wakes at the arrival.
  With no prefill worker up the request is shed (status ``SHED``, answered at its send
  time); with no decode worker up, a KV that arrives is lost (status ``LOST``).
* **Replica iterations**: the replica with the earliest clock (ties: prefill replicas first,
  then by index) runs one scheduling iteration. A prefill replica's finished request starts
  its KV transfer at the step's end (arrival ``kv_transfer_s[i]`` later) and hands the
  decode pool its first token (one generated); the decode replica that admits it runs its
  first step as a decode for it and streams that token with the second at the step's end
  (``ReplicaEngine.kv_from_prefill``); a decode replica's
  finished request answers its client (closed loop, session gates). A request of one
  output token is answered by the prefill pool.

Scope (the rest raises :class:`~capacitor.errors.ConfigError`): round-robin routing, FCFS
scheduling, no host KV tier.
"""

from __future__ import annotations

import dataclasses
import heapq
import math

import numpy as np

from capacitor.engine.config import EngineConfig
from capacitor.engine.reference import RequestState
from capacitor.engine.reference_clients import Clients
from capacitor.engine.reference_pool import _Replica
from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import EngineResult
from capacitor.engine.status import S_COMPLETED, S_LOST, S_REJECTED, S_SHED
from capacitor.errors import ConfigError


def simulate_disaggregated(
    batch: RequestBatch,
    prefill: tuple[EngineConfig, np.ndarray, int],
    decode: tuple[EngineConfig, np.ndarray, int],
    kv_transfer_s: np.ndarray,
    *,
    itl_class: np.ndarray | None = None,
    num_itl_classes: int = 1,
    failures: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> EngineResult:
    """The reference of :func:`capacitor.engine.disaggregated.simulate_disaggregated`
    (round-robin routing; see the module docstring).

    Raises:
        ConfigError: an argument or a feature outside this reference's scope.
    """
    batch.check()
    n = len(batch)
    config_p, coeffs_p, num_p = prefill
    config_d, coeffs_d, num_d = decode
    if num_p < 1 or num_d < 1:
        raise ConfigError("each pool needs >= 1 replica")
    if "priority" in (config_p.scheduling_policy, config_d.scheduling_policy) or (
        config_p.num_cpu_blocks or config_d.num_cpu_blocks
    ):
        raise ConfigError("reference disaggregation: FCFS scheduling and no host KV tier only")
    # the decode pool: requests reach it with their KV (no ingress), no prefix cache
    config_d = dataclasses.replace(config_d, ingress_s=0.0, enable_prefix_caching=False)
    sp = RequestState(batch, config_p, np.asarray(coeffs_p, np.float64), itl_class=itl_class,
                      num_itl_classes=num_itl_classes)
    sd = RequestState(batch, config_d, np.asarray(coeffs_d, np.float64), itl_class=itl_class,
                      num_itl_classes=num_itl_classes)
    sp.output = [1] * n
    sd.shareable = [False] * len(sd.shareable)
    pool_p = [_Replica(sp) for _ in range(num_p)]
    pool_d = [_Replica(sd) for _ in range(num_d)]
    for rep in pool_d:
        rep.kv_from_prefill = True
    replicas = pool_p + pool_d
    output = [int(x) for x in batch.output_len]
    max_model_len = min(config_p.effective_max_model_len, config_d.effective_max_model_len)
    transfer = [float(x) for x in kv_transfer_s]

    clients = Clients(batch, sp.send, config_p.ingress_s)
    # (time, i): client release; (time, n + i): KV handed to the decode pool
    releases, on_response = clients.releases, clients.on_response

    fail_events = [] if failures is None else sorted(
        zip(*(np.asarray(a).tolist() for a in failures), strict=True), key=lambda f: f[0]
    )
    down_until = [-math.inf] * (num_p + num_d)  # per worker, global ids
    cursor = [0, 0]  # round robin: prefill, decode

    def enqueue(pool: list[_Replica], which: int, i: int, now: float) -> int:
        base = 0 if which == 0 else num_p
        if len(pool) == 1:
            k = 0 if down_until[base] <= now else -1
        else:
            first = cursor[which] % len(pool)
            cursor[which] += 1
            k = next((c % len(pool) for c in range(first, first + len(pool))
                      if down_until[base + c % len(pool)] <= now), -1)
        if k < 0:
            return -1
        rep = pool[k]
        if not rep.running and not rep.waiting:
            rep.t = max(rep.t, now)  # an idle replica wakes at the arrival
        rep.waiting.append(i)
        rep.awake = True
        return k

    decode_replica = [-1] * n
    while True:
        t_rel = releases[0][0] if releases else math.inf
        busy = [(rep.t, k) for k, rep in enumerate(replicas) if rep.awake]
        t_rep, k_rep = min(busy) if busy else (math.inf, -1)
        t_fail = fail_events[0][0] if fail_events else math.inf
        if t_fail < t_rel and t_fail <= t_rep:
            _, g, repair_s = fail_events.pop(0)
            g = int(g)
            rep = replicas[g]
            now = max(t_fail, rep.t) if rep.awake else t_fail
            state = sp if g < num_p else sd
            running = list(rep.running)
            back = rep.fail(now)
            for r in running:
                if state.status[r] == S_LOST:
                    on_response(r, now, ok=False)
            for r in back:
                if g < num_p:  # back to the prefill router
                    heapq.heappush(releases, (now, r))
                else:  # its KV was here
                    sd.status[r] = S_LOST
                    sd.finish[r] = now
                    on_response(r, now, ok=False)
            down_until[g] = now + repair_s
            continue
        if releases and t_rel <= t_rep:
            now, j = heapq.heappop(releases)
            if j >= n:  # KV of request j - n reaches the decode router
                r = j - n
                sd.send[r] = now
                decode_replica[r] = enqueue(pool_d, 1, r, now)
                if decode_replica[r] < 0:  # no decode worker up: lost
                    sd.status[r] = S_LOST
                    sd.finish[r] = now
                    on_response(r, now, ok=False)
                continue
            if batch.rejected[j] or sp.prompt[j] + output[j] > max_model_len:
                sp.status[j] = S_REJECTED
                sp.finish[j] = sp.send[j]
                on_response(j, sp.send[j], ok=False)
                continue
            sp.replica[j] = enqueue(pool_p, 0, j, now)
            if sp.replica[j] < 0:  # no prefill worker up: shed
                sp.status[j] = S_SHED
                sp.finish[j] = sp.send[j]
                on_response(j, sp.send[j], ok=False)
            continue
        if k_rep < 0:
            break
        rep = replicas[k_rep]
        if rep.is_idle():
            rep.idle()
            rep.awake = False
            continue
        finished, client_t = rep.iterate()
        for r in finished:
            if k_rep < num_p and output[r] > 1:  # prefill done: the KV leaves now
                heapq.heappush(releases, (rep.t + transfer[r], n + r))
                sd.generated[r] = 1
                sd.last_token[r] = client_t
            else:
                on_response(r, client_t)

    status = np.asarray(sp.status, np.int8)
    finish = np.asarray(sp.finish, np.float64)
    on_decode = np.asarray([sd.status[i] == S_COMPLETED for i in range(n)])
    lost_d = np.asarray([sd.status[i] == S_LOST for i in range(n)], np.bool_)
    on_decode |= lost_d
    status[on_decode] = np.asarray(sd.status, np.int8)[on_decode]
    finish[on_decode] = np.asarray(sd.finish, np.float64)[on_decode]
    first = np.asarray(sp.first, np.float64)
    taken = ~np.isnan(np.asarray(sd.first, np.float64))  # streamed by the decode replica
    first[taken] = np.asarray(sd.first, np.float64)[taken]
    return EngineResult(
        send_s=np.asarray(sp.send, np.float64),
        first_token_s=first,
        finish_s=finish,
        completed=status == S_COMPLETED,
        num_preemptions=np.asarray(sp.preemptions, np.int32) + np.asarray(sd.preemptions,
                                                                          np.int32),
        num_cached_tokens=np.maximum(np.asarray(sp.cached_tokens, np.int32), 0),
        itl_hist=sp.hist + sd.hist,
        itl_sum_s=sp.itl_sum + sd.itl_sum,
        itl_count=sp.itl_count + sd.itl_count,
        num_steps=sum(rep.num_steps for rep in replicas),
        busy_s=sum(rep.busy_s for rep in replicas),
        max_blocks_used=max(rep.max_used for rep in replicas),
        status=status,
        replica=np.asarray(sp.replica, np.int32),
        decode_replica=np.asarray(decode_replica, np.int32),
        kv_arrival_s=np.asarray([sd.send[i] if decode_replica[i] >= 0 else math.nan
                                 for i in range(n)]),
    )


__all__ = ["simulate_disaggregated"]
