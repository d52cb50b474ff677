"""Public entry point of the replica simulator: validate, prepare arrays, run the kernel.

:func:`simulate` (one replica) and :func:`simulate_pool` (identical replicas behind a router)
are the readable wrappers over :func:`capacitor.engine._kernel.run_kernel`
(numba, struct-of-arrays); :func:`capacitor.engine.reference.simulate` has the same
signature and semantics in plain Python and is what tests compare against.
"""

from __future__ import annotations

import numpy as np

from capacitor.engine._kernel import run_kernel
from capacitor.engine._lookahead import lookahead_plan
from capacitor.engine._records import (
    EngineParams,
    Outputs,
    PoolParams,
    PrefixTree,
    Releases,
    Requests,
    Telemetry,
)
from capacitor.engine.codes import (
    KERNEL_STALLED,
    ROUTE_KEY,
    ROUTE_LEAST_OUTSTANDING,
    ROUTE_POWER_OF_TWO,
    ROUTERS,
)
from capacitor.engine.config import EngineConfig
from capacitor.engine.prefix_chain import normalise_prefix_chains
from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import ITL_EDGES_S, ITL_NUM_BINS, EngineResult
from capacitor.engine.status import S_COMPLETED
from capacitor.errors import ConfigError
from capacitor.perf.step_time import NUM_COEFFS, prefill_pairs, step_time_s


def prepare(batch: RequestBatch, config: EngineConfig) -> dict:
    """Arrays the kernel needs, derived once from the batch (int32 where per request)."""
    batch.check()
    n = len(batch)
    bs = config.block_size
    src, plen, max_depth = normalise_prefix_chains(
        batch.prefix_src,
        batch.prefix_len,
        batch.prompt_len,
        batch.output_len,
        batch.segment_len,
        bs,
    )
    shareable = np.zeros(src.shape[0], np.bool_)
    shareable[batch.prefix_src[batch.prefix_src >= 0]] = True
    rejected = batch.rejected | (
        batch.prompt_len.astype(np.int64) + batch.output_len > config.effective_max_model_len
    )
    gated = np.nonzero(batch.gate >= 0)[0]
    # every (gate, child) edge: a request's own gate, then its joins; sorted by gate
    edge_child = np.concatenate([gated, batch.join_child]).astype(np.int32)
    edge_gate = np.concatenate([batch.gate[gated], batch.join_gate]).astype(np.int32)
    order = np.argsort(edge_gate, kind="stable")
    child_idx = edge_child[order]
    child_gate = edge_gate[order]
    joins = batch.has_joins
    if joins:
        pending = np.bincount(edge_child, minlength=n).astype(np.int32)
        delay = (np.ascontiguousarray(batch.gate_delay_s, np.float64)
                 if batch.gate_delay_s.shape[0] else np.zeros(n))
        cancel = (np.ascontiguousarray(batch.cancel_if_gate_fails, np.bool_)
                  if batch.cancel_if_gate_fails.shape[0] else np.zeros(n, np.bool_))
    else:
        pending, delay, cancel = np.zeros(1, np.int32), np.zeros(1), np.zeros(1, np.bool_)
    num_dynamic = len(gated)
    if batch.concurrency > 0:
        num_dynamic += max(n - batch.concurrency, 0)
    identity = num_dynamic == 0 and bool(np.all(np.diff(batch.arrival_s) >= 0))
    if identity:
        init_order = np.zeros(0, np.int32)
    else:
        initial = np.nonzero(batch.gate < 0)[0]
        if batch.concurrency > 0:
            initial = initial[initial < batch.concurrency]
        init_order = initial[np.argsort(batch.arrival_s[initial], kind="stable")].astype(np.int32)
    max_out = int(batch.output_len.max(initial=1))
    return dict(
        src=src,
        plen=plen,
        shareable=shareable,
        rejected=rejected,
        child_gate=child_gate,
        child_idx=child_idx,
        joins=joins,
        pending=pending,
        gate_delay_s=delay,
        cancel_if_gate_fails=cancel,
        init_order=init_order,
        init_identity=identity,
        heap_cap=num_dynamic,
        max_depth=max_depth,
        ring_size=1 << int(max_out + 2).bit_length(),
    )


def _tenant_limits(
    tenant: np.ndarray | None, max_concurrent: np.ndarray | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per request its tenant (int16; one entry when there is one tenant) and per tenant its
    cap on routed, unfinished requests (0: none)."""
    if tenant is None:
        return np.zeros(1, np.int16), np.zeros(1, np.int64)
    tenant_arr = np.ascontiguousarray(tenant, np.int16)
    if tenant_arr.shape != (n,) or (n and tenant_arr.min() < 0):
        raise ConfigError("tenant must give each request a tenant index >= 0")
    k = int(tenant_arr.max(initial=0)) + 1
    limits = np.zeros(max(k, 1), np.int64)
    if max_concurrent is not None:
        mc = np.asarray(max_concurrent, np.int64)
        limits[: min(len(mc), len(limits))] = mc[: len(limits)]
    return tenant_arr, limits


def _failure_arrays(
    failures: tuple[np.ndarray, np.ndarray, np.ndarray] | None, num_replicas: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(time_s, replica, repair_s)`` sorted by time (stable), checked."""
    if failures is None:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0)
    fail_t, fail_rep, fail_repair = (np.asarray(a) for a in failures)
    order = np.argsort(fail_t, kind="stable")
    fail_t = np.ascontiguousarray(fail_t[order], np.float64)
    fail_rep = np.ascontiguousarray(fail_rep[order], np.int64)
    fail_repair = np.ascontiguousarray(fail_repair[order], np.float64)
    if np.any((fail_rep < 0) | (fail_rep >= num_replicas)) or np.any(fail_repair < 0):
        raise ConfigError("failures: replica out of range or negative repair time")
    return fail_t, fail_rep, fail_repair


def _itl_classes(itl_class: np.ndarray | None, num_itl_classes: int, n: int) -> np.ndarray:
    """Per request its ITL histogram (int16), or -1 to leave its gaps out."""
    if not 1 <= num_itl_classes <= 32767:
        raise ConfigError(f"num_itl_classes={num_itl_classes}: must be in 1..32767")
    if itl_class is None:
        return np.zeros(n, np.int16)
    cls = np.asarray(itl_class)
    if cls.shape != (n,) or (n and (cls.max() >= num_itl_classes or cls.min() < -1)):
        raise ConfigError("itl_class must give each request a class below num_itl_classes, or -1")
    return cls.astype(np.int16)


def _engine_params(
    config: EngineConfig, coeffs: np.ndarray, by_priority: bool, ring_size: int,
    kv_from_prefill: bool = False,
) -> EngineParams:
    """One replica's settings for the kernel, by vLLM's names."""
    return EngineParams(
        coeffs=coeffs,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        block_size=config.block_size,
        num_gpu_blocks=config.num_gpu_blocks,
        enable_prefix_caching=config.enable_prefix_caching,
        num_cpu_blocks=config.num_cpu_blocks if config.enable_prefix_caching else 0,
        cpu_load_s_per_block=config.cpu_load_s_per_block,
        reserve_full_request=config.kv_reservation == "full_request",
        async_scheduling=config.async_scheduling,
        recv_interval=config.scheduler_recv_interval,
        adp_ranks=config.attention_dp_ranks,
        adp_timeout_iters=config.attention_dp_timeout_iters,
        by_priority=by_priority,
        ingress_s=config.ingress_s,
        egress_s=config.egress_s,
        ring_size=ring_size,
        spec_tokens=config.num_speculative_tokens,
        spec_fp=config.tokens_per_step_fp if config.num_speculative_tokens else 0,
        draft_coeffs=(np.asarray(config.draft_coeffs, np.float64)
                      if config.num_speculative_tokens else np.zeros(1)),
        kv_from_prefill=kv_from_prefill,
    )



def simulate(
    batch: RequestBatch,
    config: EngineConfig,
    coeffs: np.ndarray,
    *,
    itl_class: np.ndarray | None = None,
    num_itl_classes: int = 1,
    priority: np.ndarray | None = None,
) -> EngineResult:
    """Simulate one replica serving ``batch`` to completion (every request finishes).

    Args:
        batch: the requests (see :class:`capacitor.engine.requests.RequestBatch`).
        config: engine settings; ``config.num_gpu_blocks`` KV blocks of ``block_size``.
        coeffs: step-time coefficients (:mod:`capacitor.perf.step_time` layout).
        itl_class: per request, the ITL histogram its gaps go to, or -1 to leave them out
            (warm-up); default all 0.
        num_itl_classes: number of ITL histograms.
        priority: per request, its priority (lower first) under
            ``config.scheduling_policy == "priority"``; default all equal.

    Returns:
        Per-request client-visible times and ITL histograms. When no request waits on
        another, ``send_s`` is ``batch.arrival_s`` itself (shared, not copied).

    Raises:
        ConfigError: malformed coefficients or classes.
    """
    return simulate_pool(
        batch,
        config,
        coeffs,
        num_replicas=1,
        itl_class=itl_class,
        num_itl_classes=num_itl_classes,
        priority=priority,
    )


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
    busy_bin_s: float = 0.0,
    num_busy_bins: int = 1,
    tenant: np.ndarray | None = None,
    max_concurrent: np.ndarray | None = None,
    max_predicted_ttft_s: float = 0.0,
    priority: np.ndarray | None = None,
    seed: int = 0,
    itl_class: np.ndarray | None = None,
    num_itl_classes: int = 1,
) -> EngineResult:
    """Simulate ``num_replicas`` identical replicas behind a router serving ``batch``.

    Args:
        routing: a name in :data:`ROUTERS`. ``least_outstanding_tokens`` sends each request to
            the replica with the fewest prompt + output tokens of unfinished requests (ties
            broken at random, from ``seed``);
            ``power_of_two`` compares two replicas drawn at random (from ``seed``).
        route_key: per request, the session / prefix id for the affinity routers.
        max_queue: shed a request (status 3) when its replica already has this many waiting
            (0: never shed).
        failures: ``(time_s, replica, repair_s)`` arrays, one entry per replica failure. At
            a failure the step in progress completes, then the replica's running requests
            are lost (status 4; their clients see an error then), its waiting requests go
            back to the router, and its KV cache is gone; it takes no requests for
            ``repair_s``. A request finding every replica down is shed (status 3).
        tenant, max_concurrent: per request its tenant index, and per tenant the most
            requests it may have routed and unfinished in this pool (0 = no limit); a request
            over its tenant's limit is shed (status 3).
        max_predicted_ttft_s: shed a request whose predicted TTFT at its replica (the prompt
            tokens waiting ahead of it plus its own, at the replica's full-budget prefill
            rate, after the step in progress) exceeds this (0 = never). The prediction
            leaves out decodes sharing the steps, so it is optimistic under heavy decode
            load.
        busy_bin_s, num_busy_bins: per replica, sum step durations into ``num_busy_bins``
            bins of ``busy_bin_s`` seconds (``result.busy_bins``; e.g. per-minute
            utilisation; ``result.seq_bins`` the same weighted by each step's running
            sequences, i.e. batch occupancy). 0 keeps one bin.
        Other arguments as :func:`simulate`.

    Raises:
        ConfigError: unknown routing, missing route_key, bad sizes.
    """
    if routing not in ROUTERS:
        raise ConfigError(f"routing={routing!r} unknown; valid: {', '.join(ROUTERS)}")
    if num_replicas < 1:
        raise ConfigError(f"num_replicas={num_replicas}: must be >= 1")
    if max_queue < 0:
        raise ConfigError(f"max_queue={max_queue}: must be >= 0")
    policy = ROUTERS[routing]
    n = len(batch)
    if policy == ROUTE_KEY:
        if route_key is None or np.shape(route_key) != (n,):
            raise ConfigError(f"routing={routing!r} needs a route_key per request")
        key = np.asarray(route_key, np.int64) % num_replicas
    else:
        key = np.zeros(1, np.int64)
    tenant_arr, limits = _tenant_limits(tenant, max_concurrent, n)
    by_priority = config.scheduling_policy == "priority"
    if priority is None:
        prio = np.zeros(n if by_priority else 1, np.int16)
    else:
        prio = np.ascontiguousarray(priority, np.int16)
        if prio.shape != (n,):
            raise ConfigError("priority must give each request a priority")
    if max_predicted_ttft_s < 0:
        raise ConfigError(f"max_predicted_ttft_s={max_predicted_ttft_s}: must be >= 0")
    prefill_rate = 1.0
    if max_predicted_ttft_s > 0:

        b = config.max_num_batched_tokens
        prefill_rate = b / step_time_s(
            np.asarray(coeffs, np.float64), float(b), 1.0, 1.0, float(prefill_pairs(b, 0)), 0.0
        )
    fail_t, fail_rep, fail_repair = _failure_arrays(failures, num_replicas)
    if policy in (ROUTE_POWER_OF_TWO, ROUTE_LEAST_OUTSTANDING) and num_replicas > 1:
        pick2 = np.random.default_rng(seed).integers(0, num_replicas, (n, 2)).astype(np.int32)
    else:
        pick2 = np.zeros((1, 2), np.int32)
    coeffs = np.ascontiguousarray(coeffs, np.float64)
    if coeffs.shape != (NUM_COEFFS,) or not np.all(np.isfinite(coeffs)) or np.any(coeffs < 0):
        raise ConfigError(f"step-time coefficients must be {NUM_COEFFS} finite values >= 0")
    n = len(batch)
    cls = _itl_classes(itl_class, num_itl_classes, n)
    p = prepare(batch, config)
    if len(fail_t):  # re-routed requests go through the release heap
        p["heap_cap"] = n
    if p["init_identity"]:
        # NOTE: nothing waits on anything, so every send time is the arrival time; share the
        # array rather than copy it (memory: ten million requests).
        send = np.ascontiguousarray(batch.arrival_s, np.float64)
    else:
        send = np.full(n, np.nan)
        send[p["init_order"]] = batch.arrival_s[p["init_order"]]
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    status = np.zeros(n, np.int8)
    # NOTE: narrow types and no copies with one replica, for memory (ten million requests)
    replica = np.full(n, -1, np.int16 if num_replicas < 32767 else np.int32)
    if num_replicas == 1:
        src_bound = p["src"]
        start_bound = (p["plen"] // config.block_size).astype(np.int32)
        p["plen"] = np.zeros(0, np.int32)  # not read: binding is the identity
        node_rep = np.zeros(1, np.int32)
    else:
        num_nodes = n + num_replicas * len(batch.segment_len)
        src_bound = np.full(num_nodes, -1, np.int32)
        start_bound = np.zeros(num_nodes, np.int32)
        node_rep = np.full(n, -1, np.int32)
    preemptions = np.zeros(n, np.int32)
    cached_tokens = np.full(n, -1, np.int32)
    hist = np.zeros((num_itl_classes, ITL_NUM_BINS), np.int64)
    itl_sum = np.zeros(num_itl_classes)
    itl_count = np.zeros(num_itl_classes, np.int64)
    stats = np.zeros(3)
    if num_busy_bins < 1 or busy_bin_s < 0:
        raise ConfigError("num_busy_bins must be >= 1 and busy_bin_s >= 0")
    busy_bins = np.zeros((num_replicas, num_busy_bins))
    seq_bins = np.zeros((num_replicas, num_busy_bins))
    bin_s = busy_bin_s if busy_bin_s > 0 else 1e30
    num_init = n if p["init_identity"] else len(p["init_order"])
    plan = None
    # a replica may run ahead only while nothing but the router couples the replicas
    if num_replicas > 1 and p["init_identity"] and not len(fail_t) and not limits.any():
        plan = lookahead_plan(policy, num_replicas, p["init_order"], p["init_identity"],
                              num_init, p["rejected"], pick2, key)
    if plan is None:
        plan = (np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int32),
                np.zeros(num_replicas, np.int64))
        look = False
    else:
        look = True
    requests = Requests(
        arrival_s=np.ascontiguousarray(batch.arrival_s, np.float64),
        prompt_len=np.ascontiguousarray(batch.prompt_len, np.int32),
        output_len=np.ascontiguousarray(batch.output_len, np.int32),
        rejected=p["rejected"],
        itl_class=cls,
        priority=prio,
        tenant=tenant_arr,
        shareable=p["shareable"],
    )
    releases = Releases(
        init_order=p["init_order"],
        init_identity=p["init_identity"],
        num_initial=num_init,
        child_gate=p["child_gate"],
        child_idx=p["child_idx"],
        concurrency=batch.concurrency,
        heap_capacity=p["heap_cap"],
        joins=p["joins"],
        pending=p["pending"],
        gate_delay_s=p["gate_delay_s"],
        cancel_if_gate_fails=p["cancel_if_gate_fails"],
    )
    prefix = PrefixTree(
        parent=p["src"],
        prefix_len=p["plen"],
        bound_parent=src_bound,
        bound_start_block=start_bound,
        node_replica=node_rep,
        num_segments=len(batch.segment_len),
        max_depth=p["max_depth"],
    )
    engine = _engine_params(config, coeffs, by_priority, p["ring_size"])
    pool = PoolParams(
        num_replicas=num_replicas,
        policy=policy,
        route_key=key,
        pick2=pick2,
        max_queue=max_queue,
        fail_at_s=fail_t,
        fail_replica=fail_rep,
        fail_repair_s=fail_repair,
        max_concurrent=limits,
        max_predicted_ttft_s=max_predicted_ttft_s,
        prefill_tokens_per_s=prefill_rate,
        lookahead=look,
        look_cand=plan[0],
        look_next=plan[1],
        look_first=plan[2],
    )
    outputs = Outputs(
        send_s=send,
        first_token_s=first,
        finish_s=finish,
        status=status,
        replica=replica,
        num_preemptions=preemptions,
        num_cached_tokens=cached_tokens,
    )
    telemetry = Telemetry(
        itl_hist=hist,
        itl_sum_s=itl_sum,
        itl_count=itl_count,
        itl_edges_s=ITL_EDGES_S,
        stats=stats,
        busy_bins=busy_bins,
        seq_bins=seq_bins,
        bin_s=bin_s,
    )
    code = run_kernel(requests, releases, prefix, engine, pool, outputs, telemetry)
    if code == KERNEL_STALLED:
        raise ConfigError("the engine stalled: a waiting request can never be scheduled")
    return EngineResult(
        send_s=send,
        first_token_s=first,
        finish_s=finish,
        completed=status == S_COMPLETED,
        num_preemptions=preemptions,
        num_cached_tokens=np.maximum(cached_tokens, 0, out=cached_tokens),
        itl_hist=hist,
        itl_sum_s=itl_sum,
        itl_count=itl_count,
        num_steps=int(stats[0]),
        busy_s=float(stats[2]),
        max_blocks_used=int(stats[1]),
        status=status,
        replica=replica,
        busy_bins=busy_bins,
        seq_bins=seq_bins,
    )


__all__ = ["ROUTERS", "prepare", "simulate", "simulate_pool"]
