"""Every arrival of a fleet run is accounted for exactly once: completed, throttled, shed,
rejected or lost to a failure (runs go on until nothing is in flight)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacitor.simulate import run_scenario
from tests.factories import FAILING, make_scenario

params = st.fixed_dictionaries({
    "gpus": st.integers(1, 4),
    "mtbf": st.sampled_from([1e9, 0.005]),
    "outages": st.sampled_from([[], [{"start_s": 10, "duration_s": 5}]]),
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
    run = run_scenario(make_scenario(FAILING, origin="<property>", **{
        "sites.0.gpus.H100": p["gpus"],
        "sites.0.failures.gpu_mtbf_hours.H100": p["mtbf"],
        "sites.0.failures.outages": p["outages"],
        "deployments.0.max_num_seqs": p["seqs"],
        "tenants.0.rate_limits.requests_per_min": p["rpm"],
        "workloads.0.arrival.rate_rps": p["rate"],
        "workloads.1.arrival.rate_rps": p["rate"],
        "workloads.1.arrival.burst_rate_rps": p["burst"],
        "routing.policy": p["routing"],
        "admission": {"policy": p["admission"], "max_queue": p["max_queue"]},
        "simulation.seed": p["seed"],
    }))
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
    total = sum(t.requests for t in run.summary.tenants.values())
    assert total == run.summary.totals.requests == sum(p.measured.sum() for p in run.pools)
