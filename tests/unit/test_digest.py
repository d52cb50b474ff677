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


def test_histogram_percentiles_match_the_raw_nearest_rank_percentiles():
    rng = np.random.default_rng(2)
    raw_s = rng.lognormal(np.log(0.3), 1.0, 200_001)
    hist = np.bincount(latency_bins(raw_s), minlength=ITL_NUM_BINS).astype(np.float64)
    expected = np.percentile(raw_s * 1e3, PCTS, method="inverted_cdf")
    got = np.array(_hist_percentiles(hist))
    np.testing.assert_allclose(got, expected, rtol=1.01 * ITL_BIN_REL_WIDTH)
    assert all(np.isnan(_hist_percentiles(np.zeros(ITL_NUM_BINS))))


def test_adding_shard_digests_adds_every_count():
    import yaml

    from capacitor.scenario import parse_scenario
    from capacitor.simulate import run_shard, shard_sizes
    from tests.integration.test_scenario_knobs import BASE  # a small 8-replica scenario

    data = dict(BASE, simulation={**BASE["simulation"], "shard_replicas": 3})
    scenario = parse_scenario(yaml.safe_dump(data), origin="<digest>")
    sizes = shard_sizes(scenario, 0)
    assert sizes == [3, 3, 2]
    outs = [run_shard(scenario, 0, s) for s in range(len(sizes))]
    fresh = [run_shard(scenario, 0, s).digest for s in range(len(sizes))]
    total = None
    for out in outs:
        total = add_digest(total, out.digest)
    assert total.replicas == total.simulated_replicas == 8
    for name in ("requests", "completed", "refused", "ttft_hist", "arrivals", "busy_s"):
        np.testing.assert_array_equal(getattr(total, name),
                                      sum(getattr(d, name) for d in fresh))
    assert total.num_simulated == sum(d.num_simulated for d in fresh)
