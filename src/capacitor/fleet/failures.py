"""Replica failures and repair: when each replica of a pool is down.

Model. Replicas of ``gpus_per_replica`` GPUs are packed in order onto nodes of
``gpus_per_node`` GPUs (replica ``r`` holds GPUs ``[r g, (r + 1) g)``), so a node may host
several small replicas and a large replica may span several nodes.

- Every GPU fails as a Poisson process of rate ``1 / gpu_mtbf_hours`` (exponential times
  between failures); a replica of ``g`` GPUs therefore sees GPU failures at ``g / mtbf``.
- Every node fails as a Poisson process of rate ``1 / node_mtbf_hours`` and takes down *every*
  replica it hosts at once (a correlated failure).
- A failure takes the replica down for ``repair_hours``: ``repair="fixed"`` (default; the
  time to fail over to a spare node and reload the weights, roughly constant) or
  ``repair="exponential"`` (mean ``repair_hours``). Components keep failing independently
  while a replica is down; overlapping down intervals merge.
- A site outage ``(start_s, duration_s)`` takes every replica down for that interval.

Rack-scale blast radius. On a rack-scale system whose NVLink domain spans several servers
(GB200 / GB300 NVL72: 72 GPUs, ``nvlink_domain_gpus`` in the GPU catalogue), a failure is taken
to drain its whole domain until repaired (ASSUMPTION: replacing a compute tray re-initialises
the rack's NVLink fabric; the scenario's ``failures.nvlink_domain_blast_radius`` turns it
off). :func:`domain_failures` turns the per-GPU and per-node rates into one failure process
per domain of ``D`` GPUs, at ``D / gpu_mtbf + (D / gpus_per_node) / node_mtbf``, taking down
every replica in the domain, which :func:`replica_downtime` draws as node failures of
``D``-GPU nodes.

Steady state. With ``history_s > 0`` failures are drawn over ``[-history_s, duration_s)`` and
the intervals clipped to the window, so the window starts as a fleet that has been running:
a replica is down at ``t = 0`` when a repair begun before is still in progress. Repairs
overlap (components keep failing while a replica is down), so the number in progress is the
M/G/inf count of a Poisson process at the replica's failure rate ``lambda`` (``g / gpu_mtbf``
plus its nodes' ``1 / node_mtbf``) with mean repair ``MTTR``: Poisson with mean
``lambda x MTTR``, whatever the repair distribution, and the stationary down share is
``1 - exp(-MTTR / MTBF)`` (``MTBF = 1 / lambda``), which is ``MTTR / (MTBF + MTTR)`` to first
order (they differ by under 0.003 percentage points at the default scenario's 0.1-0.6%).
A history of :func:`steady_state_history_s` (one repair time when it is fixed, 30 mean repair
times when exponential: a repair left from before is then ``exp(-30)`` likely) makes the
start stationary. Node failures hit every replica on the node in the history as in the
window, so correlated down time is stationary too. Outages are not moved.

Each replica's down time is a sorted list of disjoint half-open intervals ``[start, end)``
clipped to ``[0, duration_s)``, stored as CSR arrays in :class:`Downtime`. Failure events
are drawn in bulk (Poisson counts, uniform times), never in a per-event loop.

Default rates (``../shared/data/fleet/fleet_facts.csv``, from "The Llama 3 Herd of Models",
arXiv 2407.21783, Table 5): Llama 3 405B pre-training saw 419 unexpected interruptions in a
54-day snapshot on 16,384 H100 GPUs. Charging every one of them to a GPU::

    GPU-hours observed  = 16,384 GPUs x 54 days x 24 h = 21,233,664 GPU-h
    per-GPU MTBF        = 21,233,664 GPU-h / 419 failures = 50,677 h  (about 5.8 years)

so an 8-GPU replica fails every 50,677 / 8 = 6,335 h and a 16,384-GPU fleet every 3.1 h
(DCD's "about one failure every three hours"). Because host, network and software causes
(41.3 % of the 419) are already inside that figure, the default node MTBF is infinite. To
separate them instead, charge the 58.7 % GPU share (246 failures) to GPUs (86,332 h per GPU)
and the other 173 to the 2,048 8-GPU nodes (2,048 x 1,296 h / 173 = 15,342 h per node).
Training jobs are more fragile than a serving replica (one fault stops all 16,384 GPUs), but
the per-component rates carry over.

Default repair: an assumption, not a measurement. Llama 3 kept > 90 % effective training
time over 466 interruptions, i.e. at most 0.1 x 1,296 h / 466 = 0.28 h lost per interruption
including the checkpoint restart; an inference replica failed over to a spare node, weights
reloaded and warmed up, is taken as 0.5 h.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from capacitor.errors import ConfigError

#: 16,384 x 54 x 24 / 419: per-GPU MTBF from Llama 3's unexpected interruptions (docstring).
DEFAULT_GPU_MTBF_HOURS = 16_384 * 54 * 24 / 419
#: Node-level causes are already counted in the per-GPU figure above.
DEFAULT_NODE_MTBF_HOURS = math.inf
#: Fail over to a spare node and reload (assumption; see the module docstring).
DEFAULT_REPAIR_HOURS = 0.5
DEFAULT_GPUS_PER_NODE = 8
REPAIR_DISTRIBUTIONS = ("fixed", "exponential")


@dataclass(frozen=True, slots=True)
class Downtime:
    """Down intervals of every replica, CSR: replica ``r``'s intervals are
    ``start_s[offsets[r]:offsets[r + 1]]`` / ``end_s[...]``, sorted and disjoint.

    Attributes:
        num_replicas: replicas in the pool.
        duration_s: the simulated window ``[0, duration_s)``.
        offsets: CSR offsets (int64, ``num_replicas + 1``).
        start_s, end_s: interval bounds, seconds (float64).
        failures: component failures (GPU or node) that hit each replica (int64), outages
            not included.
        gpu_failures, node_failures: failure events drawn in the window.
    """

    num_replicas: int
    duration_s: float
    offsets: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    failures: np.ndarray
    gpu_failures: int = 0
    node_failures: int = 0

    def intervals(self, replica: int) -> list[tuple[float, float]]:
        """Down intervals of one replica as ``[(start_s, end_s), ...]``."""
        a, b = int(self.offsets[replica]), int(self.offsets[replica + 1])
        return list(zip(self.start_s[a:b].tolist(), self.end_s[a:b].tolist(), strict=True))

    def down_s(self) -> np.ndarray:
        """Seconds each replica is down in the window (float64, per replica)."""
        rep = np.repeat(np.arange(self.num_replicas), np.diff(self.offsets))
        return np.bincount(rep, self.end_s - self.start_s, minlength=self.num_replicas)

    def availability(self) -> float:
        """Fraction of replica-seconds up over the window."""
        if self.num_replicas == 0:
            return 1.0
        return 1.0 - float(self.down_s().sum()) / (self.num_replicas * self.duration_s)


def _number(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value) \
            or (value <= 0 if positive else value < 0):
        op = "> 0" if positive else ">= 0"
        raise ConfigError(f"replica_downtime: bad {name}={value!r}; expected a number {op}")
    return float(value)


def _int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ConfigError(f"replica_downtime: bad {name}={value!r}; expected an integer "
                          f">= {minimum}")
    return int(value)


def _outages(outages: Iterable[Sequence[float]] | None) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for k, item in enumerate(outages or ()):
        try:
            start, length = (float(x) for x in item)
        except (TypeError, ValueError):
            raise ConfigError(f"replica_downtime: bad outages[{k}]={item!r}; expected "
                              "(start_s, duration_s)") from None
        if not (math.isfinite(start) and math.isfinite(length)) or length <= 0:
            raise ConfigError(f"replica_downtime: bad outages[{k}]={item!r}; expected a finite "
                              "start_s and a duration_s > 0")
        out.append((start, length))
    return out


def _merge(rep: np.ndarray, s: np.ndarray, e: np.ndarray,
           num_replicas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of intervals per replica: CSR offsets, starts, ends (touching intervals merge)."""
    if rep.size == 0:
        return np.zeros(num_replicas + 1, np.int64), np.zeros(0), np.zeros(0)
    order = np.lexsort((s, rep))
    rep, s, e = rep[order], s[order], e[order]
    # Running max of the end within each replica: on ranks of the end times, offset by
    # replica so one global maximum.accumulate never crosses a replica boundary (exact ints).
    values, rank = np.unique(e, return_inverse=True)
    width = np.int64(values.size)
    running = np.maximum.accumulate(rank.astype(np.int64) + rep * width) - rep * width
    reach = values[running]
    first = np.ones(rep.size, bool)
    first[1:] = (rep[1:] != rep[:-1]) | (s[1:] > reach[:-1])
    starts = np.flatnonzero(first)
    ends_at = np.concatenate([starts[1:], [rep.size]]) - 1
    counts = np.bincount(rep[starts], minlength=num_replicas)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, s[starts], reach[ends_at]


def domain_failures(gpu_mtbf_hours: float, node_mtbf_hours: float, gpus_per_node: int,
                    domain_gpus: int) -> tuple[float, float, int]:
    """``(gpu_mtbf_hours, node_mtbf_hours, gpus_per_node)`` for :func:`replica_downtime` when
    every failure in a domain of ``domain_gpus`` GPUs takes the whole domain down (module
    docstring): no failure hits one replica alone; the domain fails at the sum of its GPUs'
    and servers' rates, as one "node" of ``domain_gpus`` GPUs."""
    rate = domain_gpus / gpu_mtbf_hours + (domain_gpus / gpus_per_node) / node_mtbf_hours
    return math.inf, (1.0 / rate if rate > 0 else math.inf), int(domain_gpus)


def steady_state_history_s(repair_hours: float, repair: str = "fixed") -> float:
    """How far before the window to draw failures so that the window starts in steady state
    (module docstring): one repair time when repairs are fixed, 30 mean repair times when
    exponential."""
    return float(repair_hours) * 3600.0 * (1.0 if repair == "fixed" else 30.0)


def stationary_down_share(gpus_per_replica: int, gpu_mtbf_hours: float,
                          node_mtbf_hours: float, repair_hours: float,
                          gpus_per_node: int = DEFAULT_GPUS_PER_NODE) -> float:
    """The long-run share of time a replica is down, ``1 - exp(-lambda x MTTR)`` (module
    docstring), for a replica that sits on one node (``gpus_per_replica <= gpus_per_node``)
    or spans ``gpus_per_replica / gpus_per_node`` whole nodes."""
    nodes = max(1, -(-gpus_per_replica // gpus_per_node))
    rate = gpus_per_replica / gpu_mtbf_hours + nodes / node_mtbf_hours
    return 1.0 - math.exp(-rate * repair_hours)


def replica_downtime(num_replicas: int, gpus_per_replica: int, gpu_mtbf_hours: float,
                     node_mtbf_hours: float, repair_hours: float, duration_s: float,
                     rng: np.random.Generator,
                     outages: Iterable[Sequence[float]] | None = (), *,
                     gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
                     repair: str = "fixed", history_s: float = 0.0) -> Downtime:
    """Down intervals of each replica over ``[0, duration_s)`` (see the module docstring).

    ``gpu_mtbf_hours`` / ``node_mtbf_hours`` may be ``math.inf`` (that component never fails);
    ``outages`` is a list of ``(start_s, duration_s)`` site-wide outages; ``history_s``:
    failures are also drawn this long before the window, so that it starts with the replicas
    still in repair (0: the window starts with every replica up).
    """
    n_rep = _int("num_replicas", num_replicas, 0)
    g = _int("gpus_per_replica", gpus_per_replica, 1)
    per_node = _int("gpus_per_node", gpus_per_node, 1)
    gpu_mtbf_s = _number("gpu_mtbf_hours", gpu_mtbf_hours) * 3600.0
    node_mtbf_s = _number("node_mtbf_hours", node_mtbf_hours) * 3600.0
    repair_s = _number("repair_hours", repair_hours, positive=False) * 3600.0
    window = _number("duration_s", duration_s)
    if not math.isfinite(window):
        raise ConfigError(f"replica_downtime: bad duration_s={duration_s!r}; expected finite")
    if repair not in REPAIR_DISTRIBUTIONS:
        raise ConfigError(f"replica_downtime: bad repair={repair!r}; expected one of "
                          f"{', '.join(REPAIR_DISTRIBUTIONS)}")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"replica_downtime: rng must be a numpy.random.Generator, got "
                          f"{type(rng).__name__}")
    history = _number("history_s", history_s, positive=False)
    if not math.isfinite(history):
        raise ConfigError(f"replica_downtime: bad history_s={history_s!r}; expected finite")
    events = _outages(outages)
    drawn = window + history  # failures over [-history, window)

    # GPU failures: Poisson count per replica at g / MTBF, uniform times.
    gpu_counts = rng.poisson(g * drawn / gpu_mtbf_s, n_rep) if n_rep else np.zeros(0, int)
    gpu_rep = np.repeat(np.arange(n_rep, dtype=np.int64), gpu_counts)
    gpu_t = rng.random(gpu_rep.size) * drawn - history
    # Node failures: Poisson per node, each hitting every replica the node hosts.
    n_nodes = -(-n_rep * g // per_node)
    node_counts = rng.poisson(drawn / node_mtbf_s, n_nodes) if n_nodes else np.zeros(0, int)
    node_id = np.repeat(np.arange(n_nodes, dtype=np.int64), node_counts)
    node_t = rng.random(node_id.size) * drawn - history
    lo = node_id * per_node // g
    hi = np.minimum((node_id * per_node + per_node - 1) // g, n_rep - 1)
    fan = hi - lo + 1
    event_of = np.repeat(np.arange(node_id.size), fan)
    node_rep = lo[event_of] + (np.arange(event_of.size) - np.repeat(np.cumsum(fan) - fan, fan))
    # Repair times: one per failure event (a node's repair is shared by its replicas).
    n_events = gpu_rep.size + node_id.size
    if repair == "fixed":
        fix = np.full(n_events, repair_s)
    else:
        fix = rng.exponential(1.0, n_events) * repair_s
    rep = np.concatenate([gpu_rep, node_rep])
    s = np.concatenate([gpu_t, node_t[event_of]])
    e = s + np.concatenate([fix[: gpu_rep.size], fix[gpu_rep.size:][event_of]])
    failures = np.bincount(rep[s >= 0], minlength=n_rep).astype(np.int64)  # in the window
    s = np.maximum(s, 0.0)  # a repair begun before the window: down from its start
    # Site outages: every replica down.
    for start, length in events:
        a, b = max(start, 0.0), min(start + length, window)
        if b > a and n_rep:
            rep = np.concatenate([rep, np.arange(n_rep, dtype=np.int64)])
            s = np.concatenate([s, np.full(n_rep, a)])
            e = np.concatenate([e, np.full(n_rep, b)])
    e = np.minimum(e, window)
    keep = e > s  # zero-length repairs leave no down time
    offsets, starts, ends = _merge(rep[keep], s[keep], e[keep], n_rep)
    return Downtime(n_rep, window, offsets, starts, ends, failures,
                    int((gpu_t >= 0).sum()), int((node_t >= 0).sum()))


def group_downtime(downtime: Downtime, group: np.ndarray, num_groups: int) -> Downtime:
    """Down intervals of groups of replicas (e.g. the GPUs of one worker): a group is down
    while any of its members is (their intervals' union). ``group[r]`` is replica ``r``'s
    group. ``failures`` sums its members' (a node failure that hits several members counts
    once per member)."""
    group = np.asarray(group, np.int64)
    if group.shape != (downtime.num_replicas,) or (
        group.size and (group.min() < 0 or group.max() >= num_groups)
    ):
        raise ConfigError(f"group_downtime: group must give each of the "
                          f"{downtime.num_replicas} replicas a group in [0, {num_groups})")
    rep = np.repeat(np.arange(downtime.num_replicas), np.diff(downtime.offsets))
    offsets, starts, ends = _merge(group[rep], downtime.start_s, downtime.end_s, num_groups)
    failures = np.bincount(group, downtime.failures, minlength=num_groups).astype(np.int64)
    return Downtime(num_groups, downtime.duration_s, offsets, starts, ends, failures,
                    downtime.gpu_failures, downtime.node_failures)


def replicas_up(downtime: Downtime, t: float | np.ndarray) -> int | np.ndarray:
    """How many replicas are up at time(s) ``t`` (vectorised over ``t``).

    A replica is down on ``[start, end)``; intervals of one replica are disjoint, so the
    number down is (intervals started by t) - (intervals ended by t).
    """
    times = np.asarray(t, np.float64)
    started = np.searchsorted(np.sort(downtime.start_s), times, side="right")
    ended = np.searchsorted(np.sort(downtime.end_s), times, side="right")
    up = downtime.num_replicas - (started - ended)
    return int(up) if up.ndim == 0 else up.astype(np.int64)


def down_s_per_bin(downtime: Downtime, bin_s: float, num_bins: int,
                   weight: np.ndarray | None = None) -> np.ndarray:
    """Replica-seconds down in each bin ``[k bin_s, (k + 1) bin_s)`` of the window, summed over
    replicas (float64, ``num_bins``): ``bin_s x replicas - down`` is replica-seconds up, e.g.
    per minute for the timeline and for power (a down replica draws no GPU power).
    ``weight`` (per replica) scales each replica's seconds, e.g. a worker's share of a
    unit's GPUs."""
    edges = np.arange(num_bins + 1) * float(bin_s)
    # seconds of [start, end) before each edge, summed over intervals, differenced per bin
    seconds = np.clip(edges[:, None] - downtime.start_s[None, :], 0.0,
                      (downtime.end_s - downtime.start_s)[None, :])
    if weight is not None:
        rep = np.repeat(np.arange(downtime.num_replicas), np.diff(downtime.offsets))
        seconds = seconds * np.asarray(weight, np.float64)[rep][None, :]
    return np.diff(seconds.sum(axis=1))


def up_mask(downtime: Downtime, t: float) -> np.ndarray:
    """Which replicas are up at time ``t`` (bool, per replica)."""
    rep = np.repeat(np.arange(downtime.num_replicas), np.diff(downtime.offsets))
    down = (downtime.start_s <= t) & (t < downtime.end_s)
    mask = np.ones(downtime.num_replicas, bool)
    mask[rep[down]] = False
    return mask


__all__ = [
    "DEFAULT_GPUS_PER_NODE",
    "DEFAULT_GPU_MTBF_HOURS",
    "DEFAULT_NODE_MTBF_HOURS",
    "DEFAULT_REPAIR_HOURS",
    "REPAIR_DISTRIBUTIONS",
    "Downtime",
    "domain_failures",
    "down_s_per_bin",
    "group_downtime",
    "replica_downtime",
    "replicas_up",
    "stationary_down_share",
    "steady_state_history_s",
    "up_mask",
]
