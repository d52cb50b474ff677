"""Site power, caps and the facility inventory check (fleet/power.py)."""

from __future__ import annotations

import csv
import statistics

import numpy as np
import pytest

from capacitor.errors import CatalogError, ConfigError
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
    # DGX H100: 10.2 kW for 8 x 700 W = 1.821..., quoted (and used) as 1.82
    assert P.SERVER_OVERHEAD_FACTOR == 1.82
    assert abs(10.2 / 5.6 - P.SERVER_OVERHEAD_FACTOR) < 0.005
    assert P.IDLE_POWER_FRACTION < P.BUSY_POWER_FRACTION


def test_the_scenario_defaults_are_the_fleet_constants() -> None:
    from capacitor.fleet import failures
    from capacitor.scenario import models

    assert models.DEFAULT_SERVER_OVERHEAD_FACTOR is P.SERVER_OVERHEAD_FACTOR
    assert models.DEFAULT_GPUS_PER_NODE is failures.DEFAULT_GPUS_PER_NODE


def test_gpu_power_interpolates_idle_to_busy() -> None:
    # H100, 700 W: idle 0.15 x 700 = 105 W; busy 0.6055 x 700 = 423.85 W; half: 264.425 W
    np.testing.assert_allclose(P.gpu_power_w([0.0, 1.0, 0.5], 700.0),
                               [105.0, 423.85, 264.425])
    with pytest.raises(ConfigError, match="utilization"):
        P.gpu_power_w(1.2, 700.0)


def test_facility_draw_of_a_gpu_group() -> None:
    # 10 H100 (700 W), minute 0 busy, minute 1 idle, overhead 1.82, PUE 1.2:
    # 423.85 W x 1.82 x 1.2 x 10 = 9,256.884 W; 105 W x 1.82 x 1.2 x 10 = 2,293.2 W
    np.testing.assert_allclose(
        P.facility_draw_w(np.array([1.0, 0.0]), 700.0, 10, server_overhead_factor=1.82,
                          pue=1.2), [9256.884, 2293.2])
    # no GPUs, no draw; a bad PUE is named
    assert P.facility_draw_w(np.array([0.7]), 700.0, 0, server_overhead_factor=1.5,
                             pue=1.1).tolist() == [0.0]
    with pytest.raises(ConfigError, match="pue"):
        P.facility_draw_w(0.5, 700.0, 1, server_overhead_factor=1.5, pue=0.9)


def test_cap_power_holds_the_draw_to_the_cap() -> None:
    # demand 0.5 MW then 0.1 MW against a 0.3 MW cap
    sp = P.cap_power(np.array([0.5, 0.1]), 0.3)
    assert sp.power_mw.tolist() == [0.3, 0.1]
    assert sp.demand_mw.tolist() == [0.5, 0.1]
    assert sp.capped.tolist() == [True, False] and sp.any_capped
    assert not P.cap_power(0.3, 0.3).any_capped  # at the cap is not over it
    with pytest.raises(ConfigError, match="cap_mw"):
        P.cap_power(0.1, 0.0)


def test_facility_power_of_an_inventory() -> None:
    # 100,000 H100 x 700 W x 1.82 x PUE 1.1 = 140.14 MW
    mw = P.facility_power_mw({"H100": 100_000}, pue=1.1)
    assert mw == pytest.approx(140.14, rel=1e-12)
    assert P.facility_power_mw({"H100": 10, "gb200": 10}, pue=1.0, server_overhead_factor=1.0,
                               ) == pytest.approx((7000 + 12000) / 1e6)
    assert P.facility_power_mw({"X": 4}, pue=1.0, server_overhead_factor=1.0,
                               tdp_w={"X": 500.0}) == pytest.approx(0.002)
    with pytest.raises(CatalogError, match="unknown GPU"):
        P.facility_power_mw({"Z9000": 1}, pue=1.2)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: P.facility_draw_w(0.5, 700.0, 1, server_overhead_factor=1.5, pue=0.9),
         "pue"),
        (lambda: P.facility_draw_w(0.5, 700.0, -1, server_overhead_factor=1.5, pue=1.1),
         "num_gpus"),
        (lambda: P.facility_draw_w(0.5, 700.0, 1, server_overhead_factor=0.5, pue=1.1),
         "server_overhead_factor"),
        (lambda: P.cap_power(-1.0, 1.0), "demand_mw"),
        (lambda: P.cap_power(1.0, 0), "cap_mw"),
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
    assert default == pytest.approx(0.01274, rel=1e-12)  # 7 kW x 1.82 = 12.74 kW
    with pytest.raises(ConfigError, match=r"server_overhead_factor\['H100'\]"):
        P.facility_power_mw({"H100": 1}, pue=1.0, server_overhead_factor={"H100": 0.5})
