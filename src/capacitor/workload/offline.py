"""Offline max throughput, as ``trtllm-bench throughput`` measures it.

Every request is queued at t = 0 with exactly ``isl`` prompt and ``osl`` output tokens (the
dataset of ``prepare_dataset.py token-norm-dist --input-stdev 0 --output-stdev 0``), no
prefix sharing. A request longer than ``max_model_len`` is refused (``rejected``).

How many requests. ``trtllm-bench throughput --num_requests`` defaults to 0, meaning "every
request in the dataset", and ``prepare_dataset.py --num-requests`` has no default (it is
required), so the tool itself has no default count. NVIDIA's published numbers
(NVIDIA/TensorRT-LLM ``docs/source/performance/perf-overview.md``, section "Preparing a
Dataset", the table the v0.17 offline data in ``data/published`` come from) use a count per
ISL/OSL pair, :data:`PERF_OVERVIEW_NUM_REQUESTS`: more requests for short sequences so the
run reaches steady state. :func:`default_num_requests` returns that count, and
:data:`DEFAULT_NUM_REQUESTS` = 1000 (the table's smallest entry, our own choice) for pairs
the table does not list.
"""

from __future__ import annotations

import numpy as np

from capacitor.engine.requests import RequestBatch
from capacitor.workload.stages import require_int

#: ``(isl, osl) -> $num_requests`` from TensorRT-LLM's perf-overview "Preparing a Dataset".
PERF_OVERVIEW_NUM_REQUESTS: dict[tuple[int, int], int] = {
    (128, 128): 30000,
    (128, 2048): 3000,
    (128, 4096): 1500,
    (1000, 2000): 1500,
    (2048, 128): 3000,
    (2048, 2048): 1500,
    (5000, 500): 1500,
    (1000, 1000): 3000,
    (500, 2000): 3000,
    (20000, 2000): 1000,
}

#: Requests for an ISL/OSL pair not in :data:`PERF_OVERVIEW_NUM_REQUESTS` (our choice).
DEFAULT_NUM_REQUESTS = 1000


def default_num_requests(isl: int, osl: int) -> int:
    """NVIDIA's published request count for ``(isl, osl)``, else :data:`DEFAULT_NUM_REQUESTS`."""
    return PERF_OVERVIEW_NUM_REQUESTS.get((int(isl), int(osl)), DEFAULT_NUM_REQUESTS)


def generate(*, num_requests: int | None, isl: int, osl: int, max_model_len: int) -> RequestBatch:
    """``num_requests`` requests of ``isl``/``osl`` tokens, all at t = 0.

    ``num_requests=None`` means :func:`default_num_requests` for the pair.
    """
    isl_ = require_int("isl", isl, 1)
    osl_ = require_int("osl", osl, 1)
    max_len = require_int("max_model_len", max_model_len, 1)
    n = (
        default_num_requests(isl_, osl_)
        if num_requests is None
        else require_int("num_requests", num_requests, 1)
    )
    batch = RequestBatch.simple(
        np.zeros(n, np.float64), np.full(n, isl_, np.int32), np.full(n, osl_, np.int32)
    )
    batch.rejected[:] = isl_ + osl_ > max_len
    return batch


__all__ = ["DEFAULT_NUM_REQUESTS", "PERF_OVERVIEW_NUM_REQUESTS", "default_num_requests", "generate"]
