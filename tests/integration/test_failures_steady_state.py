"""Failures in steady state through a run: the window starts with replicas in repair,
availability is below 100% when failures are on, replicas up is measured minute by minute and
agrees with the summary's availability, and a rack-scale NVLink domain fails as one."""

from __future__ import annotations

import numpy as np

from capacitor.simulate import run_scenario
from capacitor.simulate.summary import timeline
from tests.factories import make_scenario

#: 64 H100 replicas; per GPU MTBF 5 h and 1 h mean repairs: lambda x MTTR = 0.2, so about
#: 1 - exp(-0.2) = 18% of the replicas are down at any moment, from the first second on.
FAILING = {"sites.0.gpus": {"H100": 64},
           "sites.0.failures": {"gpu_mtbf_hours": {"H100": 5}, "repair_hours": 1},
           "simulation.window": {"duration_s": 600, "warmup_s": 10}}


def test_availability_is_measured_below_100_and_replicas_up_varies_by_minute():
    healthy = run_scenario(make_scenario(**{k: v for k, v in FAILING.items()
                                            if k != "sites.0.failures"}))
    failing = run_scenario(make_scenario(**FAILING))
    assert healthy.summary.deployments["d"].availability == 1.0
    availability = failing.summary.deployments["d"].availability
    # 18% down expected (binomial over 64 replicas, sigma 4.8%): well below 100%
    assert 0.6 < availability < 0.95
    up = timeline(failing)["replicas_up"]
    assert up[0] < 64  # down from the start: the window opens in steady state
    assert np.ptp(up) > 0  # failures and repairs through the window, minute by minute
    assert np.all(timeline(healthy)["replicas_up"] == 64)
    # the minutes' replicas up, weighted by their seconds (10 full minutes and one of 10 s),
    # average to the summary's availability x 64
    seconds = np.minimum(610.0 - 60.0 * np.arange(up.size), 60.0)
    assert abs(np.average(up, weights=seconds) / 64 - availability) < 2e-6  # 6 decimals


def test_an_nvl72_failure_takes_its_domain_unless_turned_off():
    # 1,000 GB200 NVL72 racks (72,000 GPUs) of single-GPU replicas, 8 simulated (sampled
    # fidelity: failures are drawn for all 72,000 replicas). Per GPU MTBF 7,200 h, 10 h
    # repairs, trays never fail on their own.
    gb200 = {"sites.0.gpus": {"GB200": 72_000}, "sites.0.power_cap_mw": 300,
             "deployments.0.gpu": "GB200",
             "sites.0.failures": {"gpu_mtbf_hours": {"GB200": 7200}, "repair_hours": 10,
                                  "gpus_per_node": {"GB200": 4}},
             "simulation.fidelity": "sampled", "simulation.sampled_replicas": 8}
    rack = run_scenario(make_scenario(**gb200)).summary.deployments["d"]
    trays = run_scenario(make_scenario(**gb200, **{
        "sites.0.failures.nvlink_domain_blast_radius": False})).summary.deployments["d"]
    assert rack.replicas == trays.replicas == 72_000
    # a rack fails at 72 / 7,200 h = 0.01 per hour, down 1 - exp(-0.01 x 10) = 9.5% of the
    # time with all its 72 replicas: about 95 of 1,000 racks down (sigma 9.3): availability
    # 0.905 +- 0.0093 (4 sigma: 0.868-0.942)
    assert 0.868 < rack.availability < 0.942
    # one GPU takes only its own replica: 1 - exp(-10 / 7,200) = 0.14% down
    assert 0.997 < trays.availability < 1.0
