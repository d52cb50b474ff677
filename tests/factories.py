"""One way for tests to build scenarios: a small base scenario and dotted-path overrides.

    make_scenario()                                        # SMALL, parsed
    make_scenario(**{"workloads.0.arrival.rate_rps": 60})  # one field changed
    scenario_dict(TWO_SITES, **{"tenants.1.tier": 2})      # the dict, e.g. to write a file

A dotted path names dict keys and list indices (``deployments.0.replicas``); the last key
may be new. The bases are never modified.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from capacitor.scenario import parse_scenario
from capacitor.scenario.models import Scenario

#: A small fleet that simulates in about a second: 8 H100 replicas of Llama-3.1-8B, two
#: tenants at 30 requests/s each of fixed 500-token prompts and 100-token answers, token
#: bucket admission, a 60 s window after 10 s of warm-up.
SMALL: dict[str, Any] = yaml.safe_load("""
name: knobs
sites:
  - name: s
    power_cap_mw: 1.0
    pue: 1.2
    gpus: {H100: 8}
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    precision: BF16
    max_num_seqs: 64
    max_num_batched_tokens: 2048
    replicas: fill
tenants:
  - name: gold
    tier: 0
    slo: {ttft_p99_ms: 1000}
  - name: bronze
    tier: 1
    slo: {ttft_p99_ms: 5000, max_throttled_pct: 5}
workloads:
  - name: g
    tenant: gold
    deployment: d
    arrival: {kind: poisson, rate_rps: 30}
    lengths: {kind: fixed, input_tokens: 500, output_tokens: 100}
  - name: b
    tenant: bronze
    deployment: d
    arrival: {kind: poisson, rate_rps: 30}
    lengths: {kind: fixed, input_tokens: 500, output_tokens: 100}
admission: {policy: token_bucket, bucket_depth_s: 1}
simulation:
  window: {duration_s: 60, warmup_s: 10}
  seed: 3
  fidelity: exact
""")

#: Two sites, two GPU types and two deployments (parsing and validation; not for running).
TWO_SITES: dict[str, Any] = {
    "name": "t",
    "sites": [
        {"name": "a", "power_cap_mw": 1.0, "pue": 1.2, "gpus": {"H100": 16}},
        {"name": "b", "power_cap_mw": 1.0, "pue": 1.3, "gpus": {"L40S": 8}},
    ],
    "deployments": [
        {"name": "d0", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "H100", "site": "a",
         "tp": 1, "replicas": "fill"},
        {"name": "d1", "model": "llama-3.1-8b-instruct", "gpu": "L40S", "site": "b",
         "tp": 1, "replicas": 4},
    ],
    "tenants": [
        {"name": "gold", "tier": 0, "slo": {"ttft_p99_ms": 500}},
        {"name": "free", "tier": 1},
    ],
    "workloads": [
        {"name": "w0", "tenant": "gold", "deployment": "d0",
         "arrival": {"kind": "poisson", "rate_rps": 10},
         "lengths": {"kind": "fixed", "input_tokens": 100, "output_tokens": 50}},
        {"name": "w1", "tenant": "free", "deployment": "d1",
         "arrival": {"kind": "constant", "rate_rps": 2},
         "lengths": {"kind": "fixed", "input_tokens": 100, "output_tokens": 50}},
    ],
}


#: A fleet with everything that can refuse or lose a request: failing GPUs and a site outage
#: (``sites.0.failures``), a rate-limited tenant, bursty traffic, admission control; four
#: H100 replicas of Llama-3.1-8B (the property tests vary each of these).
FAILING: dict[str, Any] = yaml.safe_load("""
name: prop
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    gpus: {H100: 4}
    failures:
      gpu_mtbf_hours: {H100: 0.005}
      repair_hours: 0.01
      outages: [{start_s: 10, duration_s: 5}]
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    precision: BF16
    max_num_seqs: 64
    max_num_batched_tokens: 2048
    max_model_len: 4096
    replicas: fill
tenants:
  - name: a
    tier: 0
    rate_limits: {requests_per_min: 60}
  - name: b
    tier: 1
workloads:
  - name: wa
    tenant: a
    deployment: d
    arrival: {kind: poisson, rate_rps: 5.0}
    lengths:
      kind: distribution
      input: {kind: lognormal, mean_tokens: 800, p99_tokens: 5000}
      output: {kind: lognormal, mean_tokens: 100, p99_tokens: 400}
  - name: wb
    tenant: b
    deployment: d
    arrival: {kind: bursty, rate_rps: 5.0, burst_rate_rps: 30.0, mean_burst_s: 2,
              mean_gap_s: 5}
    lengths: {kind: fixed, input_tokens: 300, output_tokens: 50}
routing: {policy: round_robin}
admission: {policy: queue_length, max_queue: 2}
simulation:
  window: {duration_s: 30, warmup_s: 5}
  seed: 0
  fidelity: exact
""")


#: 256 H100 replicas of Llama-3.1-8B behind one router, two tiers of chat traffic (the
#: bronze tier rate-limited): the sampled-versus-exact fidelity checks vary the load, the
#: router, the fidelity and the cell sizes.
FIDELITY: dict[str, Any] = yaml.safe_load("""
name: sampled-vs-exact
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    gpus: {H100: 256}
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
    slo: {ttft_p99_ms: 2000, e2e_p99_ms: 60000}
  - name: bronze
    tier: 1
    slo: {ttft_p99_ms: 5000}
    rate_limits: {requests_per_min: 17694}
workloads:
  - name: gold_chat
    tenant: gold
    deployment: chat
    arrival: {kind: poisson, rate_rps: 460.8}
    lengths:
      kind: distribution
      input: {kind: lognormal, mean_tokens: 600, p99_tokens: 1500}
      output: {kind: lognormal, mean_tokens: 150, p99_tokens: 400}
  - name: bronze_chat
    tenant: bronze
    deployment: chat
    arrival: {kind: poisson, rate_rps: 307.2}
    lengths:
      kind: distribution
      input: {kind: lognormal, mean_tokens: 1200, p99_tokens: 3000}
      output: {kind: lognormal, mean_tokens: 200, p99_tokens: 500}
routing: {policy: round_robin}
admission: {policy: token_bucket}
simulation:
  window: {duration_s: 600, warmup_s: 60}
  seed: 5
  fidelity: exact
  sampled_replicas: 64
  shard_replicas: 512
""")


def scenario_dict(base: dict[str, Any] = SMALL, /, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with each dotted path in ``changes`` set to its value."""
    data = copy.deepcopy(base)
    for path, value in changes.items():
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = copy.deepcopy(value)
    return data


def make_scenario(base: dict[str, Any] = SMALL, /, *, origin: str = "<test>",
                  **changes: Any) -> Scenario:
    """:func:`scenario_dict`, parsed (as ``capacitor run`` parses a file)."""
    return parse_scenario(yaml.safe_dump(scenario_dict(base, **changes)), origin=origin)
