"""Worker failures in the disaggregated kernel (:mod:`capacitor.engine._disagg`), with the
aggregated pool's semantics (:func:`capacitor.engine._kernel._replica_fails`).

Failure ``k`` (``pool.fail_at_s[k]``, worker ``pool.fail_replica[k]`` in global ids: prefill
workers ``[0, P)``, decode workers ``[P, P + D)``; ``pool`` is the prefill pool's
:class:`~capacitor.engine._records.PoolParams`, which carries the failures of both) takes
its worker down: the step in progress completes, then

* a prefill worker loses its running requests (status LOST, their clients get the error
  then) and sends its waiting ones back to the prefill router at once, as an aggregated
  replica does;
* a decode worker loses its running requests and its waiting ones too: their KV was
  transferred into this worker's memory, which is gone (ASSUMPTION: the KV is not re-sent;
  the prefill worker freed it when the transfer started, as SGLang's and Dynamo's prefill
  workers do).

Either takes nothing until ``fail_repair_s[k]`` later (the routers skip it). The decode
router picks a worker when the KV arrives, so KV still in flight is not bound to a worker
that fails; it goes to one that is up, and when no decode worker is up it is lost
(:func:`_kv_lost`).
"""

from __future__ import annotations

import numba

from capacitor.engine._kernel_util import _respond
from capacitor.engine._pool import _fail_replica, _flush_finished
from capacitor.engine._slots import _release_unreleased
from capacitor.engine._state import ACTIVE, FREE_UNCACHED, NOW_S, NUM_WAITING, WAIT_HEAD
from capacitor.engine._step import _replica_view
from capacitor.engine.status import S_LOST


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _kv_lost(r, now_s, fleet, requests, respond, outputs_p, ingress_s):
    """Request ``r``'s KV arrives at ``now_s`` and no decode worker is up: it is lost (its
    client gets an error then)."""
    outputs_p.status[r] = S_LOST
    outputs_p.finish_s[r] = now_s
    _respond(r, False, now_s, requests.arrival_s, outputs_p.send_s, ingress_s, respond,
             fleet.router, fleet.releases)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _worker_fails(k, first_d, fleet_p, fleet_d, kv_p, kv_d, requests_p, requests_d, respond,
                  outputs_p, engine_p, engine_d, pool):
    """Failure ``k`` (module docstring). ``outputs_p`` carries the clients' send times
    (``_respond``) and the status / finish arrays both pools share."""
    gid = pool.fail_replica[k]
    now_s = pool.fail_at_s[k]
    is_prefill = gid < first_d
    rep = _replica_view(fleet_p, gid)  # the pools share every state array but ``touched``
    sched = rep.sched
    if sched[ACTIVE] and rep.clock[NOW_S] > now_s:
        now_s = rep.clock[NOW_S]  # the step in progress completes first
    if is_prefill:
        _flush_finished(gid, rep, fleet_p, requests_p)
        _release_unreleased(rep, requests_p.shareable, kv_p)
        _fail_replica(gid, now_s, fleet_p, kv_p, requests_p, respond, outputs_p, engine_p)
    else:
        _flush_finished(gid, rep, fleet_d, requests_d)
        _release_unreleased(rep, requests_d.shareable, kv_d)
        # its waiting requests are lost (their KV was here), after the running ones: detach
        # the queue, fail the worker, then answer them in queue order
        head = sched[WAIT_HEAD]
        num_waiting = sched[NUM_WAITING]
        sched[NUM_WAITING] = 0
        sched[WAIT_HEAD] = -1
        # the clients' send times and ingress are the prefill side's (outputs_p, engine_p)
        _fail_replica(gid, now_s, fleet_d, kv_d, requests_d, respond, outputs_p, engine_p)
        sched[FREE_UNCACHED] = engine_d.num_gpu_blocks  # a decode worker's own KV blocks
        i = head
        for _ in range(num_waiting):
            nxt = fleet_d.wait_next[i]
            fleet_d.inflight[0] -= 1
            _kv_lost(i, now_s, fleet_d, requests_d, respond, outputs_p, engine_p.ingress_s)
            i = nxt
    fleet_p.outstanding_tokens[gid] = 0
    fleet_p.down_until_s[gid] = now_s + pool.fail_repair_s[k]


__all__ = ["_kv_lost", "_worker_fails"]
