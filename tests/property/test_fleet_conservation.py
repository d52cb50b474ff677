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
    assert len(run.pools) == len(run.digests) == 1
    for pool, digest in zip(run.pools, run.digests, strict=True):
        status = pool.status
        batch = pool.demand.batch
        n = len(batch)
        assert status.shape == (n,)
        assert np.all(np.isin(status, [1, 2, 3, 4, 5]))  # nothing pending
        res = pool.result
        done = status == 1
        assert np.all(res.finish_s[done] >= res.first_token_s[done])
        assert np.all(res.first_token_s[done] > res.send_s[done])
        refused = ~done & (status != 4)
        assert np.all(res.finish_s[refused] == res.send_s[refused])
        # nothing twice, from counters kept apart from the status codes:
        # a throttled request never reaches the engine (it answers it as rejected) ...
        throttled = status == 5
        assert np.all(res.status[throttled] == 2) and np.all(res.replica[throttled] == -1)
        np.testing.assert_array_equal(res.status[~throttled], status[~throttled])
        # ... the engine's inter-token gaps are each completed request's tokens once (plus
        # the tokens lost requests had made); warm-up requests' gaps are not counted
        counted_class = res.itl_count.sum()
        in_window = done & pool.measured
        gaps_done = int((batch.output_len[in_window].astype(np.int64) - 1).sum())
        if (status == 4).any():
            assert counted_class >= gaps_done
        else:
            assert counted_class == gaps_done
        # ... each request is in one minute's arrivals, each completion in one minute's
        # finishes, and each counted request either completed or refused, not both
        assert digest.arrivals.sum() == n
        assert digest.finished.sum() == done.sum()
        np.testing.assert_array_equal(digest.requests, digest.completed + digest.refused)
        for k in range(2):
            mine = pool.measured & (pool.demand.tenant == k)
            assert digest.requests[k] == mine.sum()
            assert digest.completed[k] == (mine & done).sum()
    total = sum(t["requests"] for t in run.summary["tenants"].values())
    assert total == run.summary["totals"]["requests"] == sum(p.measured.sum() for p in run.pools)
