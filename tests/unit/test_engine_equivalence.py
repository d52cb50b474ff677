"""The numba kernel and the plain-Python reference give identical per-request results."""

from __future__ import annotations

import numpy as np
import pytest

from capacitor.engine import reference, simulate
from tests.engine_cases import coeffs_8b_like, coeffs_moe_like, config, make_requests

CASES = {
    "chunked_prefill": (dict(prompt=(300, 1500)), dict(num_gpu_blocks=4000)),
    "prefix_hits": (dict(num_segments=3, segment_len=100), dict(num_gpu_blocks=4000)),
    "preemption": (dict(num_segments=2), dict(num_gpu_blocks=150, max_num_seqs=32)),
    "sessions": (
        dict(n=300, sessions=10, prompt=(20, 80), output=(1, 40)),
        dict(num_gpu_blocks=600),
    ),
    "no_prefix_caching": (dict(num_segments=3), dict(enable_prefix_caching=False)),
    "repeated_prompts": (  # whole prompts shared, sources often still in prefill or decode
        dict(n=300, rate_rps=60.0, num_segments=2, repeat_every=7, prompt=(60, 400)),
        dict(num_gpu_blocks=700),
    ),
    "ingress_egress": (dict(), dict(ingress_s=0.004, egress_s=0.002)),
    "cpu_offload": (
        dict(n=300, sessions=12, prompt=(40, 200), output=(1, 40)),
        dict(num_gpu_blocks=160, num_cpu_blocks=300, cpu_load_s_per_block=1e-4),
    ),
    "cpu_offload_tiny_host": (
        dict(n=300, sessions=12, num_segments=2, prompt=(40, 200), output=(1, 40)),
        dict(num_gpu_blocks=160, num_cpu_blocks=40, cpu_load_s_per_block=1e-4),
    ),
    "full_request_reservation": (
        dict(num_segments=2, output=(20, 200)),
        dict(num_gpu_blocks=300, max_num_seqs=32, kv_reservation="full_request"),
    ),
    "recv_interval": (  # SGLang polls for new requests every 8 decode-only steps
        dict(num_segments=2, rate_rps=60.0),
        dict(num_gpu_blocks=400, max_num_seqs=32, scheduler_recv_interval=8),
    ),
    "attention_dp_balancing": (  # TensorRT-LLM-style: 4 ranks, timeout 10 decisions
        dict(num_segments=2, rate_rps=60.0),
        dict(num_gpu_blocks=400, max_num_seqs=32, attention_dp_ranks=4,
             attention_dp_timeout_iters=10),
    ),
    "small_blocks_big_budget": (
        dict(),
        dict(block_size=4, num_gpu_blocks=900, max_num_batched_tokens=2048),
    ),
}


def _compare(batch, cfg, priority=None, coeffs=None):
    coeffs = coeffs_8b_like() if coeffs is None else coeffs
    ref = reference.simulate(batch, cfg, coeffs, priority=priority)
    fast = simulate(batch, cfg, coeffs, priority=priority)
    for name in ("send_s", "first_token_s", "finish_s"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    for name in ("completed", "num_preemptions", "num_cached_tokens"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    assert fast.num_steps == ref.num_steps
    assert fast.max_blocks_used == ref.max_blocks_used
    np.testing.assert_array_equal(fast.itl_count, ref.itl_count)
    np.testing.assert_array_equal(fast.itl_hist, ref.itl_hist)
    np.testing.assert_allclose(fast.itl_sum_s, ref.itl_sum_s, rtol=1e-9)
    return ref


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_matches_reference(case, async_scheduling):
    workload, overrides = CASES[case]
    overrides = {**overrides, "async_scheduling": async_scheduling}
    kwargs = dict(n=400)
    kwargs.update(workload)
    batch = make_requests(**kwargs)
    ref = _compare(batch, config(**overrides))
    assert ref.completed.all()
    if case == "preemption":
        assert ref.num_preemptions.sum() > 0, "case must exercise preemption"
    if case in ("prefix_hits", "sessions"):
        assert ref.num_cached_tokens.sum() > 0, "case must exercise prefix hits"
    if case == "cpu_offload":
        no_host = _compare(batch, config(**{**overrides, "num_cpu_blocks": 0}))
        assert ref.num_cached_tokens.sum() > no_host.num_cached_tokens.sum(), "host tier adds hits"
    if case == "full_request_reservation":
        assert ref.num_preemptions.sum() == 0, "a reserved request is never preempted"
        on_demand = _compare(batch, config(**{**overrides, "kv_reservation": "on_demand"}))
        assert on_demand.num_preemptions.sum() > 0, "the same load preempts on demand"
    if case == "recv_interval":
        every_step = _compare(batch, config(**{**overrides, "scheduler_recv_interval": 1}))
        assert ref.num_preemptions.sum() > 0, "case must exercise preemption"
        waited = (ref.first_token_s - ref.send_s).mean()
        assert waited > (every_step.first_token_s - every_step.send_s).mean(), "polls delay"
    if case == "attention_dp_balancing":
        unbalanced = _compare(batch, config(**{**overrides, "attention_dp_timeout_iters": 0}))
        waited = (ref.first_token_s - ref.send_s).mean()
        assert waited > (unbalanced.first_token_s - unbalanced.send_s).mean(), "holds prompts"
    if case == "no_prefix_caching":
        assert ref.num_cached_tokens.sum() == 0


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
def test_closed_loop_and_rejections_match(async_scheduling):
    batch = make_requests(200, output=(1, 60))
    batch.arrival_s[:] = 0.0
    batch.concurrency = 8
    batch.rejected[::17] = True
    ref = _compare(batch, config(async_scheduling=async_scheduling))
    assert not ref.completed[::17].any()
    assert ref.completed.sum() == 200 - len(range(0, 200, 17))


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
def test_moe_step_model_matches(async_scheduling):
    """The kernel tabulates the experts a step touches by token count (up to the token
    budget); the reference takes the power every step. Prompts longer than the budget
    make steps of every size up to it."""
    batch = make_requests(300, prompt=(20, 900), output=(1, 80))
    cfg = config(max_num_batched_tokens=512, async_scheduling=async_scheduling)
    moe = _compare(batch, cfg, coeffs=coeffs_moe_like())
    dense = _compare(batch, cfg)
    assert moe.completed.all()
    assert (moe.finish_s - moe.send_s).mean() > (dense.finish_s - dense.send_s).mean()


def test_itl_classes_split_and_exclude_gaps():
    batch = make_requests(300, output=(2, 60))
    cls = (np.arange(300) % 3) - 1  # -1 (excluded), 0, 1
    coeffs = coeffs_8b_like()
    fast = simulate(batch, config(), coeffs, itl_class=cls, num_itl_classes=2)
    ref = reference.simulate(batch, config(), coeffs, itl_class=cls, num_itl_classes=2)
    np.testing.assert_array_equal(fast.itl_hist, ref.itl_hist)
    for k in (0, 1):
        assert fast.itl_count[k] == int((batch.output_len[cls == k] - 1).sum())
    everything = simulate(batch, config(), coeffs)
    assert everything.itl_count[0] == int((batch.output_len - 1).sum())


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
def test_priority_scheduling_matches_and_protects_the_high_tier(async_scheduling):
    batch = make_requests(400, num_segments=2, output=(20, 200))
    priority = (np.arange(400) % 3).astype(np.int16)  # 0 = most important
    cfg = config(
        num_gpu_blocks=150,
        max_num_seqs=32,
        scheduling_policy="priority",
        async_scheduling=async_scheduling,
    )
    ref = _compare(batch, cfg, priority=priority)
    assert ref.num_preemptions.sum() > 0, "case must exercise preemption"
    ttft = ref.first_token_s - ref.send_s
    assert ref.num_preemptions[priority == 0].sum() < ref.num_preemptions[priority == 2].sum()
    assert np.mean(ttft[priority == 0]) < np.mean(ttft[priority == 2])
    fcfs = _compare(
        batch, config(num_gpu_blocks=150, max_num_seqs=32, async_scheduling=async_scheduling)
    )
    fcfs_ttft = fcfs.first_token_s - fcfs.send_s
    assert np.mean(ttft[priority == 0]) < np.mean(fcfs_ttft[priority == 0])


def test_async_scheduling_delays_admission_by_the_step_in_flight():
    """One request arriving mid-step is first computed a step later with async scheduling.

    Every step takes 1/16 s (a flat step model). A (10-token prompt, 10 tokens out) arrives
    at an idle engine at 0: its steps are [0, 1/16), [1/16, 2/16), ... B (10 tokens, 2 out)
    arrives at 1.5/16, during A's second step. Synchronous: B joins the step that starts at
    2/16 and its first token is out at 3/16. Async: the step starting at 2/16 was decided at
    1/16, before B came, so B joins the step at 3/16 and its first token is out at 4/16.
    A arrived at an idle engine: no step was in flight, so nothing delays it.
    """
    from capacitor.engine.requests import RequestBatch
    from capacitor.perf.step_time import C_WEIGHT_S, NUM_COEFFS

    step = 1.0 / 16
    coeffs = np.zeros(NUM_COEFFS)
    coeffs[C_WEIGHT_S] = step
    batch = RequestBatch.simple(
        np.array([0.0, 1.5 * step]), np.array([10, 10], np.int32), np.array([10, 2], np.int32)
    )
    for async_scheduling, b_first in ((False, 3 * step), (True, 4 * step)):
        cfg = config(async_scheduling=async_scheduling)
        for run in (simulate, reference.simulate):
            res = run(batch, cfg, coeffs)
            assert res.first_token_s[0] == step  # A: the step it arrived into
            assert res.finish_s[0] == 10 * step  # A: one token per step, never delayed
            assert res.first_token_s[1] == b_first
            assert res.finish_s[1] == b_first + step


def test_async_scheduling_frees_a_finished_seat_without_an_idle_step():
    """max_num_seqs=1: A (3 tokens out, steps ending 1/16, 2/16, 3/16) holds the only seat;
    B arrives at 0.5/16. The decision made at 2/16 (async) still sees A seated, so it runs
    nothing; an empty step takes no time, and B is then scheduled at 3/16 as without async:
    first token 4/16 either way."""
    from capacitor.engine.requests import RequestBatch
    from capacitor.perf.step_time import C_WEIGHT_S, NUM_COEFFS

    step = 1.0 / 16
    coeffs = np.zeros(NUM_COEFFS)
    coeffs[C_WEIGHT_S] = step
    batch = RequestBatch.simple(
        np.array([0.0, 0.5 * step]), np.array([10, 10], np.int32), np.array([3, 1], np.int32)
    )
    for async_scheduling in (False, True):
        cfg = config(max_num_seqs=1, async_scheduling=async_scheduling)
        for run in (simulate, reference.simulate):
            res = run(batch, cfg, coeffs)
            assert res.finish_s[0] == 3 * step
            assert res.first_token_s[1] == 4 * step
            assert res.num_steps == 4


def test_recv_interval_holds_arrivals_until_the_next_poll():
    """SGLang ``--scheduler-recv-interval 4``: new requests are seen only at polls, after a
    step with prompt tokens or after 4 decode-only steps.

    Every step takes 1/16 s (a flat step model); steps are numbered by their start in
    sixteenths. A (10-token prompt, 20 out) arrives at an idle engine at 0 and is prefilled
    in step 0 [0, 1). B (10 tokens, 2 out) arrives at 1.5 (during step 1) and C (10, 2) at
    5.5 (during step 5). Polls and what they see:

    * synchronous (each step decided as the last ends): step 0 took a prompt, so the
      decision at 1 polls; steps 1, 2, 3, 4 are decode-only (count 1..4), so the decisions
      at 2, 3, 4 see only arrivals by 1 and the one at 5 polls: B joins step 5 (first token
      at 6, done at 7, 6/16 instead of 3/16 with interval 1). Step 5 took B's prompt, so the
      decision at 6 polls: C joins step 6, first token at 7.
    * async (step k + 1 decided as step k starts): after step 0 (prompt) the poll is at 0,
      before B; after step 4 (the fourth decode-only step) it is at 4, and B joins step 5
      (first token at 6). After step 5 (B's prompt) the poll is at 5, before C; the next is
      after step 9, four decode-only steps later, at 9: C joins step 10, first token at 11.

    A is decoded every step throughout, so it finishes at 20 either way.
    """
    from capacitor.engine.requests import RequestBatch
    from capacitor.perf.step_time import C_WEIGHT_S, NUM_COEFFS

    step = 1.0 / 16
    coeffs = np.zeros(NUM_COEFFS)
    coeffs[C_WEIGHT_S] = step
    batch = RequestBatch.simple(
        np.array([0.0, 1.5 * step, 5.5 * step]),
        np.array([10, 10, 10], np.int32),
        np.array([20, 2, 2], np.int32),
    )
    for async_scheduling, c_first in ((False, 7), (True, 11)):
        cfg = config(async_scheduling=async_scheduling, scheduler_recv_interval=4)
        for run in (simulate, reference.simulate):
            res = run(batch, cfg, coeffs)
            assert res.first_token_s[0] == step
            assert res.finish_s[0] == 20 * step
            assert res.first_token_s[1] == 6 * step
            assert res.finish_s[1] == 7 * step
            assert res.first_token_s[2] == c_first * step
            assert res.finish_s[2] == (c_first + 1) * step


def test_attention_dp_balancing_holds_prompts_until_every_rank_has_one():
    """TensorRT-LLM's attention-DP balancing over 2 ranks with ``timeout_iters`` 4.

    Every step takes 1/16 s (a flat step model); decision k decides step k, made at k
    (synchronous: as step k - 1 ends) or at k - 1 (async: as it starts), in sixteenths.
    A and B (10-token prompts, 30 out) arrive at 0 at an idle engine: two prompts visible
    for two ranks, admitted at decision 0. From decision 1 nothing waits, so the count of
    decisions without a prompt per rank runs 1, 2, 3, then 4 = the timeout at decision 4
    (prompts let in, none there; back to 0), then 1 at decision 5. C (10, 2) arrives at
    5.5: decisions 6 and 7 see one prompt for two ranks with both ranks decoding (counts 2
    and 3): held; decision 8 reaches the timeout: C runs in step 8, first token at 9, done
    at 10 (with no balancing it would join step 6). If D (10, 2) also arrives at 6.5, the
    first decision that sees two prompts admits both: decision 7 synchronous (made at 7),
    decision 8 async (made at 7; the one made at 6 did not see D). A and B decode every
    step and finish at 30 either way.
    """
    from capacitor.engine.requests import RequestBatch
    from capacitor.perf.step_time import C_WEIGHT_S, NUM_COEFFS

    step = 1.0 / 16
    coeffs = np.zeros(NUM_COEFFS)
    coeffs[C_WEIGHT_S] = step
    for async_scheduling in (False, True):
        cfg = config(async_scheduling=async_scheduling, attention_dp_ranks=2,
                     attention_dp_timeout_iters=4)
        three = RequestBatch.simple(np.array([0.0, 0.0, 5.5 * step]),
                                    np.array([10, 10, 10], np.int32),
                                    np.array([30, 30, 2], np.int32))
        four = RequestBatch.simple(np.array([0.0, 0.0, 5.5 * step, 6.5 * step]),
                                   np.array([10, 10, 10, 10], np.int32),
                                   np.array([30, 30, 2, 2], np.int32))
        pair_first = 9 if async_scheduling else 8
        for run in (simulate, reference.simulate):
            res = run(three, cfg, coeffs)
            assert list(res.finish_s[:2]) == [30 * step, 30 * step]
            assert res.first_token_s[2] == 9 * step and res.finish_s[2] == 10 * step
            res = run(four, cfg, coeffs)
            assert list(res.first_token_s[2:]) == [pair_first * step, pair_first * step]
def _mtp(k=3, acceptance=0.85, **overrides):
    """Overrides for MTP speculative decoding with k drafts; the draft pass priced as a
    twentieth of the MoE-like model's step (any coefficient vector will do here)."""
    draft = tuple(float(x) for x in coeffs_moe_like() / 20.0)
    return {**overrides, "num_speculative_tokens": k, "mtp_acceptance_rate": acceptance,
            "draft_coeffs": draft}


MTP_CASES = {
    "mtp_chunked_prefill": (dict(prompt=(300, 1500)), _mtp(num_gpu_blocks=4000)),
    "mtp_preemption": (dict(num_segments=2), _mtp(num_gpu_blocks=150, max_num_seqs=32,
                                                  max_num_batched_tokens=256)),
    "mtp_prefix_hits": (dict(num_segments=3, segment_len=100),
                        _mtp(k=2, acceptance=0.6, num_gpu_blocks=4000)),
    "mtp_full_request_reservation": (
        dict(num_segments=2, output=(20, 200)),
        _mtp(num_gpu_blocks=300, max_num_seqs=32, max_num_batched_tokens=256,
             kv_reservation="full_request"),
    ),
    # blocks of 2 tokens: a step emits more tokens than a block holds
    "mtp_tiny_blocks": (dict(), _mtp(block_size=2, num_gpu_blocks=1500)),
    "mtp_accept_none": (dict(num_segments=2), _mtp(k=1, acceptance=0.0, num_gpu_blocks=200)),
    "mtp_accept_all": (dict(num_segments=2), _mtp(k=2, acceptance=1.0, num_gpu_blocks=200)),
    # SGLang's MTP rows: 2 drafts, new requests taken in every 10 decode-only steps
    "mtp_recv_interval": (dict(), _mtp(k=2, acceptance=0.69, num_gpu_blocks=400,
                                       max_num_seqs=32, scheduler_recv_interval=10)),
}


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", sorted(MTP_CASES))
def test_mtp_kernel_matches_reference(case, async_scheduling):
    """MTP speculative decoding: the kernel and the reference agree request by request,
    and speculation shortens the decode (fewer steps than without it)."""
    workload, overrides = MTP_CASES[case]
    overrides = {**overrides, "async_scheduling": async_scheduling}
    batch = make_requests(**{"n": 300, **workload})
    coeffs = coeffs_moe_like()
    ref = _compare(batch, config(**overrides), coeffs=coeffs)
    assert ref.completed.all()
    if case == "mtp_preemption":
        assert ref.num_preemptions.sum() > 0, "case must exercise preemption"
    if case == "mtp_prefix_hits":
        assert ref.num_cached_tokens.sum() > 0, "case must exercise prefix hits"
    off = {k: v for k, v in overrides.items()
           if k not in ("num_speculative_tokens", "mtp_acceptance_rate", "draft_coeffs")}
    plain = reference.simulate(batch, config(**off), coeffs)
    if case != "mtp_accept_none":
        assert ref.num_steps < plain.num_steps


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async"])
def test_mtp_priority_preemption_matches(async_scheduling):
    """Priority preemption undoes a decoder scheduled earlier in the step: with MTP it
    gives back the blocks of its whole window of emitted tokens."""
    batch = make_requests(300, num_segments=2)
    rng = np.random.default_rng(5)
    priority = rng.integers(0, 3, len(batch)).astype(np.int16)
    cfg = config(**_mtp(num_gpu_blocks=150, max_num_seqs=32, max_num_batched_tokens=256,
                        scheduling_policy="priority", async_scheduling=async_scheduling))
    ref = _compare(batch, cfg, priority=priority, coeffs=coeffs_moe_like())
    assert ref.completed.all()
    assert ref.num_preemptions.sum() > 0
