"""fidelity: sampled against exact on a fleet of 256 replicas, across load levels.

Sampled simulates 64 of the 256 replicas at 1/4 of the demand and scales up; per tier p50 /
p99 TTFT and E2E, goodput and the refused share must agree with the exact run within 3%: for
round robin and power of two choices against one router over all 256, and for
least-outstanding-tokens (whose minimum depends on how many replicas the router sees)
against 4 routing cells of 64 (``shard_replicas``), of which the sampled pool is one.
"""

from __future__ import annotations

import pytest

from capacitor.simulate import run_scenario
from tests.factories import FIDELITY, make_scenario


def _run(fidelity: str, per_replica_rps: float, routing: str, shard: int = 512,
         sampled: int = 64):
    gold_rps, bronze_rps = 256 * per_replica_rps * 0.6, 256 * per_replica_rps * 0.4
    return run_scenario(make_scenario(FIDELITY, **{
        "workloads.0.arrival.rate_rps": gold_rps,
        "workloads.1.arrival.rate_rps": bronze_rps,
        "tenants.1.rate_limits.requests_per_min": int(bronze_rps * 60 * 0.97),
        "routing.policy": routing,
        "simulation.fidelity": fidelity,
        "simulation.sampled_replicas": sampled,
        "simulation.shard_replicas": shard,
    })).summary


def _agree_within_3_percent(reference, other):
    """Per tier p50 / p99 TTFT and E2E, goodput and refused share within 3%."""
    for tenant in ("gold", "bronze"):
        r, o = reference["tenants"][tenant], other["tenants"][tenant]
        for metric in ("ttft_ms", "e2e_ms"):
            for p in ("p50", "p99"):
                assert o[metric][p] == pytest.approx(r[metric][p], rel=0.03), (tenant, metric, p)
        assert o["goodput_rps"] == pytest.approx(r["goodput_rps"], rel=0.03), tenant
        assert o["refused_pct"] == pytest.approx(r["refused_pct"], rel=0.03, abs=0.3), tenant


@pytest.mark.parametrize("routing", ["round_robin", "power_of_two"])
@pytest.mark.parametrize("per_replica_rps", [1.0, 3.0, 5.0])
def test_sampled_matches_exact_within_3_percent(per_replica_rps, routing):
    exact = _run("exact", per_replica_rps, routing)
    sampled = _run("sampled", per_replica_rps, routing)
    assert exact["deployments"]["chat"]["simulated_replicas"] == 256
    assert sampled["deployments"]["chat"]["simulated_replicas"] == 64
    _agree_within_3_percent(exact, sampled)


@pytest.mark.parametrize("per_replica_rps", [3.0, 5.0])
def test_exact_in_shards_matches_one_pool_within_3_percent(per_replica_rps):
    # 256 replicas as 4 shards of 64, each behind its own round-robin router with a quarter
    # of the demand, against one router over all 256
    whole = _run("exact", per_replica_rps, "round_robin")
    shards = _run("exact", per_replica_rps, "round_robin", shard=64)
    assert shards["deployments"]["chat"]["simulated_replicas"] == 256
    assert shards["deployments"]["chat"]["scale"] == 1.0
    _agree_within_3_percent(whole, shards)


@pytest.mark.parametrize("per_replica_rps", [3.0, 5.0])
def test_sampled_is_one_cell_of_exact_for_least_outstanding_tokens(per_replica_rps):
    exact = _run("exact", per_replica_rps, "least_outstanding_tokens", shard=64)
    sampled = _run("sampled", per_replica_rps, "least_outstanding_tokens", shard=64)
    assert not sampled["notes"]  # sampled_replicas = shard_replicas: representative
    _agree_within_3_percent(exact, sampled)
    # a sample of a different size than the cells is flagged
    assert _run("sampled", 1.0, "least_outstanding_tokens", shard=64, sampled=32)["notes"]
