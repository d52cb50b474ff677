"""Sessions that end: conversations of a number of rounds, and a context that stops at
max_model_len (truncate the oldest turns, or start over) instead of growing into refusals."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.errors import ConfigError
from capacitor.workload import shared_prefix

# One user (1 group x 1 user), system prompt 10, question 5, output 3, max_model_len 40:
# round k's prompt is 10 + 5 + k * (5 + 3) = 15 + 8k and needs 15 + 8k + 3 <= 40, so
# rounds 0, 1, 2 fit (18, 26, 34 tokens) and round 3 (42) does not: k_max = 2.
ONE_USER = dict(system_prompt_len=10, question_len=5, output_len=3, num_groups=1,
                users_per_group=1, enable_multi_turn_chat=True, arrival_s=np.arange(8.0),
                seed=42, max_model_len=40, carry_context=True)
SEGMENT = 8  # the one system-prompt segment's node id: n = 8 requests, segment 0 -> 8


def gen(**overrides):
    batch = shared_prefix.generate(**(ONE_USER | overrides))
    batch.check()
    return batch


def test_refuse_grows_until_every_round_is_refused() -> None:
    b = gen()  # context_full="refuse": inference-perf, unchanged
    assert b.prompt_len.tolist() == [15, 23, 31, 39, 39, 39, 39, 39]
    assert b.rejected.tolist() == [False] * 3 + [True] * 5


def test_truncate_keeps_the_longest_round_that_fits_and_refuses_nothing() -> None:
    b = gen(context_full="truncate")
    # rounds 3.. keep the system prompt and the last two turns: 15 + 2 * 8 = 31 tokens
    assert b.prompt_len.tolist() == [15, 23, 31, 31, 31, 31, 31, 31]
    assert not b.rejected.any()
    assert int((b.prompt_len + b.output_len).max()) <= 40
    # rounds 1, 2 extend the previous round (prompt + its 3 output tokens: 15+3, 23+3); a
    # truncated round shares only the system prompt (10 tokens, the segment)
    assert b.prefix_src.tolist() == [SEGMENT, 0, 1] + [SEGMENT] * 5
    assert b.prefix_len.tolist() == [10, 18, 26] + [10] * 5
    assert b.gate.tolist() == [-1, 0, 1, 2, 3, 4, 5, 6]  # one user, one lock


def test_new_session_starts_over_from_the_system_prompt() -> None:
    b = gen(context_full="new_session")
    # conversations of k_max + 1 = 3 rounds: 15, 23, 31, then 15 again
    assert b.prompt_len.tolist() == [15, 23, 31, 15, 23, 31, 15, 23]
    assert not b.rejected.any()
    assert b.prefix_src.tolist() == [SEGMENT, 0, 1, SEGMENT, 3, 4, SEGMENT, 6]


def test_one_round_sessions_are_all_round_zero() -> None:
    # mean 1 round: geometric(p = 1) is always 1, every request opens a conversation
    b = gen(mean_rounds_per_session=1.0, arrival_s=np.arange(20.0))
    assert b.prompt_len.tolist() == [15] * 20
    assert not b.rejected.any()
    assert np.all(b.prefix_src == 20) and np.all(b.prefix_len == 10)


def test_rounds_per_session_have_the_stated_mean() -> None:
    # 4 users, 40,000 requests; with conversations of geometric length (mean 2) the share
    # of requests that open a conversation is 1 / 2; max_model_len large so nothing caps.
    n = 40_000
    b = gen(num_groups=2, users_per_group=2, arrival_s=np.arange(float(n)),
            max_model_len=10**9, mean_rounds_per_session=2.0)
    opens = b.prompt_len == 15
    assert abs(opens.mean() - 0.5) < 0.01
    # a request is round k of its conversation with probability P(L > k) / E[L] =
    # 2^-k / 2 = 2^-(k+1) (L geometric, mean 2); mean round sum_k k 2^-(k+1) = 1, and
    # round k is 15 + 8k tokens, so the mean prompt is 15 + 8 * 1 = 23
    assert abs(b.prompt_len.mean() - 23.0) < 0.3
    assert not b.rejected.any()


def test_bad_session_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="context_full"):
        gen(context_full="drop")
    with pytest.raises(ConfigError, match="mean_rounds_per_session"):
        gen(mean_rounds_per_session=0.5)


# ----------------------------------------------- one meaning in scenarios and in validate


def _validate_batch(tmp_path, **cells):
    from capacitor.validate.experiments import Row, build_workload

    base = {"workload": "shared_prefix", "system_prompt_len": "100", "question_len": "200",
            "output_len": "50", "num_groups": "2", "users_per_group": "2",
            "enable_multi_turn_chat": "true", "stages": "10@6", "seed": "7"}
    row = Row({k: str(v) for k, v in (base | cells).items()}, tmp_path)
    row.workload = "shared_prefix"
    return build_workload(row, 1000)


def _scenario_batch(send_s, **lengths):
    from capacitor.fleet.demand import workload_batch
    from capacitor.scenario.demand import Workload

    spec = {"kind": "shared_prefix", "system_prompt_len": 100, "question_len": 200,
            "output_len": 50, "num_groups": 2, "users_per_group": 2,
            "enable_multi_turn_chat": True} | lengths
    wl = Workload(name="w", tenant="t", deployment="d", lengths=spec,
                  arrival={"kind": "poisson", "rate_rps": 1.0})
    return workload_batch(wl, send_s, 1000, 7, np.random.default_rng(0), None)


@pytest.mark.parametrize("session", [
    {},  # no carried context: every round is system prompt + question (both defaults)
    {"carry_context": True},  # grows until refused (inference-perf)
    {"carry_context": True, "context_full": "truncate", "mean_rounds_per_session": 2.0},
    {"carry_context": True, "context_full": "new_session"},
])
def test_scenario_and_validate_send_the_same_requests(tmp_path, session) -> None:
    # 60 requests over 4 users and max_model_len 1000: round k is 300 + 250k tokens + 50
    # out, so rounds 0..2 fit (350, 600, 850) and round 3 (1,100) does not
    val = _validate_batch(tmp_path, **session)
    scen = _scenario_batch(val.arrival_s, **session)
    for col in ("prompt_len", "prefix_src", "prefix_len", "gate", "rejected"):
        assert np.array_equal(getattr(val, col), getattr(scen, col)), col
    grows = session.get("carry_context", False)
    assert int(val.prompt_len.max()) == (1050 if grows and "context_full" not in session
                                         else 800 if grows else 300)
    assert val.rejected.any() == (grows and "context_full" not in session)


def test_session_options_without_a_carried_context_are_errors(tmp_path) -> None:
    from pydantic import ValidationError

    from capacitor.validate.experiments import RowError

    with pytest.raises(RowError, match="context_full.*needs enable_multi_turn_chat"):
        _validate_batch(tmp_path, context_full="truncate")
    with pytest.raises(RowError, match="mean_rounds_per_session='0.5'"):
        _validate_batch(tmp_path, carry_context="true", mean_rounds_per_session="0.5")
    with pytest.raises(ValidationError, match="needs carry_context"):
        _scenario_batch(np.zeros(1), mean_rounds_per_session=2.0)
    with pytest.raises(ValidationError, match="needs enable_multi_turn_chat"):
        _scenario_batch(np.zeros(1), enable_multi_turn_chat=False, carry_context=True)
