"""Prefix reuse through a run: a workload's shared system prompt is served from the prefix
cache and the summary reports each deployment's hit rate; the default scenario's agent
deployments reuse their system prompt."""

from __future__ import annotations

import copy

from capacitor.simulate import run_scenario
from tests.factories import SMALL, make_scenario


def _one_workload(shared: int):
    g = copy.deepcopy(SMALL["workloads"][0])
    g["lengths"] = {"kind": "distribution", "shared_prefix_tokens": shared,
                    "input": {"kind": "uniform", "min_tokens": 1000, "max_tokens": 1000},
                    "output": {"kind": "uniform", "min_tokens": 100, "max_tokens": 100}}
    return make_scenario(workloads=[g])


def test_a_shared_system_prompt_is_served_from_the_cache_after_its_first_request():
    # 8 replicas, 30 requests/s, 10 s of warm-up: every replica computes the 512-token
    # segment (32 blocks of 16) during warm-up, so every counted request (all 1,000-token
    # prompts) finds exactly those 512 tokens cached: 512 / 1000 = 0.512.
    assert run_scenario(_one_workload(512)).summary.deployments["d"].prefix_hit_rate == 0.512
    assert run_scenario(_one_workload(0)).summary.deployments["d"].prefix_hit_rate == 0.0
