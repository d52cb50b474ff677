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
