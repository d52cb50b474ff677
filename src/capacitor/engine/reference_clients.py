"""The clients of the plain-Python reference twins (:mod:`capacitor.engine.reference`,
:mod:`capacitor.engine.reference_disagg`): when each request is sent."""

from __future__ import annotations

import heapq
import math

from capacitor.engine.requests import RequestBatch


class Clients:
    """The clients of ``batch``: open-loop requests sent at their arrival, gated ones (a
    session's next round, a workflow's next step) when the requests they wait for are
    answered, and closed-loop ones (``batch.concurrency`` clients) when any earlier one is.
    ``releases`` is a heap of ``(engine arrival time, request)``; the send times go to
    ``send`` (a request's list)."""

    def __init__(self, batch: RequestBatch, send: list[float], ingress_s: float) -> None:
        self.batch, self.send_s, self.ingress_s = batch, send, ingress_s
        self.children: dict[int, list[int]] = {}  # gated requests, by the one they wait for
        for i in range(len(batch)):
            if batch.gate[i] >= 0:
                self.children.setdefault(int(batch.gate[i]), []).append(i)
        self.joins = batch.has_joins
        n = len(batch)
        self.waiting_on = [0] * n  # unanswered gates (-1: cancelled)
        for i in range(n):
            self.waiting_on[i] = int(batch.gate[i] >= 0)
        for c, g in zip(batch.join_child.tolist(), batch.join_gate.tolist(), strict=True):
            self.children.setdefault(int(g), []).append(int(c))
            self.waiting_on[c] += 1
        self.delay = (batch.gate_delay_s.tolist() if batch.gate_delay_s.shape[0]
                      else [0.0] * n)
        self.cancel = (batch.cancel_if_gate_fails.tolist()
                       if batch.cancel_if_gate_fails.shape[0] else [False] * n)
        self.ready = [-math.inf] * n  # the latest gate answer plus delay so far
        self.concurrency = batch.concurrency
        self.next_closed = self.concurrency  # closed loop: the next request a response sends
        self.releases: list[tuple[float, int]] = []
        for i in range(n):
            if batch.gate[i] < 0 and (self.concurrency == 0 or i < self.concurrency):
                send[i] = float(batch.arrival_s[i])
                heapq.heappush(self.releases, (send[i] + ingress_s, i))

    def send(self, c: int, client_t: float) -> None:
        """Request ``c`` is sent at ``client_t`` (not before its own arrival time)."""
        self.send_s[c] = max(float(self.batch.arrival_s[c]), client_t)
        heapq.heappush(self.releases, (self.send_s[c] + self.ingress_s, c))

    def on_response(self, i: int, client_t: float, ok: bool = True) -> None:
        """Request ``i``'s client got its answer at ``client_t``: all of it (``ok``), or an
        error or nothing."""
        for c in self.children.get(i, ()):
            if not self.joins:
                self.send(c, client_t)
                continue
            if self.waiting_on[c] <= 0:
                continue  # cancelled already
            if not ok and self.cancel[c]:  # never sent; its own dependents learn of it now
                self.waiting_on[c] = -1
                self.on_response(c, client_t, ok=False)
                continue
            self.ready[c] = max(self.ready[c], client_t + self.delay[c])
            self.waiting_on[c] -= 1
            if self.waiting_on[c] == 0:
                self.send(c, self.ready[c])
        if self.concurrency and self.next_closed < len(self.batch):
            self.next_closed += 1
            self.send(self.next_closed - 1, client_t)


__all__ = ["Clients"]
