"""Disaggregated prefill/decode serving: a prefill pool and a decode pool behind one router.

:func:`simulate_disaggregated` runs :func:`capacitor.engine._disagg.disagg_kernel`;
:func:`capacitor.engine.reference_disagg.simulate_disaggregated` is its plain-Python twin.

The model, per request (SGLang PD disaggregation, NVIDIA Dynamo, TensorRT-LLM disaggregated
serving):

1. The router sends it to a prefill replica, which computes its prompt (chunked as any
   prefill, sharing steps with other prefills) and samples its first token.
2. As that step ends its KV (prompt tokens) leaves for the decode pool, arriving
   ``kv_transfer_s[i]`` later (:func:`capacitor.perf.memory.kv_transfer_s`: size from the
   model's KV layout over the link between the pools).
3. The decode router picks a decode replica (round robin by default, its own cursor); the
   request waits there like any arrival and is admitted when seats and blocks allow, with
   its prompt's KV counted as computed (its blocks are allocated, nothing is recomputed:
   like a full prefix hit that still needs its blocks). Its first step there is a decode
   step for it (costed as a decoder over the prompt plus one token, not as a prefill
   chunk: SGLang's decode worker merges the transferred request into its running batch as
   a "prebuilt" batch, without a prefill forward pass; TensorRT-LLM's generation-only
   workers skip the context phase): it computes the first token's KV and emits the second
   token. The first token, sampled by the prefill pool, reaches the client with the
   second, at the end of that step (plus ``egress_s``): SGLang's decode scheduler streams
   a request's new output ids when a decode batch's results are processed
   (``process_prebuilt`` only appends the transferred token), and under NVIDIA Dynamo the
   client's stream comes from the decode worker ("Decode forward pass -> Stream output
   token", Dynamo's SGLang disaggregation guide). So TTFT = prefill (with its queue) + KV
   transfer + the wait for a decode seat and blocks + the first decode step. ASSUMPTION:
   the same for TensorRT-LLM under Dynamo (its standalone disaggregated server instead
   returns the context server's token at once).
4. Its client is answered at its last token (closed-loop clients send their next request
   then; a request of one output token is answered by the prefill pool).

Failures (:mod:`capacitor.engine._disagg_fail`), as the aggregated pool's: at a worker's
failure the step in progress completes, then its running requests are lost (status LOST,
their clients see the error then) and it takes nothing until repaired (the routers skip it).
A prefill worker's waiting requests go back to the prefill router; a decode worker's
waiting requests are lost too (their KV was in its memory). KV in flight is routed on
arrival, to a decode worker that is up; with none up, it is lost.

Each pool has its own :class:`~capacitor.engine.config.EngineConfig` (seats, token budget,
KV blocks) and step-time coefficients. Both pools must share ``block_size`` and
``async_scheduling`` (one engine build). Out of scope (ConfigError): admission control,
tenants, the host KV tier on either pool.
"""

from __future__ import annotations

import numpy as np

from capacitor.engine._disagg import disagg_kernel
from capacitor.engine._kernel import _new_fleet, _new_kv_cache, _touched_table
from capacitor.engine._pool import _reset_replica
from capacitor.engine._records import (
    Outputs,
    PoolParams,
    PrefixTree,
    Releases,
    Requests,
    Telemetry,
)
from capacitor.engine._state import NEXT_CLOSED, NUM_ROUTER
from capacitor.engine.codes import (
    KERNEL_STALLED,
    ROUTE_LEAST_OUTSTANDING,
    ROUTE_POWER_OF_TWO,
    ROUTE_ROUND_ROBIN,
)
from capacitor.engine.config import EngineConfig
from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import ITL_EDGES_S, ITL_NUM_BINS, EngineResult
from capacitor.engine.simulator import _engine_params, _failure_arrays, _itl_classes, prepare
from capacitor.engine.status import S_COMPLETED
from capacitor.errors import ConfigError
from capacitor.perf.step_time import NUM_COEFFS

#: routers of either pool, by name
DISAGG_ROUTERS = {
    "round_robin": ROUTE_ROUND_ROBIN,
    "least_outstanding_tokens": ROUTE_LEAST_OUTSTANDING,
    "power_of_two": ROUTE_POWER_OF_TWO,
}


def check_pools(prefill: EngineConfig, decode: EngineConfig, num_prefill: int,
                num_decode: int) -> None:
    """The pools one build of one engine can form, else ConfigError."""
    if num_prefill < 1 or num_decode < 1:
        raise ConfigError(f"prefill replicas={num_prefill}, decode replicas={num_decode}: "
                          "each pool needs >= 1")
    if prefill.block_size != decode.block_size:
        raise ConfigError(f"prefill block_size={prefill.block_size} != decode "
                          f"block_size={decode.block_size}: one engine build has one")
    if prefill.async_scheduling != decode.async_scheduling:
        raise ConfigError("prefill and decode pools must agree on async_scheduling")
    if prefill.num_cpu_blocks or decode.num_cpu_blocks:
        raise ConfigError("disaggregated pools: no host KV tier (num_cpu_blocks must be 0)")
    if prefill.scheduling_policy != decode.scheduling_policy:
        raise ConfigError("prefill and decode pools must agree on scheduling_policy")


def disagg_max_model_len(prefill: EngineConfig, decode: EngineConfig) -> int:
    """The longest prompt + output the deployment accepts: the decode pool holds the whole
    request, the prefill pool its prompt and first token."""
    return min(prefill.effective_max_model_len, decode.effective_max_model_len)


def _coeffs(coeffs: np.ndarray) -> np.ndarray:
    c = np.ascontiguousarray(coeffs, np.float64)
    if c.shape != (NUM_COEFFS,) or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ConfigError(f"step-time coefficients must be {NUM_COEFFS} finite values >= 0")
    return c


def _pool(num_replicas: int, routing: str, n: int, rng: np.random.Generator,
          failures: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> PoolParams:
    """A pool's router parameters; ``failures`` (checked, sorted) rides on the prefill pool's
    for the workers of both."""
    if failures is None:
        failures = _failure_arrays(None, num_replicas)
    if routing not in DISAGG_ROUTERS:
        raise ConfigError(f"routing={routing!r} unknown; valid: {', '.join(DISAGG_ROUTERS)}")
    policy = DISAGG_ROUTERS[routing]
    if policy != ROUTE_ROUND_ROBIN and num_replicas > 1:
        pick2 = rng.integers(0, num_replicas, (n, 2)).astype(np.int32)
    else:
        pick2 = np.zeros((1, 2), np.int32)
    return PoolParams(
        num_replicas=num_replicas, policy=policy, route_key=np.zeros(1, np.int64),
        pick2=pick2, max_queue=0, fail_at_s=failures[0], fail_replica=failures[1],
        fail_repair_s=failures[2], max_concurrent=np.zeros(1, np.int64),
        max_predicted_ttft_s=0.0, prefill_tokens_per_s=1.0, lookahead=False,
        look_cand=np.zeros((1, 2), np.int32), look_next=np.zeros((1, 2), np.int32),
        look_first=np.zeros(num_replicas, np.int64),
    )


def simulate_disaggregated(
    batch: RequestBatch,
    prefill: tuple[EngineConfig, np.ndarray, int],
    decode: tuple[EngineConfig, np.ndarray, int],
    kv_transfer_s: np.ndarray,
    *,
    routing: str = "round_robin",
    seed: int = 0,
    itl_class: np.ndarray | None = None,
    num_itl_classes: int = 1,
    busy_bin_s: float = 0.0,
    num_busy_bins: int = 1,
    failures: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> EngineResult:
    """Simulate a disaggregated deployment serving ``batch`` (see the module docstring).

    Args:
        prefill, decode: each pool's ``(engine config, step-time coefficients, replicas)``.
        kv_transfer_s: per request, seconds from the end of its prefill step to its KV's
            arrival at the decode pool.
        routing: the router of both pools (each its own cursor / draws, from ``seed``).
        failures: ``(time_s, worker, repair_s)`` arrays, one entry per worker failure;
            ``worker`` in ``[0, P)`` is a prefill worker, ``P + j`` decode worker ``j``
            (module docstring, "Failures").
        Others as :func:`capacitor.engine.simulator.simulate_pool`.

    Returns:
        Per-request client times (``replica`` the prefill replica, ``decode_replica`` and
        ``kv_arrival_s`` the decode side); ``busy_bins`` has the prefill replicas' rows
        then the decode replicas'.

    Raises:
        ConfigError: pools one engine cannot form, malformed inputs.
    """
    config_p, coeffs_p, num_p = prefill
    config_d, coeffs_d, num_d = decode
    check_pools(config_p, config_d, num_p, num_d)
    n = len(batch)
    transfer = np.ascontiguousarray(kv_transfer_s, np.float64)
    if transfer.shape != (n,) or not np.all(np.isfinite(transfer)) or np.any(transfer < 0):
        raise ConfigError("kv_transfer_s must give each request a finite time >= 0")
    if num_busy_bins < 1 or busy_bin_s < 0:
        raise ConfigError("num_busy_bins must be >= 1 and busy_bin_s >= 0")
    cls = _itl_classes(itl_class, num_itl_classes, n)
    p = prepare(batch, config_p)
    rejected = batch.rejected | (
        batch.prompt_len.astype(np.int64) + batch.output_len
        > disagg_max_model_len(config_p, config_d)
    )
    by_priority = config_p.scheduling_policy == "priority"
    prio = np.zeros(n if by_priority else 1, np.int16)
    num_init = len(p["init_order"]) if not p["init_identity"] else n
    if p["init_identity"]:
        send = np.ascontiguousarray(batch.arrival_s, np.float64).copy()
    else:
        send = np.full(n, np.nan)
        send[p["init_order"]] = batch.arrival_s[p["init_order"]]
    arrival = np.ascontiguousarray(batch.arrival_s, np.float64)
    prompt = np.ascontiguousarray(batch.prompt_len, np.int32)
    no_share = np.zeros(n, np.bool_)
    requests_p = Requests(
        arrival_s=arrival, prompt_len=prompt, output_len=np.ones(n, np.int32),
        rejected=rejected, itl_class=cls, priority=prio, tenant=np.zeros(1, np.int16),
        shareable=p["shareable"],
    )
    requests_d = requests_p._replace(
        output_len=np.ascontiguousarray(batch.output_len, np.int32), shareable=no_share
    )
    gates = {k: p[k] for k in ("child_gate", "child_idx", "joins", "pending", "gate_delay_s",
                               "cancel_if_gate_fails")}
    respond = Releases(
        init_order=p["init_order"], init_identity=p["init_identity"], num_initial=num_init,
        concurrency=batch.concurrency, heap_capacity=p["heap_cap"] + n, **gates,
    )
    quiet = respond._replace(child_gate=np.zeros(0, np.int32),
                             child_idx=np.zeros(0, np.int32), concurrency=0)
    num_nodes = n + num_p * len(batch.segment_len)
    prefix = PrefixTree(
        parent=p["src"], prefix_len=p["plen"],
        bound_parent=np.full(num_nodes, -1, np.int32) if num_p > 1 else p["src"],
        bound_start_block=(np.zeros(num_nodes, np.int32) if num_p > 1
                           else (p["plen"] // config_p.block_size).astype(np.int32)),
        node_replica=np.full(n, -1, np.int32), num_segments=len(batch.segment_len),
        max_depth=p["max_depth"],
    )
    prefix_d = PrefixTree(
        parent=np.full(n, -1, np.int32), prefix_len=np.zeros(n, np.int32),
        bound_parent=np.full(n, -1, np.int32), bound_start_block=np.zeros(n, np.int32),
        node_replica=np.full(n, -1, np.int32), num_segments=0, max_depth=0,
    )
    engine_p = _engine_params(config_p, _coeffs(coeffs_p), by_priority, p["ring_size"])
    engine_d = _engine_params(config_d, _coeffs(coeffs_d), by_priority, p["ring_size"],
                              kv_from_prefill=True)
    engine_d = engine_d._replace(ingress_s=0.0, enable_prefix_caching=False, num_cpu_blocks=0)
    rng = np.random.default_rng(seed)
    pool_p = _pool(num_p, routing, n, rng, _failure_arrays(failures, num_p + num_d))
    pool_d = _pool(num_d, routing, n, rng)
    # one state for both pools: sized for the larger seat count, each replica's KV its pool's
    both = pool_p._replace(num_replicas=num_p + num_d,
                           look_first=np.zeros(num_p + num_d, np.int64))
    seats = max(config_p.max_num_seqs, config_d.max_num_seqs)
    fleet_p = _new_fleet(requests_p, quiet, engine_p._replace(max_num_seqs=seats), both,
                         num_itl_classes)
    fleet_p = fleet_p._replace(touched=_touched_table(engine_p))
    fleet_p.router[NEXT_CLOSED] = respond.concurrency  # (built with the quiet plan)
    for rep in range(num_p, num_p + num_d):
        _reset_replica(fleet_p.sched[rep], fleet_p.slots[rep], fleet_p.finish_ring[rep],
                       fleet_p.num_by_phase[rep], fleet_p.num_by_class[rep],
                       config_d.num_gpu_blocks)
    fleet_d = fleet_p._replace(touched=_touched_table(engine_d))
    kv_p = _new_kv_cache(n, prefix, engine_p, num_p)
    kv_d = _new_kv_cache(n, prefix_d, engine_d, num_d)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    status = np.zeros(n, np.int8)
    preemptions = np.zeros(n, np.int32)
    cached_tokens = np.full(n, -1, np.int32)
    kv_arrival = np.full(n, np.nan)
    outputs_p = Outputs(
        send_s=send, first_token_s=first, finish_s=finish, status=status,
        replica=np.full(n, -1, np.int32), num_preemptions=preemptions,
        num_cached_tokens=cached_tokens,
    )
    outputs_d = outputs_p._replace(send_s=kv_arrival, replica=np.full(n, -1, np.int32))
    hist = np.zeros((num_itl_classes, ITL_NUM_BINS), np.int64)
    itl_sum = np.zeros(num_itl_classes)
    itl_count = np.zeros(num_itl_classes, np.int64)
    stats = np.zeros(3)
    busy_bins = np.zeros((num_p + num_d, num_busy_bins))
    seq_bins = np.zeros((num_p + num_d, num_busy_bins))
    telemetry = Telemetry(
        itl_hist=hist, itl_sum_s=itl_sum, itl_count=itl_count, itl_edges_s=ITL_EDGES_S,
        stats=stats, busy_bins=busy_bins, seq_bins=seq_bins,
        bin_s=busy_bin_s if busy_bin_s > 0 else 1e30,
    )
    code = disagg_kernel(requests_p, requests_d, quiet, respond, prefix, engine_p, engine_d,
                         pool_p, pool_d, outputs_p, outputs_d, telemetry, fleet_p, fleet_d,
                         kv_p, kv_d, np.zeros(NUM_ROUTER, np.int64), transfer)
    if code == KERNEL_STALLED:
        raise ConfigError("the engine stalled: a waiting request can never be scheduled")
    return EngineResult(
        send_s=send, first_token_s=first, finish_s=finish, completed=status == S_COMPLETED,
        num_preemptions=preemptions,
        num_cached_tokens=np.maximum(cached_tokens, 0, out=cached_tokens),
        itl_hist=hist, itl_sum_s=itl_sum, itl_count=itl_count, num_steps=int(stats[0]),
        busy_s=float(stats[2]), max_blocks_used=int(stats[1]), status=status,
        replica=outputs_p.replica, busy_bins=busy_bins, seq_bins=seq_bins,
        decode_replica=outputs_d.replica, kv_arrival_s=kv_arrival,
    )


__all__ = ["DISAGG_ROUTERS", "check_pools", "disagg_max_model_len",
           "simulate_disaggregated"]
