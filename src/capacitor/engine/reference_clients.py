"""The clients of the plain-Python reference twins (:mod:`capacitor.engine.reference`,
:mod:`capacitor.engine.reference_disagg`): when each request is sent."""

from __future__ import annotations

import heapq

from capacitor.engine.requests import RequestBatch


class Clients:
    """The clients of ``batch``: open-loop requests sent at their arrival, gated ones (a
    session's next round) when the request they wait for is answered, and closed-loop ones
    (``batch.concurrency`` clients) when any earlier one is. ``releases`` is a heap of
    ``(engine arrival time, request)``; the send times go to ``send`` (a request's list)."""

    def __init__(self, batch: RequestBatch, send: list[float], ingress_s: float) -> None:
        self.batch, self.send_s, self.ingress_s = batch, send, ingress_s
        self.children: dict[int, list[int]] = {}  # gated requests, by the one they wait for
        for i in range(len(batch)):
            if batch.gate[i] >= 0:
                self.children.setdefault(int(batch.gate[i]), []).append(i)
        self.concurrency = batch.concurrency
        self.next_closed = self.concurrency  # closed loop: the next request a response sends
        self.releases: list[tuple[float, int]] = []
        for i in range(len(batch)):
            if batch.gate[i] < 0 and (self.concurrency == 0 or i < self.concurrency):
                send[i] = float(batch.arrival_s[i])
                heapq.heappush(self.releases, (send[i] + ingress_s, i))

    def send(self, c: int, client_t: float) -> None:
        """Request ``c`` is sent at ``client_t`` (not before its own arrival time)."""
        self.send_s[c] = max(float(self.batch.arrival_s[c]), client_t)
        heapq.heappush(self.releases, (self.send_s[c] + self.ingress_s, c))

    def on_response(self, i: int, client_t: float) -> None:
        """Request ``i``'s client got its answer (last token or error) at ``client_t``."""
        for c in self.children.get(i, ()):
            self.send(c, client_t)
        if self.concurrency and self.next_closed < len(self.batch):
            self.next_closed += 1
            self.send(self.next_closed - 1, client_t)


__all__ = ["Clients"]
