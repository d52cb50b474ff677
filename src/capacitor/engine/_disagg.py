"""Disaggregated prefill/decode in the fast kernel: a prefill pool and a decode pool of
replicas, each with its own engine settings, in one event loop.

The two pools share one :class:`capacitor.engine._records.Fleet` (replicas ``[0, P)`` prefill,
``[P, P + D)`` decode), so one replica heap orders every replica's steps in time, and one
release heap holds both the client releases (request ``i``) and the KV arrivals at the
decode pool (``n + i``)::

    replicas:  [0 .. P) prefill | [P .. P + D) decode        (one events heap, global ids)
    releases:  i  client sends  | n + i  KV of i reaches the decode router

A request runs its prompt on a prefill replica as a request of one output token. As that
step ends its KV transfer starts; it reaches the decode router ``kv_transfer_s[i]`` later
and waits at its decode replica like any arrival. Admitted there, its prompt counts as
computed (``EngineParams.kv_from_prefill``: its blocks are allocated, nothing is
recomputed) and its first step is a decode step for it (not a prefill chunk): it computes
the first token's KV and emits the second token, and the first token reaches the client
with the second, at that step's end. Its client (closed loop, session gates) is answered
when the decode replica emits its last token. A decode replica that preempts it recomputes
it from scratch, as any preempted request.

Worker failures (global ids, carried by the prefill pool's ``PoolParams``) are taken in
the event loop as the aggregated kernel takes replica failures
(:mod:`capacitor.engine._disagg_fail`).

Each pool runs the replica steps of :mod:`capacitor.engine._step` unchanged; this module
adds only the hand-offs, done after each step from the step's finished requests
(``rep.pending_finish``, before the router is told).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from capacitor.engine._disagg_fail import _kv_lost, _worker_fails
from capacitor.engine._kernel import _next_release, _route_release, _take_release
from capacitor.engine._kernel_util import _heap_pop, _heap_push, _respond
from capacitor.engine._pool import _flush_finished, _route
from capacitor.engine._slots import _wait_insert, _wait_push_back
from capacitor.engine._state import (
    ACTIVE,
    BUSY_S,
    MAX_USED_BLOCKS,
    NEXT_FAILURE,
    NOW_S,
    NUM_PENDING_FINISH,
    NUM_RUNNING,
    NUM_WAITING,
    STEP,
)
from capacitor.engine._step import _iterate, _next_failure_s, _next_release_s, _replica_view
from capacitor.engine.codes import KERNEL_OK


@numba.njit(cache=True, error_model="numpy", inline="always")
def _route_to_decode(r, arrive_s, first_d, fleet, router_d, requests_d, engine_d, pool_d,
                     outputs_d):
    """The KV of request ``r`` reaches the decode router at ``arrive_s``: it waits at the
    decode replica the router picks (local index; global ``first_d + index``). False when
    no decode replica is up (the caller loses it)."""
    rep = _route(r, pool_d, router_d, fleet.outstanding_tokens[first_d:],
                 fleet.down_until_s[first_d:], arrive_s)
    if rep < 0:
        return False
    gid = first_d + rep
    outputs_d.replica[r] = rep
    outputs_d.send_s[r] = arrive_s  # its arrival at the decode engine (ingress 0 there)
    fleet.outstanding_tokens[gid] += requests_d.prompt_len[r] + requests_d.output_len[r]
    fleet.inflight[0] += 1  # balanced by the router's hearing of its finish
    sched = fleet.sched[gid]
    clock = fleet.clock[gid]
    if engine_d.by_priority:
        _wait_insert(sched, fleet.wait_next, r, requests_d.priority, outputs_d.send_s, 0.0)
    else:
        _wait_push_back(sched, fleet.wait_next, r)
    if sched[NUM_RUNNING] == 0 and sched[NUM_WAITING] == 1 and arrive_s > clock[NOW_S]:
        clock[NOW_S] = arrive_s  # an idle replica wakes at the arrival
    if sched[ACTIVE] == 0:
        sched[ACTIVE] = 1
        if arrive_s > clock[NOW_S]:
            clock[NOW_S] = arrive_s
        _heap_push(fleet.events, clock[NOW_S], gid)
    return True


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _run_disagg_replica(rep_id, is_prefill, fleet, kv, requests, output_len, quiet, respond,
                        outputs, engine, telemetry, send_s, ingress_s, kv_transfer_s, pool_f):
    """The replica loop of :func:`capacitor.engine._kernel.fleet_kernel` for a replica of
    either pool, with the hand-offs after each step: a prefill that finishes starts its KV
    transfer (a request of one output token is answered instead); a decode that finishes
    answers its client.
    ``quiet`` is the release plan with no one waiting on an answer (the pools' own steps
    answer no one); ``respond`` the real one; ``output_len`` the requests' full outputs;
    ``pool_f`` carries the worker failures (it stops at the next one, as it may change what
    the replica runs)."""
    rep = _replica_view(fleet, rep_id)
    sched = rep.sched
    clock = rep.clock
    events = fleet.events
    n = output_len.shape[0]
    answers = respond.concurrency > 0 or respond.child_gate.shape[0] > 0
    while True:
        _flush_finished(rep_id, rep, fleet, requests)
        until_s = min(_next_release_s(rep_id, fleet, quiet, send_s, False, ingress_s),
                      _next_failure_s(fleet, pool_f))
        if events.size[0] > 0:
            # a decode-only stretch stops at the next replica's event too: the step after
            # it may answer a client, which must come in time order across the pools
            other_s = events.time_s[0]
            if other_s <= clock[NOW_S]:  # tied, and after this replica: one step first
                other_s = np.nextafter(clock[NOW_S], math.inf)
            until_s = min(until_s, other_s)
        code = _iterate(rep_id, rep, until_s, fleet, kv, requests, quiet, outputs, engine,
                        telemetry)
        if code != KERNEL_OK:
            return code
        for j in range(sched[NUM_PENDING_FINISH]):
            r = rep.pending_finish[j]
            if is_prefill and output_len[r] > 1:  # the KV leaves as the step ends
                _heap_push(fleet.releases, clock[NOW_S] + kv_transfer_s[r], n + r)
            elif answers:
                _respond(r, True, outputs.finish_s[r], requests.arrival_s, send_s, ingress_s,
                         respond, fleet.router, fleet.releases)
        if sched[NUM_RUNNING] == 0 and sched[NUM_WAITING] == 0 and sched[NUM_PENDING_FINISH] == 0:
            sched[ACTIVE] = 0
            return KERNEL_OK
        now_s = clock[NOW_S]
        next_s = min(_next_release_s(rep_id, fleet, quiet, send_s, False, ingress_s),
                     _next_failure_s(fleet, pool_f))
        if next_s <= now_s or (
            events.size[0] > 0
            and (
                events.time_s[0] < now_s
                or (events.time_s[0] == now_s and events.index[0] < rep_id)
            )
        ):
            _heap_push(events, now_s, rep_id)
            return KERNEL_OK


@numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
def disagg_kernel(requests_p, requests_d, quiet, respond, prefix, engine_p, engine_d, pool_p,
                  pool_d, outputs_p, outputs_d, telemetry, fleet_p, fleet_d, kv_p, kv_d,
                  router_d, kv_transfer_s):
    """The event loop of a disaggregated deployment (see the module docstring). ``fleet_p``
    and ``fleet_d`` are the same state but for the MoE lookup table of each pool's step
    model; ``outputs_d`` shares ``outputs_p``'s arrays but ``send_s`` (arrivals at the
    decode pool) and ``replica`` (the decode replica)."""
    n = requests_p.prompt_len.shape[0]
    first_d = pool_p.num_replicas
    events = fleet_p.events
    send_s = outputs_p.send_s
    ingress_s = engine_p.ingress_s
    output_len = requests_d.output_len
    while True:
        release_s, i, from_heap = _next_release(fleet_p, quiet, send_s, ingress_s)
        event_s = events.time_s[0] if events.size[0] > 0 else math.inf
        failure_s = _next_failure_s(fleet_p, pool_p)
        if failure_s < release_s and failure_s <= event_s:  # as the aggregated pool's
            k = fleet_p.router[NEXT_FAILURE]
            fleet_p.router[NEXT_FAILURE] = k + 1
            _worker_fails(k, first_d, fleet_p, fleet_d, kv_p, kv_d, requests_p, requests_d,
                          respond, outputs_p, engine_p, engine_d, pool_p)
            continue
        if i >= 0 and release_s <= event_s:
            _take_release(from_heap, fleet_p, quiet, pool_p)
            if i < n:
                _route_release(i, release_s, fleet_p, requests_p, respond, prefix, engine_p,
                               pool_p, outputs_p)
            elif not _route_to_decode(i - n, release_s, first_d, fleet_d, router_d,
                                      requests_d, engine_d, pool_d, outputs_d):
                _kv_lost(i - n, release_s, fleet_d, requests_d, respond, outputs_p, ingress_s)
            continue
        if events.size[0] == 0:
            break
        popped_s = events.time_s[0]
        rep_id = _heap_pop(events)
        if fleet_p.clock[rep_id, NOW_S] > popped_s:  # its clock moved on: requeue
            _heap_push(events, fleet_p.clock[rep_id, NOW_S], rep_id)
            continue
        if rep_id < first_d:
            code = _run_disagg_replica(rep_id, True, fleet_p, kv_p, requests_p, output_len,
                                       quiet, respond, outputs_p, engine_p, telemetry, send_s,
                                       ingress_s, kv_transfer_s, pool_p)
        else:
            code = _run_disagg_replica(rep_id, False, fleet_d, kv_d, requests_d, output_len,
                                       quiet, respond, outputs_d, engine_d, telemetry, send_s,
                                       ingress_s, kv_transfer_s, pool_p)
        if code != KERNEL_OK:
            return code

    stats = telemetry.stats
    for rep_id in range(fleet_p.sched.shape[0]):
        stats[0] += fleet_p.sched[rep_id, STEP]
        stats[1] = max(stats[1], fleet_p.sched[rep_id, MAX_USED_BLOCKS])
        stats[2] += fleet_p.clock[rep_id, BUSY_S]
    return KERNEL_OK


__all__ = ["disagg_kernel"]
