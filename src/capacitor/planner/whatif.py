"""What-ifs on the runway: a scenario's ``what_if:`` entries (:mod:`capacitor.scenario.whatif`)
turned into month-by-month changes of the deployments' replicas, the demand and the fees
(:class:`Effects`), which :func:`capacitor.planner.runway.runway` walks beside the base case.

Each what-if is walked alone against the scenario as it stands (they are alternatives, not
a sequence). Per month and deployment, in this order:

- ``contract_exit``: notice on the first day of ``notice_month`` ends the contract on
  :func:`capacitor.economics.contracts.earliest_exit` (the first day not billed); from the
  month holding that day on, the deployments at the contract's site (every site for a
  contract without one) have no replicas (ASSUMPTION: the runway judges a month by its
  peak, which may fall on any day, so a month the capacity leaves in counts without it).
  The fee stops that day: the month is billed by day
  (:func:`capacitor.economics.contracts.cost_between_usd`);
- ``site_outage``: ``floor(replicas x (1 - lost_share))`` replicas at the site in the
  months ``start`` .. ``start + months - 1``;
- ``power_cap``: from ``start`` on, when the site's replicas (those left by the above) at
  TDP draw more than ``power_cap_mw`` (facility MW, as :mod:`capacitor.planner.search`
  counts them), every deployment there keeps ``floor(replicas x cap / draw)`` replicas
  (ASSUMPTION: the rest powered down, as the planner's search leaves unused GPUs off,
  rather than every GPU power-limited);
- ``agentic_shift``: from ``start`` on, ``share_pct`` % of ``from_workload``'s requests
  (peak and mean) are ``to_workload``'s instead, with its lengths (ASSUMPTION: the two
  workloads peak at the same hour, so the moved peak adds to the receiving one's);
- ``gpu_swap``: from ``start`` on, the deployment's replicas are those of its shape on
  ``gpu`` (and ``precision``), as many GPUs as before
  (``floor(replicas x gpus_per_replica / new gpus_per_replica)``), with that shape's own
  goodput capacity, down share, power and price.

GPUs to add are then counted against the replicas left each month, so an exit or outage
shows what it takes to replace the lost capacity.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from capacitor.economics.contracts import cost_between_usd, earliest_exit, month_index
from capacitor.errors import PlanError
from capacitor.planner.runway import Shape


def _first_day(index: int) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, 1)


@dataclass
class Effects:
    """One what-if's changes to a runway (see the module docstring)."""

    scenario: Any
    what_if: Any
    base: Mapping[str, Shape]
    swapped: Shape | None = None  # gpu_swap: the deployment's shape after the swap

    def exit_index(self) -> int | None:
        """contract_exit: index (month_index) of the month holding the exit day."""
        w = self.what_if
        if w.kind != "contract_exit":
            return None
        c = self._contract().terms()
        day = earliest_exit(c, f"{w.notice_month}-01")
        return day.year * 12 + day.month - 1

    def _contract(self) -> Any:
        return next(c for c in self.scenario.economics.contracts
                    if c.name == self.what_if.contract)

    def shapes(self, months: list[str]) -> dict[str, list[Shape]]:
        """Per deployment, its shape in each month (``replicas``: those in service)."""
        w = self.what_if
        out: dict[str, list[Shape]] = {}
        for name, s in self.base.items():
            rows = []
            for m in months:
                i = month_index(m)
                cur = s
                if w.kind == "gpu_swap" and name == w.deployment \
                        and i >= month_index(w.start) and self.swapped is not None:
                    cur = self.swapped
                replicas = cur.replicas
                if w.kind == "contract_exit" and i >= self.exit_index() and \
                        self._contract().site in (None, s.site):
                    replicas = 0
                if w.kind == "site_outage" and w.site == s.site and \
                        month_index(w.start) <= i < month_index(w.start) + w.months:
                    replicas = math.floor(replicas * (1.0 - w.lost_share) + 1e-9)
                rows.append(replace(cur, replicas=replicas))
            out[name] = rows
        if w.kind == "power_cap":
            for k, m in enumerate(months):
                if month_index(m) < month_index(w.start):
                    continue
                here = [n for n, s in self.base.items() if s.site == w.site]
                draw = sum(out[n][k].replicas * out[n][k].gpus_per_replica
                           * out[n][k].mw_per_gpu for n in here)
                if draw > w.power_cap_mw:
                    for n in here:
                        s = out[n][k]
                        out[n][k] = replace(s, replicas=math.floor(
                            s.replicas * w.power_cap_mw / draw + 1e-9))
        return out

    def demand(self, months: list[str], rates: dict[str, list[float]]
               ) -> dict[str, list[float]]:
        """Per workload, its requests/s each month after an ``agentic_shift``."""
        w = self.what_if
        if w.kind != "agentic_shift":
            return rates
        out = {k: list(v) for k, v in rates.items()}
        for i, m in enumerate(months):
            if month_index(m) >= month_index(w.start):
                moved = out[w.from_workload][i] * w.share_pct / 100.0
                out[w.from_workload][i] -= moved
                out[w.to_workload][i] += moved
        return out

    def fees(self, months: list[str]) -> list[float]:
        """The contracts' fees each month; a contract ended bills by day up to its exit."""
        from capacitor.economics.contracts import monthly_cost

        ended = self._contract().name if self.what_if.kind == "contract_exit" else None
        stop = None
        if ended is not None:
            c = self._contract().terms()
            stop = earliest_exit(c, f"{self.what_if.notice_month}-01")
        out = []
        for m in months:
            total = 0.0
            for spec in self.scenario.economics.contracts:
                c = spec.terms()
                if spec.name == ended:
                    i = month_index(m)
                    total += cost_between_usd(c, _first_day(i), min(_first_day(i + 1), stop))
                else:
                    total += monthly_cost(c, m)
            out.append(total)
        return out


def select(scenario: Any, items: list[str]) -> list[Any]:
    """The what-ifs to walk: those of ``scenario.what_if`` named by ``items`` (all of them
    when ``items`` is empty), and inline ones ``KIND:FIELD=VALUE,FIELD=VALUE`` (checked as a
    ``what_if:`` entry; PlanError naming the item, its field and what is valid)."""
    from capacitor.scenario.whatif import WHAT_IF_KINDS

    if not items:
        return list(scenario.what_if)
    named = {w.name: w for w in scenario.what_if if w.name is not None}
    out = []
    for item in items:
        if item in named:
            out.append(named[item])
            continue
        kind, sep, rest = item.partition(":")
        if not sep:
            have = ", ".join(named) or "none in this scenario"
            raise PlanError(f"--what-if {item!r}: no what-if of that name (the scenario's "
                            f"what_if names: {have}), nor KIND:FIELD=VALUE,... with KIND one "
                            f"of {', '.join(WHAT_IF_KINDS)}")
        out.append(_inline(scenario, item, kind.strip(), rest))
    return out


def _models() -> tuple[Any, ...]:
    from capacitor.scenario.whatif import (
        AgenticShift,
        ContractExit,
        GpuSwap,
        PowerCapChange,
        SiteOutage,
    )

    return (ContractExit, SiteOutage, PowerCapChange, AgenticShift, GpuSwap)


def _inline(scenario: Any, item: str, kind: str, rest: str) -> Any:
    import yaml
    from pydantic import BaseModel, ValidationError

    from capacitor.scenario.messages import pydantic_problems
    from capacitor.scenario.whatif import WhatIf, check_what_ifs

    class _One(BaseModel):
        what_if: list[WhatIf]

    fields: dict[str, Any] = {"kind": kind}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise PlanError(f"--what-if {item!r}: {part!r} is not FIELD=VALUE")
        text = value.strip()
        # a month stays a string ('2026-09'); numbers and words as YAML reads them
        fields[key.strip()] = text if re.fullmatch(r"\d{4}-\d{2}", text) \
            else yaml.safe_load(text)
    data = {"what_if": [fields]}
    try:
        what_if = _One.model_validate(data).what_if[0]
    except ValidationError as err:
        model = next((m for m in _models() if m.model_fields["kind"].annotation.__args__[0]
                      == kind), None)
        valid = f"; valid fields of {kind}: " + ", ".join(
            f for f in model.model_fields if f != "kind") if model else ""
        raise PlanError(*(f"--what-if {item!r}: " + line.replace("what_if[0].", "")
                          + (valid if "unknown key" in line else "")
                          for line in pydantic_problems(err, data))) from None
    probe = scenario.model_copy(update={"what_if": [what_if]})
    problems = check_what_ifs(probe)
    if problems:
        raise PlanError(*(f"--what-if {item!r}: " + p.replace("what_if[0].", "")
                          for p in problems))
    return probe.what_if[0]


def effects(scenario: Any, what_if: Any, base: Mapping[str, Shape],
            swap_shape: Callable[[Any], Shape | None]) -> Effects:
    """The :class:`Effects` of ``what_if``; ``swap_shape(what_if)`` gives a gpu_swap's
    deployment shape after the swap (its capacity searched as any shape's)."""
    swapped = swap_shape(what_if) if what_if.kind == "gpu_swap" else None
    if what_if.kind == "gpu_swap" and what_if.deployment not in base:
        raise PlanError(f"what-if gpu_swap: deployment {what_if.deployment!r} serves no "
                        "workload; nothing to swap")
    return Effects(scenario=scenario, what_if=what_if, base=base, swapped=swapped)


__all__ = ["Effects", "effects", "select"]
