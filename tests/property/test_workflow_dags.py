"""Hypothesis property of workflow dependencies on random DAGs: every call ends exactly
once — completed, refused, or never sent — and it is never sent exactly when a call it
waits for got no answer (transitively); the kernel agrees with the reference twin."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacitor.engine import reference, simulate
from capacitor.engine.status import S_COMPLETED, S_PENDING, S_REJECTED
from tests.engine_cases import coeffs_8b_like, config
from tests.unit.test_workflow_engine import _random_dags


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows=st.integers(1, 12), seed=st.integers(0, 10_000), reject_every=st.integers(0, 6),
       async_scheduling=st.booleans())
def test_every_call_ends_once_and_failures_stop_their_dependents(flows, seed, reject_every,
                                                                 async_scheduling):
    batch = _random_dags(flows, seed, reject_every=reject_every)
    cfg = config(async_scheduling=async_scheduling, num_gpu_blocks=300)
    fast = simulate(batch, cfg, coeffs_8b_like())
    ref = reference.simulate(batch, cfg, coeffs_8b_like())
    np.testing.assert_array_equal(fast.finish_s, ref.finish_s)
    np.testing.assert_array_equal(fast.send_s, ref.send_s)
    status = fast.status
    assert set(np.unique(status)) <= {S_COMPLETED, S_REJECTED, S_PENDING}
    # the expected outcome, walked by hand over the DAG in index order (parents first)
    parents = [[] for _ in range(len(batch))]
    for c in np.flatnonzero(batch.gate >= 0):
        parents[c].append(int(batch.gate[c]))
    for c, g in zip(batch.join_child, batch.join_gate, strict=True):
        parents[c].append(int(g))
    unanswered = np.zeros(len(batch), np.bool_)
    for i in range(len(batch)):
        cancelled = any(unanswered[p] for p in parents[i])
        expected = S_PENDING if cancelled else S_REJECTED if batch.rejected[i] else S_COMPLETED
        assert status[i] == expected, i
        unanswered[i] = expected != S_COMPLETED
        if expected == S_PENDING:
            assert np.isnan(fast.send_s[i]) and np.isnan(fast.finish_s[i])
        else:
            assert fast.finish_s[i] >= fast.send_s[i]
