"""Workload generators: stages, inference-perf shared prefix, closed loop, offline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capacitor.engine.requests import RequestBatch
from capacitor.errors import ConfigError
from capacitor.workload import closed_loop, offline, shared_prefix
from capacitor.workload.stages import (
    Stage,
    arrival_times,
    parse_stages,
    stage_counts,
    stage_starts,
)

# --------------------------------------------------------------------------- stages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.5@600;6@600", [Stage(2.5, 600.0), Stage(6.0, 600.0)]),
        ("  1 @ 10 ;\t0@5 ; ", [Stage(1.0, 10.0), Stage(0.0, 5.0)]),
        ("1e1@3", [Stage(10.0, 3.0)]),
        ("6@1200", [Stage(6.0, 1200.0)]),
    ],
)
def test_parse_stages_accepts(text: str, expected: list[Stage]) -> None:
    assert parse_stages(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "5",
        "5@",
        "@5",
        "a@5",
        "5@x",
        "5@0",
        "-1@5",
        "5@-2",
        "1@2@3",
        "1@2;;3@4",
        "nan@5",
        "5@inf",
        "1@2,3@4",
        ";",
    ],
)
def test_parse_stages_rejects_with_a_message_naming_column_and_value(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_stages(text)
    message = str(info.value)
    assert message.startswith("stages:")
    assert repr(text) in message
    assert "RATE@SECONDS" in message
    assert "\n" not in message


def test_stage_counts_round_half_up() -> None:
    stages = [Stage(2.5, 600), Stage(0.25, 10), Stage(0.1, 10), Stage(0.0, 7), Stage(1 / 3, 4)]
    assert stage_counts(stages) == [1500, 3, 1, 0, 1]


MIXED = [Stage(2.5, 10.0), Stage(0.0, 3.0), Stage(7.0, 2.0), Stage(0.25, 10.0)]


@pytest.mark.parametrize("arrival", ["poisson", "constant"])
def test_each_stage_sends_its_count_inside_its_window(arrival: str) -> None:
    t = arrival_times(MIXED, arrival, np.random.default_rng(3))
    counts = stage_counts(MIXED)
    assert counts == [25, 0, 14, 3]
    assert t.dtype == np.float64 and t.shape == (42,)
    assert np.all(np.diff(t) >= 0)
    starts = stage_starts(MIXED)
    assert starts.tolist() == [0.0, 10.0, 13.0, 15.0]
    first = 0
    for stage, start, count in zip(MIXED, starts, counts, strict=True):
        part = t[first : first + count]
        assert np.all(part >= start) and np.all(part < start + stage.duration_s)
        first += count


def test_constant_arrivals_are_evenly_spaced_from_the_stage_start() -> None:
    t = arrival_times(MIXED, "constant", np.random.default_rng(0))
    np.testing.assert_allclose(t[:25], np.arange(25) / 2.5)
    np.testing.assert_allclose(t[25:39], 13.0 + np.arange(14) / 7.0)
    np.testing.assert_allclose(t[39:], [15.0, 19.0, 23.0])
    # no randomness in constant spacing
    assert np.array_equal(t, arrival_times(MIXED, "constant", np.random.default_rng(99)))


def test_poisson_arrivals_are_deterministic_per_seed() -> None:
    a = arrival_times(MIXED, "poisson", np.random.default_rng(7))
    b = arrival_times(MIXED, "poisson", np.random.default_rng(7))
    c = arrival_times(MIXED, "poisson", np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_poisson_arrivals_look_uniform_within_a_stage() -> None:
    t = arrival_times([Stage(1000.0, 100.0)], "poisson", np.random.default_rng(1))
    hist, _ = np.histogram(t, bins=10, range=(0, 100))
    assert hist.sum() == 100_000
    assert np.all(np.abs(hist - 10_000) < 500)  # ~5 sigma


def test_unknown_arrival_names_the_column_and_valid_values() -> None:
    with pytest.raises(ConfigError, match=r"arrival: unknown value 'bursty'.*poisson, constant"):
        arrival_times(MIXED, "bursty", np.random.default_rng(0))


def test_arrival_kind_is_case_and_space_tolerant() -> None:
    t = arrival_times([Stage(2.0, 2.0)], " Constant ", np.random.default_rng(0))
    assert t.tolist() == [0.0, 0.5, 1.0, 1.5]


def test_no_requests_gives_an_empty_array() -> None:
    assert arrival_times([Stage(0.0, 5.0)], "poisson", np.random.default_rng(0)).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 50.0, allow_nan=False), st.floats(0.01, 100.0, allow_nan=False)),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["poisson", "constant"]),
    st.integers(0, 2**32 - 1),
)
def test_stage_windows_hold_property(pairs, arrival, seed) -> None:
    stages = [Stage(r, d) for r, d in pairs]
    t = arrival_times(stages, arrival, np.random.default_rng(seed))
    counts = stage_counts(stages)
    assert t.shape == (sum(counts),)
    assert np.all(np.diff(t) >= 0)
    ends = np.cumsum([s.duration_s for s in stages])
    owner = np.repeat(np.arange(len(stages)), counts)
    assert np.all(t >= stage_starts(stages)[owner])
    assert np.all(t < ends[owner])


# --------------------------------------------------------------------- shared prefix


def sp(**overrides) -> RequestBatch:
    args = dict(
        system_prompt_len=10,
        question_len=5,
        output_len=3,
        num_groups=2,
        users_per_group=2,
        enable_multi_turn_chat=True,
        arrival_s=np.arange(18, dtype=np.float64),
        seed=42,
        max_model_len=40,
        carry_context=True,
    )
    args.update(overrides)
    batch = shared_prefix.generate(**args)
    batch.check()
    return batch


def test_single_turn_shares_one_system_prompt_segment_per_group() -> None:
    groups, per_group, cycles, sys_len = 3, 4, 5, 100
    n = groups * per_group * cycles
    b = sp(
        system_prompt_len=sys_len,
        question_len=447,
        output_len=248,
        num_groups=groups,
        users_per_group=per_group,
        enable_multi_turn_chat=False,
        arrival_s=np.linspace(0.0, 10.0, n),
        max_model_len=4096,
    )
    n_prompts = groups * per_group
    assert len(b) == n
    assert b.segment_len.tolist() == [sys_len] * groups
    # the first pass over the (shuffled) prompt list starts each prompt with its group's
    # system prompt, per_group prompts per group
    first = b.prefix_src[:n_prompts]
    assert np.all(first >= n) and np.all(b.prefix_len[:n_prompts] == sys_len)
    assert np.bincount(first - n, minlength=groups).tolist() == [per_group] * groups
    assert np.all(b.prompt_len == sys_len + 447)
    assert np.all(b.output_len == 248)
    assert np.all(b.gate == -1) and not b.rejected.any()
    # the list cycles (request i sends prompt i % N): later passes repeat the first one
    later = np.arange(n_prompts, n)
    assert np.array_equal(b.prefix_src[later], later % n_prompts)
    assert np.all(b.prefix_len[later] == sys_len + 447)


def _inference_perf_slots(counts: list[int], num_prompts: int) -> np.ndarray:
    """The prompt inference-perf sends as each request: data index ``i`` (restarting at
    every stage) sends prompt ``i % N`` of its once-generated list."""
    return np.concatenate([np.arange(c) % num_prompts for c in counts]).astype(np.int64)


@pytest.mark.parametrize("multi", [False, True])
def test_a_repeated_prompt_shares_the_whole_prompt_with_an_earlier_send(multi: bool) -> None:
    counts, groups, per_group = [8, 4, 9], 2, 3
    n = sum(counts)
    b = sp(
        num_groups=groups,
        users_per_group=per_group,
        enable_multi_turn_chat=multi,
        carry_context=False,
        arrival_s=np.arange(float(n)),
        stage_counts=counts,
        max_model_len=4096,
    )
    slot = _inference_perf_slots(counts, groups * per_group)
    for i in range(n):
        earlier = np.flatnonzero(slot[:i] == slot[i])
        if earlier.size:  # same text as an earlier request: all of it is shared
            assert b.prefix_src[i] in earlier and b.prefix_len[i] == b.prompt_len[i] == 15, i
        else:  # a prompt's first send: its group's system prompt only
            assert b.prefix_src[i] >= n and b.prefix_len[i] == 10, i
    # every send of a prompt has the same system prompt as its first send
    root = np.array([src if src >= n else b.prefix_src[src] for src in b.prefix_src])
    for s in range(groups * per_group):
        assert np.unique(root[slot == s]).size == 1


def test_single_turn_order_is_a_seeded_shuffle() -> None:
    kw = dict(
        num_groups=6,
        users_per_group=3,
        enable_multi_turn_chat=False,
        arrival_s=np.zeros(18),
        max_model_len=4096,
    )
    a, b, c = sp(seed=1, **kw), sp(seed=1, **kw), sp(seed=2, **kw)
    assert np.array_equal(a.prefix_src, b.prefix_src)
    assert not np.array_equal(a.prefix_src, c.prefix_src)
    assert not np.array_equal(a.prefix_src, 18 + np.arange(18) // 3)  # not group-major


def test_single_turn_too_long_for_the_model_is_rejected() -> None:
    b = sp(enable_multi_turn_chat=False, max_model_len=17)  # 10 + 5 + 3 = 18 > 17
    assert b.rejected.all()
    assert not sp(enable_multi_turn_chat=False, max_model_len=18).rejected.any()


def test_multi_turn_without_carried_context_sends_single_turn_requests() -> None:
    # The measured inference-perf runs: every round is system prompt + question, no gate.
    kw = dict(stage_counts=[10, 8], max_model_len=4096)
    multi = sp(enable_multi_turn_chat=True, carry_context=False, **kw)
    single = sp(enable_multi_turn_chat=False, **kw)
    for name in ("prompt_len", "output_len", "prefix_src", "prefix_len", "gate", "rejected"):
        assert np.array_equal(getattr(multi, name), getattr(single, name)), name
    assert np.all(multi.prompt_len == 15) and np.all(multi.gate == -1)
    assert not multi.rejected.any()


def test_multi_turn_hand_worked_example() -> None:
    # system 10, question 5, output 3, 2 groups x 2 users (N = 4), max_model_len 40.
    # round k prompt = 10 + 5 + k * (5 + 3) = 15, 23, 31, 39; round 3: 39 + 3 = 42 > 40, so
    # it is rejected, the context stays at round 2's prompt + output (34) and round 4 sends
    # the same 39-token prompt, rejected again.
    b = sp()
    n = 18
    assert b.prompt_len.tolist() == [15] * 4 + [23] * 4 + [31] * 4 + [39] * 4 + [39] * 2
    assert b.rejected.tolist() == [False] * 12 + [True] * 6
    assert b.gate.tolist() == [-1] * 4 + list(range(14))  # gate = i - N
    assert b.prefix_len.tolist() == [10] * 4 + [18] * 4 + [26] * 4 + [34] * 4 + [34] * 2
    src = b.prefix_src.tolist()
    assert all(s in (n, n + 1) for s in src[:4])  # round 0: the user's group segment
    assert sorted(src[:4]) == [n, n, n + 1, n + 1]  # two users per group
    assert src[4:16] == list(range(12))  # rounds 1-3: the user's previous (accepted) round
    assert src[16:] == [8, 9]  # round 4: still round 2, the last accepted one
    assert b.segment_len.tolist() == [10, 10]
    assert np.all(b.output_len == 3)


def test_multi_turn_prompts_grow_by_question_plus_output_per_round() -> None:
    q, o, users = 447, 248, 45
    b = sp(
        system_prompt_len=100,
        question_len=q,
        output_len=o,
        num_groups=9,
        users_per_group=5,
        arrival_s=np.arange(users * 8, dtype=np.float64),
        max_model_len=1_000_000,
    )
    rounds = b.prompt_len.reshape(8, users)
    assert np.all(np.diff(rounds, axis=0) == q + o)
    assert np.all(rounds[0] == 100 + q)
    assert not b.rejected.any()
    assert np.array_equal(b.gate[users:], np.arange(len(b) - users))
    # each user keeps its group: the chain from any request ends at the user's segment
    root = b.prefix_src.copy()
    while np.any(root < len(b)):
        inner = root < len(b)
        root[inner] = b.prefix_src[root[inner]]
    assert np.array_equal(root.reshape(8, users), np.tile(root[:users], (8, 1)))


def test_validation_runs_reject_from_round_five() -> None:
    # The trainval shape 100/447/248 at max_model_len 4096: 547 + 695 k + 248 <= 4096 for k <= 4.
    b = sp(
        system_prompt_len=100,
        question_len=447,
        output_len=248,
        num_groups=9,
        users_per_group=5,
        arrival_s=np.arange(45 * 7, dtype=np.float64),
        max_model_len=4096,
    )
    per_round = b.rejected.reshape(7, 45)
    assert not per_round[:5].any() and per_round[5:].all()
    assert np.all(b.prompt_len.reshape(7, 45)[4] + 248 <= 4096)


def test_no_round_fits_means_every_round_rejected_and_prompts_stay() -> None:
    b = sp(max_model_len=17)
    assert b.rejected.all()
    assert np.all(b.prompt_len == 15)
    assert np.all(b.prefix_src >= len(b)) and np.all(b.prefix_len == 10)


def test_stage_restart_of_the_data_index() -> None:
    # inference-perf restarts the data index at each stage: with N = 4 and stages of 6
    # requests, users run 0,1,2,3,0,1 | 0,1,2,3,0,1 and their conversations continue.
    b = sp(arrival_s=np.arange(12.0), max_model_len=10_000, stage_counts=[6, 6])
    assert b.gate.tolist() == [-1, -1, -1, -1, 0, 1, 4, 5, 2, 3, 6, 7]
    assert b.prompt_len.tolist() == [15] * 4 + [23, 23, 31, 31, 23, 23, 39, 39]
    assert b.prefix_src[6] == 4 and b.prefix_src[8] == 2
    reset = sp(
        arrival_s=np.arange(12.0),
        max_model_len=10_000,
        stage_counts=[6, 6],
        reset_sessions_each_stage=True,
    )
    assert reset.gate.tolist() == [-1, -1, -1, -1, 0, 1, -1, -1, -1, -1, 6, 7]
    assert reset.prompt_len.tolist() == [15] * 4 + [23, 23] + [15] * 4 + [23, 23]
    assert np.array_equal(reset.prefix_src[6:10], reset.prefix_src[0:4])  # same groups
    single = sp(arrival_s=np.arange(12.0), max_model_len=10_000)
    assert single.gate.tolist() == [-1] * 4 + list(range(8))


def test_stage_counts_must_cover_the_arrivals() -> None:
    with pytest.raises(ConfigError, match="stage_counts"):
        sp(arrival_s=np.arange(12.0), stage_counts=[6, 5])


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("num_groups", 0),
        ("users_per_group", -1),
        ("question_len", 0),
        ("output_len", 2.5),
        ("system_prompt_len", -1),
        ("max_model_len", None),
    ],
)
def test_shared_prefix_bad_settings_name_the_column(column: str, value) -> None:
    with pytest.raises(ConfigError, match=rf"^{column}: bad value {value!r}"):
        sp(**{column: value})


def test_shared_prefix_arrivals_must_be_sorted() -> None:
    with pytest.raises(ConfigError, match="arrival_s"):
        sp(arrival_s=np.array([0.0, 2.0, 1.0]))


def test_zero_length_system_prompt_has_no_segments() -> None:
    b = sp(system_prompt_len=0, enable_multi_turn_chat=False)
    assert b.segment_len.shape == (0,)
    # first sends share nothing; repeats share their whole prompt with the first send
    assert np.all(b.prefix_src[:4] == -1) and np.all(b.prefix_len[:4] == 0)
    assert np.array_equal(b.prefix_src[4:], np.arange(4, len(b)) % 4)
    assert np.all(b.prefix_len[4:] == 5)
    m = sp(system_prompt_len=0)
    assert np.all(m.prefix_src[:4] == -1) and m.prefix_src[4] == 0


def test_shared_prefix_is_deterministic() -> None:
    a, b = sp(seed=5), sp(seed=5)
    for name in ("prompt_len", "prefix_src", "prefix_len", "gate", "rejected", "arrival_s"):
        assert np.array_equal(getattr(a, name), getattr(b, name))


def test_empty_arrivals_give_an_empty_batch() -> None:
    for multi in (False, True):
        b = sp(arrival_s=np.zeros(0), enable_multi_turn_chat=multi)
        assert len(b) == 0


@settings(max_examples=60, deadline=None)
@given(
    sys_len=st.integers(0, 300),
    q=st.integers(1, 300),
    o=st.integers(1, 300),
    groups=st.integers(1, 4),
    per_group=st.integers(1, 4),
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=3),
    max_len=st.integers(1, 3000),
    multi=st.booleans(),
    reset=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_shared_prefix_invariants(
    sys_len, q, o, groups, per_group, counts, max_len, multi, reset, seed
) -> None:
    n = sum(counts)
    b = sp(
        system_prompt_len=sys_len,
        question_len=q,
        output_len=o,
        num_groups=groups,
        users_per_group=per_group,
        enable_multi_turn_chat=multi,
        arrival_s=np.arange(n, dtype=np.float64),
        seed=seed,
        max_model_len=max_len,
        stage_counts=counts,
        reset_sessions_each_stage=reset,
    )
    idx = np.arange(n)
    assert np.all(b.rejected == (b.prompt_len.astype(np.int64) + b.output_len > max_len))
    assert np.all((b.gate == -1) | ((b.gate >= 0) & (b.gate < idx)))
    req_src = (b.prefix_src >= 0) & (b.prefix_src < n)
    assert np.all(b.prefix_src[req_src] < idx[req_src])  # sources come first
    node_len = np.concatenate([b.prompt_len + b.output_len, b.segment_len])
    has = b.prefix_src >= 0
    assert np.all(b.prefix_len[has] <= node_len[b.prefix_src[has]])
    assert np.all(b.prefix_len[has] <= b.prompt_len[has])
    # a whole prompt is shared only with an earlier send of the same text
    whole = has & (b.prefix_len == b.prompt_len)
    assert np.all(req_src[whole])
    assert np.all(b.prompt_len[b.prefix_src[whole]] == b.prompt_len[whole])
    assert not b.rejected[b.prefix_src[req_src]].any()  # only accepted requests are sources
    # gated chains: prompts never shrink, and once rejected a user stays rejected
    g = b.gate >= 0
    assert np.all(b.prompt_len[g] >= b.prompt_len[b.gate[g]])
    assert np.all(b.rejected[g] | ~b.rejected[b.gate[g]])


def test_one_million_requests_generate() -> None:
    # (how fast: benchmarks/bench_workload.py; a timing has no place in the unit tier)
    arrivals = arrival_times(parse_stages("500@1000;500@1000"), "poisson", np.random.default_rng(0))
    assert arrivals.shape == (1_000_000,)
    for multi in (False, True):
        b = shared_prefix.generate(
            system_prompt_len=100,
            question_len=447,
            output_len=248,
            num_groups=9,
            users_per_group=5,
            enable_multi_turn_chat=multi,
            arrival_s=arrivals,
            seed=42,
            max_model_len=4096,
            stage_counts=[500_000, 500_000],
        )
        b.check()
        assert len(b) == 1_000_000


# ----------------------------------------------------------------------- closed loop


def cl(**overrides) -> RequestBatch:
    args = dict(concurrency=8, num_requests=1000, isl=100, osl=50, seed=0, max_model_len=10_000)
    args.update(overrides)
    batch = closed_loop.generate(**args)
    batch.check()
    return batch


def test_closed_loop_lengths_within_bounds() -> None:
    b = cl(min_length_fraction=0.5, num_warmup_requests=20)
    assert len(b) == 1000
    assert b.prompt_len.min() == 50 and b.prompt_len.max() == 100
    assert b.output_len.min() == 25 and b.output_len.max() == 50
    assert np.all(b.arrival_s == 0.0)
    assert b.concurrency == 8 and b.num_warmup == 20
    assert np.all(b.prefix_src == -1) and np.all(b.gate == -1) and not b.rejected.any()


def test_closed_loop_defaults_are_fixed_lengths_and_no_warmup() -> None:
    b = cl()
    assert np.all(b.prompt_len == 100) and np.all(b.output_len == 50)
    assert b.num_warmup == 0


def test_closed_loop_lower_bound_rounds_half_up() -> None:
    b = cl(isl=3, osl=1, min_length_fraction=0.5)  # round(1.5) = 2; output floor stays 1
    assert set(b.prompt_len.tolist()) == {2, 3}
    assert np.all(b.output_len == 1)


def test_closed_loop_rejects_requests_over_max_model_len() -> None:
    b = cl(min_length_fraction=0.5, max_model_len=120)
    too_long = b.prompt_len.astype(int) + b.output_len > 120
    assert too_long.any() and not too_long.all()
    assert np.array_equal(b.rejected, too_long)


def test_closed_loop_is_deterministic() -> None:
    a, b, c = (
        cl(min_length_fraction=0.3),
        cl(min_length_fraction=0.3),
        cl(min_length_fraction=0.3, seed=1),
    )
    assert np.array_equal(a.prompt_len, b.prompt_len)
    assert np.array_equal(a.output_len, b.output_len)
    assert not np.array_equal(a.prompt_len, c.prompt_len)


def test_closed_loop_fewer_requests_than_clients_is_allowed() -> None:
    b = cl(concurrency=16, num_requests=4)
    assert len(b) == 4 and b.concurrency == 16


@pytest.mark.parametrize(
    ("overrides", "column"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"num_requests": 0}, "num_requests"),
        ({"isl": 0}, "isl"),
        ({"osl": -3}, "osl"),
        ({"min_length_fraction": 0.0}, "min_length_fraction"),
        ({"min_length_fraction": 1.5}, "min_length_fraction"),
        ({"min_length_fraction": float("nan")}, "min_length_fraction"),
        ({"min_length_fraction": "half"}, "min_length_fraction"),
        ({"num_warmup_requests": -1}, "num_warmup_requests"),
        ({"num_warmup_requests": 1000}, "num_warmup_requests"),
    ],
)
def test_closed_loop_bad_settings_name_the_column(overrides, column: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{column}: bad value"):
        cl(**overrides)


# --------------------------------------------------------------------------- offline


def test_offline_all_at_zero_with_fixed_lengths() -> None:
    b = offline.generate(num_requests=500, isl=1000, osl=200, max_model_len=4096)
    b.check()
    assert len(b) == 500
    assert np.all(b.arrival_s == 0) and np.all(b.prompt_len == 1000)
    assert np.all(b.output_len == 200)
    assert b.concurrency == 0 and b.num_warmup == 0 and not b.rejected.any()
    assert np.all(b.prefix_src == -1) and np.all(b.gate == -1)


def test_offline_default_count_follows_nvidia_table() -> None:
    assert len(offline.generate(num_requests=None, isl=128, osl=128, max_model_len=4096)) == 30000
    assert offline.default_num_requests(20000, 2000) == 1000
    assert offline.default_num_requests(2048, 2048) == 1500
    assert offline.default_num_requests(777, 333) == offline.DEFAULT_NUM_REQUESTS == 1000


def test_offline_rejects_over_max_model_len_and_bad_values() -> None:
    b = offline.generate(num_requests=3, isl=20000, osl=2000, max_model_len=8192)
    assert b.rejected.all()
    with pytest.raises(ConfigError, match="^num_requests: bad value 0"):
        offline.generate(num_requests=0, isl=1, osl=1, max_model_len=8)
    with pytest.raises(ConfigError, match="^isl: bad value"):
        offline.generate(num_requests=1, isl=0, osl=1, max_model_len=8)
