"""What a fleet run means: per-tier SLO verdicts, latency percentiles, goodput, throttling,
utilisation (busy time) and batch occupancy (running sequences / ``max_num_seqs``), site power
against its cap, and unit costs (:mod:`capacitor.simulate.economics`). Also the per-minute timeline.

It reads the runs' :class:`~capacitor.simulate.digest.PoolDigest` (one per deployment), not the
per-request records; latency percentiles come from their 0.1%-wide log histograms, with
NumPy's linear interpolation (:func:`weighted_percentiles`), as ``capacitor validate`` and
vLLM's benchmarks compute them. Counts from a
sampled pool are scaled by replicas / simulated replicas; latency percentiles weight each pool's
requests the same way. A tier misses when a latency percentile exceeds its SLO or when more of
its traffic is refused by the fleet's choice (throttled by its limits or shed by admission
control) than ``max_throttled_pct`` allows, so shedding cannot buy a verdict. A tenant with
workflow targets (``slo.workflow``) also misses when its workflows' end-to-end p90 or p99 (all
its counted workflows together, ``tenants.<t>.workflows``) exceeds them, or when more of them
fail than ``max_failed_pct`` allows (every cause counts: a failed workflow never ends for its
user); a target with no completed workflow to judge is missed. Invalid requests
(over ``max_model_len``: the client's error) and requests lost to replica failures are counted
by cause (:data:`~capacitor.engine.status.REFUSAL_CAUSES`) and named in the verdict's text, but
not judged as refusals. Everything here is a pure
function of the simulation: no wall-clock time, so the same scenario and seed give a byte-identical
``summary.json``. :func:`summarize` returns the typed
:class:`~capacitor.simulate.summary_model.RunSummary`; costs come from
:mod:`capacitor.simulate.economics` (:func:`economics_summary`) and power from
:mod:`capacitor.fleet.power`.
"""

from __future__ import annotations

import math

import numpy as np

from capacitor.economics.costs import energy_mwh
from capacitor.engine.result import itl_bin_value_s
from capacitor.engine.status import FLEET_CAUSES, REFUSAL_CAUSES
from capacitor.perf.validity import Validity, validity
from capacitor.scenario.specs import replica_spec
from capacitor.simulate.causes import attribute
from capacitor.simulate.deployment import tenant_shares
from capacitor.simulate.digest import MINUTE_S
from capacitor.simulate.economics import economics_summary
from capacitor.simulate.percentiles import PCTS, weighted_percentiles
from capacitor.simulate.site_power import pool_facility_w, pool_gpu_power_w, site_draw_w
from capacitor.simulate.summary_model import (
    CapCost,
    DeploymentSummary,
    LimitShare,
    Miss,
    Percentiles,
    PowerCapSummary,
    Refusals,
    RunSummary,
    SiteSummary,
    TenantSummary,
    Totals,
    Verdict,
    Window,
)
from capacitor.simulate.workflows import tenant_workflow_figures, workflow_summaries


def _r(x: float, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _hist_percentiles(hist: np.ndarray | None) -> list[float]:
    """Percentiles (ms) of a weighted latency histogram (``latency_bins``); NaN when empty."""
    if hist is None or hist.sum() <= 0:
        return [math.nan] * len(PCTS)
    nz = np.nonzero(hist)[0]
    return weighted_percentiles(itl_bin_value_s(nz) * 1e3, hist[nz])


def _tenant_stats(run, k: int, tenant) -> TenantSummary:
    hists: dict[str, np.ndarray | None] = {"ttft": None, "e2e": None, "itl": None}
    requests = completed = out_tokens = good = 0.0
    causes = np.zeros(len(REFUSAL_CAUSES))
    for d in run.digests:
        requests += d.requests[k] * d.scale
        completed += d.completed[k] * d.scale
        causes += d.refusals[k] * d.scale
        out_tokens += d.output_tokens[k] * d.scale
        good += d.good[k] * d.scale
        for name, h in (("ttft", d.ttft_hist), ("e2e", d.e2e_hist), ("itl", d.itl_hist)):
            w = h[k].astype(np.float64) * d.scale
            hists[name] = w if hists[name] is None else hists[name] + w
    ttft, e2e, itl = (_hist_percentiles(hists[name]) for name in ("ttft", "e2e", "itl"))
    window = run.window_s
    by_cause = dict(zip(REFUSAL_CAUSES, causes.tolist(), strict=True))
    pct = {c: 100.0 * n / requests if requests else 0.0 for c, n in by_cause.items()}
    return TenantSummary(
        tier=tenant.tier,
        requests=_r(requests, 1), completed=_r(completed, 1),
        refused_pct=_r(100.0 * sum(by_cause[c] for c in FLEET_CAUSES) / requests
                       if requests else 0.0),
        refusals=Refusals(**{c: _r(n, 1) for c, n in by_cause.items()},
                          **{f"{c}_pct": _r(p) for c, p in pct.items()}),
        ttft_ms=_percentiles(ttft), itl_ms=_percentiles(itl), e2e_ms=_percentiles(e2e),
        goodput_rps=_r(good / window), throughput_rps=_r(completed / window),
        output_tokens_per_s=_r(out_tokens / window, 1),
        slo=tenant.slo, limit_shares=_limit_shares(run, k, tenant),
    )


#: A tenant's limits that are fleet-wide, so split over its deployments
#: (:func:`~capacitor.simulate.deployment.tenant_shares`); ``max_share_pct`` and
#: ``guaranteed_share_pct`` are per deployment already.
FLEET_WIDE_LIMITS = (("rate_limits", "requests_per_min"), ("rate_limits", "tokens_per_min"),
                     ("rate_limits", "max_concurrent"), ("quotas", "tokens_per_month"))


def _limit_shares(run, k: int, tenant) -> dict[str, LimitShare] | None:
    """Per deployment tenant ``k`` uses, its part of the tenant's fleet-wide limits, the
    share of the tenant's window traffic that arrived there and the requests throttled there;
    None when there is nothing split (no such limit, one deployment, admission off)."""
    scenario = run.scenario
    if scenario.admission.policy == "none" or not any(
            getattr(getattr(tenant, group), field, None) for group, field in FLEET_WIDE_LIMITS
            if getattr(tenant, group) is not None):
        return None
    used = [d.name for d in scenario.deployments if any(
        w.tenant == tenant.name and w.deployment == d.name for w in scenario.workloads)]
    if len(used) < 2:
        return None
    requests = dict.fromkeys(used, 0.0)
    throttled = dict.fromkeys(used, 0.0)
    col = REFUSAL_CAUSES.index("throttled")
    for d in run.digests:
        if d.name in requests:
            requests[d.name] += d.requests[k] * d.scale
            throttled[d.name] += d.refusals[k][col] * d.scale
    total = sum(requests.values())
    return {name: LimitShare(share=_r(tenant_shares(scenario, name)[k]),
                             traffic_share=_r(requests[name] / total) if total else None,
                             throttled=_r(throttled[name], 1)) for name in used}


def _over_share_notes(tenants: dict[str, TenantSummary]) -> list[str]:
    """One note per deployment whose traffic outgrew its part of a tenant's split limits and
    was throttled there."""
    notes = []
    for name, t in tenants.items():
        for dep, part in (t.limit_shares or {}).items():
            if part.throttled and part.traffic_share is not None and \
                    part.traffic_share > part.share:
                notes.append(
                    f"tenant {name}: {dep} received {100 * part.traffic_share:.1f}% of its "
                    f"requests but enforces {100 * part.share:.1f}% of its fleet-wide limits "
                    f"(split by expected demand, tenants.{name}.limit_shares); "
                    f"{part.throttled:,.0f} requests throttled there")
    return notes


def _percentiles(values_ms: list[float]) -> Percentiles:
    return Percentiles(**dict(zip((f"p{p}" for p in PCTS), map(_r, values_ms), strict=True)))


def _misses(name: str, tenant, stats: TenantSummary) -> list[Miss]:
    out = []
    slo = tenant.slo
    checks = [("ttft_p99_ms", slo.ttft_p99_ms, stats.ttft_ms.p99),
              ("itl_p99_ms", slo.itl_p99_ms, stats.itl_ms.p99),
              ("e2e_p99_ms", slo.e2e_p99_ms, stats.e2e_ms.p99),
              ("refused_pct", slo.max_throttled_pct, stats.refused_pct)]
    if slo.workflow is not None:  # the scenario checks guarantee the tenant's workflows
        flows = stats.workflows
        checks += [("workflow_e2e_p90_s", slo.workflow.e2e_p90_s, flows.e2e_p90_s),
                   ("workflow_e2e_p99_s", slo.workflow.e2e_p99_s, flows.e2e_p99_s),
                   ("workflow_failed_pct", slo.workflow.max_failed_pct, flows.failed_pct)]
    for metric, target, value in checks:
        if target is None:
            continue
        if value is None:  # nothing completed: every latency target is missed
            out.append(Miss(tenant=name, tier=tenant.tier, metric=metric, target=target,
                            value=None, over_pct=None))
        elif value > target:
            over = 100.0 * (value - target) / target if target else math.inf
            out.append(Miss(tenant=name, tier=tenant.tier, metric=metric, target=target,
                            value=value, over_pct=_r(over, 1)))
    return out


def timeline(run) -> dict[str, np.ndarray]:
    """Per minute and site: arrivals, completions, goodput (SLO-meeting completions),
    requests in system, utilisation, power MW, replicas up (measured per minute,
    :meth:`~capacitor.simulate.digest.PoolDigest.replicas_up`), and requests refused by cause
    (:data:`~capacitor.engine.status.REFUSAL_CAUSES`, by the minute they were sent; all
    scaled to the fleet)."""
    m = run.num_minutes
    span = run.window_s + run.warmup_s
    cols: dict[str, list] = {k: [] for k in ("site", "minute", "arrivals", "completed",
                                             "in_system", "utilization", "batch_occupancy",
                                             "power_mw", "replicas_up", *REFUSAL_CAUSES)}
    for site in run.scenario.sites:
        pools = [p for p in run.digests if p.site == site.name]
        arrivals = np.zeros(m)
        completed = np.zeros(m)
        in_system = np.zeros(m)
        busy_gpu_s = np.zeros(m)
        seq_s = np.zeros(m)
        slots = 0.0
        refusals = np.zeros((len(REFUSAL_CAUSES), m))
        for p in pools:
            arrivals += p.arrivals * p.scale
            refusals += p.refusals_min * p.scale
            completed += p.finished * p.scale
            in_system += p.in_system * p.scale
            busy = p.busy_s / MINUTE_S  # replica-minutes busy (simulated)
            busy_gpu_s += busy * MINUTE_S * p.gpus_per_replica * p.scale
            seq_s += p.seq_s * p.scale
            slots += p.replicas * p.max_num_seqs
        total_gpus = sum(site.gpus.values())
        cols["site"] += [site.name] * m
        cols["minute"] += list(range(m))
        cols["arrivals"] += list(arrivals)
        cols["completed"] += list(completed)
        cols["in_system"] += list(np.maximum(in_system, 0))
        cols["utilization"] += list(np.minimum(busy_gpu_s / (MINUTE_S * total_gpus), 1.0))
        cols["batch_occupancy"] += list(np.minimum(seq_s / (MINUTE_S * slots), 1.0) if slots
                                        else np.zeros(m))
        limit = run.power_limits.get(site.name, 1.0)
        cols["power_mw"] += list(site_draw_w(site, pools, m, limit) / 1e6)
        up = np.zeros(m)
        for p in pools:
            up += p.replicas_up(span)
        cols["replicas_up"] += list(up)
        for c, cause in enumerate(REFUSAL_CAUSES):
            cols[cause] += list(refusals[c])
    return {k: np.asarray(v) for k, v in cols.items()}


def deployment_validity(scenario) -> dict[str, Validity]:
    """Per deployment, whether its configuration is inside a validated envelope
    (:func:`capacitor.perf.validity.validity`; a disaggregated one by its decode pool)."""
    out = {}
    for dep in scenario.deployments:
        pool = "decode" if dep.disaggregated else None
        spec = replica_spec(dep, pool)
        out[dep.name] = validity(spec.model, gpu=dep.gpu, engine=spec.engine,
                                 precision=spec.precision, tp=spec.tp,
                                 disaggregated=pool is not None,
                                 speculative=spec.speculative)
    return out


def _extrapolation_note(deployments: dict[str, DeploymentSummary]) -> list[str]:
    out = [name for name, d in deployments.items() if d.validated is False]
    if not out:
        return []
    return [f"extrapolated beyond validated data: {', '.join(out)} (a configuration no "
            "measured run covers; deployments.<name>.validity says what differs from the "
            "nearest measured class)"]


def _deployments(run) -> tuple[dict[str, DeploymentSummary], float]:
    """Per deployment load over the span, and the fleet's output tokens."""
    deployments = {}
    out_tokens_total = 0.0
    span = run.window_s + run.warmup_s
    sites = {s.name: s for s in run.scenario.sites}
    warm = int(run.warmup_s // MINUTE_S)
    checked = deployment_validity(run.scenario)
    for p in run.digests:
        tokens = float(p.output_tokens.sum()) * p.scale
        limit = run.power_limits.get(p.site, 1.0)
        facility_mw = pool_facility_w(sites[p.site], p, limit)[warm:] / 1e6
        mwh = energy_mwh(facility_mw, MINUTE_S) if facility_mw.size else 0.0
        gpu_w = pool_gpu_power_w(p, limit)[warm:]
        compute_x, memory_x = run.step_slowdowns.get(p.name, (1.0, 1.0))
        out_tokens_total += tokens
        # steps of the last requests can run past the span: busy is at most the whole span
        busy = min(p.busy_total_s / (p.simulated_replicas * span), 1.0)
        deployments[p.name] = DeploymentSummary(
            site=p.site, gpu=p.gpu, replicas=p.replicas,
            simulated_replicas=p.simulated_replicas, scale=_r(p.scale, 6),
            requests=_r(p.num_counted * p.scale, 1),
            completed=_r(p.num_completed * p.scale, 1),
            preemptions=_r(p.num_preemptions * p.scale, 1),
            prefix_hit_rate=_r(p.prefix_hit_tokens / p.prompt_tokens, 4)
            if p.prompt_tokens else None,
            utilization=_r(busy, 4),
            batch_occupancy=_r(min(p.seq_total_s / (
                p.simulated_replicas * span * p.max_num_seqs), 1.0), 4),
            output_tokens_per_s=_r(tokens / run.window_s, 1),
            availability=_r(1.0 - p.downtime_s / (p.simulated_replicas * span), 6),
            gpu_power_w_mean=_r(gpu_w.mean() if gpu_w.size else 0.0, 1),
            power_mw_mean=_r(facility_mw.mean() if facility_mw.size else 0.0),
            energy_mwh=_r(mwh),
            joules_per_output_token=_r(mwh * 3.6e9 / tokens) if tokens else None,
            step_slowdown_compute=_r(compute_x, 4), step_slowdown_memory=_r(memory_x, 4),
            validated=checked[p.name].validated, validity=checked[p.name].basis,
        )
    return deployments, out_tokens_total


def _sites(run) -> tuple[dict[str, SiteSummary], dict[str, float]]:
    """Per site power over the measured window, and each site's energy, MWh (unrounded)."""
    tl = timeline(run)
    warm = int(run.warmup_s // MINUTE_S)
    sites = {}
    energy = {}
    for site in run.scenario.sites:
        rows = (tl["site"] == site.name) & (tl["minute"] >= warm)
        power = tl["power_mw"][rows]
        energy[site.name] = mwh = energy_mwh(power, MINUTE_S)
        sites[site.name] = SiteSummary(
            power_mw_mean=_r(power.mean() if power.size else 0.0),
            power_mw_peak=_r(power.max() if power.size else 0.0),
            power_cap_mw=site.power_cap_mw,
            at_cap=bool(site.name in run.power_limits
                        or (power.size and power.max() >= site.power_cap_mw)),
            gpu_power_limit_pct=_r(100.0 * run.power_limits[site.name], 2)
            if site.name in run.power_limits else None,
            uncapped_power_mw_peak=_uncapped_peak(run, site.name),
            gpus=int(sum(site.gpus.values())), energy_mwh=_r(mwh))
    return sites, energy


def _uncapped_peak(run, site: str) -> float | None:
    """The site's busiest minute in the run's uncapped pass, MW; None when it ran uncapped."""
    if site not in run.power_limits or run.uncapped_summary is None:
        return None
    return run.uncapped_summary.sites[site].power_mw_peak


def _notes(run) -> list[str]:
    scenario = run.scenario
    sim = scenario.simulation
    notes = []
    if sim.fidelity == "sampled" and scenario.routing.policy == "least_outstanding_tokens" \
            and sim.sampled_replicas != sim.shard_replicas and any(
                d.simulated_replicas < d.replicas for d in run.digests):
        notes.append(f"sampled fidelity with least_outstanding_tokens: the minimum is taken "
                     f"over the {sim.sampled_replicas} sampled replicas, but the fleet routes "
                     f"within cells of shard_replicas = {sim.shard_replicas} (a different "
                     "scope: TTFT p50 differed by up to 25% on a 256-replica check); set "
                     "sampled_replicas = shard_replicas for a representative sample")
    return notes


def _workload_tokens(run) -> np.ndarray:
    """Per workload, completed input and output tokens of the window (``[W, 2]``, scaled)."""
    out = np.zeros((len(run.scenario.workloads), 2))
    for d in run.digests:
        n = min(out.shape[0], d.workload_input_tokens.size)
        out[:n, 0] += d.workload_input_tokens[:n] * d.scale
        out[:n, 1] += d.workload_output_tokens[:n] * d.scale
    return out


def _not_judged(invalid: float, failed: float) -> str:
    """The verdict's note on the unanswered requests it does not judge ('' when none)."""
    parts = []
    if invalid:
        parts.append(f"{invalid:,.0f} invalid requests (over max_model_len)")
    if failed:
        parts.append(f"{failed:,.0f} requests lost to replica failures")
    return f"; not judged: {' and '.join(parts)}" if parts else ""


def _power_cap(run, tenants: dict[str, TenantSummary]) -> PowerCapSummary | None:
    """The cap's cost: the uncapped pass's latencies and goodput beside the capped run's."""
    if not run.power_limits:
        return None
    parts = []
    for site, limit in run.power_limits.items():
        slow = [f"{d.name} steps x{run.step_slowdowns[d.name][0]:.3f} compute-bound, "
                f"x{run.step_slowdowns[d.name][1]:.3f} memory-bound"
                for d in run.scenario.deployments if d.site == site]
        parts.append(f"site {site} power-capped: GPUs limited to {100 * limit:.1f}% of TDP "
                     f"({'; '.join(slow)})")
    before = run.uncapped_summary.tenants if run.uncapped_summary is not None else {}
    costs = {}
    for name, t in tenants.items():
        u = before.get(name)
        costs[name] = CapCost(
            ttft_p99_ms_uncapped=u.ttft_ms.p99 if u else None, ttft_p99_ms=t.ttft_ms.p99,
            itl_p99_ms_uncapped=u.itl_ms.p99 if u else None, itl_p99_ms=t.itl_ms.p99,
            e2e_p99_ms_uncapped=u.e2e_ms.p99 if u else None, e2e_p99_ms=t.e2e_ms.p99,
            goodput_rps_uncapped=u.goodput_rps if u else None, goodput_rps=t.goodput_rps)
    return PowerCapSummary(text="; ".join(parts), tenants=costs)


def summarize(run) -> RunSummary:
    """The run's ``summary.json`` content (see the module docstring)."""
    scenario = run.scenario
    tenants = {}
    misses: list[Miss] = []
    flows = tenant_workflow_figures(run)
    for k, tenant in enumerate(scenario.tenants):
        stats = _tenant_stats(run, k, tenant)
        if tenant.name in flows:
            stats = stats.model_copy(update={"workflows": flows[tenant.name]})
        tenants[tenant.name] = stats
        misses += _misses(tenant.name, tenant, stats)
    misses.sort(key=lambda x: (x.tier, x.tenant, x.metric))
    misses = attribute(misses, scenario, tenants, uncapped=run.uncapped_summary,
                       failure_free=run.failure_free_summary)
    deployments, out_tokens_total = _deployments(run)
    sites, energy = _sites(run)
    verdict_ok = not misses
    text = "serves the window within SLO for all tiers" if verdict_ok else "; ".join(
        f"tier {m.tier} {m.tenant} misses {m.metric} "
        f"({m.value} vs {m.target}, +{m.over_pct}%) - {m.cause}: {m.why}" for m in misses)
    invalid = sum(t.refusals.invalid or 0.0 for t in tenants.values())
    failed = sum(t.refusals.failed or 0.0 for t in tenants.values())
    text += _not_judged(invalid, failed)
    cap = _power_cap(run, tenants)
    if cap is not None:
        text += f" ({cap.text})"
    window = scenario.simulation.window
    economics = economics_summary(scenario, run.window_s, out_tokens_total, energy,
                                  _workload_tokens(run))
    return RunSummary(
        notes=_notes(run) + _over_share_notes(tenants) + _extrapolation_note(deployments),
        scenario=scenario.name,
        seed=scenario.simulation.seed,
        fidelity=scenario.simulation.fidelity,
        window=Window(month=window.month, duration_s=run.window_s, warmup_s=run.warmup_s),
        verdict=Verdict(ok=verdict_ok, text=text, misses=misses,
                        invalid_requests=_r(invalid, 1), failed_requests=_r(failed, 1)),
        tenants=tenants,
        deployments=deployments,
        sites=sites,
        economics=economics,
        totals=Totals(output_tokens=_r(out_tokens_total, 1),
                      requests=_r(sum(d.requests for d in deployments.values()), 1)),
        power_cap=cap,
        workflows=workflow_summaries(run, economics),
    )


__all__ = ["economics_summary", "summarize", "timeline", "weighted_percentiles"]
