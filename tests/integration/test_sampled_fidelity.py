"""fidelity: sampled against exact on a fleet of 256 replicas, across load levels.

Sampled simulates 64 of the 256 replicas at 1/4 of the demand and scales up; per tier p50 /
p99 TTFT and E2E, goodput and the refused share must agree with the exact run within 3%: for
round robin and power of two choices against one router over all 256, and for
least-outstanding-tokens (whose minimum depends on how many replicas the router sees)
against 4 routing cells of 64 (``shard_replicas``), of which the sampled pool is one.
"""

from __future__ import annotations

import pytest

from capacitor.scenario import parse_scenario
from capacitor.simulate import run_scenario

SCENARIO = """
name: sampled-vs-exact
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    gpus: {{H100: 256}}
deployments:
  - name: chat
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    precision: BF16
    tp: 1
    max_num_seqs: 64
    max_num_batched_tokens: 2048
    replicas: 256
tenants:
  - name: gold
    tier: 0
    slo: {{ttft_p99_ms: 2000, e2e_p99_ms: 60000}}
  - name: bronze
    tier: 1
    slo: {{ttft_p99_ms: 5000}}
    rate_limits: {{requests_per_min: {bronze_rpm}}}
workloads:
  - name: gold_chat
    tenant: gold
    deployment: chat
    arrival: {{kind: poisson, rate_rps: {gold_rps}}}
    lengths:
      kind: distribution
      input: {{kind: lognormal, mean_tokens: 600, p99_tokens: 1500}}
      output: {{kind: lognormal, mean_tokens: 150, p99_tokens: 400}}
  - name: bronze_chat
    tenant: bronze
    deployment: chat
    arrival: {{kind: poisson, rate_rps: {bronze_rps}}}
    lengths:
      kind: distribution
      input: {{kind: lognormal, mean_tokens: 1200, p99_tokens: 3000}}
      output: {{kind: lognormal, mean_tokens: 200, p99_tokens: 500}}
routing: {{policy: {routing}}}
admission: {{policy: token_bucket}}
simulation:
  window: {{duration_s: {duration}, warmup_s: 60}}
  seed: 5
  fidelity: {fidelity}
  sampled_replicas: {sampled}
  shard_replicas: {shard}
"""


def _run(fidelity: str, per_replica_rps: float, routing: str, shard: int = 512,
         sampled: int = 64):
    text = SCENARIO.format(
        gold_rps=256 * per_replica_rps * 0.6, bronze_rps=256 * per_replica_rps * 0.4,
        bronze_rpm=int(256 * per_replica_rps * 0.4 * 60 * 0.97), duration=600, fidelity=fidelity,
        routing=routing, shard=shard, sampled=sampled,
    )
    return run_scenario(parse_scenario(text, origin="<test>")).summary


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
