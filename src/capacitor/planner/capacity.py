"""Goodput capacity of a deployment shape: the highest arrival rate per replica that meets
its tenants' SLOs, found by a bracketing search over short simulations, cached on disk.

**What is simulated.** One routing cell of ``cell_replicas`` replicas of the deployment
(``fidelity: exact``, one cell), fed Poisson arrivals (evenly spaced ones for a workload whose
arrivals are ``constant``) at ``rate x cell_replicas`` requests/s
split over the deployment's workloads in proportion to their peak rates in the window month
(:func:`peak_rate_rps`): the tenant mix it serves at its peak. Tenants keep their SLOs,
tiers and quotas; rate limits are dropped (capacity is what the replicas can serve, not what
a limit lets in), and so are hardware failures and power caps (the site holds just the
cell's GPUs): capacity of healthy replicas at full power. ASSUMPTION: a cell of
``simulation.shard_replicas`` replicas behind the scenario's router is how the fleet runs
(:mod:`capacitor.simulate.deployment`), so per-replica capacity measured in one cell holds
for any number of cells.

**Search.** A rate *meets* when every tenant of the cell meets every SLO
(``summary.verdict``). The search starts at the power of two nearest a hint, doubles or halves
until one rate meets and the next misses, then bisects in log space until the bracket is
within ``rel_tol``. Every rate it tries lies on the grid ``2**(k / 2**j)``, so with pass/miss
monotone in the rate the answer does not depend on the hint (only the number of runs does):
that is why the hint is not part of the cache key. The capacity is the bracket's lower end
(the highest rate seen to meet).

**Cache.** One JSON file per search under ``cache_dir`` (default
``$CAPACITOR_CACHE_DIR`` or ``~/.cache/capacitor/capacity``), named by the SHA-256 of
everything the answer depends on: the cell's scenario as simulated (model, GPU, precision,
parallelism, engine settings, lengths, mix, SLOs, routing, admission, window length, seed,
the profile's contents), ``rel_tol``, the package version, the shipped performance data
(``capacitor/perf/data/*.yaml``) and what an entry records (:data:`CACHE_RECORDS`: the
bracket and the worst tenant's TTFT p99 at its meeting end, which the plan's Pareto front
of cost against TTFT uses).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from capacitor.errors import PlanError

DEFAULT_DURATION_S = 600.0  # ASSUMPTION: ten minutes at a constant rate show a growing queue
DEFAULT_WARMUP_S = 300.0  # as the default scenario's warm-up (reasoning E2E is minutes)
DEFAULT_REL_TOL = 2 ** (1 / 32) - 1  # 2.19 %: five log-space bisections of a factor-2 bracket
MAX_DOUBLINGS = 16  # from the hint: 2**16 x; beyond it the SLOs do not bind
CACHE_ENV = "CAPACITOR_CACHE_DIR"
CACHE_RECORDS = "bracket+ttft"  # what an entry holds; in the key, so older entries are not read


@dataclass(frozen=True)
class Capacity:
    """One search's answer: per-replica rates (requests/s) of a cell of ``cell_replicas``."""

    deployment: str
    cell_replicas: int
    rate_rps: float  # per replica: the highest rate seen to meet every SLO
    miss_rps: float  # per replica: the lowest rate seen to miss one
    runs: int  # simulations the search made (0 when read from the cache)
    seconds: float  # wall time of the search (of the original search when cached)
    cached: bool
    key: str
    ttft_p99_ms: float | None = None  # the worst tenant's TTFT p99 at rate_rps, ms

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_cache_dir() -> Path:
    """``$CAPACITOR_CACHE_DIR`` if set, else ``~/.cache/capacitor/capacity``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "capacitor" / "capacity"


def peak_rate_rps(arrival: Any) -> float:
    """Highest arrival rate of ``arrival`` over a day, requests/s, before growth: a diurnal
    workload's rate at the middle of its peak hour, a stages workload's busiest stage, a
    bursty one's burst rate, otherwise its rate."""
    kind = arrival.kind
    if kind == "diurnal":
        return arrival.rate_at(arrival.peak_hour + 0.5)
    if kind == "bursty":
        return arrival.burst_rate_rps
    if kind == "stages":
        from capacitor.workload.stages import parse_stages

        return max(s.rate_rps for s in parse_stages(arrival.stages))
    return arrival.rate_rps


def down_share(scenario: Any, site_name: str, gpu: str, gpus_per_replica: int) -> float:
    """Long-run share of replicas down for repair (:func:`capacitor.fleet.failures.
    stationary_down_share` with the rates the simulation draws failures at): capacity is
    measured on healthy replicas, so the fleet's is ``replicas x (1 - share) x capacity``.
    Scheduled whole-site outages are not counted (ASSUMPTION: planned for separately)."""
    from capacitor.fleet.failures import stationary_down_share
    from capacitor.simulate.deployment import failure_rates

    site = scenario.site(site_name)
    mtbf, node, per_node = failure_rates(site, gpu)
    if math.isinf(mtbf) and math.isinf(node):
        return 0.0
    return stationary_down_share(gpus_per_replica, mtbf, node, site.failures.repair_hours,
                                 gpus_per_node=per_node)


DOWN_SHARE_SIGMAS = 2.0  # the band's low end: the expected share less two standard deviations


def down_share_low(share: float, replicas: int, gpus_per_replica: int,
                   gpus_per_failure_unit: int) -> float:
    """The low end of the share of replicas down in one hour: ``share`` (the long-run
    expectation, :func:`down_share`) less :data:`DOWN_SHARE_SIGMAS` standard deviations of
    the share down out of ``n`` independent failure units, ``sqrt(share (1 - share) / n)``
    (binomial), ``n = replicas x gpus_per_replica / max(gpus_per_failure_unit,
    gpus_per_replica)``: NVLink racks when a failure takes a rack down, else replicas (or the
    servers they share). An hour's draw is that spread around the expectation: measured for
    the default scenario's 5,000 GB200 replicas (278 racks), 20 seeds of the failure draw
    give 3.53 % +- 1.30 % down against 3.51 % +- 1.10 % here."""
    if share <= 0.0 or replicas < 1:
        return 0.0
    units = replicas * gpus_per_replica / max(gpus_per_failure_unit, gpus_per_replica)
    sigma = math.sqrt(share * (1.0 - share) / max(units, 1.0))
    return max(share - DOWN_SHARE_SIGMAS * sigma, 0.0)


def failure_unit_gpus(scenario: Any, site_name: str, gpu: str) -> int:
    """GPUs one failure takes down at once: the NVLink domain when failures drain it, else
    a server (``failures.gpus_per_node``)."""
    from capacitor.simulate.deployment import failure_rates

    return failure_rates(scenario.site(site_name), gpu)[2]


def workload_peak_rps(scenario: Any, workload: Any, *, mean: bool = False) -> float:
    """A workload's peak (``mean``: daily mean) arrival rate in the window month,
    requests/s, growth included; a trace replayed at ``target_rate_rps`` counts at that rate
    (PlanError for a trace without one: nothing to plan for)."""
    from capacitor.scenario.io import growth_factor

    a = workload.arrival
    if a is None:
        rate = getattr(workload.lengths, "target_rate_rps", None)
        if rate is None:
            raise PlanError(f"workload {workload.name!r}: a trace without target_rate_rps has "
                            "no rate to plan for; give lengths.target_rate_rps")
        return float(rate)
    base = a.mean_rate_rps if mean and a.kind in ("diurnal", "bursty") else peak_rate_rps(a)
    return base * growth_factor(scenario, a)


def deployment_mix(scenario: Any, deployment: str) -> dict[str, float]:
    """Workload name -> share of the deployment's peak demand in the window month (sums to
    1); workloads replayed from a trace count at their ``target_rate_rps``."""
    rates = {w.name: workload_peak_rps(scenario, w) for w in scenario.workloads
             if w.deployment == deployment}
    if not rates:
        raise PlanError(f"deployment {deployment!r} serves no workload: nothing to size it for")
    total = sum(rates.values())
    return {name: r / total for name, r in rates.items()}


def capacity_scenario_dict(scenario: Any, deployment: str, rate_rps: float, *,
                           cell_replicas: int = 1, duration_s: float = DEFAULT_DURATION_S,
                           warmup_s: float = DEFAULT_WARMUP_S,
                           mix: dict[str, float] | None = None) -> dict[str, Any]:
    """The scenario (as a dict for :func:`capacitor.scenario.parse_scenario`) that measures
    one cell of ``deployment`` at ``rate_rps`` per replica (see the module docstring)."""
    mix = deployment_mix(scenario, deployment) if mix is None else mix
    data = scenario.model_dump(mode="json")
    dep = next(d for d in data["deployments"] if d["name"] == deployment)
    dep["replicas"] = cell_replicas
    site = next(s for s in data["sites"] if s["name"] == dep["site"])
    # a replica's GPUs: tp x pp, or one disaggregated unit's prefill + decode workers' GPUs
    gpus = cell_replicas * scenario.deployment(deployment).gpus_per_replica
    data["sites"] = [{**site, "gpus": {dep["gpu"]: gpus}, "failures": {},
                      "server_overhead_factor_by_gpu": {
                          k: v for k, v in site["server_overhead_factor_by_gpu"].items()
                          if k == dep["gpu"]}}]
    data["deployments"] = [dep]
    workloads = []
    for w in data["workloads"]:
        if w["name"] not in mix:
            continue
        kind = "constant" if (w["arrival"] or {}).get("kind") == "constant" else "poisson"
        w = {**w, "arrival": {"kind": kind,
                              "rate_rps": rate_rps * cell_replicas * mix[w["name"]]}}
        if w["lengths"].get("kind") == "trace":
            w["lengths"] = {**w["lengths"], "target_rate_rps": None}
        workloads.append(w)
    data["workloads"] = workloads
    tenants = {w["tenant"] for w in workloads}
    data["tenants"] = [{**t, "rate_limits": {}} for t in data["tenants"] if t["name"] in tenants]
    data["economics"] = {}
    data["simulation"] = {**data["simulation"], "fidelity": "exact",
                          "shard_replicas": cell_replicas, "sampled_replicas": cell_replicas,
                          "window": {"month": None, "hour": 0, "duration_s": duration_s,
                                     "warmup_s": warmup_s}}
    return data


@dataclass(frozen=True)
class Met:
    """A capacity simulation's answer: true when no tenant misses an SLO; with the worst
    tenant's TTFT p99 (ms; None when no request completed)."""

    ok: bool
    ttft_p99_ms: float | None = None

    def __bool__(self) -> bool:
        return self.ok


def meets_slos(data: dict[str, Any]) -> Met:
    """Simulate a capacity scenario dict; true when no tenant misses an SLO."""
    from capacitor.scenario import parse_scenario
    from capacitor.simulate import run_scenario

    spec = parse_scenario(yaml.safe_dump(data, sort_keys=False), origin="capacity search")
    summary = run_scenario(spec, keep_pools=False, explain_misses=False).summary
    ttft = [t.ttft_ms.p99 for t in summary.tenants.values() if t.ttft_ms.p99 is not None]
    return Met(not summary.verdict.misses, max(ttft) if ttft else None)


def bracket_search(meets: Callable[[float], bool], hint: float, rel_tol: float,
                   ) -> tuple[float, float, int]:
    """(highest rate seen to meet, lowest seen to miss, evaluations) for a ``meets`` that is
    True below a threshold and False above it; every rate tried is on the grid
    ``2**(k / 2**j)``. PlanError when no rate meets (down to ``hint / 2**MAX_DOUBLINGS``) or
    every rate does (up to ``hint * 2**MAX_DOUBLINGS``)."""
    if not hint > 0 or not math.isfinite(hint):
        raise ValueError(f"hint={hint!r}: expected a rate > 0")
    k0 = round(math.log2(hint))
    runs = 0

    def at(k: float) -> bool:
        nonlocal runs
        runs += 1
        return meets(2.0 ** k)

    if at(k0):
        lo, hi = float(k0), None
        for k in range(k0 + 1, k0 + MAX_DOUBLINGS + 1):
            if not at(k):
                hi = float(k)
                break
            lo = float(k)
        if hi is None:
            raise PlanError(f"every rate up to {2.0 ** lo:.4g} requests/s per replica meets the "
                            "SLOs: they do not bound this deployment's capacity")
    else:
        lo, hi = None, float(k0)
        for k in range(k0 - 1, k0 - MAX_DOUBLINGS - 1, -1):
            if at(k):
                lo = float(k)
                break
            hi = float(k)
        if lo is None:
            raise PlanError(f"even {2.0 ** hi:.4g} requests/s per replica misses an SLO: the "
                            "SLO is below what this hardware can do at any load")
    while 2.0 ** (hi - lo) - 1.0 > rel_tol:
        mid = (lo + hi) / 2.0
        if at(mid):
            lo = mid
        else:
            hi = mid
    return 2.0 ** lo, 2.0 ** hi, runs


def _perf_data_digest() -> str:
    h = hashlib.sha256()
    data = resources.files("capacitor.perf").joinpath("data")
    for item in sorted(data.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            h.update(item.name.encode())
            h.update(item.read_bytes())
    return h.hexdigest()


def cache_key(data: dict[str, Any], rel_tol: float) -> str:
    """SHA-256 of what a capacity search's answer depends on (see the module docstring)."""
    from capacitor import __version__

    keyed = json.loads(json.dumps(data))
    keyed.pop("name", None)
    keyed.pop("description", None)
    for w in keyed["workloads"]:  # the rate is what is searched for; the mix stays
        w["arrival"]["rate_rps"] = round(w["arrival"]["rate_rps"], 9)
    profile = keyed["simulation"].get("profile")
    profile_text = Path(profile).read_bytes().hex() if profile else ""
    material = json.dumps({"scenario": keyed, "rel_tol": rel_tol, "version": __version__,
                           "records": CACHE_RECORDS,
                           "perf_data": _perf_data_digest(), "profile": profile_text},
                          sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def replica_capacity(scenario: Any, deployment: str, *, cell_replicas: int = 1,
                     duration_s: float = DEFAULT_DURATION_S,
                     warmup_s: float = DEFAULT_WARMUP_S, rel_tol: float = DEFAULT_REL_TOL,
                     hint_rps: float = 1.0, cache_dir: Path | None = None,
                     use_cache: bool = True,
                     meets: Callable[[dict[str, Any]], bool] = meets_slos) -> Capacity:
    """Goodput capacity per replica of ``deployment`` of the checked ``scenario``, in a cell
    of ``cell_replicas`` replicas (see the module docstring); ``meets`` simulates one
    capacity scenario dict."""
    if cell_replicas < 1:
        raise PlanError(f"cell_replicas={cell_replicas}: must be at least 1")
    mix = deployment_mix(scenario, deployment)
    probe = capacity_scenario_dict(scenario, deployment, 1.0, cell_replicas=cell_replicas,
                                   duration_s=duration_s, warmup_s=warmup_s, mix=mix)
    key = cache_key(probe, rel_tol)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.json"
    if use_cache and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            return Capacity(**{**saved, "deployment": deployment, "runs": 0, "cached": True})
        except (OSError, ValueError, TypeError):
            pass  # an unreadable entry is searched again and rewritten
    started = time.perf_counter()

    ttft: dict[float, float | None] = {}

    def at(rate: float) -> bool:
        met = meets(capacity_scenario_dict(scenario, deployment, rate,
                                           cell_replicas=cell_replicas, duration_s=duration_s,
                                           warmup_s=warmup_s, mix=mix))
        ttft[rate] = getattr(met, "ttft_p99_ms", None)
        return bool(met)

    try:
        lo, hi, runs = bracket_search(at, hint_rps, rel_tol)
    except PlanError as err:
        raise PlanError(f"deployment {deployment!r}: {err}") from None
    result = Capacity(deployment=deployment, cell_replicas=cell_replicas, rate_rps=lo,
                      miss_rps=hi, runs=runs, seconds=time.perf_counter() - started,
                      cached=False, key=key, ttft_p99_ms=ttft.get(lo))
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # ASSUMPTION: a read-only cache only costs time
    return result


__all__ = ["DOWN_SHARE_SIGMAS", "Capacity", "Met", "bracket_search", "capacity_scenario_dict",
           "default_cache_dir", "deployment_mix", "down_share", "down_share_low",
           "failure_unit_gpus", "meets_slos", "peak_rate_rps", "replica_capacity",
           "workload_peak_rps"]
