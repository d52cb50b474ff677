"""The scenario: what fleet serves what demand, as a checked pydantic model (YAML in, JSON
Schema out).

``base``      shared constants, the strict base model, small validators
``models``    sites, deployments, the simulation window: the :class:`Scenario` root
``policies``  tenants and SLOs, rate limits and quotas, routing, admission, contracts
``demand``    workloads: arrival processes and length distributions
``checks``    cross-references, inventories, power, memory fit, resolved replica counts
``specs``     the engine's replica spec of a deployment (or of a disaggregated pool's worker)
``disagg``    what a disaggregated deployment's pools and the scenario around them must be
``messages``  pydantic errors turned into one line per problem
``io``        :func:`load_scenario` / :func:`parse_scenario`, the embedded default, the
              resolved YAML, expected arrivals and the terminal summary lines
"""

from capacitor.scenario.checks import (
    check_scenario,
    facility_power_mw,
    power_breakdown,
    power_warnings,
    replica_spec,
    resolve_replicas,
)
from capacitor.scenario.io import (
    dump_resolved,
    embedded_scenario_path,
    expected_arrivals,
    growth_factor,
    load_scenario,
    month_scale,
    parse_scenario,
    read_scenario_source,
    scenario_json_schema,
    summary_lines,
    window_start_hour,
)
from capacitor.scenario.messages import pydantic_problems
from capacitor.scenario.models import Scenario

__all__ = [
    "Scenario",
    "check_scenario",
    "dump_resolved",
    "embedded_scenario_path",
    "expected_arrivals",
    "facility_power_mw",
    "growth_factor",
    "load_scenario",
    "month_scale",
    "parse_scenario",
    "power_breakdown",
    "power_warnings",
    "pydantic_problems",
    "read_scenario_source",
    "replica_spec",
    "resolve_replicas",
    "scenario_json_schema",
    "summary_lines",
    "window_start_hour",
]
