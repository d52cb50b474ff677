"""Goodput capacity search (capacitor.planner.capacity): the bracketing search against a known
threshold, the cache, and one simulated knee checked against the reference twin."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from capacitor.errors import PlanError
from capacitor.planner.capacity import (
    DEFAULT_REL_TOL,
    bracket_search,
    capacity_scenario_dict,
    replica_capacity,
)
from capacitor.scenario import parse_scenario

TINY = """
name: tiny
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    gpus: {H100: 8}
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    max_num_seqs: 1
    replicas: 1
tenants:
  - name: t
    tier: 0
    slo: {ttft_p99_ms: TTFT_MS}
workloads:
  - name: w
    tenant: t
    deployment: d
    arrival: {kind: constant, rate_rps: 1.0}
    lengths: {kind: fixed, input_tokens: 200, output_tokens: 20}
simulation:
  window: {duration_s: 120, warmup_s: 30}
  seed: 0
"""


def tiny(ttft_ms: float = 1000.0):
    return parse_scenario(TINY.replace("TTFT_MS", str(ttft_ms)), origin="tiny")


@pytest.mark.parametrize("hint", [0.01, 1.0, 3.0, 700.0])
def test_bracket_search_finds_a_known_threshold_whatever_the_hint(hint):
    # meets below 3.7 requests/s: the bracket must hold 3.7 and be within the tolerance
    lo, hi, runs = bracket_search(lambda r: r <= 3.7, hint, DEFAULT_REL_TOL)
    assert lo <= 3.7 < hi
    assert hi / lo - 1.0 <= DEFAULT_REL_TOL + 1e-12
    # the grid is 2**(k/32): 3.7 lies in [2**(60/32), 2**(61/32)) = [3.668, 3.748)
    assert (lo, hi) == pytest.approx((2 ** (60 / 32), 2 ** (61 / 32)))
    assert runs <= 5 + 2 + abs(round(np.log2(hint)) - 2)


def test_bracket_search_says_when_no_rate_meets():
    with pytest.raises(PlanError, match="below what this hardware can do"):
        bracket_search(lambda r: False, 1.0, DEFAULT_REL_TOL)


def test_second_search_comes_from_the_cache(tmp_path):
    calls = []

    def meets(data):  # a stand-in for the simulation: meets below 2.5 requests/s per replica
        calls.append(data["workloads"][0]["arrival"]["rate_rps"])
        return data["workloads"][0]["arrival"]["rate_rps"] <= 2.5

    first = replica_capacity(tiny(), "d", cache_dir=tmp_path, meets=meets)
    n = len(calls)
    assert n == first.runs > 0 and not first.cached
    again = replica_capacity(tiny(), "d", cache_dir=tmp_path, meets=meets, hint_rps=9.0)
    assert len(calls) == n  # no simulation
    assert again.cached and (again.rate_rps, again.miss_rps) == (first.rate_rps, first.miss_rps)
    # another SLO is another question: searched again
    replica_capacity(tiny(ttft_ms=999.0), "d", cache_dir=tmp_path, meets=meets)
    assert len(calls) > n


def test_capacity_scenario_drops_limits_failures_and_keeps_the_mix():
    data = capacity_scenario_dict(tiny(), "d", 2.0, cell_replicas=3)
    assert data["deployments"][0]["replicas"] == 3
    assert data["sites"][0]["gpus"] == {"H100": 3}
    assert data["workloads"][0]["arrival"] == {"kind": "constant", "rate_rps": 6.0}
    assert data["simulation"]["fidelity"] == "exact"
    assert data["simulation"]["shard_replicas"] == 3


def test_capacity_scenario_of_a_disaggregated_deployment_holds_its_units_gpus():
    # one unit = 2 prefill workers x tp 1 + 1 decode worker x tp 2 = 4 GPUs; a cell of 3
    # units holds 3 x 4 = 12 H100 (not 3 x tp x pp = 3: tp and pp are the pools', not the
    # deployment's), and the capacity scenario passes the scenario checks
    text = TINY.replace("TTFT_MS", "1000").replace("gpus: {H100: 8}", "gpus: {H100: 12}")
    text = text.replace("    max_num_seqs: 1\n    replicas: 1\n",
                        "    disaggregated:\n      prefill: {workers: 2, tp: 1}\n"
                        "      decode: {workers: 1, tp: 2}\n    replicas: 3\n")
    data = capacity_scenario_dict(parse_scenario(text, origin="tiny"), "d", 2.0,
                                  cell_replicas=3)
    assert data["sites"][0]["gpus"] == {"H100": 12}
    parse_scenario(yaml.safe_dump(data, sort_keys=False), origin="capacity")


def test_simulated_knee_is_the_reference_twins_service_rate(tmp_path):
    """One replica with max_num_seqs 1 serves evenly spaced requests one at a time: below
    1 / S (S the time between completions of back-to-back requests) nothing queues and
    TTFT stays the isolated TTFT; above it the queue grows for the whole window and TTFT
    passes the SLO (isolated TTFT + 0.2 s) once the backlog reaches 0.2 s, i.e. within
    0.2 s / 150 s = 0.13 % of 1 / S. S comes from the independent reference twin."""
    from capacitor.engine.reference import simulate
    from capacitor.engine.replica import build_replica
    from capacitor.engine.requests import RequestBatch
    from capacitor.scenario.checks import replica_spec

    spec = tiny()
    config, coeffs = build_replica(replica_spec(spec.deployment("d")))
    k = 20  # k requests sent at once: the twin serves them back to back
    twin = simulate(RequestBatch.simple(np.zeros(k), np.full(k, 200), np.full(k, 20)),
                    config, coeffs)
    service_s = (twin.finish_s[-1] - twin.finish_s[0]) / (k - 1)
    alone = simulate(RequestBatch.simple(np.zeros(1), np.full(1, 200), np.full(1, 20)),
                     config, coeffs)
    ttft_ms = 1000.0 * (alone.first_token_s[0] - alone.send_s[0])
    spec = tiny(ttft_ms=ttft_ms + 200.0)
    found = replica_capacity(spec, "d", duration_s=120.0, warmup_s=30.0, cache_dir=tmp_path,
                             hint_rps=1.0)
    knee = 1.0 / service_s
    assert found.rate_rps <= knee * 1.0015
    assert found.miss_rps >= knee * 0.9985


def test_down_share_of_the_default_scenario():
    from capacitor.planner.capacity import down_share
    from capacitor.scenario import load_scenario

    spec = load_scenario(None)
    # GB200 NVL72: a failure drains the rack of 72 GPUs (18 trays of 4):
    # (72 / 81,000 + 18 / 30,000) per hour x 24 h = 0.035733; 1 - exp(-0.035733) = 0.035102
    assert down_share(spec, "colossus1", "GB200", 4) == pytest.approx(0.035102, abs=1e-6)
    # H100, 16 GPUs on 2 nodes: (16 / 81,000 + 2 / 30,000) x 24 = 0.0063407 -> 0.0063207
    assert down_share(spec, "colossus1", "H100", 16) == pytest.approx(0.0063207, abs=1e-6)
    assert down_share(tiny(), "s", "H100", 1) == 0.0  # no failures configured
