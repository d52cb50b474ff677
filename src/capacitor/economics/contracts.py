"""Capacity contracts: a monthly price over a term, ramp discounts, and a notice period.

Model. A :class:`Contract` bills ``price_usd_per_month`` for every calendar month from
``start`` up to ``end`` (both ``'YYYY-MM'``; ``end`` is the first month *not* billed, as in
the scenario file: ``start='2026-05', end='2029-05'`` bills the 36 months May 2026 through
April 2029), less ``ramp_discounts[month]`` (a fraction of the price,
0-1) in the months listed, e.g. reduced fees while a site ramps up. Outside the term it bills
nothing.

Exit. Notice given on day ``D`` takes effect ``notice_days`` later: the contract bills through
the day before ``D + notice_days`` and stops (or at the end of the term, if that is sooner).
Partial months are prorated by calendar day (a day of month ``m`` costs
``monthly_cost(m) / days_in(m)``). Real contracts may instead end on a month boundary or
carry an early-termination fee; none of the public statements about Colossus say which, so
this is the simplest reading of "N days' notice".

Example (the Colossus 1 figures, ``../shared/data/fleet/fleet_facts.csv`` and the press):
$1.25B a month from May 2026 to May 2029 with reduced fees in May and June 2026 and 90 days'
notice; the size of the ramp discount is not public and must be stated as an assumption.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real

from capacitor.errors import ConfigError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_index(month: str, name: str = "month") -> int:
    """``'YYYY-MM'`` as a month count (``year * 12 + month - 1``); ConfigError otherwise."""
    m = _MONTH.match(month.strip()) if isinstance(month, str) else None
    if m is None or not 1 <= int(m.group(2)) <= 12:
        raise ConfigError(f"bad {name}={month!r}; expected a month 'YYYY-MM'")
    return int(m.group(1)) * 12 + int(m.group(2)) - 1


def month_name(index: int) -> str:
    """The inverse of :func:`month_index`."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def days_in_month(month: str) -> int:
    """Calendar days in ``'YYYY-MM'``."""
    i = month_index(month)
    return calendar.monthrange(i // 12, i % 12 + 1)[1]


def _date(value: object, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"bad {name}={value!r}; expected a date 'YYYY-MM-DD'")


@dataclass(frozen=True)
class Contract:
    """A capacity contract (see the module docstring).

    Attributes:
        name: label.
        price_usd_per_month: full monthly fee, USD.
        start: first billed month, ``'YYYY-MM'``.
        end: the month the contract ends, ``'YYYY-MM'``: the first month not billed
            (exclusive, like the scenario's ``economics.contracts[].end``).
        ramp_discounts: ``{'YYYY-MM': fraction}``, the share of the fee waived that month.
        notice_days: days between notice and the end of billing.
    """

    name: str
    price_usd_per_month: float
    start: str
    end: str
    ramp_discounts: Mapping[str, float] = field(default_factory=dict)
    notice_days: int = 0

    def __post_init__(self) -> None:
        where = f"contract {self.name!r}"
        price = self.price_usd_per_month
        if isinstance(price, bool) or not isinstance(price, Real) or not math.isfinite(price) \
                or price < 0:
            raise ConfigError(f"{where}: bad price_usd_per_month={price!r}; expected >= 0")
        first = month_index(self.start, f"{where} start")
        last = month_index(self.end, f"{where} end")
        if last <= first:
            raise ConfigError(f"{where}: bad end={self.end!r}; expected a month after start="
                              f"{self.start!r} (end is exclusive)")
        if not isinstance(self.ramp_discounts, Mapping):
            raise ConfigError(f"{where}: bad ramp_discounts={self.ramp_discounts!r}; expected "
                              "{'YYYY-MM': fraction}")
        for month, frac in self.ramp_discounts.items():
            i = month_index(month, f"{where} ramp_discounts key")
            if not first <= i < last:
                raise ConfigError(f"{where}: bad ramp_discounts month {month!r}; expected "
                                  f"within the term [{self.start}, {self.end})")
            if isinstance(frac, bool) or not isinstance(frac, Real) or not 0 <= frac <= 1:
                raise ConfigError(f"{where}: bad ramp_discounts[{month!r}]={frac!r}; expected "
                                  "a fraction in [0, 1]")
        days = self.notice_days
        if isinstance(days, bool) or not isinstance(days, Integral) or days < 0:
            raise ConfigError(f"{where}: bad notice_days={days!r}; expected an integer >= 0")

    @property
    def months(self) -> int:
        """Billed months in the full term."""
        return month_index(self.end) - month_index(self.start)

    @property
    def end_date(self) -> dt.date:
        """The first day after the term, 1 ``end`` (billing stops here at the latest)."""
        i = month_index(self.end)
        return dt.date(i // 12, i % 12 + 1, 1)


def in_term(contract: Contract, month: str) -> bool:
    """Whether ``month`` (``'YYYY-MM'``) is billed: from ``start`` up to, not including,
    ``end``."""
    return month_index(contract.start) <= month_index(month) < month_index(contract.end)


def _discount(contract: Contract, index: int) -> float:
    for key, frac in contract.ramp_discounts.items():
        if month_index(key) == index:
            return float(frac)
    return 0.0


def _monthly(contract: Contract, index: int) -> float:
    if not month_index(contract.start) <= index < month_index(contract.end):
        return 0.0
    return float(contract.price_usd_per_month) * (1.0 - _discount(contract, index))


def monthly_cost(contract: Contract, month: str) -> float:
    """USD billed for ``month`` (``'YYYY-MM'``): the price less any ramp discount, or 0 outside
    the term."""
    return _monthly(contract, month_index(month))


def total_cost(contract: Contract, from_month: str, to_month: str) -> float:
    """USD billed over the months ``from_month`` through ``to_month`` (both included)."""
    a = month_index(from_month, "from_month")
    b = month_index(to_month, "to_month")
    if b < a:
        raise ConfigError(f"bad to_month={to_month!r}; expected a month >= from_month="
                          f"{from_month!r}")
    return sum(_monthly(contract, i) for i in range(a, b + 1))


def cost_between_usd(contract: Contract, from_date: object, to_date: object) -> float:
    """USD billed for the days in ``[from_date, to_date)``, months prorated by day."""
    a = _date(from_date, "from_date")
    b = _date(to_date, "to_date")
    if b <= a:
        return 0.0
    total = 0.0
    day = a
    while day < b:
        i = day.year * 12 + day.month - 1
        n_days = calendar.monthrange(day.year, day.month)[1]
        nxt = i + 1
        month_end = dt.date(nxt // 12, nxt % 12 + 1, 1)
        stop = min(month_end, b)
        total += _monthly(contract, i) * (stop - day).days / n_days
        day = stop
    return total


def earliest_exit(contract: Contract, notice_given: object) -> dt.date:
    """The first day no longer billed when notice is given on ``notice_given``
    (``'YYYY-MM-DD'`` or a date): ``notice_given + notice_days``, or the end of the term if
    that comes first."""
    notice = _date(notice_given, "notice_given")
    return min(notice + dt.timedelta(days=int(contract.notice_days)), contract.end_date)


def exit_cost_usd(contract: Contract, notice_given: object) -> float:
    """USD still owed from the notice day (included) until :func:`earliest_exit`."""
    notice = _date(notice_given, "notice_given")
    return cost_between_usd(contract, notice, earliest_exit(contract, notice))


def ramp_discount(contract: Contract, month: str) -> float:
    """The share of the fee waived in ``month`` (0 when none is listed, or outside the
    term)."""
    i = month_index(month)
    return _discount(contract, i) if in_term(contract, month) else 0.0


def months_left(contract: Contract, month: str) -> int:
    """Billed months from ``month`` (included) to the end of the term; the whole term
    before it starts, 0 after it ends."""
    i = month_index(month)
    return max(month_index(contract.end) - max(i, month_index(contract.start)), 0)


@dataclass(frozen=True)
class Standing:
    """A contract as it stands in one month (:func:`standing`)."""

    month: str
    term_total_usd: float
    month_fee_usd: float
    ramp_discount: float
    months_left: int
    notice_given: dt.date
    earliest_exit: dt.date
    exit_cost_usd: float


def standing(contract: Contract, month: str) -> Standing:
    """Where ``contract`` stands in ``month``: the whole term's total (every month's fee, ramp
    discounts applied), the month's fee and discount, the billed months left, and the exit if
    notice is given on the month's first day (ASSUMPTION: a scenario's window names a month,
    not a day). The notice period is the same whichever party gives notice, so so are the
    exit date and what is billed until it: the lessee's cost of leaving, the lessor's
    revenue still due."""
    last = month_name(month_index(contract.end) - 1)
    notice = dt.date.fromisoformat(f"{month}-01")
    return Standing(
        month=month, term_total_usd=total_cost(contract, contract.start, last),
        month_fee_usd=monthly_cost(contract, month),
        ramp_discount=ramp_discount(contract, month),
        months_left=months_left(contract, month), notice_given=notice,
        earliest_exit=earliest_exit(contract, notice),
        exit_cost_usd=exit_cost_usd(contract, notice))


__all__ = [
    "Contract",
    "Standing",
    "cost_between_usd",
    "days_in_month",
    "earliest_exit",
    "exit_cost_usd",
    "in_term",
    "month_index",
    "month_name",
    "monthly_cost",
    "months_left",
    "ramp_discount",
    "standing",
    "total_cost",
]
