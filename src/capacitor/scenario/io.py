"""Scenario files: YAML in, a checked :class:`Scenario` out, JSON Schema for the curious.

:func:`load_scenario` reads a YAML file (``yaml.safe_load``: object tags are refused, and so
is a key given twice), validates it against the pydantic models of
:mod:`capacitor.scenario.models` and then checks what a schema cannot: references between
sections (sites, deployments, tenants), GPU and model names, GPU inventories over-subscribed
by deployments and
models that do not fit their replica's memory (:func:`capacitor.engine.replica.build_replica`).
Every problem becomes one line ``FILE: YAML.path = value: what is wrong / what is valid`` of a
single :class:`~capacitor.errors.ScenarioError`.

Facility power of a site at nameplate, MW = sum over its GPU types of
``count x TDP x server_overhead_factor x PUE / 1e6`` (TDP from the GPU catalogue; the factor's
default and source are in :data:`capacitor.scenario.models.DEFAULT_SERVER_OVERHEAD_FACTOR`). A
nameplate above the site's ``power_cap_mw`` is a warning (:func:`power_warnings`), not an
error: the run caps the site's power (:mod:`capacitor.simulate.power_cap`).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from capacitor.economics.contracts import month_name, standing
from capacitor.engine.replica import build_replica, resolved_settings
from capacitor.errors import ScenarioError
from capacitor.perf.profile import load_profile
from capacitor.scenario.checks import (
    check_scenario,
    facility_power_mw,
    power_breakdown,
    power_warnings,
    replica_spec,
    resolve_replicas,
)
from capacitor.scenario.messages import pydantic_problems
from capacitor.scenario.models import (
    DiurnalArrival,
    Scenario,
    TraceLengths,
    WorkflowLengths,
    month_index,
)
from capacitor.scenario.specs import POOLS
from capacitor.textio import load_yaml, read_text
from capacitor.workload.agentic_presets import preset
from capacitor.workload.stages import parse_stages

_PACKAGE = "capacitor"
_EMBEDDED = "scenarios/colossus.yaml"


def embedded_scenario_path() -> str:
    """Where the embedded default (Colossus) scenario lives, for messages."""
    return f"{_PACKAGE}/{_EMBEDDED}"


def read_scenario_source(origin: str) -> str | None:
    """The text of the scenario file a resolved scenario names in its header (``origin``:
    :func:`embedded_scenario_path` or a file path), with its comments; None when it cannot
    be read (moved, deleted, not UTF-8)."""
    try:
        if origin == embedded_scenario_path():
            return resources.files(_PACKAGE).joinpath(_EMBEDDED).read_text(encoding="utf-8")
        return Path(origin).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read, validate and check a scenario YAML; ``None`` = the embedded Colossus scenario.

    Relative paths inside the file (model config.json, trace, profile) are resolved against
    the file's directory.

    Raises:
        ScenarioError: unreadable file, unsafe or invalid YAML, schema violations and failed
            checks; one line per problem, each naming the YAML path and value.
    """
    if path is None:
        origin = embedded_scenario_path()
        text = resources.files(_PACKAGE).joinpath(_EMBEDDED).read_text(encoding="utf-8")
        base_dir: Path | None = None
    else:
        p = Path(path)
        origin = str(p)
        text = read_text(p, origin, ScenarioError, expected="a UTF-8 scenario YAML file")
        base_dir = p.resolve().parent
    return parse_scenario(text, origin=origin, base_dir=base_dir)


def parse_scenario(text: str, *, origin: str = "<scenario>",
                   base_dir: Path | None = None) -> Scenario:
    """:func:`load_scenario` on YAML text already read (``origin`` names it in messages)."""
    try:
        data = load_yaml(text)
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ScenarioError(
            f"{origin}: {where}{err.problem} (only plain YAML is accepted: no object tags "
            "such as !!python/object)"
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(str(x) for x in (err.context, err.problem) if x)
        raise ScenarioError(f"{origin}: {where}not valid YAML: {what}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"{origin}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{origin}: expected a mapping of sections (name, sites, deployments, tenants, "
            f"workloads, ...) at the top level, got {type(data).__name__}"
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        lines = [f"{origin}: {line}" for line in pydantic_problems(err, data)]
        raise ScenarioError(*lines) from None
    scenario._source = origin
    problems = check_scenario(scenario, base_dir=base_dir)
    if problems:
        raise ScenarioError(*(f"{origin}: {line}" for line in problems))
    return scenario


def window_start_hour(scenario: Scenario) -> int:
    """The window's UTC start hour: as given, else the hour of peak total diurnal demand
    (sum of the diurnal workloads' rates at each hour's middle), else 0."""
    window = scenario.simulation.window
    if window.hour is not None:
        return window.hour
    diurnal = [w.arrival for w in scenario.workloads if isinstance(w.arrival, DiurnalArrival)]
    if not diurnal:
        return 0
    totals = [sum(a.rate_at(h + 0.5) for a in diurnal) for h in range(24)]
    return max(range(24), key=lambda h: (totals[h], -h))


def growth_factor(scenario: Scenario, arrival: Any) -> float:
    """Demand multiplier of ``arrival`` in the window month (compound monthly growth)."""
    month = scenario.simulation.window.month
    if arrival is None or month is None or arrival.base_month is None:
        return 1.0
    months = month_index(month) - month_index(arrival.base_month)
    return (1.0 + arrival.monthly_growth_pct / 100.0) ** months


def expected_arrivals(scenario: Scenario) -> dict[str, float | None]:
    """Expected arrivals (requests) per workload inside the window (warm-up excluded); a
    workflow workload's arrivals times its mean calls per workflow; None for a trace
    replayed with ``time_scale`` (its count depends on the file)."""

    window = scenario.simulation.window
    start_h = float(window_start_hour(scenario))
    dur = window.duration_s
    out: dict[str, float | None] = {}
    for w in scenario.workloads:
        a = w.arrival
        if isinstance(w.lengths, TraceLengths):
            rate = w.lengths.target_rate_rps
            out[w.name] = None if rate is None else rate * dur
            continue
        if a is None:
            out[w.name] = None
            continue
        if a.kind in ("poisson", "constant"):
            n = a.rate_rps * dur
        elif a.kind == "bursty":
            n = a.mean_rate_rps * dur
        elif a.kind == "stages":
            n, t = 0.0, 0.0
            for st in parse_stages(a.stages):
                n += _stage_requests(st.rate_rps, t, t + st.duration_s, dur)
                t += st.duration_s
        else:  # diurnal: closed-form integral of the cosine over the window
            h0, h1 = start_h, start_h + dur / 3600.0
            k = 2.0 * math.pi / 24.0
            c = a.peak_hour + 0.5
            swing = (math.sin(k * (h1 - c)) - math.sin(k * (h0 - c))) / k * 3600.0
            n = a.mean_rate_rps * (dur + (a.peak_to_mean - 1.0) * swing)
        if isinstance(w.lengths, WorkflowLengths):  # workflows -> their model calls
            n *= preset(w.lengths.preset).mean_calls
        out[w.name] = n * growth_factor(scenario, a)
    return out


def month_scale(scenario: Scenario, month_s: float) -> dict[str, float]:
    """Per workload, its expected arrivals over the window's whole month (``month_s``
    seconds) / its expected arrivals in the window: how a window's counts scale to the month
    by the scenario's demand profile. A diurnal workload's cosine integrates to its mean rate
    over whole days, so its month is ``mean_rate_rps x month_s`` against the window's
    integral (:func:`expected_arrivals`; growth applies to both alike). Every other workload
    (constant, Poisson, bursty, stages, traces) has no profile beyond the window: ASSUMPTION,
    its window's rate holds all month, ``month_s / duration_s``."""
    window = scenario.simulation.window
    expected = expected_arrivals(scenario)
    out = {}
    for w in scenario.workloads:
        n = expected[w.name]
        if isinstance(w.arrival, DiurnalArrival) and n:
            out[w.name] = w.arrival.mean_rate_rps * growth_factor(scenario, w.arrival) \
                * month_s / n
        else:
            out[w.name] = month_s / window.duration_s
    return out


def _stage_requests(rate: float, t0: float, t1: float, end: float) -> float:
    """Requests of a stage [t0, t1) at ``rate`` that fall before ``end``."""
    if t1 <= end:
        return float(round(rate * (t1 - t0)))
    return rate * max(end - t0, 0.0)


# ---- outputs ---------------------------------------------------------------------------------


def _contract_line(contract: Any, month: str | None) -> str:
    """A contract's term, its total, and what leaving it costs with notice given on the first
    day of ``month`` (the window's; the contract's first month when None)."""
    terms = contract.terms()
    last = month_name(month_index(terms.end) - 1)
    now = standing(terms, month or terms.start)
    return (f"contract {contract.name}: {terms.months} months {terms.start} to {last}, "
            f"${now.term_total_usd:,.0f} in all; notice {terms.notice_days} "
            f"days: given {now.notice_given}, billing stops {now.earliest_exit} with "
            f"${now.exit_cost_usd:,.0f} still owed")


def summary_lines(scenario: Scenario) -> list[str]:
    """A few human lines about a checked scenario (for ``capacitor scenario check``)."""
    counts = resolve_replicas(scenario)
    lines = [f"{scenario.name}: {len(scenario.sites)} site(s), {len(scenario.deployments)} "
             f"deployment(s), {len(scenario.tenants)} tenant(s), {len(scenario.workloads)} "
             "workload(s)"]
    for site in scenario.sites:
        gpus = ", ".join(f"{n:,} {g}" for g, n in site.gpus.items())
        lines.append(f"site {site.name}: {gpus}; {facility_power_mw(site):.4g} MW of "
                     f"{site.power_cap_mw:,g} MW cap at TDP ({power_breakdown(site)})")
    lines += [f"warning: {w}" for w in power_warnings(scenario)]
    for dep in scenario.deployments:
        d = dep.disaggregated
        units = "" if d is None else (
            f" (units of {d.prefill.workers} prefill x tp{d.prefill.tp} + "
            f"{d.decode.workers} decode x tp{d.decode.tp})")
        lines.append(f"deployment {dep.name}: {counts[dep.name]:,} x {dep.model} on "
                     f"{dep.gpus_per_replica} {dep.gpu} at {dep.site}{units}")
    lines += [_contract_line(c, scenario.simulation.window.month)
              for c in scenario.economics.contracts]
    arrivals = expected_arrivals(scenario)
    known = [v for v in arrivals.values() if v is not None]
    window = scenario.simulation.window
    when = f"{window.month or 'any month'} {window_start_hour(scenario):02d}:00 UTC"
    lines.append(f"window {when}, {window.duration_s:g} s: ~{sum(known):,.0f} requests expected"
                 + ("" if len(known) == len(arrivals) else " (plus trace replays)"))
    return lines



def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of a scenario file (draft 2020-12), with every field's description."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "capacitor scenario"
    return schema


def _resolve_pools(dep: Any, out: dict[str, Any], profile: Any) -> None:
    """A disaggregated deployment's resolved YAML: each pool's engine limits and the shared
    settings at the engine's defaults, max_model_len the shorter of the pools'."""
    lengths = []
    for pool in POOLS:
        spec = replica_spec(dep, pool)
        settings = resolved_settings(spec)
        config, _ = build_replica(spec, profile)
        lengths.append(int(config.max_model_len))
        for key in ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization"):
            out["disaggregated"][pool][key] = settings[key]
        if out["disaggregated"][pool]["ep"] is None:
            out["disaggregated"][pool]["ep"] = 1
        for key in ("block_size", "enable_prefix_caching"):
            if out.get(key) is None:
                out[key] = settings[key]
    if out.get("max_model_len") is None:
        out["max_model_len"] = min(lengths)


def dump_resolved(scenario: Scenario) -> str:
    """YAML of the checked scenario with every default filled: replica counts resolved,
    engine settings at the engine's defaults, the window's start hour, canonical GPU ids and
    absolute paths. Loading it again gives the same scenario."""
    data = scenario.model_dump(mode="json")
    counts = resolve_replicas(scenario)
    profile = load_profile(scenario.simulation.profile) if scenario.simulation.profile else None
    for dep, out in zip(scenario.deployments, data["deployments"], strict=True):
        out["replicas"] = counts[dep.name]
        if dep.disaggregated is not None:
            _resolve_pools(dep, out, profile)
            continue
        spec = replica_spec(dep)
        settings = resolved_settings(spec)
        config, _ = build_replica(spec, profile)
        for key, value in settings.items():
            if out.get(key) is None:
                out[key] = value
        if out.get("max_model_len") is None:
            out["max_model_len"] = int(config.max_model_len)
        if out.get("ep") is None:
            out["ep"] = 1
    data["simulation"]["window"]["hour"] = window_start_hour(scenario)
    header = f"# resolved scenario{' from ' + scenario.source if scenario.source else ''}\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


__all__ = [
    "dump_resolved",
    "embedded_scenario_path",
    "expected_arrivals",
    "growth_factor",
    "load_scenario",
    "parse_scenario",
    "read_scenario_source",
    "scenario_json_schema",
    "summary_lines",
    "window_start_hour",
]
