"""Numbers the report draws that ``summary.json`` does not hold, derived from the requests
of a run (:class:`~capacitor.report.run_files.CompletedRequests`), each request weighted
by its deployment's scale as the summary weighs it:

- the latency CDFs of each tier (TTFT, E2E) over the counted requests (sent after the
  warm-up), thinned by :func:`~capacitor.report.cdf.cdf_points`;
- goodput per minute: completed requests within their tenant's TTFT and E2E targets
  (:func:`capacitor.simulate.digest.meets_latency_slo`, the rule ``goodput_rps`` uses), by
  the minute they finished, as ``timeline.parquet`` counts completions;
- interactivity per deployment: the median over counted requests of output tokens per
  second per user after the first token, ``(output_tokens - 1) / (e2e - ttft)``
  (1000 / TPOT in ms, the x axis of InferenceMAX's charts).

requests.parquet keeps TTFT and E2E as float32 milliseconds, so a request within a few
microseconds of a target may count differently here than in the summary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capacitor.report.cdf import cdf_points
from capacitor.report.run_files import CompletedRequests
from capacitor.scenario.policies import SLO
from capacitor.simulate.digest import MINUTE_S, meets_latency_slo

#: Points per tier and metric in a latency CDF (keeps the report small; steps <= 0.05 %).
CDF_POINTS = 2000
LATENCY_METRICS = ("ttft_ms", "e2e_ms")


def tier_cdfs(req: CompletedRequests, max_points: int = CDF_POINTS
              ) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """``{(tier, metric): (x_ms, F)}`` for each tier with counted completions and each of
    :data:`LATENCY_METRICS`."""
    out = {}
    tiers = req.tier[req.counted].astype(np.int64)
    for tier in np.flatnonzero(np.bincount(tiers) if tiers.size else []):
        sel = req.counted & (req.tier == tier)
        present = np.flatnonzero(np.bincount(req.deployment[sel]))
        masks = [sel & (req.deployment == d) for d in present]
        weights = [float(req.weight[mask][0]) for mask in masks]
        for metric in LATENCY_METRICS:
            values = getattr(req, metric)
            groups = [(values[mask], w) for mask, w in zip(masks, weights, strict=True)]
            out[(int(tier), metric)] = cdf_points(groups, max_points)
    return out


def slos_by_tenant(scenario: dict[str, Any]) -> dict[str, SLO]:
    """Each tenant's SLO as the resolved scenario states it."""
    return {t["name"]: SLO.model_validate(t.get("slo") or {})
            for t in scenario.get("tenants") or []}


def goodput_per_minute(req: CompletedRequests, slos: dict[str, SLO],
                       num_minutes: int) -> np.ndarray:
    """Requests (scaled to the fleet) completed within their tenant's TTFT and E2E targets,
    by the minute they finished (the last minute takes any later); warm-up included."""
    good = np.zeros(num_minutes)
    if num_minutes < 1:
        return good
    finish_s = req.arrival_s + req.e2e_ms.astype(np.float64) / 1e3
    minute = np.minimum((finish_s / MINUTE_S).astype(np.int64), num_minutes - 1)
    for k, name in enumerate(req.tenant_names):
        sel = req.tenant == k
        if name not in slos or not sel.any():
            continue
        ok = meets_latency_slo(req.ttft_ms[sel].astype(np.float64),
                               req.e2e_ms[sel].astype(np.float64), slos[name])
        good += np.bincount(minute[sel][ok], weights=req.weight[sel][ok],
                            minlength=num_minutes)[:num_minutes]
    return good


def interactivity_by_deployment(req: CompletedRequests) -> dict[str, float]:
    """Median output tokens/s per user after the first token, per deployment, over counted
    requests with at least two output tokens; a deployment without any is left out."""
    decode_s = (req.e2e_ms.astype(np.float64) - req.ttft_ms) / 1e3
    ok = req.counted & (req.output_tokens > 1) & (decode_s > 0)
    out = {}
    for d, name in enumerate(req.deployment_names):
        sel = ok & (req.deployment == d)
        if sel.any():
            out[name] = float(np.median((req.output_tokens[sel] - 1) / decode_s[sel]))
    return out


__all__ = ["CDF_POINTS", "LATENCY_METRICS", "goodput_per_minute", "interactivity_by_deployment",
           "slos_by_tenant", "tier_cdfs"]
