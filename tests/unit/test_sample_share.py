"""Sampled fidelity with failures: the sample's share of a deployment's demand is its replicas
up over the deployment's (capacitor.simulate.deployment.sample_share), so its replicas up carry
the deployment's load per replica up; hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.simulate.deployment import sample_share


def test_without_failures_the_share_is_k_over_r():
    assert sample_share(64, 5000, None, 0.0, 3900.0) == 64 / 5000


def test_the_sample_and_the_fleet_up_replicas_carry_the_same_load():
    span = 1000.0
    # sample of 4 of 100: replica 1 down for the first half of the span (500 s), and one
    # interval starting before the span (-100 .. 100: 100 s inside it)
    events = (np.array([0.0, -100.0]), np.array([1, 2]), np.array([500.0, 200.0]))
    # the deployment: 10 replicas down all span = 10,000 replica-s, in sample units x 4/100
    down_s = 10 * span * 4 / 100
    # sample up = 4 - (500 + 100) / 1000 = 3.4 replicas; deployment up = 100 - 10 = 90
    assert sample_share(4, 100, events, down_s, span) == pytest.approx(3.4 / 90)


def test_a_healthy_sample_of_a_fleet_with_replicas_down_gets_more_demand():
    # the default scenario's case: 64 GB200 replicas of 5,000 none down, 3.5 % of the
    # deployment down: 64 / (5,000 x 0.965) = 1.0363 x 64 / 5,000
    span = 3900.0
    down_s = 0.035 * 5000 * span * 64 / 5000
    empty = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0))
    share = sample_share(64, 5000, empty, down_s, span)
    assert share == pytest.approx(64 / 4825)
    assert share / (64 / 5000) == pytest.approx(1.0363, abs=1e-4)
