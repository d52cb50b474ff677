"""The records a scenario run produces: one pool's simulation (:class:`PoolRun`), what a
simulated pool hands back to the driver (:class:`ShardOutput`), and the whole run
(:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from capacitor.fleet.demand import Demand
from capacitor.simulate.digest import PoolDigest
from capacitor.simulate.summary_model import RunSummary


@dataclass(slots=True)
class DisaggCell:
    """The two pools of a disaggregated deployment's simulated cell, in the engine's order
    (prefill, decode): workers simulated, GPUs per worker (tp), step-time coefficients."""

    workers: tuple[int, int]
    tp: tuple[int, int]
    coeffs: tuple[np.ndarray, np.ndarray]


@dataclass(slots=True)
class PoolRun:
    """One deployment's simulation."""

    name: str
    site: str
    gpu: str
    gpus_per_replica: int
    replicas: int
    simulated_replicas: int
    demand: Demand
    status: np.ndarray
    result: Any  # EngineResult
    measured: np.ndarray  # requests counted (sent after warm-up)
    downtime_s: float
    down_s_by_minute: np.ndarray | None = None  # replica-seconds down per minute of the span
    max_num_seqs: int = 1
    replica_offset: int = 0  # first replica's index in the deployment (shards of exact runs)
    coeffs: np.ndarray | None = None  # the step-time coefficients it ran with
    # a disaggregated deployment's cell: replicas are units, gpus_per_replica a unit's GPUs
    disagg: DisaggCell | None = None
    # sampled fidelity: 1 / the sample's share of the demand (deployment.sample_share);
    # None: replicas / simulated_replicas
    demand_scale: float | None = None

    @property
    def scale(self) -> float:
        """The weight of a simulated request (and of a simulated replica's work): 1 / the
        sample's share of the deployment's demand."""
        if self.demand_scale is not None:
            return self.demand_scale
        return self.replicas / self.simulated_replicas


@dataclass(slots=True)
class RunResult:
    """A scenario's run: one digest per deployment (what the summary reads), the pools'
    per-request records when kept (``keep_pools``), and the summary."""

    scenario: Any
    digests: list[PoolDigest]
    window_s: float
    warmup_s: float
    num_minutes: int
    pools: list[PoolRun] = field(default_factory=list)
    summary: RunSummary | None = None  # set by run_scenario once the pools are done
    # a binding power cap (simulate/power_cap.py): site -> GPU power limit (fraction of TDP),
    # deployment -> (compute, memory) step-time multipliers, the uncapped pass's summary
    power_limits: dict[str, float] = field(default_factory=dict)
    step_slowdowns: dict[str, tuple[float, float]] = field(default_factory=dict)
    uncapped_summary: RunSummary | None = None
    # the same window without replica failures, when a verdict missed (simulate/causes.py)
    failure_free_summary: RunSummary | None = None

    @property
    def num_simulated(self) -> int:
        """Requests simulated (every shard, warm-up included)."""
        return sum(d.num_simulated for d in self.digests)


@dataclass(slots=True)
class ShardOutput:
    """What one simulated pool (a deployment, or a shard of it) hands back."""

    d_index: int
    shard: int
    digest: PoolDigest
    table: Any = None  # its requests as a pyarrow Table, when asked for
    pool: PoolRun | None = None  # its full records, when asked for


__all__ = ["DisaggCell", "PoolRun", "RunResult", "ShardOutput"]
