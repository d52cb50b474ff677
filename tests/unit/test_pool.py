"""A pool of replicas behind a router: exactness against independent replicas, routing
directions, admission shedding, affinity."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine import reference, simulate
from capacitor.engine.requests import RequestBatch
from capacitor.engine.simulator import simulate_pool
from capacitor.errors import ConfigError
from tests.engine_cases import coeffs_8b_like, config, make_requests


def _subset(batch: RequestBatch, idx: np.ndarray) -> RequestBatch:
    sub = RequestBatch.simple(batch.arrival_s[idx], batch.prompt_len[idx], batch.output_len[idx])
    n = len(batch)
    seg = batch.prefix_src[idx] >= n
    sub.segment_len = batch.segment_len
    sub.prefix_src[seg] = len(idx) + (batch.prefix_src[idx][seg] - n)
    sub.prefix_len[seg] = batch.prefix_len[idx][seg]
    return sub


def test_round_robin_pool_equals_independent_replicas():
    batch = make_requests(600, rate_rps=60.0, num_segments=3, segment_len=64)
    cfg = config(num_gpu_blocks=300, max_num_seqs=16)
    coeffs = coeffs_8b_like()
    pool = simulate_pool(batch, cfg, coeffs, num_replicas=3, routing="round_robin")
    assert pool.completed.all()
    hist = np.zeros_like(pool.itl_hist)
    itl_sum = 0.0
    for rep in range(3):
        idx = np.arange(rep, 600, 3)
        assert np.all(pool.replica[idx] == rep)
        alone = simulate(_subset(batch, idx), cfg, coeffs)
        np.testing.assert_array_equal(pool.first_token_s[idx], alone.first_token_s)
        np.testing.assert_array_equal(pool.finish_s[idx], alone.finish_s)
        np.testing.assert_array_equal(pool.num_cached_tokens[idx], alone.num_cached_tokens)
        np.testing.assert_array_equal(pool.num_preemptions[idx], alone.num_preemptions)
        hist += alone.itl_hist
        itl_sum += alone.itl_sum_s.sum()
    # every inter-token gap lands in the same histogram bin as on the replica alone
    np.testing.assert_array_equal(pool.itl_hist, hist)
    assert pool.itl_sum_s.sum() == pytest.approx(itl_sum, rel=1e-12)


def _p99_e2e(r):
    return float(np.percentile((r.finish_s - r.send_s)[r.completed], 99))


def test_load_aware_routing_beats_round_robin_on_skewed_sizes():
    # every 4th request is 20x longer: round robin piles them on one replica
    n = 800
    rng = np.random.default_rng(1)
    arrival = np.sort(rng.uniform(0, 40, n))
    prompt = np.where(np.arange(n) % 4 == 0, 2000, 100)
    output = np.where(np.arange(n) % 4 == 0, 400, 20)
    batch = RequestBatch.simple(arrival, prompt, output)
    cfg = config(num_gpu_blocks=2000, max_num_seqs=32, max_num_batched_tokens=1024)
    coeffs = coeffs_8b_like()
    rr = simulate_pool(batch, cfg, coeffs, num_replicas=4, routing="round_robin")
    lot = simulate_pool(batch, cfg, coeffs, num_replicas=4, routing="least_outstanding_tokens")
    p2c = simulate_pool(batch, cfg, coeffs, num_replicas=4, routing="power_of_two", seed=3)
    assert np.all(rr.replica[::4] == 0)
    assert _p99_e2e(lot) < 0.8 * _p99_e2e(rr)
    assert _p99_e2e(p2c) < _p99_e2e(rr)
    # load is spread: no replica serves more than 40% of the tokens under LOT
    tokens = np.bincount(lot.replica, weights=prompt + output, minlength=4)
    assert tokens.max() < 0.4 * tokens.sum()


def test_queue_length_shedding_refuses_and_accounts_for_every_request():
    batch = make_requests(500, rate_rps=400.0, prompt=(200, 400), output=(50, 100))
    cfg = config(max_num_seqs=4, num_gpu_blocks=400)
    r = simulate_pool(
        batch, cfg, coeffs_8b_like(), num_replicas=2, routing="round_robin", max_queue=5
    )
    shed = r.status == 3
    assert 0 < shed.sum() < 500
    assert np.all(r.finish_s[shed] == r.send_s[shed])
    assert np.all((r.status == 1) | shed)  # every request completed or shed, once
    unlimited = simulate_pool(batch, cfg, coeffs_8b_like(), num_replicas=2)
    assert unlimited.completed.all()
    wait = r.first_token_s - r.send_s
    assert np.nanmax(wait) < np.nanmax(unlimited.first_token_s - unlimited.send_s)


def test_session_affinity_keeps_conversations_and_their_cache_together():
    batch = make_requests(420, sessions=21, prompt=(200, 300), output=(10, 40), rate_rps=40)
    session = np.arange(420) % 21  # 21 sessions: round robin scatters each over 4 replicas
    cfg = config(num_gpu_blocks=3000, max_num_seqs=32, max_num_batched_tokens=2048)
    aff = simulate_pool(
        batch, cfg, coeffs_8b_like(), num_replicas=4, routing="session_affinity", route_key=session
    )
    rr = simulate_pool(batch, cfg, coeffs_8b_like(), num_replicas=4, routing="round_robin")
    for s in range(21):
        assert len(set(aff.replica[session == s])) == 1
    second_round = np.arange(21, 42)  # round 1 of each session
    assert np.all(aff.num_cached_tokens[second_round] > 0)  # hits the first round's KV
    assert np.all(rr.num_cached_tokens[second_round] == 0)  # round 0 ran on another replica
    assert aff.num_cached_tokens.sum() > 1.2 * rr.num_cached_tokens.sum()
    assert aff.completed.all() and rr.completed.all()


def test_pool_argument_errors():
    batch = make_requests(10)
    with pytest.raises(ConfigError, match="routing"):
        simulate_pool(batch, config(), coeffs_8b_like(), num_replicas=2, routing="random")
    with pytest.raises(ConfigError, match="route_key"):
        simulate_pool(batch, config(), coeffs_8b_like(), num_replicas=2, routing="prefix_affinity")
    with pytest.raises(ConfigError, match="num_replicas"):
        simulate_pool(batch, config(), coeffs_8b_like(), num_replicas=0)


def test_a_failed_replica_loses_running_work_and_takes_none_until_repaired():
    batch = make_requests(900, rate_rps=60.0, prompt=(100, 300), output=(50, 150))
    cfg = config(num_gpu_blocks=2000, max_num_seqs=16)
    failures = (np.array([5.0]), np.array([1]), np.array([4.0]))
    r = simulate_pool(
        batch, cfg, coeffs_8b_like(), num_replicas=3, routing="round_robin", failures=failures
    )
    lost = r.status == 4
    assert lost.sum() > 0
    assert np.all(r.replica[lost] == 1)
    # lost requests were sent before the failure and end when it lands (within one step)
    assert np.all(r.send_s[lost] < 5.0)
    assert np.all((r.finish_s[lost] >= 5.0) & (r.finish_s[lost] < 5.2))
    # nothing is routed to the failed replica while it is down
    routed_later = (r.replica == 1) & (r.send_s > 5.2) & (r.send_s < 9.0)
    assert not routed_later.any()
    assert ((r.replica == 1) & (r.send_s > 9.5)).any()  # back after repair
    # every request accounted for exactly once
    assert np.all((r.status == 1) | lost)
    assert r.completed.sum() + lost.sum() == 900
    healthy = simulate_pool(batch, cfg, coeffs_8b_like(), num_replicas=3)
    assert healthy.completed.all()


def test_all_replicas_down_sheds():
    batch = make_requests(200, rate_rps=50.0)
    failures = (np.array([1.0, 1.0]), np.array([0, 1]), np.array([100.0, 100.0]))
    r = simulate_pool(batch, config(), coeffs_8b_like(), num_replicas=2, failures=failures)
    late = r.send_s > 1.5
    assert np.all(r.status[late] == 3)
    assert np.all(np.isin(r.status, [1, 3, 4]))


def test_busy_time_per_minute_adds_up():
    batch = make_requests(600, rate_rps=5.0)  # two minutes of traffic
    r = simulate_pool(batch, config(), coeffs_8b_like(), num_replicas=2, busy_bin_s=60.0,
                      num_busy_bins=4)
    assert r.busy_bins.shape == (2, 4)
    assert r.busy_bins.sum() == pytest.approx(r.busy_s, rel=1e-12)
    assert np.all(r.busy_bins[:, :2] > 0) and np.all(r.busy_bins <= 60.0 + 1.0)


def test_a_tenant_never_exceeds_its_concurrent_request_limit():
    batch = make_requests(600, rate_rps=80.0, prompt=(200, 400), output=(50, 100))
    tenant = (np.arange(600) % 2).astype(np.int16)
    r = simulate_pool(batch, config(max_num_seqs=64, num_gpu_blocks=4000), coeffs_8b_like(),
                      num_replicas=2, tenant=tenant, max_concurrent=np.array([3, 0]))
    # in flight: between send and finish, for requests that were admitted
    for k, limit in ((0, 3), (1, None)):
        ok = (tenant == k) & (r.status == 1)
        events = np.concatenate([np.stack([r.send_s[ok], np.ones(ok.sum())], 1),
                                 np.stack([r.finish_s[ok], -np.ones(ok.sum())], 1)])
        events = events[np.lexsort((events[:, 1], events[:, 0]))]
        peak = np.cumsum(events[:, 1]).max()
        if limit is not None:
            assert peak <= limit
            assert (r.status[tenant == k] == 3).sum() > 0
        else:
            assert peak > 3 and np.all(r.status[tenant == k] == 1)


def test_predicted_ttft_shedding_bounds_the_queue():
    batch = make_requests(800, rate_rps=200.0, prompt=(800, 1200), output=(50, 100))
    cfg = config(max_num_seqs=64, num_gpu_blocks=4000, max_num_batched_tokens=1024)
    free = simulate_pool(batch, cfg, coeffs_8b_like(), num_replicas=2)
    shed = simulate_pool(batch, cfg, coeffs_8b_like(), num_replicas=2, max_predicted_ttft_s=0.5)
    assert (shed.status == 3).sum() > 0
    ttft = lambda r: np.percentile((r.first_token_s - r.send_s)[r.status == 1], 99)  # noqa: E731
    assert ttft(free) > 1.0
    # the predictor counts prefill work only (decodes sharing the steps make it optimistic),
    # so the tail lands above the limit but far below the unshed one
    assert ttft(shed) < 0.7 * ttft(free)


@pytest.mark.parametrize("routing", ["round_robin", "power_of_two", "session_affinity"])
def test_replicas_running_ahead_change_no_request(routing):
    # With round robin, power of two and key routing a replica steps on until the next
    # release that may reach it (engine._lookahead); a tenant concurrency cap couples the
    # replicas and turns that off. A cap too large to bind must give identical requests.
    batch = make_requests(3000, rate_rps=400.0, num_segments=3, segment_len=64)
    cfg = config(num_gpu_blocks=400, max_num_seqs=16)
    key = np.arange(3000) % 37
    kwargs = dict(num_replicas=8, routing=routing, seed=4, route_key=key,
                  busy_bin_s=1.0, num_busy_bins=30)
    ahead = simulate_pool(batch, cfg, coeffs_8b_like(), **kwargs)
    lockstep = simulate_pool(batch, cfg, coeffs_8b_like(), tenant=np.zeros(3000, np.int16),
                             max_concurrent=np.array([10**9]), **kwargs)
    for name in ("replica", "first_token_s", "finish_s", "status", "num_cached_tokens",
                 "num_preemptions"):
        np.testing.assert_array_equal(getattr(ahead, name), getattr(lockstep, name), name)
    np.testing.assert_array_equal(ahead.itl_hist, lockstep.itl_hist)
    np.testing.assert_array_equal(ahead.busy_bins, lockstep.busy_bins)
    assert ahead.num_steps == lockstep.num_steps
    np.testing.assert_allclose(ahead.itl_sum_s, lockstep.itl_sum_s, rtol=1e-12)


@pytest.fixture(scope="module")
def one_replica_case():
    """A replica's requests and the plain-Python reference's answer for them (computed once:
    the reference takes seconds)."""
    batch = make_requests(1500, rate_rps=40.0, num_segments=2, segment_len=64)
    cfg = config(num_gpu_blocks=400, max_num_seqs=16)
    return batch, cfg, reference.simulate(batch, cfg, coeffs_8b_like())


@pytest.mark.parametrize("routing", ["round_robin", "power_of_two", "least_outstanding_tokens",
                                     "session_affinity"])
def test_one_replica_pool_is_the_replica_under_every_router(routing, one_replica_case):
    # against the reference twin, not engine.simulate (which is this same kernel, R = 1)
    batch, cfg, alone = one_replica_case
    key = np.arange(len(batch)) % 7 if routing == "session_affinity" else None
    pool = simulate_pool(batch, cfg, coeffs_8b_like(), num_replicas=1, routing=routing,
                         route_key=key)
    assert np.all(pool.replica == 0)
    assert alone.num_preemptions.sum() > 0 and alone.num_cached_tokens.sum() > 0  # not trivial
    for name in ("first_token_s", "finish_s", "num_preemptions", "num_cached_tokens"):
        np.testing.assert_array_equal(getattr(pool, name), getattr(alone, name), err_msg=name)
    np.testing.assert_array_equal(pool.itl_hist, alone.itl_hist)
