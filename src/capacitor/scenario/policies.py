"""Scenario models for who is served and on what terms: tenants (tiers, SLOs, rate limits,
quotas), the routing and admission policies in front of each deployment, and the economics
(contracts, GPU-hour and energy prices). Part of :mod:`capacitor.scenario.models`, which
re-exports them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from capacitor.economics.contracts import Contract as EconomicsContract
from capacitor.errors import ConfigError
from capacitor.scenario.base import Month, Name, Strict, _month

# ---- tenants ---------------------------------------------------------------------------------


class WorkflowSLO(Strict):
    """Targets for a tenant's agentic workflows (workloads with ``lengths.kind: workflow``),
    judged over all of the tenant's counted workflows together, as its request targets are
    over all its requests; a None target is not judged. A tenant with workflow targets must
    send a workflow workload."""

    e2e_p90_s: float | None = Field(
        default=None, gt=0, description="90th-percentile end-to-end time of the tenant's "
        "completed workflows (arrival to the last answer), s."
    )
    e2e_p99_s: float | None = Field(
        default=None, gt=0, description="99th-percentile end-to-end time of the tenant's "
        "completed workflows, s."
    )
    max_failed_pct: float | None = Field(
        default=None, ge=0, le=100, description="Share of the tenant's workflows that may "
        "fail (a call throttled, shed, invalid or lost to a failed replica, so the workflow "
        "never completes), % of the workflows started; more counts as an SLO miss."
    )


class SLO(Strict):
    """Service-level objectives of a tenant; a None target is not judged."""

    ttft_p99_ms: float | None = Field(
        default=None, gt=0, description="99th-percentile time to first token, ms."
    )
    itl_p99_ms: float | None = Field(
        default=None, gt=0, description="99th-percentile inter-token latency, ms."
    )
    e2e_p99_ms: float | None = Field(
        default=None, gt=0, description="99th-percentile end-to-end latency, ms."
    )
    max_throttled_pct: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Share of the tenant's arrivals that may be throttled or rejected, %; "
        "more counts as an SLO miss (a verdict cannot be bought by shedding load).",
    )
    workflow: WorkflowSLO | None = Field(
        default=None, description="Targets for the tenant's agentic workflows (end-to-end "
        "percentiles, failed share); None = workflows are judged only through their calls' "
        "request targets above."
    )

    @model_serializer(mode="wrap")
    def _drop_unset_workflow(self, handler):
        # NOTE: without workflow targets the dump is what it was before they existed, so
        # resolved scenarios and summary.json stay byte-identical
        data = handler(self)
        if isinstance(data, dict) and data.get("workflow") is None:
            data.pop("workflow", None)
        return data


class RateLimits(Strict):
    """Per-tenant rate limits, fleet-wide (token buckets holding admission.bucket_depth_s of
    the rate); None = unlimited. A tenant served by several deployments has its limits split
    between them in proportion to its expected demand on each."""

    requests_per_min: float | None = Field(
        default=None, gt=0, description="Requests admitted per minute."
    )
    tokens_per_min: float | None = Field(
        default=None, gt=0, description="Input + output tokens admitted per minute."
    )
    max_concurrent: int | None = Field(
        default=None, ge=1, description="Requests in flight at once."
    )


class Quotas(Strict):
    """Capacity and volume quotas of a tenant; None = no quota."""

    guaranteed_share_pct: float | None = Field(
        default=None, ge=0, le=100, description="Share of each deployment's running-sequence "
        "slots (replicas x max_num_seqs) reserved for this tenant where it has a workload, %: "
        "the other tenants' requests in flight there are capped at the rest."
    )
    max_share_pct: float | None = Field(
        default=None, gt=0, le=100, description="Largest share of each deployment's "
        "running-sequence slots (replicas x max_num_seqs) this tenant may hold, %: a cap on its "
        "requests in flight (running + waiting) there; requests over it are shed."
    )
    tokens_per_month: float | None = Field(
        default=None, gt=0, description="Monthly input + output token quota; the simulated "
        "span (warm-up included) gets the pro-rata allowance (quota x span seconds / seconds "
        "in the window's month), beyond which requests are throttled."
    )


class Tenant(Strict):
    """A customer class with a priority tier, SLOs, limits and quotas."""

    name: Name = Field(description="Unique tenant name, referenced by workloads.")
    tier: int = Field(ge=0, description="Priority: lower is more important (0 = top).")
    slo: SLO = Field(default_factory=SLO, description="Latency and throttling targets.")
    rate_limits: RateLimits = Field(
        default_factory=RateLimits, description="Rate limits (enforced unless admission "
        "policy is none)."
    )
    quotas: Quotas = Field(default_factory=Quotas, description="Capacity and volume quotas.")



# ---- policies --------------------------------------------------------------------------------


class Routing(Strict):
    """How a deployment's router picks a replica."""

    policy: Literal[
        "round_robin", "least_outstanding_tokens", "power_of_two", "session_affinity",
        "prefix_affinity",
    ] = Field(
        default="round_robin",
        description="round_robin; least_outstanding_tokens (fewest queued + running tokens); "
        "power_of_two (the less loaded of two random replicas); session_affinity (a session "
        "always to one replica, every round alike); prefix_affinity (requests whose prompts "
        "start with the same shared prefix, a system prompt or an earlier request, to one "
        "replica, across sessions).",
    )


class Admission(Strict):
    """Admission control in front of each deployment; the policies are cumulative."""

    policy: Literal["none", "token_bucket", "queue_length", "predicted_ttft"] = Field(
        default="token_bucket",
        description="none: admit everything (tenant limits and max_queue ignored); "
        "token_bucket: enforce each tenant's rate_limits and quotas, and max_queue when set; "
        "queue_length: token_bucket with max_queue required; predicted_ttft: token_bucket + "
        "reject when the predicted TTFT exceeds the target (max_queue not allowed).",
    )
    max_queue: int | None = Field(
        default=None, ge=0, description="Waiting requests per replica beyond which a new "
        "request is rejected, under token_bucket and queue_length (required for queue_length; "
        "not allowed with predicted_ttft; ignored by none); None or 0 = unbounded."
    )
    max_predicted_ttft_ms: float | None = Field(
        default=None, gt=0, description="predicted_ttft rejects above this, ms; None = the "
        "tenants' slo.ttft_p99_ms, which must then be one value for every tenant with a "
        "workload (one limit applies to all requests)."
    )
    bucket_depth_s: float = Field(
        default=60.0, gt=0, description="Token-bucket depth, seconds of the tenant's rate "
        "(60 = one minute's allowance may arrive at once)."
    )
    preempt_lower_tiers: bool = Field(
        default=False, description="When a deployment is saturated, a request of a more "
        "important tier may preempt (recompute later) running requests of less important "
        "tiers."
    )


# ---- economics -------------------------------------------------------------------------------


class Contract(Strict):
    """A capacity contract as the scenario file states it: a monthly price over a term.

    This is the edge model (parsing, YAML paths in errors); :meth:`terms` gives the domain
    :class:`capacitor.economics.contracts.Contract` that the costs are computed from. Both
    read ``end`` the same way: the first month not billed.
    """
    name: Name = Field(description="Contract name.")
    site: str | None = Field(
        default=None, description="Site the contract pays for; None = the whole fleet."
    )
    price_usd_per_month: float = Field(gt=0, description="Full monthly price, USD.")
    start: Month = Field(description="First billed month, 'YYYY-MM'.")
    end: Month = Field(description="Month the contract ends, 'YYYY-MM' (exclusive).")
    ramp_discounts: dict[str, float] = Field(
        default_factory=dict, description="'YYYY-MM' -> fraction of the price waived that "
        "month (0-1) during the ramp."
    )
    notice_days: int = Field(default=0, ge=0, description="Notice period to terminate, days.")
    includes_energy: bool = Field(
        default=True, description="The price covers the electricity of the sites the "
        "contract pays for (their energy cost is then reported, not added); false = their "
        "energy is added to the cost at economics.energy_usd_per_mwh."
    )

    @model_validator(mode="after")
    def _term(self) -> Contract:
        for month in self.ramp_discounts:
            _month(month)
        try:  # the term's rules (end after start and exclusive, ramp months inside) live there
            self.terms()
        except ConfigError as err:
            raise ValueError(str(err).removeprefix(f"contract {self.name!r}: ")) from None
        return self

    @property
    def term_months(self) -> int:
        """Billed months in the term."""
        return self.terms().months

    def terms(self) -> EconomicsContract:
        """The contract's billing terms as the economics layer computes with them."""
        return EconomicsContract(self.name, self.price_usd_per_month, self.start, self.end,
                                 dict(self.ramp_discounts), self.notice_days)


class Economics(Strict):
    """What the fleet costs: contracts and/or GPU-hour prices, plus energy."""

    contracts: list[Contract] = Field(
        default_factory=list, description="Capacity contracts."
    )
    gpu_hour_usd: dict[str, float] = Field(
        default_factory=dict, description="GPU id -> price per GPU-hour, USD, for GPUs not "
        "under a contract: those at sites no contract in its term names (a contract without "
        "a site covers every site)."
    )
    energy_usd_per_mwh: float | None = Field(
        default=None, ge=0, description="Electricity price, USD per MWh of facility energy: "
        "added to the cost for every site that no contract with includes_energy pays for "
        "(GPU-hour prices are taken to exclude electricity); None = energy is not priced."
    )

    @field_validator("gpu_hour_usd")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        for gpu, price in value.items():
            if not price >= 0:
                raise ValueError(f"gpu_hour_usd[{gpu}] = {price!r}: must be >= 0 USD")
        return value


__all__ = ["SLO", "Admission", "Contract", "Economics", "Quotas", "RateLimits", "Routing",
           "Tenant", "WorkflowSLO"]
