"""Replica failures, repair and site outages (fleet/failures.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capacitor.errors import ConfigError
from capacitor.fleet import failures as F

INF = math.inf
HOUR = 3600.0


def test_default_mtbf_is_llama3_arithmetic() -> None:
    # 16,384 GPUs x 54 days x 24 h / 419 unexpected interruptions
    assert F.DEFAULT_GPU_MTBF_HOURS == pytest.approx(50_677.0, abs=0.5)
    assert F.DEFAULT_NODE_MTBF_HOURS == INF


@pytest.mark.parametrize(("replicas", "gpus"), [(1000, 1), (125, 8)])
def test_failure_count_matches_rate(replicas: int, gpus: int) -> None:
    # 1,000 GPUs at MTBF 1,000 h for 100 h: 100 failures expected, sigma 10
    totals = []
    for seed in range(40):
        d = F.replica_downtime(replicas, gpus, 1000.0, INF, 0.01, 100 * HOUR,
                               np.random.default_rng(seed))
        assert d.gpu_failures == d.failures.sum()
        assert abs(d.gpu_failures - 100) < 4 * 10
        totals.append(d.gpu_failures)
    assert np.mean(totals) == pytest.approx(100, abs=4 * 10 / math.sqrt(40))


def test_fixed_repair_intervals_and_availability() -> None:
    # 1,000 single-GPU replicas, MTBF 100 h, repair 2 h, 1,000 h:
    # availability ~ 1 - 2/100 (a little more: overlapping failures merge)
    d = F.replica_downtime(1000, 1, 100.0, INF, 2.0, 1000 * HOUR, np.random.default_rng(1))
    lengths = d.end_s - d.start_s
    inside = d.end_s < d.duration_s
    assert np.all(lengths[inside] >= 2 * HOUR - 1e-6)  # a merged run is at least one repair
    # most intervals are one failure: exactly the 2 h repair
    assert np.mean(np.isclose(lengths[inside], 2 * HOUR)) > 0.95
    assert d.availability() == pytest.approx(0.98, abs=0.002)


def test_exponential_repair_has_the_mean() -> None:
    d = F.replica_downtime(2000, 1, 200.0, INF, 1.0, 500 * HOUR, np.random.default_rng(2),
                           repair="exponential")
    lengths = d.end_s - d.start_s
    assert lengths.mean() == pytest.approx(HOUR, rel=0.05)


def test_site_outage_takes_every_replica_down() -> None:
    d = F.replica_downtime(64, 8, INF, INF, 1.0, 3600.0, np.random.default_rng(0),
                           outages=[(1000.0, 600.0)])
    assert F.replicas_up(d, 999.0) == 64
    assert F.replicas_up(d, 1000.0) == 0  # [start, end): down from the start
    assert F.replicas_up(d, 1599.9) == 0
    assert F.replicas_up(d, 1600.0) == 64
    np.testing.assert_array_equal(F.replicas_up(d, np.array([0.0, 1300.0, 3000.0])),
                                  [64, 0, 64])
    assert all(d.intervals(r) == [(1000.0, 1600.0)] for r in range(64))
    assert not F.up_mask(d, 1200.0).any() and F.up_mask(d, 2000.0).all()


def test_overlapping_and_clipped_outages_merge() -> None:
    d = F.replica_downtime(2, 1, INF, INF, 1.0, 1000.0, np.random.default_rng(0),
                           outages=[(100, 50), (120, 100), (220, 30), (900, 500), (-10, 20)])
    # [100,150) u [120,220) u [220,250) -> [100,250); [900,1400) clipped to the window
    assert d.intervals(0) == [(0.0, 10.0), (100.0, 250.0), (900.0, 1000.0)]
    assert d.down_s().tolist() == [260.0, 260.0]


def test_node_failure_takes_down_every_replica_on_the_node() -> None:
    # 2-GPU replicas, 8-GPU nodes: 4 replicas per node, node failures only
    d = F.replica_downtime(16, 2, INF, 50.0, 1.0, 2000 * HOUR, np.random.default_rng(5))
    assert d.node_failures > 0 and d.gpu_failures == 0
    assert d.failures.sum() == 4 * d.node_failures
    for node in range(4):
        reps = range(4 * node, 4 * node + 4)
        assert len({tuple(d.intervals(r)) for r in reps}) == 1  # identical down times
    assert d.intervals(0) != d.intervals(4)


def test_replica_spanning_nodes_sees_each_node() -> None:
    # 16-GPU replicas span two nodes: node failure rate per replica doubles
    d = F.replica_downtime(500, 16, INF, 1000.0, 0.0, 100 * HOUR, np.random.default_rng(3))
    # 1,000 nodes x 100 h / 1,000 h = 100 node failures, each hitting one replica
    assert abs(d.node_failures - 100) < 40
    assert d.failures.sum() == d.node_failures
    assert d.start_s.size == 0  # zero repair time leaves no down interval


def test_replicas_up_matches_up_mask() -> None:
    d = F.replica_downtime(50, 4, 300.0, 2000.0, 5.0, 400 * HOUR, np.random.default_rng(11),
                           outages=[(100 * HOUR, 3 * HOUR)], repair="exponential")
    times = np.linspace(0, d.duration_s, 997, endpoint=False)
    counts = F.replicas_up(d, times)
    assert counts.tolist() == [int(F.up_mask(d, t).sum()) for t in times]
    # CSR intervals are sorted and disjoint per replica
    for r in range(50):
        iv = d.intervals(r)
        assert all(a < b for a, b in iv)
        assert all(iv[k][1] < iv[k + 1][0] for k in range(len(iv) - 1))


def test_same_seed_same_downtime() -> None:
    a = F.replica_downtime(100, 8, 500.0, 2000.0, 1.0, 1000 * HOUR, np.random.default_rng(9))
    b = F.replica_downtime(100, 8, 500.0, 2000.0, 1.0, 1000 * HOUR, np.random.default_rng(9))
    np.testing.assert_array_equal(a.start_s, b.start_s)
    np.testing.assert_array_equal(a.offsets, b.offsets)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_replicas": -1}, "num_replicas"),
        ({"gpus_per_replica": 0}, "gpus_per_replica"),
        ({"gpu_mtbf_hours": 0.0}, "gpu_mtbf_hours"),
        ({"node_mtbf_hours": -5.0}, "node_mtbf_hours"),
        ({"repair_hours": -1.0}, "repair_hours"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"outages": [(10.0, -1.0)]}, r"outages\[0\]"),
        ({"outages": [("x",)]}, r"outages\[0\]"),
        ({"repair": "weibull"}, "repair"),
        ({"rng": 7}, "rng"),
    ],
)
def test_bad_input_names_the_parameter(kwargs: dict, name: str) -> None:
    args = {"num_replicas": 4, "gpus_per_replica": 8, "gpu_mtbf_hours": 100.0,
            "node_mtbf_hours": INF, "repair_hours": 1.0, "duration_s": 3600.0,
            "rng": np.random.default_rng(0)}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=name) as info:
        F.replica_downtime(**args)
    assert "\n" not in str(info.value)


def test_empty_pool() -> None:
    d = F.replica_downtime(0, 8, 100.0, 100.0, 1.0, 3600.0, np.random.default_rng(0),
                           outages=[(0, 10)])
    assert d.offsets.tolist() == [0] and F.replicas_up(d, 5.0) == 0
    assert d.availability() == 1.0


def test_a_window_in_steady_state_starts_with_the_stationary_share_down() -> None:
    # 200,000 single-GPU replicas, MTBF 1,000 h, mean repair 10 h (exponential):
    # lambda x MTTR = 10 / 1,000 = 0.01; repairs in progress at t = 0 are Poisson(0.01) per
    # replica, so a replica is down with probability 1 - exp(-0.01) = 0.0099502 (MTTR /
    # (MTBF + MTTR) = 10 / 1,010 = 0.0099010 to first order): 1,990 of 200,000 expected,
    # sigma sqrt(1,990) = 44.6
    n = 200_000
    share = F.stationary_down_share(1, 1000.0, INF, 10.0)
    assert share == pytest.approx(1.0 - math.exp(-0.01), rel=1e-12)
    assert share == pytest.approx(10.0 / 1010.0, abs=1e-4)
    history = F.steady_state_history_s(10.0, "exponential")
    assert history == 30 * 10 * HOUR
    d = F.replica_downtime(n, 1, 1000.0, INF, 10.0, 1 * HOUR, np.random.default_rng(5),
                           repair="exponential", history_s=history)
    down_at_start = n - F.replicas_up(d, 0.0)
    assert abs(down_at_start - 1990) < 4 * 44.6
    # fixed repairs of 10 h: a failure in the last 10 h is still in repair; same share
    d = F.replica_downtime(n, 1, 1000.0, INF, 10.0, 1 * HOUR, np.random.default_rng(6),
                           repair="fixed", history_s=F.steady_state_history_s(10.0))
    assert abs(n - F.replicas_up(d, 0.0) - 1990) < 4 * 44.6
    # without a history the window starts with every replica up (the old behaviour)
    d0 = F.replica_downtime(n, 1, 1000.0, INF, 10.0, 1 * HOUR, np.random.default_rng(5),
                            repair="exponential")
    assert F.replicas_up(d0, 0.0) == n
    # failures counted are those in the window only: 200,000 x 1 h / 1,000 h = 200, sigma 14
    assert abs(d.gpu_failures - 200) < 4 * 14.2
    assert d.failures.sum() == d.gpu_failures  # per replica, the same window-only count


def test_stationary_share_of_a_node_and_gpu_replica_by_hand() -> None:
    # 8-GPU replica on one node: lambda = 8 / 81,000 + 1 / 30,000 = 1.320988e-4 per hour;
    # x 24 h = 3.170370e-3; 1 - exp(-3.170370e-3) = 3.165350e-3
    assert F.stationary_down_share(8, 81_000.0, 30_000.0, 24.0) == pytest.approx(
        3.165350e-3, rel=1e-6)
    # a 16-GPU replica spans two 8-GPU nodes: 16 / 81,000 + 2 / 30,000 = 2.641975e-4 per
    # hour; x 24 = 6.340741e-3 -> 6.320681e-3
    assert F.stationary_down_share(16, 81_000.0, 30_000.0, 24.0) == pytest.approx(
        6.320681e-3, rel=1e-6)


def test_down_seconds_per_bin_by_hand() -> None:
    # one replica down [30, 150) and one [0, 10), in 60 s bins over 180 s:
    # bin 0: 30 + 10 = 40; bin 1: 60; bin 2: 30
    d = F.Downtime(2, 180.0, np.array([0, 1, 2]), np.array([30.0, 0.0]),
                   np.array([150.0, 10.0]), np.zeros(2, np.int64))
    np.testing.assert_allclose(F.down_s_per_bin(d, 60.0, 3), [40.0, 60.0, 30.0])


def test_a_failure_on_a_rack_scale_system_takes_its_whole_nvlink_domain() -> None:
    # GB200 NVL72: 72 GPUs per domain, 4 per tray; 81,000 h per GPU, 30,000 h per tray:
    # the domain fails at 72 / 81,000 + 18 / 30,000 = 8.8889e-4 + 6.0e-4 = 1.48889e-3 per
    # hour, MTBF 671.64 h
    gpu_mtbf, node_mtbf, unit = F.domain_failures(81_000.0, 30_000.0, 4, 72)
    assert (gpu_mtbf, unit) == (INF, 72)
    assert node_mtbf == pytest.approx(1.0 / 1.488889e-3, rel=1e-6)
    # a 4-GPU replica is then down 1 - exp(-1.48889e-3 x 24) = 1 - exp(-0.0357333) = 3.5102%
    # of the time (0.20% with per-tray failures only: 4 / 81,000 + 1 / 30,000 = 8.27e-5 /h)
    assert F.stationary_down_share(4, gpu_mtbf, node_mtbf, 24.0, unit) == pytest.approx(
        0.035102, rel=1e-4)
    assert F.stationary_down_share(4, 81_000.0, 30_000.0, 24.0, 4) == pytest.approx(
        1.0 - math.exp(-8.2716e-5 * 24), rel=1e-4)
    # 2,000 domains of 18 replicas: about 70 domains (sigma 8.2) down at t = 0, each with
    # all 18 of its replicas and none of another's
    d = F.replica_downtime(36_000, 4, gpu_mtbf, node_mtbf, 24.0, HOUR,
                           np.random.default_rng(2), gpus_per_node=unit, repair="exponential",
                           history_s=F.steady_state_history_s(24.0, "exponential"))
    down = ~F.up_mask(d, 0.0)
    by_domain = down.reshape(2000, 18)
    assert np.all(by_domain.all(axis=1) == by_domain.any(axis=1))  # all or none
    assert abs(by_domain.all(axis=1).sum() - 70.2) < 4 * 8.4
