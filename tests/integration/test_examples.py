"""Every scenario in ``examples/`` runs as shipped (their windows are small), and each says
what its comments promise: the single replica and the 70B node serve their window within
SLO, the coding-agent launch completes workflows with their context served from the prefix
cache at the growth its comments give."""

from __future__ import annotations

from pathlib import Path

import pytest

from capacitor.scenario import growth_factor as scenario_growth
from capacitor.scenario import load_scenario, resolve_replicas
from capacitor.simulate import run_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALL = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def test_the_examples_are_the_documented_set() -> None:
    # a single vLLM replica, a 70B model on one node, a multi-site fleet with failures and a
    # power cap (canonical), a coding-agent launch with growth, DeepSeek on GB200 NVL72
    assert {"single_vllm_replica.yaml", "llama70b_one_node.yaml", "canonical.yaml",
            "coding_agent_launch.yaml", "dsr1_gb200_disagg.yaml"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_example_runs(name: str) -> None:
    run = run_scenario(load_scenario(EXAMPLES / name), keep_pools=False)
    s = run.summary
    assert s.tenants and all(t.requests > 0 for t in s.tenants.values())
    assert sum(d.completed for d in s.deployments.values()) > 0


@pytest.mark.parametrize("name", ["single_vllm_replica.yaml", "llama70b_one_node.yaml"])
def test_the_small_examples_meet_their_slos(name: str) -> None:
    assert run_scenario(load_scenario(EXAMPLES / name), keep_pools=False).summary.verdict.ok


def test_the_70b_example_is_two_tp4_replicas() -> None:
    scenario = load_scenario(EXAMPLES / "llama70b_one_node.yaml")
    assert resolve_replicas(scenario) == {"llama70b": 2}  # 8 H100 / tp 4


def test_the_coding_agent_example_grows_and_completes_workflows() -> None:
    scenario = load_scenario(EXAMPLES / "coding_agent_launch.yaml")
    # January -> June 2027 at 10% a month: five months, 1.1^5 = 1.61051
    assert scenario_growth(scenario, scenario.workloads[0].arrival) == pytest.approx(1.61051)
    stats = run_scenario(scenario, keep_pools=False).summary.workflows["agent"]["developers"]
    assert stats.completed > 0
    assert stats.prefix_hit_rate > 0.5  # each call's prompt extends the previous call's


def test_the_colossus_gb200_slice_is_one_rack_per_unit() -> None:
    from capacitor.catalog.hardware import get_gpu
    from capacitor.simulate.disagg import cell_link_gb_s

    scenario = load_scenario(EXAMPLES / "colossus_gb200_disagg.yaml")
    dep = scenario.deployments[0]
    # 6 x 4 + 1 x 48 = 72 GB200 = one NVL72 domain; 20,000 // 72 = 277 units
    assert dep.gpus_per_replica == 72 == get_gpu("GB200").nvlink_domain_gpus
    assert resolve_replicas(scenario) == {"large_gb200": 277}
    # the sampled cell of one unit moves KV over NVLink (900 GB/s per GPU); 64 units (the
    # default's cells) over the compute trays' ConnectX-7 NICs, 400 Gb/s = 50 GB/s per GPU
    assert scenario.simulation.sampled_replicas == 1
    assert cell_link_gb_s(dep, 1) == 900.0
    assert cell_link_gb_s(dep, 64) == 50.0
