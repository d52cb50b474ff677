"""Arrival processes and token-length distributions (workload/arrivals.py, lengths.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capacitor.errors import ConfigError
from capacitor.workload import arrivals, lengths


def _check_times(t: np.ndarray, duration_s: float) -> None:
    assert t.dtype == np.float64
    assert np.all(np.diff(t) >= 0)
    assert t.size == 0 or (t[0] >= 0 and t[-1] < duration_s)


# -- poisson / constant ---------------------------------------------------------------------


def test_poisson_count_within_4_sigma_for_many_seeds() -> None:
    rate, duration = 5.0, 400.0  # mean count 2,000, sigma sqrt(2000) = 44.7
    counts = []
    for seed in range(100):
        t = arrivals.poisson(rate, duration, np.random.default_rng(seed))
        _check_times(t, duration)
        assert abs(t.size - 2000) < 4 * math.sqrt(2000)
        counts.append(t.size)
    # mean of 100 counts: sigma 4.47
    assert abs(np.mean(counts) - 2000) < 4 * math.sqrt(2000 / 100)


def test_poisson_gaps_are_exponential() -> None:
    t = arrivals.poisson(10.0, 10_000.0, np.random.default_rng(7))
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)  # CV of an exponential


def test_poisson_same_seed_same_stream() -> None:
    a = arrivals.poisson(3.0, 100.0, np.random.default_rng(42))
    b = arrivals.poisson(3.0, 100.0, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


def test_constant_is_evenly_spaced() -> None:
    np.testing.assert_allclose(arrivals.constant(2.0, 5.0), np.arange(10) * 0.5)
    np.testing.assert_allclose(arrivals.constant(3.0, 1.0), [0, 1 / 3, 2 / 3])
    assert arrivals.constant(0.0, 10.0).size == 0
    _check_times(arrivals.constant(7.0, 3.0), 3.0)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda r: arrivals.poisson(-1.0, 10.0, r), "rate_rps"),
        (lambda r: arrivals.poisson(1.0, 0.0, r), "duration_s"),
        (lambda r: arrivals.poisson(float("nan"), 1.0, r), "rate_rps"),
        (lambda r: arrivals.poisson(1.0, 10.0, 123), "rng"),
        (lambda r: arrivals.diurnal(1.0, 2.5, 14, 0, 60, r), "peak_to_mean"),
        (lambda r: arrivals.diurnal(1.0, 1.5, 24, 0, 60, r), "peak_hour"),
        (lambda r: arrivals.bursty(1.0, 5.0, 0.0, 10.0, 60, r), "mean_burst_s"),
        (lambda r: arrivals.growth_factor(-100.0, 3), "monthly_growth_pct"),
        (lambda r: arrivals.apply_growth(-5.0, 10.0, 3), "rate_rps"),
    ],
)
def test_bad_parameters_name_the_parameter(call, name: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        call(np.random.default_rng(0))
    assert "\n" not in str(info.value)


# -- diurnal --------------------------------------------------------------------------------


def test_diurnal_peaks_at_peak_hour_and_averages_the_mean() -> None:
    rng = np.random.default_rng(3)
    mean, day = 20.0, 86_400.0
    t = arrivals.diurnal(mean, 1.8, 14.0, 0.0, day, rng)
    _check_times(t, day)
    # 24 h mean rate = mean (count 1,728,000, sigma 1,315)
    assert abs(t.size - mean * day) < 4 * math.sqrt(mean * day)
    # circular mean of the time of day is the peak hour
    angle = np.angle(np.exp(2j * np.pi * t / day).mean())
    peak_hour = (angle % (2 * np.pi)) / (2 * np.pi) * 24
    assert peak_hour == pytest.approx(14.0, abs=0.1)
    hourly = np.bincount((t // 3600).astype(int), minlength=24)
    assert set(np.argsort(hourly)[-2:]) == {13, 14}  # the two hours around 14:00
    # the hour centred on the peak vs the hour centred on the trough (02:00):
    # (1 + 0.8 sinc) / (1 - 0.8 sinc) with sinc = sin(pi/24)/(pi/24) = 0.99715
    peak = np.count_nonzero((t >= 13.5 * 3600) & (t < 14.5 * 3600))
    trough = np.count_nonzero((t >= 1.5 * 3600) & (t < 2.5 * 3600))
    assert peak / trough == pytest.approx((1 + 0.8 * 0.99715) / (1 - 0.8 * 0.99715), rel=0.05)


def test_diurnal_window_is_relative_to_start_and_integrates_the_rate() -> None:
    # 06:00-08:00, far from the 18:00 peak: the thinning bound is the endpoint rate
    mean, p2m, hour, start, dur = 50.0, 1.5, 18.0, 6 * 3600.0, 7200.0
    a = p2m - 1
    w = 2 * math.pi / 86_400
    expected = mean * (dur + a / w * (math.sin(w * (start + dur - hour * 3600))
                                      - math.sin(w * (start - hour * 3600))))
    counts = [arrivals.diurnal(mean, p2m, hour, start, dur, np.random.default_rng(s)).size
              for s in range(20)]
    assert np.mean(counts) == pytest.approx(expected, abs=4 * math.sqrt(expected / 20))
    assert expected < mean * dur  # the morning is below the daily mean


def test_diurnal_flat_profile_is_poisson() -> None:
    t = arrivals.diurnal(4.0, 1.0, 12.0, 1000.0, 5000.0, np.random.default_rng(1))
    assert abs(t.size - 20_000) < 4 * math.sqrt(20_000)
    assert arrivals.diurnal_rate_rps(12 * 3600.0, 4.0, 2.0, 12.0) == pytest.approx(8.0)
    assert arrivals.diurnal_rate_rps(0.0, 4.0, 2.0, 12.0) == pytest.approx(0.0)


# -- bursty (MMPP) --------------------------------------------------------------------------


def test_mmpp_mean_rate_is_the_weighted_average() -> None:
    # 1 rps for 90 s on average, 20 rps for 10 s: (1*90 + 20*10) / 100 = 2.9 rps
    assert arrivals.mmpp_mean_rate_rps(1.0, 20.0, 10.0, 90.0) == pytest.approx(2.9)
    duration = 200_000.0
    rates = []
    for seed in range(6):
        t = arrivals.bursty(1.0, 20.0, 10.0, 90.0, duration, np.random.default_rng(seed))
        _check_times(t, duration)
        rates.append(t.size / duration)
    assert np.mean(rates) == pytest.approx(2.9, rel=0.03)


def test_mmpp_is_burstier_than_poisson() -> None:
    t = arrivals.bursty(1.0, 20.0, 10.0, 90.0, 200_000.0, np.random.default_rng(9))
    per_10s = np.bincount((t // 10).astype(int))
    assert per_10s.var() / per_10s.mean() > 5  # a Poisson stream has index of dispersion 1


def test_mmpp_state_path_covers_the_window() -> None:
    bounds, burst = arrivals.mmpp_states(10.0, 90.0, 5000.0, np.random.default_rng(2))
    assert bounds[0] == 0 and bounds[-1] == 5000.0
    assert np.all(np.diff(bounds) >= 0) and burst.size == bounds.size - 1
    assert np.all(burst[1:] != burst[:-1])  # states alternate


def test_mmpp_with_equal_rates_is_poisson() -> None:
    t = arrivals.bursty(3.0, 3.0, 5.0, 5.0, 10_000.0, np.random.default_rng(4))
    assert abs(t.size - 30_000) < 4 * math.sqrt(30_000)


# -- growth ---------------------------------------------------------------------------------


def test_growth_compounds_monthly() -> None:
    assert arrivals.growth_factor(10.0, 12) == pytest.approx(3.138428, rel=1e-6)  # 1.1**12
    assert arrivals.growth_factor(0.0, 7) == 1.0
    assert arrivals.growth_factor(-50.0, 1) == 0.5
    np.testing.assert_allclose(arrivals.growth_factor(10.0, np.array([0, 1, 2])),
                               [1.0, 1.1, 1.21])
    assert arrivals.apply_growth(100.0, 10.0, 12) == pytest.approx(313.8428, rel=1e-6)


# -- lengths --------------------------------------------------------------------------------


def test_fixed_and_uniform_lengths() -> None:
    x = lengths.fixed(5, 128)
    assert x.dtype == np.int32 and x.tolist() == [128] * 5
    u = lengths.uniform(100_000, 100, 200, np.random.default_rng(0))
    assert u.dtype == np.int32 and u.min() == 100 and u.max() == 200  # both ends included
    assert u.mean() == pytest.approx(150, abs=0.5)
    with pytest.raises(ConfigError, match="max_tokens"):
        lengths.uniform(3, 10, 5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="tokens"):
        lengths.fixed(3, 0)


def test_lognormal_sigma_from_mean_and_p99() -> None:
    # Azure 2023 code trace: input mean 2,048, p99 7,436.
    # sigma = z - sqrt(z^2 - 2 ln(7436/2048)) = 2.3263 - sqrt(5.4119 - 2.5788) = 0.6431
    s = lengths.lognormal_sigma(2048, 7436)
    assert s == pytest.approx(0.6431, abs=1e-3)
    mu = math.log(2048) - s * s / 2
    assert math.exp(mu + lengths.Z99 * s) == pytest.approx(7436, rel=1e-9)
    with pytest.raises(ConfigError, match="p99_tokens"):
        lengths.lognormal_sigma(1000, 900)  # p99 below the mean
    with pytest.raises(ConfigError, match="p99_tokens"):
        lengths.lognormal_sigma(1000, 20_000)  # above ~15x the mean


def test_lognormal_hits_mean_and_p99() -> None:
    x = lengths.lognormal(400_000, 2048, np.random.default_rng(5), p99_tokens=7436)
    assert x.dtype == np.int32 and x.min() >= 1
    assert x.mean() == pytest.approx(2048, rel=0.01)
    assert np.percentile(x, 99) == pytest.approx(7436, rel=0.03)
    y = lengths.lognormal(200_000, 500, np.random.default_rng(5), sigma=1.0)
    assert y.mean() == pytest.approx(500, rel=0.02)


def test_lognormal_clips_and_needs_one_shape() -> None:
    x = lengths.lognormal(50_000, 1000, np.random.default_rng(1), sigma=1.5, min_tokens=64,
                          max_tokens=4096)
    assert x.min() == 64 and x.max() == 4096
    with pytest.raises(ConfigError, match="exactly one"):
        lengths.lognormal(10, 1000, np.random.default_rng(1))
    with pytest.raises(ConfigError, match="exactly one"):
        lengths.lognormal(10, 1000, np.random.default_rng(1), sigma=1.0, p99_tokens=3000)


def test_empirical_resamples_observed_values() -> None:
    pool = np.array([10, 20, 30])
    x = lengths.empirical(3000, pool, np.random.default_rng(0))
    assert set(np.unique(x)) == {10, 20, 30} and x.dtype == np.int32
    with pytest.raises(ConfigError, match="values"):
        lengths.empirical(5, np.array([0, 4]), np.random.default_rng(0))
