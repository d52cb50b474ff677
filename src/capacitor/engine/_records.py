"""The named records the fast kernel takes and keeps: ``typing.NamedTuple`` s of arrays and
scalars (numba passes them as one argument each, and a field is read by name, so two
same-typed values cannot be swapped unnoticed).

Inputs, built by :func:`capacitor.engine.simulator.simulate_pool` by keyword:

* :class:`Requests` — per request: arrival, lengths, class, priority, tenant;
* :class:`Releases` — when requests reach the router (initial order, gates, closed loop);
* :class:`PrefixTree` — the prefix chains, as given and as bound to replicas;
* :class:`EngineParams` — one replica's settings (vLLM's flags) and step-time coefficients;
* :class:`PoolParams` — the router, admission control, failures and the lookahead plan;
* :class:`Outputs` and :class:`Telemetry` — what the kernel fills in place.

Working state, built inside the kernel: :class:`KVCache` (prefix-cache state per node),
:class:`Heap` (a binary heap of (time, id)), :class:`Replica` (views of one replica's rows)
and :class:`Fleet` (everything else the event loop keeps).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Requests(NamedTuple):
    """Per-request inputs, indexed by request id ``i < n``."""

    arrival_s: np.ndarray  # float64[n]
    prompt_len: np.ndarray  # int32[n]
    output_len: np.ndarray  # int32[n]
    rejected: np.ndarray  # bool[n]: longer than max_model_len (HTTP 400 at once)
    itl_class: np.ndarray  # int16[n]: ITL histogram of its gaps, -1 none
    priority: np.ndarray  # int16[n] under the priority policy, else [1]
    tenant: np.ndarray  # int16[n], or [1] with one tenant
    shareable: np.ndarray  # bool[nodes]: some request's prefix points at this one


class Releases(NamedTuple):
    """When requests are sent. Initial requests go in ``send_s`` order (``init_order``, or
    by index when ``init_identity``); a gated request is sent when its gate answers
    (``child_gate`` sorted, ``child_idx`` the gated requests); with ``concurrency`` > 0 the
    first ``concurrency`` requests are initial and each answer sends the next. With ``joins``
    (workflows: :class:`capacitor.engine.requests.RequestBatch` ``has_joins``) a request may
    appear under several gates: ``pending`` counts its unanswered ones (-1 once cancelled),
    it is sent ``gate_delay_s`` after the last, and not at all when one failed and
    ``cancel_if_gate_fails``; these three have one entry when ``joins`` is off."""

    init_order: np.ndarray  # int32
    init_identity: bool
    num_initial: int
    child_gate: np.ndarray  # int32, sorted
    child_idx: np.ndarray  # int32
    concurrency: int
    heap_capacity: int  # dynamic releases at most in flight
    joins: bool
    pending: np.ndarray  # int32[n]: unanswered gates (mutated in place), or [1]
    gate_delay_s: np.ndarray  # float64[n], or [1]
    cancel_if_gate_fails: np.ndarray  # bool[n], or [1]


class PrefixTree(NamedTuple):
    """Prefix chains: ``parent[i]`` the node request ``i``'s prompt extends (-1 none; ids
    ``>= n`` are shared segments) and ``prefix_len[i]`` the tokens it shares. The kernel
    binds them to replicas (see :func:`capacitor.engine._pool._bind_source`) into
    ``bound_parent`` / ``bound_start_block`` (with one replica, the chains themselves)."""

    parent: np.ndarray  # int32[nodes]
    prefix_len: np.ndarray  # int32[nodes] ([0] with one replica: not read)
    bound_parent: np.ndarray  # int32[n + replicas * segments]
    bound_start_block: np.ndarray  # int32: the node's first own block
    node_replica: np.ndarray  # int32[n]: where a request ran (-1 not yet)
    num_segments: int
    max_depth: int


class EngineParams(NamedTuple):
    """One replica: vLLM's scheduler and cache flags, latencies, the step-time model."""

    coeffs: np.ndarray  # float64[NUM_COEFFS] (capacitor.perf.step_time layout)
    max_num_seqs: int
    max_num_batched_tokens: int  # the token budget of a step
    block_size: int
    num_gpu_blocks: int
    enable_prefix_caching: bool
    num_cpu_blocks: int  # host-tier KV blocks (0: no tier)
    cpu_load_s_per_block: float
    reserve_full_request: bool  # allocate prompt + output blocks at admission
    async_scheduling: bool
    recv_interval: int  # decode-only steps between polls for new requests (1: every step)
    adp_ranks: int  # attention-DP ranks that balancing waits to fill (with adp_timeout_iters)
    adp_timeout_iters: int  # attention-DP balancing: longest wait in decisions (0: off)
    by_priority: bool  # scheduling_policy == "priority"
    ingress_s: float
    egress_s: float
    ring_size: int  # power of two above the longest output (decoder finish buckets)
    spec_tokens: int  # MTP speculative decoding: draft tokens per step k (0: off)
    spec_fp: int  # expected tokens per decode step, fixed point (0: off)
    draft_coeffs: np.ndarray  # float64[NUM_COEFFS]: one MTP draft pass ([1] when off)
    kv_from_prefill: bool  # the decode pool of a disaggregated deployment (_disagg)


class PoolParams(NamedTuple):
    """The router in front of ``num_replicas`` identical replicas."""

    num_replicas: int
    policy: int  # capacitor.engine.codes.ROUTE_*
    route_key: np.ndarray  # int64[n] for ROUTE_KEY, else [1]
    pick2: np.ndarray  # int32[n, 2] random draws for power of two / tie breaks, else [1, 2]
    max_queue: int  # shed when the replica has this many waiting (0: never)
    fail_at_s: np.ndarray  # float64, sorted
    fail_replica: np.ndarray  # int64
    fail_repair_s: np.ndarray  # float64
    max_concurrent: np.ndarray  # int64[tenants]: routed and unfinished (0: no limit)
    max_predicted_ttft_s: float  # shed above this predicted TTFT (0: never)
    prefill_tokens_per_s: float
    lookahead: bool  # replicas run ahead (capacitor.engine._lookahead)
    look_cand: np.ndarray  # int32[releases, 2]
    look_next: np.ndarray  # int32[releases, 2]
    look_first: np.ndarray  # int64[replicas]


class Outputs(NamedTuple):
    """Per-request results, filled in place."""

    send_s: np.ndarray  # float64[n]
    first_token_s: np.ndarray
    finish_s: np.ndarray  # the last client token time while unfinished
    status: np.ndarray  # int8: capacitor.engine.status
    replica: np.ndarray  # int16 or int32
    num_preemptions: np.ndarray  # int32
    num_cached_tokens: np.ndarray  # int32 (-1 until admitted)


class Telemetry(NamedTuple):
    """Aggregates, filled in place: ITL histograms per class, [steps, peak KV blocks,
    busy seconds] in ``stats``, busy seconds per replica and time bin (``busy_bins``; the
    last bin takes everything later) and the same weighted by the step's sequences."""

    itl_hist: np.ndarray  # int64[classes, ITL_NUM_BINS]
    itl_sum_s: np.ndarray
    itl_count: np.ndarray
    itl_edges_s: np.ndarray
    stats: np.ndarray  # float64[3]
    busy_bins: np.ndarray  # float64[replicas, bins]
    seq_bins: np.ndarray
    bin_s: float


class KVCache(NamedTuple):
    """Prefix-cache state of every node (each replica has its own nodes), and the settings
    its helpers read. ``cached[node]`` is the node's leading own blocks in the GPU cache,
    ``cpu_cached[node]`` in the host tier (arrays of length 1 when there is no tier)."""

    parent: np.ndarray  # int32: bound chains (PrefixTree.bound_parent)
    start_block: np.ndarray  # int32: PrefixTree.bound_start_block
    cached: np.ndarray  # int32
    pins: np.ndarray  # int32: running or waiting requests holding the node
    lru_prev: np.ndarray  # int32
    lru_next: np.ndarray
    cpu_cached: np.ndarray
    cpu_prev: np.ndarray
    cpu_next: np.ndarray
    chain: np.ndarray  # int64 scratch: one chain, leaf first
    block_size: int
    enable_caching: bool
    num_cpu_blocks: int


class Heap(NamedTuple):
    """A binary min-heap of (time, id), ties by id; ``size[0]`` entries."""

    time_s: np.ndarray  # float64
    index: np.ndarray  # int32
    size: np.ndarray  # int64[1]


class Replica(NamedTuple):
    """Views of one replica's rows of :class:`Fleet` (see :mod:`capacitor.engine._state`)."""

    sched: np.ndarray  # int64[NUM_SCHED]
    clock: np.ndarray  # float64[NUM_CLOCK]
    slots: np.ndarray  # int64[NUM_SLOT_FIELDS, max_num_seqs]
    finish_ring: np.ndarray  # int32[ring_size]: decoders by last step (bucket heads)
    num_by_phase: np.ndarray  # int64[block_size]: decoders by (ctx0 - step0) % block_size
    num_by_class: np.ndarray  # int64[classes]: decoders by ITL class
    unreleased: np.ndarray  # int64[3, S]: async finishes awaiting release (U_* rows)
    pending_finish: np.ndarray  # int64[S]: finishes the router has not seen yet


class Fleet(NamedTuple):
    """The event loop's state besides the cache: per replica (first axis) and per request."""

    router: np.ndarray  # int64[NUM_ROUTER]
    sched: np.ndarray  # int64[R, NUM_SCHED]
    clock: np.ndarray  # float64[R, NUM_CLOCK]
    slots: np.ndarray  # int64[R, NUM_SLOT_FIELDS, S] (laid out slot by slot)
    finish_ring: np.ndarray  # int32[R, ring_size]
    num_by_phase: np.ndarray  # int64[R, block_size]
    num_by_class: np.ndarray  # int64[R, classes]
    unreleased: np.ndarray  # int64[R, 3, S or 1]
    pending_finish: np.ndarray  # int64[R, S]
    outstanding_tokens: np.ndarray  # int64[R]: prompt + output of routed, unfinished
    inflight: np.ndarray  # int64[tenants]: routed and unfinished
    down_until_s: np.ndarray  # float64[R]
    gap_bin: np.ndarray  # int64[R]: ITL bin of the replica's last decode-only gap
    gap_lo_s: np.ndarray  # float64[R]: that bin's interior
    gap_hi_s: np.ndarray
    next_release: np.ndarray  # int64[R]: lookahead: the next release position reaching it
    releases: Heap  # dynamic releases (session rounds, closed loop, re-routes)
    events: Heap  # replicas by clock (lockstep only)
    generated: np.ndarray  # int32[n]: output tokens so far (at entry, for decoders)
    wait_next: np.ndarray  # int32[n]: waiting lists
    touched: np.ndarray  # float64[budget + 1]: MoE experts touched by T tokens
    prefill_slot: np.ndarray  # int64[S] scratch: this step's prefill chunks
    prefill_tokens: np.ndarray  # int64[S]
    finishing: np.ndarray  # int64[S]: this step's finishing slots
