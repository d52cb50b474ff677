"""The request stream a replica is given, as a struct of arrays.

A workload generator (:mod:`capacitor.workload.shared_prefix`, ``closed_loop``,
``offline``) fills a :class:`RequestBatch`; the engine (fast kernel and reference) reads it.
No Python object per request: 10 million requests are a handful of NumPy arrays.

Prefix sharing is described structurally, not with token ids: request ``i`` shares its first
``prefix_len[i]`` tokens with *prefix node* ``prefix_src[i]``. Nodes ``0..N-1`` are the
requests themselves (a request's node is its prompt followed by its output); nodes
``N..N+S-1`` are *segments*: shared text that is not itself a request (a system prompt),
of length ``segment_len[s]``. This is enough to reproduce a block-hash prefix cache:
block ``j`` of request ``i`` is the same block as block ``j`` of its source whenever
``(j + 1) * block_size <= prefix_len[i]``.

Gating expresses clients that wait: request ``i`` with ``gate[i] = k >= 0`` is sent at
``max(arrival_s[i], client-visible finish of request k)`` (a user session sends its next
round only after the previous one returned), whether or not it got an answer. Workflows
extend this: ``gate_delay_s[i]`` is a pause after the answer (tool latency, think time), so
``i`` is sent at ``max(arrival_s[i], finish(k) + gate_delay_s[i])``; a *join*
(``join_child[m] = i``, ``join_gate[m] = k2``) makes ``i`` wait for ``k2`` as well, and it is
sent when the LAST request it waits for answers (plus its delay); and with
``cancel_if_gate_fails[i]`` a request is never sent if one it waits for got no answer
(refused, lost, or itself never sent): it keeps status pending and NaN times, and so do its
own dependents (a failed workflow stops). A closed-loop run instead sets
``concurrency = C``: the first ``C`` requests are sent at their ``arrival_s`` and request
``j >= C`` is sent when the ``(j - C + 1)``-th completion reaches its client.

``rejected[i]`` marks requests the server refuses outright (prompt + output longer than
``max_model_len``): they never enter the engine, and their client sees the error at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from capacitor.errors import ConfigError


@dataclass(slots=True)
class RequestBatch:
    """Requests of one replica run.

    Attributes:
        arrival_s: earliest send time of each request, seconds (float64). Ungated requests
            must be in nondecreasing arrival order.
        prompt_len: prompt tokens (int32, >= 1).
        output_len: output tokens to generate (int32, >= 1; ignore_eos semantics).
        prefix_src: prefix node the prompt starts with, or -1 (int32).
        prefix_len: tokens shared with ``prefix_src`` (int32, 0 when no source).
        gate: request whose client-visible finish releases this one, or -1 (int32).
        rejected: refused by the server at once (bool).
        segment_len: token length of each shared segment node (int32).
        gate_delay_s: per request, seconds between its gates' answers and its send
            (float64[n], or empty: no delay).
        join_child, join_gate: extra gates (int32[m] each): ``join_child[m]`` also waits for
            ``join_gate[m]``; a joined request must have ``gate >= 0``.
        cancel_if_gate_fails: per request, not sent if a request it waits for got no answer
            (bool[n], or empty: always sent).
        concurrency: closed-loop client count (0 = open loop).
        num_warmup: leading requests (by index) excluded from metrics.
    """

    arrival_s: np.ndarray
    prompt_len: np.ndarray
    output_len: np.ndarray
    prefix_src: np.ndarray
    prefix_len: np.ndarray
    gate: np.ndarray
    rejected: np.ndarray
    segment_len: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    gate_delay_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    join_child: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    join_gate: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    cancel_if_gate_fails: np.ndarray = field(default_factory=lambda: np.zeros(0, np.bool_))
    concurrency: int = 0
    num_warmup: int = 0

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def has_joins(self) -> bool:
        """True when a request waits with a delay, on several requests, or on success: the
        engine then keeps a count of unanswered gates per request."""
        return bool(self.gate_delay_s.shape[0] or self.join_child.shape[0]
                    or self.cancel_if_gate_fails.shape[0])

    @property
    def num_nodes(self) -> int:
        """Requests plus shared segments: the size of the prefix-node index space."""
        return len(self) + int(self.segment_len.shape[0])

    def check(self) -> None:
        """Raise :class:`ConfigError` if the arrays are inconsistent."""
        n = len(self)
        for name in ("prompt_len", "output_len", "prefix_src", "prefix_len", "gate", "rejected"):
            if getattr(self, name).shape != (n,):
                raise ConfigError(
                    f"RequestBatch.{name} has shape {getattr(self, name).shape}, expected ({n},)"
                )
        if n and (self.prompt_len.min() < 1 or self.output_len.min() < 1):
            raise ConfigError("every request needs prompt_len >= 1 and output_len >= 1")
        idx = np.arange(n)
        src = self.prefix_src
        if np.any((src >= idx) & (src < n)) or np.any(src >= self.num_nodes) or np.any(src < -1):
            raise ConfigError("prefix_src must name an earlier request, a segment, or -1")
        if np.any(self.gate >= idx) or np.any(self.gate < -1):
            raise ConfigError("gate must name an earlier request, or -1")
        self._check_joins(n)
        if self.concurrency > 0 and np.any(self.gate >= 0):
            raise ConfigError("a closed-loop batch (concurrency > 0) cannot also gate requests")
        if np.any((src >= 0) & (self.prefix_len < 0)):
            raise ConfigError("prefix_len must be >= 0")
        if self.concurrency < 0 or self.num_warmup < 0 or self.num_warmup > n:
            raise ConfigError(f"bad concurrency={self.concurrency} or num_warmup={self.num_warmup}")

    def _check_joins(self, n: int) -> None:
        for name in ("gate_delay_s", "cancel_if_gate_fails"):
            if getattr(self, name).shape not in ((0,), (n,)):
                raise ConfigError(f"RequestBatch.{name} has shape {getattr(self, name).shape}, "
                                  f"expected (0,) or ({n},)")
        if self.gate_delay_s.shape[0] and not np.all(self.gate_delay_s >= 0):
            raise ConfigError("gate_delay_s must be >= 0 (finite)")
        child, gate = self.join_child, self.join_gate
        if child.shape != gate.shape or child.ndim != 1:
            raise ConfigError("join_child and join_gate must be 1-D arrays of the same length")
        if child.shape[0] and (child.min() < 0 or child.max() >= n or gate.min() < 0
                               or np.any(gate >= child) or np.any(self.gate[child] < 0)):
            raise ConfigError("a join must name a gated request and an earlier request")
        if self.has_joins and self.concurrency > 0:
            raise ConfigError("a closed-loop batch (concurrency > 0) cannot also join requests")

    @classmethod
    def simple(
        cls,
        arrival_s: np.ndarray,
        prompt_len: np.ndarray,
        output_len: np.ndarray,
        *,
        concurrency: int = 0,
        num_warmup: int = 0,
    ) -> RequestBatch:
        """Independent requests: no shared prefixes, no gating."""
        n = len(arrival_s)
        return cls(
            arrival_s=np.asarray(arrival_s, np.float64),
            prompt_len=np.asarray(prompt_len, np.int32),
            output_len=np.asarray(output_len, np.int32),
            prefix_src=np.full(n, -1, np.int32),
            prefix_len=np.zeros(n, np.int32),
            gate=np.full(n, -1, np.int32),
            rejected=np.zeros(n, np.bool_),
            concurrency=concurrency,
            num_warmup=num_warmup,
        )
