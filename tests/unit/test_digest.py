"""Run digests: latency histograms give the percentiles of the raw latencies to within their
bin width, and shards add up to the whole."""

from __future__ import annotations

import numpy as np

from capacitor.engine.result import ITL_BIN_REL_WIDTH, ITL_NUM_BINS, itl_bin_value_s, latency_bins
from capacitor.simulate.digest import add_digest
from capacitor.simulate.summary import PCTS, _hist_percentiles


def test_latency_bins_hold_each_value_within_the_relative_bin_width():
    rng = np.random.default_rng(1)
    x = np.exp(rng.uniform(np.log(1e-4), np.log(1e4), 100_000))
    centre = itl_bin_value_s(latency_bins(x))
    assert np.max(np.abs(centre / x - 1.0)) <= ITL_BIN_REL_WIDTH
    assert latency_bins(np.array([0.0, 1e-9]))[0] == 0
    assert latency_bins(np.array([1e9]))[0] == ITL_NUM_BINS - 1


def test_histogram_percentiles_match_the_raw_percentiles():
    rng = np.random.default_rng(2)
    raw_s = rng.lognormal(np.log(0.3), 1.0, 200_001)
    hist = np.bincount(latency_bins(raw_s), minlength=ITL_NUM_BINS).astype(np.float64)
    expected = np.percentile(raw_s * 1e3, PCTS)  # NumPy's linear interpolation
    got = np.array(_hist_percentiles(hist))
    np.testing.assert_allclose(got, expected, rtol=1.01 * ITL_BIN_REL_WIDTH)
    assert all(np.isnan(_hist_percentiles(np.zeros(ITL_NUM_BINS))))


def test_histogram_percentiles_by_hand():
    # latencies 1, 2, ..., 10 ms; linear interpolation at 0-based position h = 9 p / 100:
    # p50 h = 4.5 -> 5 + 0.5 x (6 - 5) = 5.5; p90 h = 8.1 -> 9.1; p99 h = 8.91 -> 9.91 ms,
    # to within a bin (0.1%)
    hist = np.bincount(latency_bins(np.arange(1, 11) * 1e-3), minlength=ITL_NUM_BINS)
    np.testing.assert_allclose(_hist_percentiles(hist.astype(np.float64)), [5.5, 9.1, 9.91],
                               rtol=ITL_BIN_REL_WIDTH)
    # weights count: 1 ms nine times and 100 ms once (sample 1 x 9, 100): p50 h = 4.5 -> 1;
    # p90 h = 8.1 -> 1 + 0.1 x 99 = 10.9; p99 h = 8.91 -> 1 + 0.91 x 99 = 91.09 ms
    hist = np.zeros(ITL_NUM_BINS)
    hist[latency_bins(np.array([1e-3, 0.1]))] = [9, 1]
    np.testing.assert_allclose(_hist_percentiles(hist), [1.0, 10.9, 91.09],
                               rtol=ITL_BIN_REL_WIDTH)


def test_adding_shard_digests_adds_every_count():
    from capacitor.simulate import run_shard, shard_sizes
    from tests.factories import make_scenario

    scenario = make_scenario(**{"simulation.shard_replicas": 3})  # 8 replicas
    sizes = shard_sizes(scenario, 0)
    assert sizes == [3, 3, 2]
    outs = [run_shard(scenario, 0, s, keep_pool=True) for s in range(len(sizes))]
    total = None
    for out in outs:
        total = add_digest(total, out.digest)
    assert total.replicas == total.simulated_replicas == 8  # 3 + 3 + 2
    # the sum of the shards' digests is the digest of all their requests together, counted
    # here from the per-request records (not from the shard digests)
    pools = [out.pool for out in outs]
    tenant = np.concatenate([p.demand.tenant for p in pools])
    counted = np.concatenate([p.measured for p in pools])
    status = np.concatenate([p.status for p in pools])
    send = np.concatenate([p.result.send_s for p in pools])
    first = np.concatenate([p.result.first_token_s for p in pools])
    assert total.num_simulated == len(status) > 0
    for k in range(len(scenario.tenants)):
        mine = counted & (tenant == k)
        done = mine & (status == 1)
        assert total.requests[k] == mine.sum() > 0
        assert total.completed[k] == done.sum() > 0
        assert total.refused[k] == (mine & (status >= 2)).sum()
        np.testing.assert_array_equal(
            total.ttft_hist[k], np.bincount(latency_bins(first[done] - send[done]),
                                            minlength=ITL_NUM_BINS))
    minutes = len(total.arrivals)
    np.testing.assert_array_equal(
        total.arrivals, np.bincount(np.minimum(send // 60, minutes - 1).astype(int),
                                    minlength=minutes))
    busy = sum(p.result.busy_bins.sum(axis=0)[:minutes] for p in pools)
    np.testing.assert_allclose(total.busy_s, busy, rtol=1e-12)
