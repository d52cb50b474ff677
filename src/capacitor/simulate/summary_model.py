"""The typed content of ``summary.json``: what :func:`capacitor.simulate.summary.summarize`
returns, what ``summary.json`` is written from, and what the terminal report reads.

Every field says its unit in its name (``_ms``, ``_s``, ``_rps``, ``_mw``, ``_mwh``, ``_usd``,
``_pct``) and in its description; ``capacitor run --schema`` prints the JSON Schema built
from these descriptions. Numbers are rounded as written to the file (3 decimals unless a
description says otherwise); ``null`` marks a value that does not exist (a percentile of no
requests, a unit cost of no tokens).

Latency percentiles use NumPy's default definition (linear interpolation between order
statistics, ``numpy.percentile(..., method="linear")``, as ``capacitor validate``, vLLM's
``benchmark_serving`` and inference-perf compute them) over 0.1 %-wide latency bins, each
request weighted by its pool's scale; see
:func:`capacitor.simulate.summary.weighted_percentiles`.

Models are frozen and forbid unknown keys, so ``RunSummary.model_validate_json`` of a
``summary.json`` checks it against this schema. Item access (``summary["verdict"]["ok"]``)
is kept for readers written when the summary was a plain dict; new code reads attributes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from capacitor.scenario.policies import SLO


class _Record(BaseModel):
    """Base of the summary's models: frozen, unknown keys are errors, item access reads
    attributes (``record["name"]`` is ``record.name``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)


def _ms(what: str) -> Any:
    return Field(default=None, description=f"{what}, ms; null when no request completed.")


class Percentiles(_Record):
    """Latency percentiles of one tenant, ms (linear interpolation: see the module doc)."""

    p50: float | None = _ms("Median")
    p90: float | None = _ms("90th percentile")
    p99: float | None = _ms("99th percentile")


class Refusals(_Record):
    """Requests of one tenant the client got no answer for, by cause (counted requests,
    scaled to the fleet)."""

    throttled: float | None = Field(description="Refused by the tenant's rate limit or "
                                    "monthly quota before routing (HTTP 429; 1 decimal).")
    shed: float | None = Field(description="Refused by admission control at the router: "
                               "queue full, concurrency cap, predicted TTFT over the limit, "
                               "or every replica of the routing cell down (1 decimal).")
    invalid: float | None = Field(description="Refused as invalid: prompt + output over the "
                                  "model's max_model_len, a client error (HTTP 400; "
                                  "1 decimal).")
    failed: float | None = Field(description="Lost in flight on a replica that failed "
                                 "(1 decimal).")
    throttled_pct: float | None = Field(description="throttled / requests, %.")
    shed_pct: float | None = Field(description="shed / requests, %.")
    invalid_pct: float | None = Field(description="invalid / requests, %.")
    failed_pct: float | None = Field(description="failed / requests, %.")


class LimitShare(_Record):
    """A tenant's part of its fleet-wide limits in one deployment, and what arrived there."""

    share: float = Field(description="Fraction of each fleet-wide limit (requests_per_min, "
                         "tokens_per_min, max_concurrent, tokens_per_month) this deployment "
                         "enforces: the tenant's expected window demand here / its expected "
                         "demand on all its deployments (an even split when a workload's "
                         "volume is unknown). Fixed before the run: a deployment whose "
                         "traffic grows does not take limit from the others, and the others "
                         "do not lend it theirs.")
    traffic_share: float | None = Field(description="Fraction of the tenant's requests in "
                                        "the window that arrived at this deployment; above "
                                        "share, this deployment's part of the limits is the "
                                        "tighter one.")
    throttled: float | None = Field(description="The tenant's requests throttled at this "
                                    "deployment (1 decimal).")


class TenantWorkflows(_Record):
    """What a tenant's ``slo.workflow`` targets are judged on: all its counted workflows
    (every workflow workload and deployment), scaled to the fleet."""

    workflows: float | None = Field(description="Workflows started in the window (1 "
                                    "decimal).")
    failed_pct: float | None = Field(description="Workflows that failed (a call got no "
                                     "answer), % of those started; what "
                                     "slo.workflow.max_failed_pct is checked against.")
    e2e_p90_s: float | None = Field(description="90th-percentile end-to-end time of the "
                                    "completed workflows, s; null when none completed.")
    e2e_p99_s: float | None = Field(description="99th-percentile end-to-end time of the "
                                    "completed workflows, s; null when none completed.")


class TenantSummary(_Record):
    """One tenant over the measured window (after warm-up), scaled to the whole fleet."""

    tier: int = Field(description="Priority tier (0 = most important).")
    requests: float | None = Field(description="Requests that arrived in the window "
                                   "(scaled to the fleet; 1 decimal).")
    completed: float | None = Field(description="Requests completed (1 decimal).")
    refused_pct: float | None = Field(description="Share of the requests the fleet chose to "
                                      "refuse: throttled + shed, %. What the SLO's "
                                      "max_throttled_pct is checked against; invalid and "
                                      "failed requests are not in it (see refusals).")
    refusals: Refusals = Field(description="Requests not answered, by cause: throttled, shed, "
                               "invalid, failed.")
    ttft_ms: Percentiles = Field(description="Time to first token of completed requests, ms.")
    itl_ms: Percentiles = Field(description="Inter-token latency (gaps between output "
                                "tokens), ms.")
    e2e_ms: Percentiles = Field(description="End-to-end latency of completed requests, ms.")
    goodput_rps: float | None = Field(description="Completed requests that met every latency "
                                      "SLO of the tenant, per second of window.")
    throughput_rps: float | None = Field(description="Completed requests per second of "
                                         "window.")
    output_tokens_per_s: float | None = Field(description="Output tokens of completed "
                                              "requests per second of window (1 decimal).")
    slo: SLO = Field(description="The tenant's targets, as the scenario states them.")
    limit_shares: dict[str, LimitShare] | None = Field(
        default=None, description="Per deployment the tenant uses, its part of the tenant's "
        "fleet-wide limits (split by expected demand, not shared buckets) and the traffic "
        "that arrived there; null when the tenant has no fleet-wide limit, uses one "
        "deployment, or admission is off.")
    workflows: TenantWorkflows | None = Field(
        default=None, description="The tenant's workflows as its slo.workflow judges them; "
        "absent when it sends no workflow workload.")


class Miss(_Record):
    """One SLO target a tenant missed."""

    tenant: str = Field(description="Tenant name.")
    tier: int = Field(description="The tenant's tier.")
    metric: Literal["ttft_p99_ms", "itl_p99_ms", "e2e_p99_ms", "refused_pct",
                    "workflow_e2e_p90_s", "workflow_e2e_p99_s", "workflow_failed_pct"] = Field(
        description="The target missed: a request p99 latency in ms, the refused share in %, "
        "or a workflow target (slo.workflow: an end-to-end percentile in s, the failed "
        "share in %).")
    target: float = Field(description="The target, in the metric's unit.")
    value: float | None = Field(description="What the run gave, in the metric's unit; null "
                                "when nothing completed (every latency target is missed).")
    over_pct: float | None = Field(description="How far over the target, % of the target "
                                   "(1 decimal); null when the value is null.")
    cause: Literal["rate_limit", "quota", "rate_limit_or_quota", "power_cap", "failures",
                   "capacity"] | None = Field(
        default=None, description="The binding cause (capacitor.simulate.causes): the "
        "tenant's rate_limit / quota (throttled refusals), power_cap (the uncapped pass met "
        "the target), failures (a pass without replica failures met it), else capacity.")
    why: str | None = Field(default=None, description="One phrase backing the cause: the "
                            "throttled share, or the metric in the counterfactual pass.")


class Verdict(_Record):
    """Whether the fleet serves its demand within every tier's SLO."""

    ok: bool = Field(description="True when no tenant misses a target.")
    text: str = Field(description="One line: the verdict, or each miss; then how many "
                      "invalid and failed requests it did not judge, when there were any.")
    misses: list[Miss] = Field(description="The misses, by tier, tenant and metric.")
    invalid_requests: float | None = Field(description="Requests refused as invalid (over "
                                           "max_model_len: client errors) over all tenants, "
                                           "not judged by the verdict (scaled; 1 decimal).")
    failed_requests: float | None = Field(description="Requests lost to replica failures "
                                          "over all tenants, not judged as refusals by the "
                                          "verdict (scaled; 1 decimal).")


class DeploymentSummary(_Record):
    """One deployment's load over the whole simulated span (warm-up included)."""

    site: str = Field(description="Site name.")
    gpu: str = Field(description="GPU id.")
    replicas: int = Field(description="Replicas in the fleet.")
    simulated_replicas: int = Field(description="Replicas simulated (fewer than replicas in "
                                    "sampled fidelity).")
    scale: float | None = Field(description="The weight of a simulated request: replicas / "
                                "simulated_replicas, or in sampled fidelity with failures 1 / "
                                "the sample's share of the demand (its replicas up over the "
                                "deployment's; 6 decimals).")
    requests: float | None = Field(description="Requests counted (after warm-up; scaled; "
                                   "1 decimal).")
    completed: float | None = Field(description="Requests completed (scaled; 1 decimal).")
    preemptions: float | None = Field(description="Preemptions (scaled; 1 decimal).")
    prefix_hit_rate: float | None = Field(description="Prompt tokens served from the prefix "
                                          "cache / prompt tokens, of the completed requests "
                                          "counted (after warm-up), 0-1 (4 decimals); null "
                                          "with none.")
    utilization: float | None = Field(description="Fraction of the span the replicas spent "
                                      "executing engine steps, 0-1 (4 decimals).")
    batch_occupancy: float | None = Field(description="Running sequences / max_num_seqs, "
                                          "time-averaged, 0-1 (4 decimals).")
    output_tokens_per_s: float | None = Field(description="Output tokens per second of window "
                                              "(scaled; 1 decimal).")
    availability: float | None = Field(description="Fraction of replica-time up (not failed "
                                       "or in repair) over the span, 0-1 (6 decimals): measured "
                                       "from the failures and repairs drawn for every replica "
                                       "of the deployment, starting in steady state.")
    gpu_power_w_mean: float | None = Field(description="Mean board power of one of its GPUs "
                                           "over the measured window, W (1 decimal): from "
                                           "what the GPUs did each minute (busy share, HBM "
                                           "and tensor-core shares of the step time; "
                                           "capacitor.fleet.power).")
    power_mw_mean: float | None = Field(description="Mean facility power of its GPUs over the "
                                        "measured window (with server overhead and PUE), MW.")
    energy_mwh: float | None = Field(description="Facility energy of its GPUs over the "
                                     "measured window, MWh.")
    joules_per_output_token: float | None = Field(
        description="energy_mwh per output token of the window's completed requests, J "
        "(facility energy, prefill included); null with no tokens.")
    validated: bool | None = Field(
        default=None, description="True when the deployment's configuration (engine, GPU, "
        "architecture, precision, tp, disaggregation, speculative decoding) lies inside a "
        "class the model was checked against on measured runs "
        "(capacitor.perf.validity); false: its numbers are an extrapolation.")
    validity: str | None = Field(
        default=None, description="The validated envelope it lies in, or what differs from "
        "the nearest one (extrapolated: ...).")
    step_slowdown_compute: float | None = Field(
        description="Step-time multiplier of its compute-bound work under its site's power "
        "limit (1 when the site is not power-capped; 4 decimals).")
    step_slowdown_memory: float | None = Field(
        description="Step-time multiplier of its memory-bound work under its site's power "
        "limit (1 when the site is not power-capped; 4 decimals).")


class SiteSummary(_Record):
    """One site's power over the measured window."""

    power_mw_mean: float | None = Field(description="Mean facility power, MW.")
    power_mw_peak: float | None = Field(description="Highest one-minute facility power, MW.")
    power_cap_mw: float = Field(description="The site's power cap, MW.")
    at_cap: bool = Field(description="True when the cap bound: the site ran power-capped, or "
                         "some minute's power reached the cap.")
    gpus: int = Field(description="GPUs installed.")
    energy_mwh: float | None = Field(description="Facility energy over the window, MWh.")
    gpu_power_limit_pct: float | None = Field(
        default=None, description="Power limit of every GPU of the site, % of its TDP, when "
        "the site ran power-capped (its draw would have exceeded the cap); null otherwise.")
    uncapped_power_mw_peak: float | None = Field(
        default=None, description="Highest one-minute facility power the site would have "
        "drawn without its cap, MW; null when it ran uncapped.")


class CapCost(_Record):
    """What a binding power cap cost one tenant: the uncapped run against the capped one."""

    ttft_p99_ms_uncapped: float | None = Field(description="p99 TTFT without the cap, ms.")
    ttft_p99_ms: float | None = Field(description="p99 TTFT power-capped, ms.")
    itl_p99_ms_uncapped: float | None = Field(description="p99 ITL without the cap, ms.")
    itl_p99_ms: float | None = Field(description="p99 ITL power-capped, ms.")
    e2e_p99_ms_uncapped: float | None = Field(description="p99 E2E without the cap, ms.")
    e2e_p99_ms: float | None = Field(description="p99 E2E power-capped, ms.")
    goodput_rps_uncapped: float | None = Field(description="Goodput without the cap, "
                                               "requests/s.")
    goodput_rps: float | None = Field(description="Goodput power-capped, requests/s.")


class PowerCapSummary(_Record):
    """A run in which some site's power cap bound (capacitor.simulate.power_cap)."""

    text: str = Field(description="One line: which sites ran power-capped, at what GPU power "
                      "limit and step slowdown.")
    tenants: dict[str, CapCost] = Field(description="Per tenant, by name: the cap's cost.")


class ContractCost(_Record):
    """One contract: what it costs over the window, and where it stands in the window's
    month (:func:`capacitor.economics.contracts.standing`)."""

    window_cost_usd: float | None = Field(description="The contract's monthly fee spread over "
                                          "the month's seconds, times the window, USD "
                                          "(2 decimals).")
    month: str = Field(description="The month billed, 'YYYY-MM' (the window's month, or the "
                       "contract's first month when the window has none).")
    term_total_usd: float | None = Field(description="Every billed month of the term, ramp "
                                         "discounts applied, USD (2 decimals).")
    month_fee_usd: float | None = Field(description="The fee billed for month, its ramp "
                                        "discount applied (0 outside the term), USD "
                                        "(2 decimals).")
    month_ramp_discount: float | None = Field(description="Share of the full monthly price "
                                              "waived in month by the ramp, 0-1.")
    months_left: int = Field(description="Billed months from month (included) to the end of "
                             "the term.")
    notice_given: str = Field(description="The day notice is taken as given, 'YYYY-MM-DD': "
                              "the first of month (ASSUMPTION: a window names a month, not a "
                              "day).")
    earliest_exit: str = Field(description="The first day no longer billed with notice given "
                               "on notice_given, by either party (the same notice_days), "
                               "'YYYY-MM-DD': notice + notice_days, or the term's end if "
                               "sooner.")
    exit_cost_usd: float | None = Field(description="What is still billed from notice_given "
                                        "to earliest_exit (months prorated by day), USD "
                                        "(2 decimals): the lessee's cost of leaving, or the "
                                        "lessor's revenue still due if it gives notice.")
    gpus: int = Field(description="GPUs installed at the sites the contract pays for.")
    usd_per_gpu_hour: float | None = Field(description="month_fee_usd per GPU-hour of those "
                                           "GPUs over month's hours, USD; null with no GPUs.")


class UnitCosts(_Record):
    """A cost and the tokens it bought: completed requests' tokens (counted, scaled to the
    fleet)."""

    cost_usd: float | None = Field(description="Cost, USD (2 decimals).")
    input_tokens: float | None = Field(description="Prompt tokens of completed requests "
                                       "(1 decimal).")
    output_tokens: float | None = Field(description="Output tokens of completed requests "
                                        "(1 decimal).")
    usd_per_million_input_tokens: float | None = Field(
        description="cost_usd per million input_tokens, USD; null with no tokens.")
    usd_per_million_output_tokens: float | None = Field(
        description="cost_usd per million output_tokens, USD; null with no tokens.")
    usd_per_million_total_tokens: float | None = Field(
        description="cost_usd per million input_tokens + output_tokens, USD; null with no "
        "tokens.")


_MONTH_ESTIMATE = (
    "ESTIMATE over the window's month from the demand profile: the month's bill (contract fees "
    "for the month, GPU-hours at gpu_hour_usd for the month's hours, energy no contract "
    "includes at the window's mean power all month) over the window's completed tokens of each "
    "workload scaled by its month / window expected arrivals (capacitor.scenario.month_scale: "
    "a diurnal workload by its daily cosine; any other at its window's rate all month), "
    "assuming the month's requests complete as the window's did.")
_WINDOW = "Over the simulated window (the default scenario's is its peak hour)."


class CostBasis(_Record):
    """Unit costs of a deployment or a tier: over the month (an estimate) and over the window,
    side by side. A site's cost is spread over its installed GPUs, a deployment carries its
    GPUs' share, and a deployment's cost is split between tiers by their tokens (input +
    output) on it."""

    month_estimate: UnitCosts = Field(description=_MONTH_ESTIMATE)
    window: UnitCosts = Field(description=_WINDOW)


class EconomicsSummary(_Record):
    """What the window costs and what that comes to per unit."""

    window_cost_usd: float | None = Field(description="Contracts' share, plus GPU-hours at "
                                          "gpu_hour_usd of GPUs no contract covers, plus "
                                          "energy no includes_energy contract covers, USD "
                                          "(2 decimals).")
    contracts: dict[str, ContractCost] = Field(description="Per contract, by name.")
    usd_per_million_output_tokens: float | None = Field(
        description="window_cost_usd per million output tokens, USD; null with no tokens.")
    usd_per_gpu_hour_effective: float | None = Field(
        description="window_cost_usd per GPU-hour of the installed GPUs, USD; null with no "
        "GPUs.")
    energy_mwh: float | None = Field(description="Facility energy of all sites, MWh.")
    energy_cost_usd: float | None = Field(description="energy_mwh at energy_usd_per_mwh, USD "
                                          "(2 decimals), whether or not a contract includes "
                                          "it; null when no price is given.")
    month_estimate: UnitCosts = Field(description="The fleet's unit costs over the month. "
                                      + _MONTH_ESTIMATE)
    window: UnitCosts = Field(description="The fleet's unit costs. " + _WINDOW)
    deployments: dict[str, CostBasis] = Field(description="Unit costs per deployment, by "
                                              "name.")
    tiers: dict[str, CostBasis] = Field(description="Unit costs per tier, by tier number "
                                        "('0' is the most important).")


class Totals(_Record):
    """Fleet-wide totals over the window."""

    output_tokens: float | None = Field(description="Output tokens (scaled; 1 decimal).")
    requests: float | None = Field(description="Requests counted (scaled; 1 decimal).")


class Window(_Record):
    """The simulated window."""

    month: str | None = Field(description="Month whose rates and prices apply, 'YYYY-MM'; "
                              "null = the rates as written.")
    duration_s: float = Field(description="Measured window, s.")
    warmup_s: float = Field(description="Warm-up before it (simulated, not counted), s.")


class WorkflowStats(_Record):
    """The workflows of one type (workload) from one tenant whose first call was sent after
    the warm-up, scaled to the fleet; per-workflow figures are means over the completed
    ones (capacitor/simulate/workflows.py)."""

    workflows: float = Field(description="Workflows started (1 decimal).")
    completed: float = Field(description="Workflows whose every call completed (1 decimal).")
    completed_per_hour: float = Field(description="Completed workflows per hour of the "
                                      "window (1 decimal).")
    failed: dict[str, float] = Field(description="Failed workflows (a call got no answer, "
                                     "so nothing after it was sent) by the earliest such "
                                     "call's cause: throttled, shed, invalid, failed.")
    e2e_p50_s: float | None = Field(description="Median end-to-end time, first call's send "
                                    "to the last answer, s; null when none completed.")
    e2e_p90_s: float | None = Field(description="90th percentile end-to-end time, s.")
    e2e_p99_s: float | None = Field(description="99th percentile end-to-end time, s.")
    model_s: float | None = Field(description="Mean time the main chain's calls spent at "
                                  "the server (queueing, prefill, decode), s "
                                  "(= ttft_s + decode_s).")
    ttft_s: float | None = Field(description="Mean of the main chain's times to first "
                                 "token summed over its calls: queueing, then prefill, s "
                                 "(the engine does not record first scheduling, so "
                                 "queueing is not separated from prefill).")
    decode_s: float | None = Field(description="Mean of the main chain's first-to-last-token "
                                   "times summed over its calls, s.")
    tool_s: float | None = Field(description="Mean time in tool rounds, s.")
    think_s: float | None = Field(description="Mean human think time between turns, s.")
    wait_s: float | None = Field(description="Mean time waiting on subagents beyond the tool "
                                 "round, s (end-to-end = model + tool + think + wait).")
    calls: float | None = Field(description="Mean model calls per workflow.")
    input_tokens: float | None = Field(description="Mean input tokens per workflow.")
    cached_tokens: float | None = Field(description="Mean input tokens per workflow served "
                                        "from the prefix cache.")
    output_tokens: float | None = Field(description="Mean output tokens per workflow.")
    prefix_hit_rate: float | None = Field(description="Cached / input tokens of completed "
                                          "workflows.")
    usd_per_workflow: float | None = Field(
        description="Mean input + output tokens per completed workflow at its deployment's "
        "window cost per million tokens (economics.deployments.<d>.window), USD (4 "
        "decimals); null without a cost or tokens.")


class RunSummary(_Record):
    """The content of ``summary.json``."""

    notes: list[str] = Field(description="Caveats about this run's fidelity, one line each.")
    scenario: str = Field(description="Scenario name.")
    seed: int = Field(description="Random seed (same scenario and seed, same summary).")
    fidelity: Literal["exact", "sampled"] = Field(description="exact: every replica "
                                                  "simulated; sampled: a sample, scaled.")
    window: Window = Field(description="The window simulated.")
    verdict: Verdict = Field(description="Whether every tier's SLO holds.")
    tenants: dict[str, TenantSummary] = Field(description="Per tenant, by name.")
    deployments: dict[str, DeploymentSummary] = Field(description="Per deployment, by name.")
    sites: dict[str, SiteSummary] = Field(description="Per site, by name.")
    economics: EconomicsSummary = Field(description="Costs of the window.")
    totals: Totals = Field(description="Fleet-wide totals.")
    power_cap: PowerCapSummary | None = Field(
        default=None, description="What a binding power cap cost; null when every site ran "
        "uncapped.")

    workflows: dict[str, dict[str, WorkflowStats]] | None = Field(
        default=None, description="Per workflow workload (type), per tenant; absent when no "
        "workload is made of workflows.")

    def to_json(self) -> str:
        """``summary.json`` as written: sorted keys, 2-space indent, a final newline (no
        ``workflows`` key, run-wide or per tenant, when there are none)."""
        data = self.model_dump(mode="json")
        if data["workflows"] is None:
            del data["workflows"]
        for tenant in data["tenants"].values():
            if tenant["workflows"] is None:
                del tenant["workflows"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def summary_json_schema() -> dict[str, Any]:
    """JSON Schema of ``summary.json`` (``capacitor run --schema``)."""
    return RunSummary.model_json_schema()


__all__ = ["CapCost", "ContractCost", "CostBasis", "DeploymentSummary", "EconomicsSummary",
           "Miss", "Percentiles", "PowerCapSummary", "Refusals", "RunSummary", "SiteSummary",
           "TenantSummary", "TenantWorkflows", "Totals", "UnitCosts", "Verdict", "Window",
           "WorkflowStats", "summary_json_schema"]
