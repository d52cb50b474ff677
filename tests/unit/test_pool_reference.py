"""The fleet kernel against the plain-Python pool reference (engine/reference_pool.py),
request by request, on small pools: round robin and key routing, queue-length shedding, and
replica failures."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine import reference, reference_pool
from capacitor.engine.requests import RequestBatch
from capacitor.engine.simulator import simulate_pool
from capacitor.engine.status import S_COMPLETED, S_LOST, S_SHED
from tests.engine_cases import assert_same_results, coeffs_8b_like, config, make_requests

SYNC_ASYNC = pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])


def _compare(batch, cfg, **pool):
    """Run both; every per-request field and every counter must be identical."""
    ref = reference_pool.simulate_pool(batch, cfg, coeffs_8b_like(), **pool)
    fast = simulate_pool(batch, cfg, coeffs_8b_like(), **pool)
    assert_same_results(fast, ref, (
        "status", "replica", "send_s", "first_token_s", "finish_s", "num_preemptions",
        "num_cached_tokens"))
    return ref


@SYNC_ASYNC
def test_one_replica_pool_reference_is_the_replica_reference(async_scheduling):
    # the pool reference's engine is reference.simulate's, stepped from outside
    batch = make_requests(300, rate_rps=60.0, num_segments=3, segment_len=64)
    cfg = config(num_gpu_blocks=300, async_scheduling=async_scheduling)
    ref = _compare(batch, cfg, num_replicas=1)
    alone = reference.simulate(batch, cfg, coeffs_8b_like())
    for name in ("first_token_s", "finish_s", "num_preemptions", "num_cached_tokens"):
        np.testing.assert_array_equal(getattr(ref, name), getattr(alone, name), err_msg=name)
    assert ref.num_preemptions.sum() > 0 and ref.num_cached_tokens.sum() > 0


@SYNC_ASYNC
@pytest.mark.parametrize("routing", ["round_robin", "session_affinity"])
def test_routed_pool_with_prefix_hits_and_preemption(routing, async_scheduling):
    batch = make_requests(300, rate_rps=60.0, num_segments=3, segment_len=64)
    cfg = config(num_gpu_blocks=150, max_num_seqs=32, async_scheduling=async_scheduling)
    key = np.arange(300) % 5
    ref = _compare(batch, cfg, num_replicas=3, routing=routing, route_key=key)
    assert np.all(ref.status == S_COMPLETED)
    assert ref.num_preemptions.sum() > 0 and ref.num_cached_tokens.sum() > 0
    if routing == "round_robin":
        np.testing.assert_array_equal(ref.replica, np.arange(300) % 3)
    else:
        np.testing.assert_array_equal(ref.replica, key % 3)


@SYNC_ASYNC
def test_queue_length_shedding(async_scheduling):
    batch = make_requests(300, rate_rps=400.0, prompt=(200, 400), output=(50, 100))
    cfg = config(max_num_seqs=4, num_gpu_blocks=400, async_scheduling=async_scheduling)
    ref = _compare(batch, cfg, num_replicas=2, max_queue=5)
    shed = ref.status == S_SHED
    assert 200 < shed.sum() < 290  # most are shed, not all
    np.testing.assert_array_equal(ref.finish_s[shed], ref.send_s[shed])


@SYNC_ASYNC
@pytest.mark.parametrize(("max_num_seqs", "max_queue"), [(16, 8), (8, 0)],
                         ids=["shedding", "rerouting"])
def test_replica_failures_with_a_release_in_every_step(max_num_seqs, max_queue,
                                                       async_scheduling):
    # A request every 5 ms and no step shorter than 8 ms (3 ms fixed + 5 ms weights): a
    # release lands in every step (the tests below cover failures between releases).
    # Replica 1 fails twice. With a bounded queue most of
    # the requests it had waiting are shed when re-routed; without, they queue elsewhere.
    n = 400
    batch = RequestBatch.simple(np.arange(n) * 0.005, np.full(n, 200), np.full(n, 60))
    cfg = config(num_gpu_blocks=2000, max_num_seqs=max_num_seqs,
                 async_scheduling=async_scheduling)
    failures = (np.array([0.5, 0.9]), np.array([1, 1]), np.array([0.3, 0.2]))
    ref = _compare(batch, cfg, num_replicas=3, failures=failures, max_queue=max_queue)
    lost = ref.status == S_LOST
    assert lost.sum() > 5 and np.all(ref.replica[lost] == 1)
    # replica 1 is down from the end of the step in progress at 0.5 s for 0.3 s
    down_from = ref.finish_s[lost & (ref.send_s < 0.5)].max()
    assert 0.5 <= down_from < 0.52
    routed_1 = (ref.replica == 1) & (ref.status != S_SHED)
    assert not np.any(routed_1 & (ref.send_s > down_from) & (ref.send_s < down_from + 0.3))
    # requests round robin sent to replica 1 before it failed, served elsewhere
    rerouted = (ref.replica != np.arange(n) % 3) & (ref.status != S_SHED) & (ref.send_s < 0.5)
    if max_queue:
        assert (ref.status == S_SHED).sum() > 100
    else:
        assert rerouted.sum() > 10 and np.all(ref.status[rerouted] == S_COMPLETED)


def test_a_failure_between_releases_lands_at_the_end_of_the_step_in_progress():
    # Poisson arrivals leave gaps longer than a step: replica 1 fails at 3 s in one of them
    batch = make_requests(400, rate_rps=60.0, prompt=(100, 300), output=(50, 150))
    cfg = config(num_gpu_blocks=2000, max_num_seqs=16, async_scheduling=True)
    _compare(batch, cfg, num_replicas=3, failures=(np.array([3.0]), np.array([1]),
                                                   np.array([2.0])))


def test_a_lone_replica_failing_mid_request_loses_it():
    # one request (100 prompt tokens, 600 output) decodes on one replica from ~0.008 s to
    # ~4.8 s; the replica fails at 1 s: the request is lost at the end of the step that was
    # running at 1 s (steps here take ~8 ms)
    batch = RequestBatch.simple(np.array([0.0]), np.array([100]), np.array([600]))
    failures = (np.array([1.0]), np.array([0]), np.array([1.0]))
    ref = _compare(batch, config(), num_replicas=1, failures=failures)
    assert ref.status[0] == S_LOST and 1.0 <= ref.finish_s[0] < 1.01


@SYNC_ASYNC
def test_routed_pool_with_mtp_speculative_decoding(async_scheduling):
    """Three replicas with MTP (2 drafts at acceptance 0.7): each replica's decode positions
    follow its own step count, and preemption hands back the draft slots."""
    batch = make_requests(300, rate_rps=60.0, num_segments=3, segment_len=64)
    draft = tuple(float(x) for x in coeffs_8b_like() / 30.0)
    cfg = config(num_gpu_blocks=150, max_num_seqs=32, async_scheduling=async_scheduling,
                 num_speculative_tokens=2, mtp_acceptance_rate=0.7, draft_coeffs=draft)
    ref = _compare(batch, cfg, num_replicas=3, routing="round_robin")
    assert np.all(ref.status == S_COMPLETED)
    assert ref.num_preemptions.sum() > 0 and ref.num_cached_tokens.sum() > 0
