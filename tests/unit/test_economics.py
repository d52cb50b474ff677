"""Contracts and unit costs (economics/contracts.py, costs.py)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from capacitor.economics import contracts as C
from capacitor.economics import costs
from capacitor.errors import ConfigError

B = 1e9


@pytest.fixture
def colossus() -> C.Contract:
    # $1.25B a month from May 2026 to May 2029 (end exclusive: 36 billed months, the last
    # April 2029); ramp discounts are an assumption here
    return C.Contract("colossus-1", 1.25 * B, "2026-05", "2029-05",
                      {"2026-05": 0.5, "2026-06": 0.25}, notice_days=90)


def test_monthly_cost_discounts_ramp_months(colossus: C.Contract) -> None:
    assert C.monthly_cost(colossus, "2026-04") == 0.0  # before the term
    assert C.monthly_cost(colossus, "2026-05") == pytest.approx(0.625 * B)  # 50 % off
    assert C.monthly_cost(colossus, "2026-06") == pytest.approx(0.9375 * B)  # 25 % off
    assert C.monthly_cost(colossus, "2026-07") == pytest.approx(1.25 * B)
    assert C.monthly_cost(colossus, "2029-04") == pytest.approx(1.25 * B)  # last billed month
    assert C.monthly_cost(colossus, "2029-05") == 0.0  # end is exclusive
    assert colossus.months == 36


def test_total_cost(colossus: C.Contract) -> None:
    # May-Dec 2026: 0.625 + 0.9375 + 6 x 1.25 = 9.0625 B
    assert C.total_cost(colossus, "2026-05", "2026-12") == pytest.approx(9.0625 * B)
    # whole term: 36 x 1.25 - 0.625 - 0.3125 = 44.0625 B; extra months outside cost nothing
    assert C.total_cost(colossus, "2025-01", "2030-12") == pytest.approx(44.0625 * B)
    with pytest.raises(ConfigError, match="to_month"):
        C.total_cost(colossus, "2027-01", "2026-01")


def test_earliest_exit_and_notice_math(colossus: C.Contract) -> None:
    # notice on 15 July 2026 + 90 days = 13 October 2026
    assert C.earliest_exit(colossus, "2026-07-15") == dt.date(2026, 10, 13)
    # still owed: 17/31 of July, August, September, 12/31 of October
    assert C.exit_cost_usd(colossus, "2026-07-15") == pytest.approx(1.25 * B * (2 + 29 / 31))
    # notice near the end: the term ends first (billing stops 1 May 2029, the end month)
    assert C.earliest_exit(colossus, dt.date(2029, 4, 1)) == dt.date(2029, 5, 1)
    assert C.exit_cost_usd(colossus, "2029-04-01") == pytest.approx(1.25 * B)


def test_exit_inside_a_ramp_month() -> None:
    c = C.Contract("c", 3100.0, "2026-05", "2026-12", {"2026-05": 0.5}, notice_days=30)
    assert C.earliest_exit(c, "2026-05-01") == dt.date(2026, 5, 31)
    assert C.exit_cost_usd(c, "2026-05-01") == pytest.approx(30 / 31 * 1550.0)
    assert C.cost_between_usd(c, "2026-04-20", "2026-05-02") == pytest.approx(1550.0 / 31)
    no_notice = C.Contract("c", 3100.0, "2026-05", "2026-12")
    assert C.exit_cost_usd(no_notice, "2026-06-10") == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"start": "2026-13"}, "start"),
        ({"end": "May 2029"}, "end"),
        ({"end": "2026-01"}, "end"),
        ({"end": "2026-05"}, "end"),  # == start: an empty term (end is exclusive)
        ({"price_usd_per_month": -1.0}, "price_usd_per_month"),
        ({"ramp_discounts": {"2026-05": 1.5}}, "ramp_discounts"),
        ({"ramp_discounts": {"2031-01": 0.5}}, "ramp_discounts"),
        ({"ramp_discounts": {"2029-05": 0.5}}, "ramp_discounts"),  # the end month: not billed
        ({"notice_days": -3}, "notice_days"),
        ({"notice_days": 2.5}, "notice_days"),
    ],
)
def test_bad_contract_names_the_field(kwargs: dict, name: str) -> None:
    args = {"name": "c", "price_usd_per_month": 1.0, "start": "2026-05", "end": "2029-05"}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=name) as info:
        C.Contract(**args)
    assert "\n" not in str(info.value)


def test_bad_dates(colossus: C.Contract) -> None:
    with pytest.raises(ConfigError, match="notice_given"):
        C.earliest_exit(colossus, "2026-02-30")
    with pytest.raises(ConfigError, match="month"):
        C.monthly_cost(colossus, "2026-5")


def test_month_helpers() -> None:
    assert C.month_name(C.month_index("2026-05")) == "2026-05"
    assert C.days_in_month("2028-02") == 29


# -- unit costs -----------------------------------------------------------------------------


def test_gpu_hour_and_energy_costs() -> None:
    assert costs.gpu_hour_cost_usd(8, 10, 2.5) == pytest.approx(200.0)
    np.testing.assert_allclose(costs.gpu_hour_cost_usd(np.array([1, 2]), 1.0, 3.0), [3.0, 6.0])
    # 300 MW for 60 one-minute windows = 300 MWh; at $80/MWh = $24,000
    assert costs.energy_mwh(np.full(60, 300.0), 60.0) == pytest.approx(300.0)
    assert costs.energy_cost_usd(300.0, 80.0) == pytest.approx(24_000.0)


def test_usd_per_million_tokens() -> None:
    assert costs.usd_per_million_tokens(200.0, 4e6) == pytest.approx(50.0)
    assert costs.usd_per_million_tokens(200.0, 0) == math.inf
    assert math.isnan(costs.usd_per_million_tokens(0.0, 0))


def test_effective_usd_per_gpu_hour_and_window_cost(colossus: C.Contract) -> None:
    # $1.25B over 220,000 GPUs for a 31-day month (744 h) = $7.637 per GPU-hour
    assert costs.effective_usd_per_gpu_hour(1.25 * B, 220_000, 744) == pytest.approx(
        7.6369, abs=1e-4)
    # the peak hour of May 2026 carries 1/744 of the discounted fee: $840,053.76
    assert costs.window_cost_usd(colossus, "2026-05", 3600.0) == pytest.approx(
        0.625 * B / 744)
    with pytest.raises(ConfigError, match="gpus"):
        costs.effective_usd_per_gpu_hour(1.0, 0, 10)
    with pytest.raises(ConfigError, match="usd_per_mwh"):
        costs.energy_cost_usd(1.0, -5.0)


def test_in_term_excludes_the_end_month(colossus: C.Contract) -> None:
    assert not C.in_term(colossus, "2026-04")
    assert C.in_term(colossus, "2026-05") and C.in_term(colossus, "2029-04")
    assert not C.in_term(colossus, "2029-05")
