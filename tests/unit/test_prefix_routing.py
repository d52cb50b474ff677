"""Affinity keys of a deployment's demand: a conversation keeps one session key in every
round; prefix affinity routes by the shared prefix, across sessions, and so finds more of
the prefix cache than session affinity; a workload's shared system prompt."""

from __future__ import annotations

import numpy as np

from capacitor.engine.simulator import simulate_pool
from capacitor.fleet.demand import merge, share_segment
from capacitor.workload import shared_prefix
from tests.engine_cases import coeffs_8b_like, config


def _conversations() -> np.ndarray:
    # 2 system prompts x 3 users = 6 sessions; 18 requests = 3 rounds each
    return shared_prefix.generate(
        system_prompt_len=64, question_len=16, output_len=8, num_groups=2, users_per_group=3,
        enable_multi_turn_chat=True, carry_context=True, arrival_s=np.arange(18.0), seed=3,
        max_model_len=4096)


def test_every_round_of_a_conversation_has_its_first_rounds_session_key():
    demand = merge([(_conversations(), 0, 0)])
    # request i is round i // 6 of session i % 6, whose first request is request i % 6
    # (shared_prefix docstring: request i is round i // N of session i % N, N = 6)
    assert demand.session.tolist() == (np.arange(18) % 6).tolist()


def test_prefix_key_is_the_system_prompt_shared_across_sessions():
    batch = _conversations()
    demand = merge([(batch, 0, 0)])
    # round 0 starts with its group's segment (node 18 or 19); later rounds chain back to it
    assert set(demand.prefix_key.tolist()) == {18, 19}
    for s in range(6):
        assert len(set(demand.prefix_key[np.arange(18) % 6 == s].tolist())) == 1
    # 3 users per system prompt: each key covers 3 sessions x 3 rounds
    assert sorted(np.unique(demand.prefix_key, return_counts=True)[1].tolist()) == [9, 9]
    assert demand.route_key("prefix_affinity") is demand.prefix_key
    assert demand.route_key("session_affinity") is demand.session


def test_prefix_affinity_finds_the_shared_prefix_session_affinity_scatters():
    # 8 one-round users of one 160-token system prompt (10 blocks of 16), 16-token questions,
    # 10 s apart (each finishes before the next arrives), 4 replicas with room to cache all.
    batch = shared_prefix.generate(
        system_prompt_len=160, question_len=16, output_len=4, num_groups=1, users_per_group=8,
        enable_multi_turn_chat=False, arrival_s=np.arange(8) * 10.0, seed=0, max_model_len=4096)
    demand = merge([(batch, 0, 0)])
    cfg = config(num_gpu_blocks=400)
    hits = {}
    for routing in ("prefix_affinity", "session_affinity"):
        r = simulate_pool(demand.batch, cfg, coeffs_8b_like(), num_replicas=4, routing=routing,
                          route_key=demand.route_key(routing))
        assert r.completed.all()
        hits[routing] = int(r.num_cached_tokens.sum())
    # prefix affinity: key = segment node 8 -> all on replica 0; request 0 computes the
    # system prompt, requests 1..7 reuse its 10 blocks: 7 x 160 = 1,120 tokens
    assert hits["prefix_affinity"] == 1120
    # session affinity: each request is its own session (keys 0..7 -> replicas 0,1,2,3,0,..):
    # requests 0..3 each compute it on their replica, 4..7 reuse it: 4 x 160 = 640 tokens
    assert hits["session_affinity"] == 640


def test_shared_segment_starts_every_prompt():
    from capacitor.engine.requests import RequestBatch
    batch = RequestBatch.simple(np.arange(3.0), np.array([100, 512, 2000]), np.array([5, 5, 5]))
    share_segment(batch, 512)
    batch.check()
    assert batch.segment_len.tolist() == [512]
    assert batch.prefix_src.tolist() == [3, 3, 3]  # node 3 = the segment after 3 requests
    assert batch.prefix_len.tolist() == [100, 512, 512]  # a short prompt is all shared text


def test_conversations_sharing_system_prompts_hit_more_by_prefix_than_by_session():
    # 2 system prompts x 6 users x 3 rounds, carried context, 4 replicas. Both affinities
    # keep a conversation on one replica (its history hits either way); prefix affinity also
    # keeps each system prompt on one replica, so it is computed twice, not once per
    # (replica, prompt) pair the sessions land on.
    batch = shared_prefix.generate(
        system_prompt_len=160, question_len=16, output_len=8, num_groups=2, users_per_group=6,
        enable_multi_turn_chat=True, carry_context=True, arrival_s=np.arange(36.0), seed=1,
        max_model_len=4096)
    demand = merge([(batch, 0, 0)])
    cached = {}
    for routing in ("prefix_affinity", "session_affinity"):
        r = simulate_pool(demand.batch, config(num_gpu_blocks=400), coeffs_8b_like(),
                          num_replicas=4, routing=routing, route_key=demand.route_key(routing))
        assert r.completed.all()
        cached[routing] = r.num_cached_tokens
    later = np.arange(36) >= 12  # rounds 1 and 2 reuse their conversation's history
    assert np.all(cached["session_affinity"][later] > 160)
    assert np.all(cached["prefix_affinity"][later] > 160)
    # round 0: 12 users; by prefix only the first user of each system prompt misses it
    assert (cached["prefix_affinity"][:12] == 160).sum() == 10
    assert (cached["prefix_affinity"][:12] == 160).sum() > (
        cached["session_affinity"][:12] == 160).sum()
    assert cached["prefix_affinity"].sum() > cached["session_affinity"].sum()
