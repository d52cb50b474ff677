"""Site power, caps and the facility inventory check (fleet/power.py)."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.errors import CatalogError, ConfigError
from capacitor.fleet import power as P


def test_constants() -> None:
    # DGX H100: 10.2 kW for 8 x 700 W = 1.821..., quoted (and used) as 1.82
    assert P.SERVER_OVERHEAD_FACTOR == 1.82
    assert abs(10.2 / 5.6 - P.SERVER_OVERHEAD_FACTOR) < 0.005
    # every curve: idle below stalled stepping below a memory-bound step below TDP
    for curve in P.POWER_CURVES.values():
        assert curve.idle == P.IDLE_POWER_FRACTION < curve.stalled < curve.memory_bound < 1.0
    # H100 SXM: nvidia-smi power limits 200-700 W
    assert P.MIN_POWER_LIMIT_FRACTION * 700.0 == pytest.approx(200.0)


def test_the_scenario_defaults_are_the_fleet_constants() -> None:
    from capacitor.fleet import failures
    from capacitor.scenario import models

    assert models.DEFAULT_SERVER_OVERHEAD_FACTOR is P.SERVER_OVERHEAD_FACTOR
    assert models.DEFAULT_GPUS_PER_NODE is failures.DEFAULT_GPUS_PER_NODE


def test_gpu_power_from_busy_and_roofline_shares() -> None:
    hopper = P.POWER_CURVES["hopper"]  # idle 0.15, stalled 0.281, memory 0.223, compute 1.397
    # H100, 700 W. Idle: 0.15 x 700 = 105 W.
    # Busy, u_mem 0.8, u_comp 0.1: 0.281 + 0.223 x 0.8 + 1.397 x 0.1 = 0.5991 -> 419.37 W.
    # Half busy at that mix: (105 + 419.37) / 2 = 262.185 W.
    # Busy, compute-bound (u_comp 0.9): 0.281 + 1.2573 = 1.5383 -> held to TDP, 700 W;
    # under a 60 % limit, 420 W.
    np.testing.assert_allclose(
        P.gpu_power_w([0.0, 1.0, 0.5, 1.0], [0.8, 0.8, 0.8, 0.0], [0.1, 0.1, 0.1, 0.9],
                      700.0, hopper),
        [105.0, 419.37, 262.185, 700.0])
    assert float(P.gpu_power_w(1.0, 0.0, 0.9, 700.0, hopper, limit=0.6)) == \
        pytest.approx(420.0)
    with pytest.raises(ConfigError, match="busy"):
        P.gpu_power_w(1.2, 0.5, 0.1, 700.0, hopper)
    with pytest.raises(ConfigError, match="limit"):
        P.gpu_power_w(1.0, 0.5, 0.1, 700.0, hopper, limit=0.0)


def test_facility_draw_of_a_gpu_group() -> None:
    # 10 GPUs drawing 423.85 W, then 105 W, overhead 1.82, PUE 1.2:
    # 423.85 W x 10 x 1.82 x 1.2 = 9,256.884 W; 105 W x 10 x 1.82 x 1.2 = 2,293.2 W
    np.testing.assert_allclose(
        P.facility_draw_w(np.array([423.85, 105.0]), 10, server_overhead_factor=1.82,
                          pue=1.2), [9256.884, 2293.2])
    # no GPUs, no draw; a bad PUE is named
    assert P.facility_draw_w(np.array([300.0]), 0, server_overhead_factor=1.5,
                             pue=1.1).tolist() == [0.0]
    with pytest.raises(ConfigError, match="pue"):
        P.facility_draw_w(300.0, 1, server_overhead_factor=1.5, pue=0.9)


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
        (lambda: P.facility_draw_w(300.0, 1, server_overhead_factor=1.5, pue=0.9), "pue"),
        (lambda: P.facility_draw_w(300.0, -1, server_overhead_factor=1.5, pue=1.1),
         "num_gpus"),
        (lambda: P.facility_draw_w(300.0, 1, server_overhead_factor=0.5, pue=1.1),
         "server_overhead_factor"),
        (lambda: P.facility_draw_w(-1.0, 1, server_overhead_factor=1.5, pue=1.1), "gpu_w"),
        (lambda: P.cap_power(-1.0, 1.0), "demand_mw"),
        (lambda: P.cap_power(1.0, 0), "cap_mw"),
        (lambda: P.cap_slowdown(1.0, 0.0), "limit"),
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
