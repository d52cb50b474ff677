"""The engine tests again with ``NUMBA_DISABLE_JIT=1``, in a subprocess: the kernel runs as
plain Python, so coverage measures its lines (STYLE.md point 7), and anything that holds only
compiled (an integer that overflows only in int32, say) shows up as a difference.

A chosen set, small enough for about a minute on two cores: every path of the kernel
(chunked prefill, prefix hits, preemption, host-tier hits, full reservation, sessions,
closed loop and rejections, MoE steps, priority scheduling, async scheduling) against the
reference twin, and the pool (routing, shedding, failures, tenant limits, predicted-TTFT
shedding) against the pool reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SELECTED = [
    "tests/unit/test_kernel_without_jit.py::test_the_kernel_is_compiled_unless_the_jit_is_off",
    "tests/unit/test_engine_equivalence.py::test_kernel_matches_reference[chunked_prefill-sync]",
    "tests/unit/test_engine_equivalence.py::test_kernel_matches_reference[prefix_hits-async]",
    "tests/unit/test_engine_equivalence.py::test_kernel_matches_reference[preemption-sync]",
    "tests/unit/test_engine_equivalence.py::test_kernel_matches_reference[cpu_offload-async]",
    "tests/unit/test_engine_equivalence.py::test_kernel_matches_reference"
    "[full_request_reservation-sync]",
    "tests/unit/test_engine_equivalence.py::test_kernel_matches_reference[sessions-async]",
    "tests/unit/test_engine_equivalence.py::test_closed_loop_and_rejections_match[sync]",
    "tests/unit/test_engine_equivalence.py::test_moe_step_model_matches[async]",
    "tests/unit/test_engine_equivalence.py::test_mtp_kernel_matches_reference"
    "[mtp_preemption-async]",
    "tests/unit/test_mtp_oracles.py::test_acceptance_one_emits_one_plus_k_tokens_per_step"
    "[kernel]",
    "tests/unit/test_engine_equivalence.py::test_itl_classes_split_and_exclude_gaps",
    "tests/unit/test_engine_equivalence.py::"
    "test_priority_scheduling_matches_and_protects_the_high_tier[async]",
    "tests/unit/test_engine_equivalence.py::"
    "test_async_scheduling_delays_admission_by_the_step_in_flight",
    "tests/unit/test_engine_oracles.py::test_single_request_matches_hand_computed_steps",
    "tests/unit/test_engine_equivalence.py::test_recv_interval_holds_arrivals_until_the_next_poll",
    "tests/unit/test_engine_equivalence.py::"
    "test_attention_dp_balancing_holds_prompts_until_every_rank_has_one",
    "tests/unit/test_engine_equivalence.py::test_kernel_matches_reference"
    "[attention_dp_balancing-async]",
    "tests/unit/test_pool_reference.py::test_routed_pool_with_prefix_hits_and_preemption"
    "[round_robin-async]",
    "tests/unit/test_pool_reference.py::test_queue_length_shedding[sync]",
    "tests/unit/test_pool_reference.py::test_replica_failures_with_a_release_in_every_step"
    "[rerouting-async]",
    "tests/unit/test_pool.py::test_a_tenant_never_exceeds_its_concurrent_request_limit",
    "tests/unit/test_disaggregated.py::test_closed_loop_clients_and_rejections_match[async]",
]


def test_the_kernel_is_compiled_unless_the_jit_is_off():
    import numba

    from capacitor.engine._kernel import fleet_kernel

    compiled = isinstance(fleet_kernel, numba.core.dispatcher.Dispatcher)
    assert compiled == (os.environ.get("NUMBA_DISABLE_JIT", "0") != "1")


def test_engine_tests_pass_with_the_jit_off():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *SELECTED],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert f"{len(SELECTED)} passed" in run.stdout, run.stdout[-2000:]
