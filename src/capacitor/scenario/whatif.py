"""What-ifs of a scenario's runway (``what_if:``): events that change capacity or demand from
a month on, each of which ``capacitor plan`` walks month by month beside the base case
(:mod:`capacitor.planner.whatif` applies them; ``capacitor run`` does not: a run is one
hour of one month as the scenario stands).

Kinds (``kind:``):

- ``contract_exit``: notice is given on the first day of ``notice_month`` (by either party:
  the notice period is the same, :mod:`capacitor.economics.contracts`); the contract's
  capacity (its site's GPUs, or every site's for a contract without a site) leaves on
  :func:`capacitor.economics.contracts.earliest_exit` and its fee stops then;
- ``site_outage``: a share of a site's replicas is down for ``months`` months from
  ``start``;
- ``power_cap``: a site's ``power_cap_mw`` changes from ``start`` on;
- ``agentic_shift``: from ``start`` on, ``share_pct`` % of one workload's requests move to
  another workload (typically an agent deployment's);
- ``gpu_swap``: from ``start`` on, a deployment runs on another GPU type (same
  parallelism and GPU count, optionally another precision).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from capacitor.scenario.base import Month, Name, Strict, _upper


class _WhatIf(Strict):
    name: Name | None = Field(
        default=None, description="Name to select it with --what-if NAME and to label its "
        "runway (default: its kind and fields).")


class ContractExit(_WhatIf):
    """A contract ended with its notice period: its capacity leaves on a date."""

    kind: Literal["contract_exit"] = Field(description="What-if kind.")
    contract: str = Field(min_length=1, description="Name of the contract ended "
                          "(economics.contracts[].name).")
    notice_month: Month = Field(description="Month whose first day notice is given on "
                                "('YYYY-MM'); the capacity leaves notice_days later.")


class SiteOutage(_WhatIf):
    """A share of a site's replicas down for whole months."""

    kind: Literal["site_outage"] = Field(description="What-if kind.")
    site: str = Field(min_length=1, description="Name of the site (sites[].name).")
    start: Month = Field(description="First month of the outage ('YYYY-MM').")
    months: int = Field(default=1, ge=1, description="Months the outage lasts.")
    lost_share: float = Field(default=1.0, gt=0, le=1, description="Share of the site's "
                              "replicas down, 0-1 (1: the whole site).")


class PowerCapChange(_WhatIf):
    """A site's power cap changes from a month on."""

    kind: Literal["power_cap"] = Field(description="What-if kind.")
    site: str = Field(min_length=1, description="Name of the site (sites[].name).")
    power_cap_mw: float = Field(gt=0, description="The site's new power cap, MW (facility "
                                "power, as sites[].power_cap_mw).")
    start: Month = Field(description="First month under the new cap ('YYYY-MM').")


class AgenticShift(_WhatIf):
    """A share of one workload's requests moves to another workload from a month on."""

    kind: Literal["agentic_shift"] = Field(description="What-if kind.")
    from_workload: str = Field(min_length=1, description="Workload whose requests move "
                               "(workloads[].name).")
    to_workload: str = Field(min_length=1, description="Workload that receives them "
                             "(workloads[].name), e.g. an agent deployment's.")
    share_pct: float = Field(gt=0, le=100, description="Share of from_workload's requests "
                             "that move, %.")
    start: Month = Field(description="First month of the shift ('YYYY-MM').")


class GpuSwap(_WhatIf):
    """A deployment moves to another GPU generation from a month on."""

    kind: Literal["gpu_swap"] = Field(description="What-if kind.")
    deployment: str = Field(min_length=1, description="Deployment swapped "
                            "(deployments[].name).")
    gpu: str = Field(min_length=1, description="GPU id it runs on after the swap (as many "
                     "GPUs as before, same tp/pp/ep).")
    precision: Annotated[Literal["FP16", "BF16", "FP8", "FP4"] | None,
                         BeforeValidator(_upper)] = Field(
        default=None, description="Precision after the swap (default: unchanged).")
    start: Month = Field(description="First month on the new GPU ('YYYY-MM').")


WhatIf = Annotated[ContractExit | SiteOutage | PowerCapChange | AgenticShift | GpuSwap,
                   Field(discriminator="kind")]
WHAT_IF_KINDS = ("contract_exit", "site_outage", "power_cap", "agentic_shift", "gpu_swap")


def label(what_if: _WhatIf) -> str:
    """The what-if's name, or its kind and fields (``site_outage site=s start=2026-03``)."""
    if what_if.name is not None:
        return what_if.name
    fields = what_if.model_dump(exclude={"name", "kind"}, exclude_defaults=True)
    return " ".join([what_if.kind, *(f"{k}={v}" for k, v in fields.items())])  # type: ignore


def check_what_ifs(scenario: Any) -> list[str]:
    """Cross-references of ``scenario.what_if`` (contracts, sites, workloads, deployments,
    GPU ids), one line per problem naming the field, the value and the valid ones; GPU ids
    are made canonical in place."""
    from capacitor.catalog.hardware import get_gpu
    from capacitor.errors import CapacitorError

    names = {
        "contract": [c.name for c in scenario.economics.contracts],
        "site": [s.name for s in scenario.sites],
        "from_workload": [w.name for w in scenario.workloads],
        "to_workload": [w.name for w in scenario.workloads],
        "deployment": [d.name for d in scenario.deployments],
    }
    problems, seen = [], set()
    for i, w in enumerate(scenario.what_if):
        for field, valid in names.items():
            value = getattr(w, field, None)
            if value is not None and value not in valid:
                problems.append(f"what_if[{i}].{field} = {value!r}: no such name; valid: "
                                + (", ".join(valid) or "none in this scenario"))
        if isinstance(w, AgenticShift) and w.from_workload == w.to_workload:
            problems.append(f"what_if[{i}].to_workload = {w.to_workload!r}: the same as "
                            "from_workload; requests must move to another workload")
        if isinstance(w, GpuSwap):
            try:
                w.gpu = get_gpu(w.gpu).name
            except CapacitorError as err:
                problems.append(f"what_if[{i}].gpu = {w.gpu!r}: {err}")
        if w.name is not None:
            if w.name in seen:
                problems.append(f"what_if[{i}].name = {w.name!r}: duplicate; names must be "
                                "unique")
            seen.add(w.name)
    return problems


__all__ = ["WHAT_IF_KINDS", "AgenticShift", "ContractExit", "GpuSwap", "PowerCapChange",
           "SiteOutage", "WhatIf", "check_what_ifs", "label"]
