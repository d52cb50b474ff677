"""A pool's simulation reduced to what the summary and the timeline need.

A :class:`PoolDigest` holds counts per tenant and per minute and, per tenant, log-spaced
histograms of the TTFT, E2E and inter-token latencies of the counted completed requests
(bins 0.1% wide, :func:`capacitor.engine.result.latency_bins`: percentiles are exact to
that), but none of the per-request records. Digests of the shards of one deployment add up
(:func:`add_digest`), so an exact run of hundreds of millions of requests holds a few
megabytes per deployment while its per-request records stream to ``requests.parquet``.

Counts are as simulated (not scaled); ``scale`` (replicas / simulated replicas) scales them to
the fleet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from capacitor.engine.result import ITL_NUM_BINS, latency_bins
from capacitor.engine.status import CAUSE_NUMBER, REFUSAL_CAUSES, REFUSED, S_COMPLETED, STATUS_NAMES
from capacitor.simulate.activity import disagg_minutes, minute_work
from capacitor.simulate.workflows import concat, workflow_records

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
    refusals: np.ndarray  # float64[T, len(REFUSAL_CAUSES)]: refused, by cause
    output_tokens: np.ndarray
    good: np.ndarray  # completed within the tenant's TTFT and E2E SLOs
    ttft_hist: np.ndarray  # int64[T, bins] of completed requests' TTFT (latency_bins)
    e2e_hist: np.ndarray  # the same for E2E
    itl_hist: np.ndarray  # int64[T, bins] of inter-token gaps
    # per minute of the span (all requests)
    arrivals: np.ndarray  # float64[m]
    finished: np.ndarray  # completions
    in_system: np.ndarray  # sent and unfinished at each minute's end
    busy_s: np.ndarray  # replica-seconds in engine steps
    seq_s: np.ndarray  # running sequences x seconds
    refusals_min: np.ndarray  # float64[len(REFUSAL_CAUSES), m]: refused, by cause and send minute
    down_s: np.ndarray  # float64[m]: replica-seconds down (failed, in repair), simulated replicas
    # per workload of the scenario (counted completed requests): what unit costs divide by
    workload_input_tokens: np.ndarray  # float64[W]
    workload_output_tokens: np.ndarray  # float64[W]
    memory_s: np.ndarray  # HBM roofline seconds of the work (simulate/activity.py)
    compute_s: np.ndarray  # tensor-core seconds of the work at full efficiency
    # deployment totals (counted requests)
    num_counted: float
    num_completed: float
    num_preemptions: float
    prompt_tokens: float  # prompt tokens of counted completed requests
    prefix_hit_tokens: float  # of which served from the prefix cache
    busy_total_s: float  # over the whole span, all replicas
    seq_total_s: float
    num_simulated: int  # every simulated request, counted or not
    # one record per workflow (capacitor.simulate.workflows; None: no workflows)
    workflows: dict | None = None
    demand_scale: float | None = None  # as PoolRun.demand_scale

    @property
    def scale(self) -> float:
        """The weight of a simulated request (as :attr:`PoolRun.scale`)."""
        if self.demand_scale is not None:
            return self.demand_scale
        return self.replicas / self.simulated_replicas

    def replicas_up(self, span_s: float) -> np.ndarray:
        """Replicas up (not failed or in repair) in each minute of a span of ``span_s``
        seconds, time-averaged over the minute and scaled to the fleet (float64[m]): measured
        from the drawn down intervals. The replicas that serve, and that draw power (a down
        replica draws none)."""
        width = np.clip(span_s - np.arange(self.down_s.size) * MINUTE_S, 0.0, MINUTE_S)
        per_replica = self.replicas / self.simulated_replicas  # down_s: simulated units
        down = np.divide(self.down_s * per_replica, width, out=np.zeros_like(width),
                         where=width > 0)
        return self.replicas - down


def meets_latency_slo(ttft_ms: np.ndarray, e2e_ms: np.ndarray, slo) -> np.ndarray:
    """Which completed requests count as goodput: TTFT within the tenant's ``ttft_p99_ms`` and
    E2E within its ``e2e_p99_ms`` (a None target is not judged). ITL is judged over the
    tenant's p99 only, not per request."""
    ok = np.ones(np.shape(ttft_ms), bool)
    if slo.ttft_p99_ms is not None:
        ok &= ttft_ms <= slo.ttft_p99_ms
    if slo.e2e_p99_ms is not None:
        ok &= e2e_ms <= slo.e2e_p99_ms
    return ok


def digest_pool(pool, tenants, num_minutes: int, num_workloads: int = 1) -> PoolDigest:
    """Digest a :class:`~capacitor.simulate.PoolRun` (``tenants``: the scenario's, in order;
    their SLOs decide which completions are good; ``num_workloads``: the scenario's)."""
    res = pool.result
    status = pool.status
    tenant = pool.demand.tenant
    measured = pool.measured
    out_len = pool.demand.batch.output_len
    num_t = max(len(tenants), 1)
    req = np.zeros(num_t)
    comp = np.zeros(num_t)
    refused = np.zeros(num_t)
    n_causes = len(REFUSAL_CAUSES) + 1  # "none" first
    cause = np.asarray(CAUSE_NUMBER, np.int64)[status]
    by_cause = np.bincount(tenant[measured].astype(np.int64) * n_causes + cause[measured],
                           minlength=num_t * n_causes)[:num_t * n_causes].reshape(
        num_t, n_causes)[:, 1:].astype(np.float64)
    tokens = np.zeros(num_t)
    good = np.zeros(num_t)
    ttft = np.zeros((num_t, ITL_NUM_BINS), np.int64)
    e2e = np.zeros((num_t, ITL_NUM_BINS), np.int64)
    done_all = status == S_COMPLETED
    is_refused = np.isin(status, REFUSED)
    for k in range(num_t):
        sel = (tenant == k) & measured
        done = sel & done_all
        req[k] = sel.sum()
        comp[k] = done.sum()
        refused[k] = (sel & is_refused).sum()
        tokens[k] = out_len[done].sum()
        t = res.first_token_s[done] - res.send_s[done]
        e = res.finish_s[done] - res.send_s[done]
        ok = (meets_latency_slo(t * 1e3, e * 1e3, tenants[k].slo) if k < len(tenants)
              else np.ones(t.size, bool))
        good[k] = ok.sum()
        ttft[k] = np.bincount(latency_bins(t), minlength=ITL_NUM_BINS)
        e2e[k] = np.bincount(latency_bins(e), minlength=ITL_NUM_BINS)
    hist = np.zeros((num_t, res.itl_hist.shape[1]), np.int64)
    rows = min(num_t, res.itl_hist.shape[0])
    hist[:rows] = res.itl_hist[:rows]
    m = num_minutes
    # times are >= 0, so truncation is the floor (and much cheaper than ``//``)
    send_s = res.send_s
    sent = None
    if np.isnan(send_s).any():  # a workflow's calls after a failed one are never sent
        sent = np.isfinite(send_s)
        send_s = np.where(sent, send_s, np.inf)
    minute = np.minimum((np.where(sent, send_s, 0.0) if sent is not None else send_s)
                        / MINUTE_S, m - 1).astype(np.int64)
    fmin = np.minimum((res.finish_s[done_all] / MINUTE_S).astype(np.int64), m - 1)
    edges = (np.arange(m) + 1) * MINUTE_S
    s_sorted = send_s
    if np.any(s_sorted[1:] < s_sorted[:-1]):  # open-loop sends come sorted already
        s_sorted = np.sort(s_sorted)
    f_sorted = np.sort(np.where(np.isfinite(res.finish_s), res.finish_s, np.inf))
    in_system = (np.searchsorted(s_sorted, edges) - np.searchsorted(f_sorted, edges))
    if pool.disagg is not None:  # unit-seconds, GPU-weighted over the two pools
        busy_bins, seq_bins, memory_s, compute_s, busy_total_s = disagg_minutes(
            pool, m, MINUTE_S)
    else:
        busy_bins = np.zeros(m)
        seq_bins = np.zeros(m)
        cols = min(m, res.busy_bins.shape[1])
        busy_bins[:cols] = res.busy_bins[:, :cols].sum(axis=0)
        seq_bins[:cols] = res.seq_bins[:, :cols].sum(axis=0)
        memory_s, compute_s = minute_work(pool, pool.coeffs, busy_bins, seq_bins, m,
                                          MINUTE_S) \
            if pool.coeffs is not None else (np.zeros(m), np.zeros(m))
        busy_total_s = float(res.busy_bins.sum())
    counted_done = measured & done_all
    refusals_min = np.bincount(cause * m + minute, minlength=n_causes * m)[:n_causes * m]
    refusals_min = refusals_min.reshape(n_causes, m)[1:].astype(np.float64)
    num_w = max(num_workloads, int(pool.demand.workload.max()) + 1 if len(status) else 0)
    wl = pool.demand.workload[counted_done].astype(np.int64)
    batch = pool.demand.batch
    return PoolDigest(
        name=pool.name, site=pool.site, gpu=pool.gpu, gpus_per_replica=pool.gpus_per_replica,
        replicas=pool.replicas, simulated_replicas=pool.simulated_replicas,
        demand_scale=pool.demand_scale,
        max_num_seqs=pool.max_num_seqs, downtime_s=float(pool.downtime_s),
        requests=req, completed=comp, refused=refused, refusals=by_cause,
        output_tokens=tokens, good=good,
        ttft_hist=ttft, e2e_hist=e2e, itl_hist=hist,
        arrivals=np.bincount(minute if sent is None else minute[sent],
                             minlength=m)[:m].astype(np.float64),
        finished=np.bincount(fmin, minlength=m)[:m].astype(np.float64),
        in_system=in_system.astype(np.float64), busy_s=busy_bins, seq_s=seq_bins,
        refusals_min=refusals_min,
        down_s=_minutes(pool.down_s_by_minute, m),
        workload_input_tokens=np.bincount(wl, batch.prompt_len[counted_done].astype(
            np.float64), minlength=num_w)[:num_w],
        workload_output_tokens=np.bincount(wl, batch.output_len[counted_done].astype(
            np.float64), minlength=num_w)[:num_w],
        memory_s=memory_s, compute_s=compute_s,
        num_counted=float(measured.sum()), num_completed=float(counted_done.sum()),
        num_preemptions=float(res.num_preemptions[measured].sum()),
        prompt_tokens=float(batch.prompt_len[counted_done].sum(dtype=np.int64)),
        prefix_hit_tokens=float(res.num_cached_tokens[counted_done].sum(dtype=np.int64)),
        busy_total_s=busy_total_s, seq_total_s=float(res.seq_bins.sum()),
        num_simulated=int(status.shape[0]),
        workflows=workflow_records(pool),
    )


def _minutes(values: np.ndarray | None, m: int) -> np.ndarray:
    """``values`` as ``m`` per-minute bins (zeros when None)."""
    out = np.zeros(m)
    if values is not None:
        n = min(m, len(values))
        out[:n] = values[:n]
    return out


#: What a deployment's shards share; every other field adds up over its shards.
_SHARED = ("name", "site", "gpu", "gpus_per_replica", "max_num_seqs", "demand_scale")
_ADDED = tuple(f.name for f in dataclasses.fields(PoolDigest)
               if f.name not in (*_SHARED, "workflows"))  # demand_scale: sampled, one shard


def add_digest(total: PoolDigest | None, part: PoolDigest) -> PoolDigest:
    """``total`` with the shard ``part`` of the same deployment added in place (counts, bins
    and histograms add); a copy of ``part`` when ``total`` is None (``part``'s arrays may be
    read-only, e.g. from Ray's object store). Add shards in shard order so the sums are
    reproducible."""
    if total is None:
        return dataclasses.replace(part, workflows=concat(None, part.workflows), **{
            name: getattr(part, name).copy() for name in _ADDED
            if isinstance(getattr(part, name), np.ndarray)})
    total.workflows = concat(total.workflows, part.workflows)  # records, one per workflow
    for name in _ADDED:
        value = getattr(total, name)
        if isinstance(value, np.ndarray):
            value += getattr(part, name)
        else:
            setattr(total, name, value + getattr(part, name))
    return total


__all__ = ["MINUTE_S", "REFUSED", "STATUS_NAMES", "PoolDigest", "add_digest", "digest_pool",
           "meets_latency_slo"]
