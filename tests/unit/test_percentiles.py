"""One percentile definition: NumPy's linear interpolation (type 7), in validate (NumPy
itself), in the engine's ITL histogram quantiles, and in the fleet summary's weighted
percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capacitor.simulate.summary import _hist_percentiles, weighted_percentiles


def test_hand_computed_linear_percentiles() -> None:
    ones = np.ones(4)
    # 1 2 3 4: p50 at position 1.5 -> 2.5; p90 at 2.7 -> 3.7; p99 at 2.97 -> 3.97
    assert weighted_percentiles(np.array([1.0, 2.0, 3.0, 4.0]), ones) == pytest.approx(
        [2.5, 3.7, 3.97])
    # weights 1 1 1 2 = the sample 1 2 3 4 4: p50 at position 2 -> 3; p90 at 3.6 -> 4
    assert weighted_percentiles(np.array([4.0, 1.0, 3.0, 2.0]), np.array([2.0, 1, 1, 1]),
                                (50, 90, 25)) == [3.0, 4.0, 2.0]
    # weight 2 each = 1 1 2 2 3 3 4 4: p50 at 3.5 -> halfway between 2 and 3
    assert weighted_percentiles(np.array([1.0, 2.0, 3.0, 4.0]), 2 * ones, (50,)) == [2.5]
    # one value: every percentile is it; nothing (or only NaN / zero weight): NaN
    assert weighted_percentiles(np.array([7.0]), np.array([3.0])) == [7.0, 7.0, 7.0]
    assert all(np.isnan(weighted_percentiles(np.array([np.nan, 1.0]), np.array([1.0, 0.0]))))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1e4), st.integers(1, 5)), min_size=1, max_size=40),
       st.lists(st.sampled_from([0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100]), min_size=1,
                max_size=4))
def test_integer_weights_give_numpy_percentile_of_the_repeated_sample(pairs, pcts) -> None:
    values = np.array([v for v, _ in pairs])
    weights = np.array([w for _, w in pairs], np.float64)
    expected = np.percentile(np.repeat(values, weights.astype(int)), pcts)
    assert weighted_percentiles(values, weights, pcts) == expected.tolist()


def test_the_summary_histogram_percentiles_match_the_engine_itl_quantiles() -> None:
    from capacitor.engine.result import ITL_NUM_BINS, EngineResult, latency_bins

    rng = np.random.default_rng(5)
    gaps_s = rng.lognormal(np.log(0.02), 0.8, 5_001)
    hist = np.bincount(latency_bins(gaps_s), minlength=ITL_NUM_BINS)
    result = EngineResult(*([None] * 6), itl_hist=hist[None, :], itl_sum_s=None,
                          itl_count=None, num_steps=0, busy_s=0.0, max_blocks_used=0)
    engine_ms = result.itl_quantiles_s([0.5, 0.9, 0.99]) * 1e3
    np.testing.assert_allclose(_hist_percentiles(hist.astype(np.float64)), engine_ms,
                               rtol=1e-12)
