"""A pool's simulation reduced to what the summary and the timeline need.

A :class:`PoolDigest` holds counts per tenant and per minute, the TTFT and E2E of the counted
completed requests (float32 ms, for exact percentiles) and the ITL histograms, but none of
the per-request records. Digests of the shards of one deployment add up
(:func:`merge_digests`), so an exact run of hundreds of millions of requests keeps only these
in memory while its per-request records stream to ``requests.parquet``.

Counts are as simulated (not scaled); ``scale`` (replicas / simulated replicas) scales them to
the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STATUS_NAMES = {0: "pending", 1: "completed", 2: "rejected", 3: "shed", 4: "lost",
                5: "throttled"}
REFUSED = (2, 3, 4, 5)  # rejected, shed, lost, throttled
MINUTE_S = 60.0


@dataclass(slots=True)
class PoolDigest:
    """One deployment (or a shard of it), digested."""

    name: str
    site: str
    gpu: str
    gpus_per_replica: int
    replicas: int
    simulated_replicas: int
    max_num_seqs: int
    downtime_s: float
    # per tenant (counted requests only)
    requests: np.ndarray  # float64[T]
    completed: np.ndarray
    refused: np.ndarray
    output_tokens: np.ndarray
    good: np.ndarray  # completed within the tenant's TTFT and E2E SLOs
    ttft_ms: list[np.ndarray]  # float32 per tenant, completed requests
    e2e_ms: list[np.ndarray]
    itl_hist: np.ndarray  # int64[T, bins]
    # per minute of the span (all requests)
    arrivals: np.ndarray  # float64[m]
    finished: np.ndarray  # completions
    in_system: np.ndarray  # sent and unfinished at each minute's end
    busy_s: np.ndarray  # replica-seconds in engine steps
    seq_s: np.ndarray  # running sequences x seconds
    # deployment totals (counted requests)
    num_counted: float
    num_completed: float
    num_preemptions: float
    busy_total_s: float  # over the whole span, all replicas
    seq_total_s: float
    num_simulated: int  # every simulated request, counted or not

    @property
    def scale(self) -> float:
        return self.replicas / self.simulated_replicas


def digest_pool(pool, tenants, num_minutes: int) -> PoolDigest:
    """Digest a :class:`~capacitor.simulate.PoolRun` (``tenants``: the scenario's, in order;
    their SLOs decide which completions are good)."""
    res = pool.result
    status = pool.status
    tenant = pool.demand.tenant
    measured = pool.measured
    out_len = pool.demand.batch.output_len
    num_t = max(len(tenants), 1)
    req = np.zeros(num_t)
    comp = np.zeros(num_t)
    refused = np.zeros(num_t)
    tokens = np.zeros(num_t)
    good = np.zeros(num_t)
    ttft: list[np.ndarray] = []
    e2e: list[np.ndarray] = []
    done_all = status == 1
    is_refused = np.isin(status, REFUSED)
    for k in range(num_t):
        sel = (tenant == k) & measured
        done = sel & done_all
        req[k] = sel.sum()
        comp[k] = done.sum()
        refused[k] = (sel & is_refused).sum()
        tokens[k] = out_len[done].sum()
        t = (res.first_token_s[done] - res.send_s[done]) * 1e3
        e = (res.finish_s[done] - res.send_s[done]) * 1e3
        ok = np.ones(t.size, bool)
        if k < len(tenants):
            slo = tenants[k].slo
            if slo.ttft_p99_ms is not None:
                ok &= t <= slo.ttft_p99_ms
            if slo.e2e_p99_ms is not None:
                ok &= e <= slo.e2e_p99_ms
        good[k] = ok.sum()
        ttft.append(t.astype(np.float32))
        e2e.append(e.astype(np.float32))
    hist = np.zeros((num_t, res.itl_hist.shape[1]), np.int64)
    rows = min(num_t, res.itl_hist.shape[0])
    hist[:rows] = res.itl_hist[:rows]
    m = num_minutes
    minute = np.minimum((res.send_s // MINUTE_S).astype(np.int64), m - 1)
    fmin = np.minimum((res.finish_s[done_all] // MINUTE_S).astype(np.int64), m - 1)
    edges = (np.arange(m) + 1) * MINUTE_S
    s_sorted = np.sort(res.send_s)
    f_sorted = np.sort(np.where(np.isfinite(res.finish_s), res.finish_s, np.inf))
    in_system = (np.searchsorted(s_sorted, edges) - np.searchsorted(f_sorted, edges))
    busy_bins = np.zeros(m)
    seq_bins = np.zeros(m)
    cols = min(m, res.busy_bins.shape[1])
    busy_bins[:cols] = res.busy_bins[:, :cols].sum(axis=0)
    seq_bins[:cols] = res.seq_bins[:, :cols].sum(axis=0)
    counted_done = measured & done_all
    return PoolDigest(
        name=pool.name, site=pool.site, gpu=pool.gpu, gpus_per_replica=pool.gpus_per_replica,
        replicas=pool.replicas, simulated_replicas=pool.simulated_replicas,
        max_num_seqs=pool.max_num_seqs, downtime_s=float(pool.downtime_s),
        requests=req, completed=comp, refused=refused, output_tokens=tokens, good=good,
        ttft_ms=ttft, e2e_ms=e2e, itl_hist=hist,
        arrivals=np.bincount(minute, minlength=m)[:m].astype(np.float64),
        finished=np.bincount(fmin, minlength=m)[:m].astype(np.float64),
        in_system=in_system.astype(np.float64), busy_s=busy_bins, seq_s=seq_bins,
        num_counted=float(measured.sum()), num_completed=float(counted_done.sum()),
        num_preemptions=float(res.num_preemptions[measured].sum()),
        busy_total_s=float(res.busy_bins.sum()), seq_total_s=float(res.seq_bins.sum()),
        num_simulated=int(status.shape[0]),
    )


def merge_digests(parts: list[PoolDigest]) -> PoolDigest:
    """The digest of a deployment from its shards' (in shard order, so sums are
    reproducible): counts and bins add, latency samples concatenate."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def add(name):
        return sum((getattr(p, name) for p in parts[1:]), getattr(first, name))

    num_t = len(first.ttft_ms)
    return PoolDigest(
        name=first.name, site=first.site, gpu=first.gpu,
        gpus_per_replica=first.gpus_per_replica, replicas=add("replicas"),
        simulated_replicas=add("simulated_replicas"), max_num_seqs=first.max_num_seqs,
        downtime_s=add("downtime_s"), requests=add("requests"), completed=add("completed"),
        refused=add("refused"), output_tokens=add("output_tokens"), good=add("good"),
        ttft_ms=[np.concatenate([p.ttft_ms[k] for p in parts]) for k in range(num_t)],
        e2e_ms=[np.concatenate([p.e2e_ms[k] for p in parts]) for k in range(num_t)],
        itl_hist=add("itl_hist"), arrivals=add("arrivals"), finished=add("finished"),
        in_system=add("in_system"), busy_s=add("busy_s"), seq_s=add("seq_s"),
        num_counted=add("num_counted"), num_completed=add("num_completed"),
        num_preemptions=add("num_preemptions"), busy_total_s=add("busy_total_s"),
        seq_total_s=add("seq_total_s"), num_simulated=add("num_simulated"),
    )


__all__ = ["MINUTE_S", "REFUSED", "STATUS_NAMES", "PoolDigest", "digest_pool", "merge_digests"]
