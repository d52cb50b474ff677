"""inference-perf's shared-prefix workload, as the server sees it.

Modelled from kubernetes-sigs/inference-perf (read 2026):

- ``inference_perf/datagen/shared_prefix_datagen.py``: ``num_groups`` random system prompts
  of ``system_prompt_len`` tokens; per group ``num_prompts_per_group`` (our
  ``users_per_group``) questions of ``question_len`` tokens, built group by group, so there
  are ``N = num_groups * users_per_group`` prompts. Without ``question_distribution`` /
  ``output_distribution`` the lengths come from ``Distribution(min=max=mean=len,
  std_dev=0)``: constant. ``load_lazy_data`` serves data index ``i`` with prompt
  ``i % N`` and ``max_tokens`` of that prompt.
  *Single turn*: prompt = system prompt + " " + question; the prompt list (with its output
  lengths) is shuffled once, so request ``i`` belongs to group ``perm[i % N] //
  users_per_group`` for a random permutation ``perm``.
  *Multi turn*: one ``LocalUserSession`` per prompt, its context initialised to the group's
  system prompt; the *sessions* are shuffled (the prompts are not), and request ``i`` is
  round ``i // N`` of session ``i % N``.
- ``inference_perf/apis/user_session.py``: ``to_payload`` waits on the session's lock
  (queued rounds go in order), then sends context + " " + question; on success the context
  becomes prompt + " " + response; on failure (``process_failure``) it is left as it was.
- ``inference_perf/client/modelserver/openai_client.py``: the latency timer starts after
  ``to_payload``, i.e. after the previous round of the session has returned; a non-200
  answer goes to ``process_failure`` (recent versions; see below).
- ``inference_perf/loadgen/load_generator.py``: every stage calls ``datagen.get_data()``
  afresh, so the data index restarts at 0 in each stage (pass ``stage_counts``); multi-turn
  requests carry ``preferred_worker_id = i % num_groups`` so a session always lands on the
  same worker process and its context persists across stages.

What the measured runs sent (``carry_context=False``, the default). The public validation
runs (``data/validation``; inference-perf pinned at commit ``e8e0aa99`` by
inference-sim/tektonc-data-collection ``tekton/tasks/install-inference-perf-blis.yaml``) did
*not* carry the conversation forward, whatever the code above says today:

- inference-sim/training ``default_args/20260217-155451-llama-2-7b-tp1-codegen/results/
  summary_lifecycle_metrics.json`` (one of the 13 validation rows; its ``profile.yaml`` has
  ``enable_multi_turn_chat: true``, 44 users, 9,000 requests): 9,000 successes, 0 failures,
  ``prompt_len`` 580-604 tokens over the whole run (100 + 466 configured, plus re-tokenising
  the random text). With a growing context round 1 would already be ~1,300 tokens and round 5
  would pass 4,096 and be refused.
- the same repository's ``20260217-231439-llama-2-7b-tp1-general`` (multi turn, 0 failures,
  ``prompt_len`` 559-592) and ``20260217-170634-llama-2-7b-tp1-reasoning`` (multi turn,
  ``max_model_len`` 4096 in ``exp-config.yaml``: ``prompt_len`` 1,055-1,108 on all 732
  successes, and all 4,068 failures are 300 s client timeouts, none an immediate HTTP 400,
  although round 1 at ~3,500 + 1,448 tokens would exceed 4,096);
- inference-sim/inference-sim ``training/trainval_data/README.md``: the reasoning-lite runs
  (23 users, 1,200 requests) had a 100% success rate; PR #517 there ("real inference-perf
  sends constant input tokens per round, not accumulated context").

So by default every round of a session is sent as system prompt + question, exactly the
single-turn request (with the multi-turn assignment of sessions to system prompts, which for
constant lengths is the same shuffled group structure), and with no session gate: a session
whose context never changes evidently did not share state between its requests, and the lock
is part of that state. Each round of a user is then the very text of its first round, so
from the second pass over the prompt list on, a prefix cache holds the whole prompt (see
"single turn" below). (Why that inference-perf version lost the context was not
established: the source read here keeps it; inference-perf issue #616 reports that sessions
built by the generator never reach the request path in later versions.)
``carry_context=True`` models the sessions as inference-perf's current source describes them:

What the server sees, in :class:`RequestBatch` terms (the single separator spaces and the
re-tokenisation of response text are ignored; token counts are as configured):

- segment ``s`` (node ``n + s``) is group ``s``'s system prompt, ``system_prompt_len`` long;
- single turn: ``prompt_len = system_prompt_len + question_len``, no gate; a prompt's first
  send has source = the group's segment and ``prefix_len = system_prompt_len``; every later
  send of the same prompt (data index ``i`` sends prompt ``i % N``, so the list cycles and
  restarts at each stage) is the same text, with source = that first send and ``prefix_len
  = prompt_len``: a prefix cache serves it all but the last partial block (and at least the
  last token is computed again);
- multi turn, round ``k`` of a user (counted over the whole run): with every earlier round
  accepted, ``prompt_len = system_prompt_len + question_len + k * (question_len +
  output_len)``; the source is the user's previous accepted request (its prompt and all its
  ``output_len`` tokens, ignore_eos) or the group segment in round 0; the gate is the user's
  previous request (the session lock: sent at ``max(scheduled, previous return)``).
- vLLM answers HTTP 400 at once when ``prompt_len + output_len > max_model_len``
  (``rejected``); the context then does not grow, so that round's prompt repeats, and every
  later round of the user is rejected too (``context_full="refuse"``, the default: what
  inference-perf does).

Sessions that end (``carry_context=True`` only; both off by default, so the generator
above is unchanged unless asked):

- ``mean_rounds_per_session``: a user's requests form conversations of a random number of
  rounds, geometric on 1, 2, ... with that mean, each drawn independently; a new
  conversation starts again from the group's system prompt (round 0). The mean's source:
  LMSYS-Chat-1M (Zheng et al., 2023, arXiv:2309.11998, Table 1) reports 2.0 turns per
  conversation on average over one million real chatbot conversations; the geometric shape
  (a constant chance of stopping after each answer) is an ASSUMPTION. The user keeps its
  slot, its system-prompt group and its session lock (``gate``) across conversations.
- ``context_full``: what the client does when the next round would not fit in
  ``max_model_len`` (round ``k`` with ``system_prompt_len + question_len + k * (question_len
  + output_len) + output_len > max_model_len``): ``"refuse"`` sends it anyway (HTTP 400, as
  above); ``"truncate"`` drops the oldest turns, keeping the system prompt and as many of the
  latest turns as fit (the sliding window of chat front-ends and of LangChain's
  ``trim_messages(strategy="last")``): the prompt stays at the longest round that fits, and
  since its turns after the system prompt change every round, only the system prompt is a
  cached prefix; ``"new_session"`` starts a fresh conversation from the system prompt, as a
  user told "this conversation is too long" does.

Version notes. Older ``openai_client.process_request`` called ``process_response`` even on
a 400, which appends the (empty) response, so the context grew by the question after a
rejection; since later rounds are rejected either way this only changes the prompt length
recorded for rejected requests. The newest versions clear the session registry between
stages and re-prime every conversation from its system prompt
(``reset_sessions_each_stage=True``). The measured runs in ``data/validation`` pin
inference-perf commit ``e8e0aa99`` (inference-sim/tektonc-data-collection,
``tekton/tasks/install-inference-perf-blis.yaml``), which is not in the copies read here;
they date from February 2026, when sessions were plain objects kept for the whole run (no
reset), so the default is no reset. The shuffles use Python's unseeded ``random`` there;
here they come from ``seed``. The newest generator also shuffles prompts and sessions with
one permutation; with constant lengths that changes nothing the server sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from capacitor.engine.requests import RequestBatch
from capacitor.errors import ConfigError
from capacitor.workload.stages import require_int as _int

_INT32_MAX = np.iinfo(np.int32).max

#: What a carried-context user does when its next round would exceed ``max_model_len``.
CONTEXT_FULL = ("refuse", "truncate", "new_session")


def _arrivals(arrival_s: np.ndarray) -> np.ndarray:
    a = np.array(arrival_s, np.float64, copy=True)
    if a.ndim != 1:
        raise ConfigError(f"arrival_s must be one-dimensional, got shape {a.shape}")
    if a.size and (not np.all(np.isfinite(a)) or np.any(np.diff(a) < 0)):
        raise ConfigError("arrival_s must be finite and nondecreasing")
    return a


def _local_index(n: int, stage_counts: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per request: the data index inference-perf gives it (restarting per stage), its stage."""
    if stage_counts is None:
        return np.arange(n, dtype=np.int64), np.zeros(n, np.int64)
    counts = np.asarray([_int("stage_counts", c, 0) for c in stage_counts], np.int64)
    if int(counts.sum()) != n:
        raise ConfigError(f"stage_counts sum to {int(counts.sum())} but arrival_s has {n} requests")
    first = np.repeat(np.cumsum(counts) - counts, counts)
    stage = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    return np.arange(n, dtype=np.int64) - first, stage


def _single_turn(arrivals, slot_group, stage_counts, sys_len, q_len, o_len, max_len, groups):
    """Single-turn requests: system prompt of the slot's group + question, no gating.

    inference-perf generates its ``N`` prompts once and sends prompt ``i % N`` as data index
    ``i``, so a slot's later requests repeat its first one word for word: they share the
    whole prompt with it (a prefix cache serves all of it but the last block), and only a
    slot's first request shares just its group's system prompt.
    """
    # NOTE: built in int32 without per-request temporaries: ten million requests must stay
    # within ~100 bytes each.
    n = arrivals.shape[0]
    counts = [n] if stage_counts is None else [_int("stage_counts", c, 0) for c in stage_counts]
    if sum(counts) != n:
        raise ConfigError(f"stage_counts sum to {sum(counts)} but arrival_s has {n} requests")
    prompt = sys_len + q_len
    rejected = prompt + o_len > max_len
    num_prompts = slot_group.shape[0]
    if sys_len > 0:
        segment_len = np.full(groups, sys_len, np.int32)
        fresh_src = (slot_group + n).astype(np.int32)  # a slot's first request: its segment
    else:
        segment_len = np.zeros(0, np.int32)
        fresh_src = np.full(num_prompts, -1, np.int32)
    fresh_len = np.int32(sys_len if sys_len > 0 else 0)
    first = np.full(num_prompts, -1, np.int32)  # each slot's first request so far
    src = np.empty(n, np.int32)
    plen = np.empty(n, np.int32)
    offset = 0
    for count in counts:  # the data index restarts at every stage
        head = min(count, num_prompts)
        seen = first[:head] >= 0
        if rejected:  # refused requests are nobody's source
            seen[:] = False
        src[offset:offset + head] = np.where(seen, first[:head], fresh_src[:head])
        plen[offset:offset + head] = np.where(seen, prompt, fresh_len)
        first[:head] = np.where(first[:head] >= 0, first[:head],
                                np.arange(offset, offset + head, dtype=np.int32))
        if count > head:  # later cycles of this stage repeat its slots' first requests
            tail = slice(offset + head, offset + count)
            src[tail] = np.resize(fresh_src if rejected else first, count - head)
            plen[tail] = fresh_len if rejected else prompt
        offset += count
    return _batch(
        arrivals,
        prompt_len=np.full(n, prompt, np.int32),
        output_len=o_len,
        prefix_src=src,
        prefix_len=plen,
        gate=np.full(n, -1, np.int32),
        rejected=np.full(n, rejected, np.bool_),
        segment_len=segment_len,
    )


def generate(
    *,
    system_prompt_len: int,
    question_len: int,
    output_len: int,
    num_groups: int,
    users_per_group: int,
    enable_multi_turn_chat: bool,
    arrival_s: np.ndarray,
    seed: int,
    max_model_len: int,
    stage_counts: Sequence[int] | None = None,
    reset_sessions_each_stage: bool = False,
    carry_context: bool = False,
    mean_rounds_per_session: float | None = None,
    context_full: str = "refuse",
) -> RequestBatch:
    """The requests inference-perf's shared-prefix generator sends at times ``arrival_s``.

    ``stage_counts`` (requests per load stage, summing to ``len(arrival_s)``) makes the data
    index restart at each stage as inference-perf's load generator does; ``None`` treats the
    run as one stage. ``reset_sessions_each_stage`` restarts every conversation at each stage
    (newest inference-perf). ``carry_context`` False (default) sends every multi-turn round
    as system prompt + question with no session gate, as the measured inference-perf runs did;
    True grows each user's context by every answered round. With ``carry_context``,
    ``mean_rounds_per_session`` (None = one conversation per user for the whole run) ends
    conversations after a geometric number of rounds, and ``context_full`` ("refuse",
    "truncate" or "new_session") says what a user does when the next round would exceed
    ``max_model_len``. Lengths are in tokens; see the module docstring for semantics and the
    evidence.
    """
    sys_len = _int("system_prompt_len", system_prompt_len, 0)
    q_len = _int("question_len", question_len, 1)
    o_len = _int("output_len", output_len, 1)
    groups = _int("num_groups", num_groups, 1)
    per_group = _int("users_per_group", users_per_group, 1)
    max_len = _int("max_model_len", max_model_len, 1)
    arrivals = _arrivals(arrival_s)
    n = arrivals.shape[0]
    num_prompts = groups * per_group
    if context_full not in CONTEXT_FULL:
        raise ConfigError(f"context_full = {context_full!r}: expected one of "
                          f"{', '.join(CONTEXT_FULL)}")
    if mean_rounds_per_session is not None and not mean_rounds_per_session >= 1.0:
        raise ConfigError(f"mean_rounds_per_session = {mean_rounds_per_session}: must be "
                          ">= 1 (rounds per conversation)")

    rng = np.random.default_rng(seed)
    # The one shuffle: prompt (single turn) or session (multi turn) slot -> original position.
    slot_group = (rng.permutation(num_prompts) // per_group).astype(np.int64)
    if not (enable_multi_turn_chat and carry_context):
        return _single_turn(arrivals, slot_group, stage_counts, sys_len, q_len, o_len, max_len,
                            groups)
    local, stage = _local_index(n, stage_counts)
    slot = local % num_prompts
    group = slot_group[slot]

    if sys_len > 0:
        segment_len = np.full(groups, sys_len, np.int32)
        seg_src, seg_len = n + group, sys_len
    else:
        segment_len = np.zeros(0, np.int32)
        seg_src, seg_len = np.full(n, -1, np.int64), 0

    # A user is a session slot (per stage when sessions reset); its requests in index order.
    user = slot + stage * num_prompts if reset_sessions_each_stage else slot
    order = np.argsort(user, kind="stable")
    sorted_user = user[order]
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n, dtype=np.int64)
    run_start = np.flatnonzero(np.r_[n > 0, sorted_user[1:] != sorted_user[:-1]])
    rank_sorted = np.arange(n, dtype=np.int64) - np.repeat(run_start, np.diff(np.r_[run_start, n]))
    user_rank = rank_sorted[pos]  # the request's place among its user's requests

    gate = np.full(n, -1, np.int64)  # the session lock: the user's previous request
    has_prev = user_rank > 0
    gate[has_prev] = order[pos[has_prev] - 1]

    # Rounds 0..k_max fit (prompt + output <= max_model_len).
    step = q_len + o_len
    room = max_len - (sys_len + q_len + o_len)
    k_max = room // step if room >= 0 else -1
    if mean_rounds_per_session is not None:
        rank_sorted = _conversation_rounds(rank_sorted, run_start, mean_rounds_per_session,
                                           rng)
    if context_full == "new_session" and k_max >= 0:
        rank_sorted = rank_sorted % (k_max + 1)  # a full conversation starts over
    rnd = rank_sorted[pos]  # round k of each request within its conversation

    if context_full == "truncate":  # the oldest turns dropped: the longest round that fits
        eff = np.minimum(rnd, max(k_max, 0))
        rejected = np.full(n, k_max < 0)
    else:  # refused rounds repeat round k_max + 1 (the context does not grow)
        eff = np.minimum(rnd, k_max + 1)
        rejected = rnd > k_max
    prompt_len = sys_len + q_len + eff * step

    prefix_src = np.array(seg_src, np.int64, copy=True)
    prefix_len = np.full(n, seg_len, np.int64)
    if k_max >= 0:
        # source: the conversation's last accepted request, round min(k-1, k_max); a
        # truncated round shares only the system prompt (its turns moved on)
        chained = (rnd > 0) & ((rnd <= k_max) | (context_full != "truncate"))
        src_round = np.minimum(rnd[chained] - 1, k_max)
        prefix_src[chained] = order[pos[chained] - rnd[chained] + src_round]
        prefix_len[chained] = sys_len + q_len + src_round * step + o_len
    return _batch(
        arrivals,
        prompt_len=prompt_len,
        output_len=o_len,
        prefix_src=prefix_src,
        prefix_len=prefix_len,
        gate=gate,
        rejected=rejected,
        segment_len=segment_len,
    )


def _conversation_rounds(rank: np.ndarray, run_start: np.ndarray, mean_rounds: float,
                         rng: np.random.Generator) -> np.ndarray:
    """Per request in user order (``rank`` its place among its user's requests, each user's
    requests contiguous from ``run_start``), its round within its conversation, the user's
    requests cut into conversations of geometric length (1, 2, ...; mean ``mean_rounds``)."""
    n = rank.shape[0]
    if n == 0:
        return rank
    counts = np.diff(np.r_[run_start, n])
    # one length per request is enough: every conversation has at least one round
    length = rng.geometric(1.0 / mean_rounds, n).astype(np.int64)
    ends = np.cumsum(length)
    ends -= np.repeat(ends[run_start] - length[run_start], counts)  # per user, from 0
    user_start = np.repeat(run_start, counts)
    user_count = np.repeat(counts, counts)
    starts = np.zeros(n, np.bool_)
    starts[run_start] = True
    inside = ends < user_count
    starts[(user_start + ends)[inside]] = True
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n, dtype=np.int64) - first


def _batch(
    arrivals: np.ndarray,
    *,
    prompt_len: np.ndarray,
    output_len: int,
    prefix_src: np.ndarray,
    prefix_len: np.ndarray,
    gate: np.ndarray,
    rejected: np.ndarray,
    segment_len: np.ndarray,
) -> RequestBatch:
    n = arrivals.shape[0]
    if n and int(prompt_len.max()) + output_len > _INT32_MAX:
        raise ConfigError("shared_prefix: prompt lengths overflow int32; lower the lengths")
    return RequestBatch(
        arrival_s=arrivals,
        prompt_len=prompt_len.astype(np.int32, copy=False),
        output_len=np.full(n, output_len, np.int32),
        prefix_src=np.asarray(prefix_src).astype(np.int32, copy=False),
        prefix_len=prefix_len.astype(np.int32, copy=False),
        gate=gate.astype(np.int32, copy=False),
        rejected=rejected,
        segment_len=segment_len,
    )


__all__ = ["CONTEXT_FULL", "generate"]
