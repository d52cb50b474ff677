"""Public entry point of the replica simulator: validate, prepare arrays, run the kernel.

:func:`simulate` is the readable wrapper over :func:`capacitor.engine._kernel.simulate_kernel`
(numba, struct-of-arrays); :func:`capacitor.engine.reference.simulate` has the same
signature and semantics in plain Python and is what tests compare against.
"""

from __future__ import annotations

import numpy as np

from capacitor.engine._kernel import STALLED, simulate_kernel
from capacitor.engine.config import EngineConfig
from capacitor.engine.prefix_chain import normalise_prefix_chains
from capacitor.engine.result import ITL_NUM_BINS, EngineResult
from capacitor.errors import ConfigError
from capacitor.perf.step_time import NUM_COEFFS
from capacitor.workload.requests import RequestBatch


def prepare(batch: RequestBatch, config: EngineConfig) -> dict:
    """Arrays the kernel needs, derived once from the batch (int32 where per request)."""
    batch.check()
    n = len(batch)
    bs = config.block_size
    src, plen, max_depth = normalise_prefix_chains(
        batch.prefix_src, batch.prefix_len, batch.prompt_len, batch.output_len,
        batch.segment_len, bs,
    )
    start = (plen // bs).astype(np.int32)
    del plen
    shareable = np.zeros(src.shape[0], np.bool_)
    shareable[batch.prefix_src[batch.prefix_src >= 0]] = True
    rejected = batch.rejected | (
        batch.prompt_len.astype(np.int64) + batch.output_len > config.effective_max_model_len
    )
    gated = np.nonzero(batch.gate >= 0)[0]
    order = np.argsort(batch.gate[gated], kind="stable")
    child_idx = gated[order].astype(np.int32)
    child_gate = batch.gate[child_idx].astype(np.int32)
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
        src=src.astype(np.int32), start=start, shareable=shareable, rejected=rejected,
        child_gate=child_gate, child_idx=child_idx, init_order=init_order,
        init_identity=identity, heap_cap=num_dynamic, max_depth=max_depth,
        ring_size=1 << int(max_out + 2).bit_length(),
    )


def simulate(
    batch: RequestBatch,
    config: EngineConfig,
    coeffs: np.ndarray,
    *,
    itl_class: np.ndarray | None = None,
    num_itl_classes: int = 1,
) -> EngineResult:
    """Simulate one replica serving ``batch`` to completion (every request finishes).

    Args:
        batch: the requests (see :class:`capacitor.workload.requests.RequestBatch`).
        config: engine settings; ``config.num_gpu_blocks`` KV blocks of ``block_size``.
        coeffs: step-time coefficients (:mod:`capacitor.perf.step_time` layout).
        itl_class: per request, the ITL histogram its gaps go to, or -1 to leave them out
            (warm-up); default all 0.
        num_itl_classes: number of ITL histograms.

    Returns:
        Per-request client-visible times and ITL histograms. When no request waits on
        another, ``send_s`` is ``batch.arrival_s`` itself (shared, not copied).

    Raises:
        ConfigError: malformed coefficients or classes.
    """
    coeffs = np.ascontiguousarray(coeffs, np.float64)
    if coeffs.shape != (NUM_COEFFS,) or not np.all(np.isfinite(coeffs)) or np.any(coeffs < 0):
        raise ConfigError(f"step-time coefficients must be {NUM_COEFFS} finite values >= 0")
    n = len(batch)
    if not 1 <= num_itl_classes <= 32767:
        raise ConfigError(f"num_itl_classes={num_itl_classes}: must be in 1..32767")
    if itl_class is None:
        cls = np.zeros(n, np.int16)
    else:
        cls = np.asarray(itl_class)
        if cls.shape != (n,) or (n and (cls.max() >= num_itl_classes or cls.min() < -1)):
            raise ConfigError(
                "itl_class must give each request a class below num_itl_classes, or -1"
            )
        cls = cls.astype(np.int16)
    p = prepare(batch, config)
    if p["init_identity"]:
        # NOTE: nothing waits on anything, so every send time is the arrival time; share the
        # array rather than copy it (memory: ten million requests).
        send = np.ascontiguousarray(batch.arrival_s, np.float64)
    else:
        send = np.full(n, np.nan)
        send[p["init_order"]] = batch.arrival_s[p["init_order"]]
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    completed = np.zeros(n, np.bool_)
    preemptions = np.zeros(n, np.int32)
    cached_tokens = np.full(n, -1, np.int32)
    hist = np.zeros((num_itl_classes, ITL_NUM_BINS), np.int64)
    itl_sum = np.zeros(num_itl_classes)
    itl_count = np.zeros(num_itl_classes, np.int64)
    stats = np.zeros(3)
    code = simulate_kernel(
        np.ascontiguousarray(batch.arrival_s, np.float64),
        np.ascontiguousarray(batch.prompt_len, np.int32),
        np.ascontiguousarray(batch.output_len, np.int32), p["rejected"], cls, p["init_order"],
        p["init_identity"], p["child_gate"], p["child_idx"], p["heap_cap"],
        p["src"], p["start"], p["shareable"], coeffs,
        config.max_num_seqs, config.max_num_batched_tokens, config.block_size,
        config.num_gpu_blocks, config.enable_prefix_caching, config.ingress_s, config.egress_s,
        batch.concurrency, config.num_cpu_blocks if config.enable_prefix_caching else 0,
        config.cpu_load_s_per_block, config.kv_reservation == "full_request", p["max_depth"], p["ring_size"], num_itl_classes,
        send, first, finish, completed, preemptions, cached_tokens,
        hist, itl_sum, itl_count, stats,
    )
    if code == STALLED:
        raise ConfigError("the engine stalled: a waiting request can never be scheduled")
    return EngineResult(
        send_s=send, first_token_s=first, finish_s=finish, completed=completed,
        num_preemptions=preemptions, num_cached_tokens=np.maximum(cached_tokens, 0, out=cached_tokens),
        itl_hist=hist, itl_sum_s=itl_sum, itl_count=itl_count, num_steps=int(stats[0]),
        busy_s=float(stats[2]), max_blocks_used=int(stats[1]),
    )
