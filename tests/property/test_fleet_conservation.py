"""Every arrival of a fleet run is accounted for exactly once: completed, throttled, shed,
rejected or lost to a failure (runs go on until nothing is in flight)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacitor.scenario import parse_scenario
from capacitor.simulate import run_scenario

TEMPLATE = """
name: prop
sites:
  - name: s
    power_cap_mw: 10
    pue: 1.2
    gpus: {{H100: {gpus}}}
    failures:
      gpu_mtbf_hours: {{H100: {mtbf}}}
      repair_hours: 0.01
      outages: {outages}
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    precision: BF16
    max_num_seqs: {seqs}
    max_num_batched_tokens: 2048
    max_model_len: 4096
    replicas: fill
tenants:
  - name: a
    tier: 0
    rate_limits: {{requests_per_min: {rpm}}}
  - name: b
    tier: 1
workloads:
  - name: wa
    tenant: a
    deployment: d
    arrival: {{kind: poisson, rate_rps: {rate}}}
    lengths:
      kind: distribution
      input: {{kind: lognormal, mean_tokens: 800, p99_tokens: 5000}}
      output: {{kind: lognormal, mean_tokens: 100, p99_tokens: 400}}
  - name: wb
    tenant: b
    deployment: d
    arrival: {{kind: bursty, rate_rps: {rate}, burst_rate_rps: {burst}, mean_burst_s: 2,
              mean_gap_s: 5}}
    lengths: {{kind: fixed, input_tokens: 300, output_tokens: 50}}
routing: {{policy: {routing}}}
admission: {{policy: {admission}, max_queue: {max_queue}}}
simulation:
  window: {{duration_s: 30, warmup_s: 5}}
  seed: {seed}
  fidelity: exact
"""

params = st.fixed_dictionaries({
    "gpus": st.integers(1, 4),
    "mtbf": st.sampled_from([1e9, 0.005]),
    "outages": st.sampled_from(["[]", "[{start_s: 10, duration_s: 5}]"]),
    "seqs": st.sampled_from([4, 64]),
    "rpm": st.sampled_from([60, 6000]),
    "rate": st.floats(0.5, 20.0),
    "burst": st.floats(20.0, 60.0),
    "routing": st.sampled_from(["round_robin", "least_outstanding_tokens", "power_of_two",
                                "session_affinity"]),
    "admission": st.sampled_from(["none", "token_bucket", "queue_length"]),
    "max_queue": st.sampled_from([2, 50]),
    "seed": st.integers(0, 1000),
})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params)
def test_every_request_is_accounted_for_once(p):
    run = run_scenario(parse_scenario(TEMPLATE.format(**p), origin="<property>"))
    for pool in run.pools:
        status = pool.status
        n = len(pool.demand.batch)
        assert status.shape == (n,)
        assert np.all(np.isin(status, [1, 2, 3, 4, 5]))  # nothing pending, nothing twice
        res = pool.result
        done = status == 1
        assert np.all(res.finish_s[done] >= res.first_token_s[done])
        assert np.all(res.first_token_s[done] > res.send_s[done])
        refused = ~done & (status != 4)
        assert np.all(res.finish_s[refused] == res.send_s[refused])
    total = sum(t["requests"] for t in run.summary["tenants"].values())
    assert total == run.summary["totals"]["requests"]
