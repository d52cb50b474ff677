"""Site power, caps and the facility inventory check (fleet/power.py)."""

from __future__ import annotations

import csv
import statistics

import numpy as np
import pytest

from capacitor.errors import CatalogError, ConfigError, ScenarioError
from capacitor.fleet import power as P
from tests.conftest import require_data


def test_busy_power_fraction_is_the_splitwise_median() -> None:
    with require_data("published", "splitwise_static_batches.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh)
                if float(r["average_power"]) > 0
                and not (r["tensor_parallel"] == "2" and r["batch_size"] == "64")]
    assert len(rows) == 260
    assert statistics.median(float(r["average_power"]) for r in rows) == pytest.approx(
        P.BUSY_POWER_FRACTION, abs=1e-3)


def test_constants() -> None:
    assert P.SERVER_OVERHEAD_FACTOR == pytest.approx(10.2 / 5.6)  # DGX H100: 10.2 kW / 8 x 700 W
    assert P.IDLE_POWER_FRACTION < P.BUSY_POWER_FRACTION


def test_gpu_power_interpolates_idle_to_busy() -> None:
    # H100, 700 W: idle 0.15 x 700 = 105 W; busy 0.6055 x 700 = 423.85 W; half: 264.425 W
    np.testing.assert_allclose(P.gpu_power_w([0.0, 1.0, 0.5], 700.0),
                               [105.0, 423.85, 264.425])
    with pytest.raises(ConfigError, match="utilization"):
        P.gpu_power_w(1.2, 700.0)


def test_site_power_and_cap_flag() -> None:
    # 1,000 GPUs, minute 1 all busy, minute 2 all idle; PUE 1.2, no server overhead:
    # 1000 x 700 x 0.6055 x 1.2 = 0.508620 MW; 1000 x 700 x 0.15 x 1.2 = 0.126 MW
    sp = P.site_power_mw([60_000.0, 0.0], [0.0, 60_000.0], 60.0, 700.0, pue=1.2,
                         server_overhead_factor=1.0, cap_mw=0.5)
    np.testing.assert_allclose(sp.demand_mw, [0.50862, 0.126])
    np.testing.assert_allclose(sp.power_mw, [0.5, 0.126])
    assert sp.capped.tolist() == [True, False] and sp.any_capped
    uncapped = P.site_power_mw(60_000.0, 0.0, 60.0, 700.0, pue=1.2, server_overhead_factor=1.0)
    assert not uncapped.any_capped and uncapped.cap_mw == float("inf")


def test_site_power_sums_gpu_groups_and_applies_overhead() -> None:
    # one window, two GPU types on the last axis: 10 H100 busy (700 W), 10 B200 idle (1000 W)
    sp = P.site_power_mw([[600.0, 0.0]], [[0.0, 600.0]], 60.0, np.array([700.0, 1000.0]),
                         pue=1.5, server_overhead_factor=2.0)
    # 10 x 700 W x 0.6055 = 4238.5 W busy + 10 x 1000 W x 0.15 = 1500 W idle = 5738.5 W;
    # x 2.0 overhead x 1.5 PUE = 17,215.5 W
    np.testing.assert_allclose(sp.demand_mw, [0.0172155], rtol=1e-12)


def test_power_from_busy_fraction_per_minute() -> None:
    # 2 replicas of 8 x 700 W; minute 0: busy 1 and 0; minute 1: replica 1 down
    busy = np.array([[1.0, 0.0], [0.5, 0.0]])
    up = np.array([[True, True], [True, False]])
    sp = P.power_from_busy_fraction_mw(busy, 8, 700.0, pue=1.0, server_overhead_factor=1.0,
                                       up=up)
    np.testing.assert_allclose(sp.demand_mw * 1e6, [8 * 423.85 + 8 * 105.0, 8 * 264.425])
    one = P.power_from_busy_fraction_mw(np.array([1.0, 0.0]), 8, 700.0, pue=1.0,
                                        server_overhead_factor=1.0, cap_mw=0.004)
    assert one.capped.tolist() == [True] and one.power_mw.tolist() == [0.004]
    with pytest.raises(ConfigError, match="up has shape"):
        P.power_from_busy_fraction_mw(busy, 8, 700.0, pue=1.0, up=np.ones(3, bool))


def test_facility_power_and_inventory_check() -> None:
    # 100,000 H100 x 700 W x 1.8214 x PUE 1.1 = 140.25 MW
    # 70 MW of TDP x 10.2 / 5.6 = 127.5 MW x 1.1 = 140.25 MW
    assert P.facility_power_mw({"H100": 100_000}, pue=1.1) == pytest.approx(140.25, rel=1e-12)
    assert P.facility_power_mw({"H100": 10, "gb200": 10}, pue=1.0, server_overhead_factor=1.0,
                               ) == pytest.approx((7000 + 12000) / 1e6)
    assert P.facility_power_mw({"X": 4}, pue=1.0, server_overhead_factor=1.0,
                               tdp_w={"X": 500.0}) == pytest.approx(0.002)
    assert P.check_facility_power({"H100": 100_000}, 150.0, pue=1.1) == pytest.approx(140.25)
    with pytest.raises(ScenarioError, match=r"sites\[0\]: .*140\.2 MW.*power_cap_mw 100") as e:
        P.check_facility_power({"H100": 100_000}, 100.0, pue=1.1, where="sites[0]")
    assert "\n" not in str(e.value)
    with pytest.raises(CatalogError, match="unknown GPU"):
        P.facility_power_mw({"Z9000": 1}, pue=1.2)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: P.site_power_mw(1.0, 1.0, 60.0, 700.0, pue=0.9), "pue"),
        (lambda: P.site_power_mw(-1.0, 1.0, 60.0, 700.0, pue=1.1), "busy_gpu_seconds"),
        (lambda: P.site_power_mw(1.0, 1.0, 0.0, 700.0, pue=1.1), "window_s"),
        (lambda: P.site_power_mw(1.0, 1.0, 60.0, 700.0, pue=1.1, cap_mw=0), "cap_mw"),
        (lambda: P.gpu_power_w(0.5, 700.0, idle_power_fraction=0.9), "idle_power_fraction"),
        (lambda: P.facility_power_mw({"H100": -3}, pue=1.1), "count"),
        (lambda: P.facility_power_mw({"H100": 3}, pue=1.1, server_overhead_factor=0.5),
         "server_overhead_factor"),
    ],
)
def test_bad_input_names_the_parameter(call, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        call()


def test_facility_power_takes_a_server_overhead_factor_per_gpu():
    mixed = P.facility_power_mw({"H100": 10, "X": 4}, pue=1.5, tdp_w={"X": 1000.0},
                                server_overhead_factor={"H100": 2.0, "X": 1.25})
    # (10 x 700 W x 2.0 = 14 kW + 4 x 1000 W x 1.25 = 5 kW) x 1.5 = 28.5 kW
    assert mixed == pytest.approx(0.0285, rel=1e-12)
    # a GPU the mapping leaves out gets the default factor
    default = P.facility_power_mw({"H100": 10}, pue=1.0, server_overhead_factor={})
    assert default == pytest.approx(0.01275, rel=1e-12)  # 7 kW x 10.2 / 5.6 = 12.75 kW
    with pytest.raises(ConfigError, match=r"server_overhead_factor\['H100'\]"):
        P.facility_power_mw({"H100": 1}, pue=1.0, server_overhead_factor={"H100": 0.5})
