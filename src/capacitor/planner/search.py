"""The cheapest fleet that serves a scenario's peak within its SLOs: a search over deployment
shapes and replica counts under the sites' GPU inventory and power caps.

**Candidates** of a deployment (its model, precision, engine and workloads stay): every GPU
type of every site's inventory, ``tp`` in :data:`TP_CHOICES` with ``pp`` in
:data:`PP_CHOICES` (``ep = tp`` for a deployment that uses expert parallelism), and
``max_num_seqs`` in :data:`MAX_NUM_SEQS_CHOICES` (None = the engine default). A candidate
that cannot be built (the model does not fit the GPUs' memory: :func:`build_replica` and its
memory check in :mod:`capacitor.perf.memory`; a precision the GPU lacks; a parallelism the
model does not divide) is pruned without simulating.

**Sizing**, in two stages. (1) Every buildable candidate gets its per-replica goodput
capacity as *one* replica alone (:func:`capacitor.planner.capacity.replica_capacity`,
``cell_replicas=1``, cached on disk) and ``replicas = ceil(peak / (capacity x (1 - share
down for repair)))`` for the deployment's peak demand in the window month
(:func:`capacitor.planner.capacity.down_share`); the choice below is made on these sizes.
Every estimate is scaled by the deployment's *cell gain*: the
per-replica capacity of its current shape in a routing cell of ``simulation.shard_replicas``
replicas over that shape's capacity alone (a single replica sees Poisson bursts that a
cell's router evens out; one replica is about a hundred times cheaper to simulate than a
64-replica cell). ASSUMPTION: the gain is similar across the shapes of one deployment.
(2) The shapes chosen on these estimates are measured in their own cell (of
``shard_replicas``, or of their replica count when fewer) and the choice is made again,
until every chosen shape's size comes from its own cell (at most :data:`MAX_ROUNDS` rounds).

**Choice.** One candidate per deployment, minimising the objective (``cost``: GPUs x the
price per GPU-month of :func:`capacitor.planner.runway.gpu_month_usd`; ``gpus``; ``power``:
facility MW at TDP) subject to: the GPUs used of each type at each site fit its inventory,
and each site's used GPUs at TDP fit its ``power_cap_mw`` (ASSUMPTION: GPUs left unused are
powered down). Exhaustive depth-first search with a lower bound (the sum of each remaining
deployment's cheapest candidate); ties break on candidate order, so the plan is
deterministic.

**Pareto front** per deployment (:func:`pareto`): the sized shapes no other beats on both
the objective and the worst tenant's TTFT p99 at the shape's capacity rate (recorded by the
capacity search; the sized replicas run at or below it, so it bounds their TTFT p99). Cost
against $/M tokens is no separate front: one deployment's tokens are the same whatever its
shape, so its $/M tokens is its cost over a constant.

**At the limit.** When no choice is feasible with every shape sized on the capacity seen to
meet every SLO less the expected share in repair, the shapes are sized again on the top of
the capacity's band (the rate the search saw miss, less two standard deviations of an
hour's share in repair, as the runway's ``at_limit``) and chosen again: a plan that may
serve the peak within tolerance, flagged ``at_limit``, which the verification run decides
(``capacitor plan`` exits 0 only when it meets every SLO). Infeasible at the band's top too:
the first answer's reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from capacitor.errors import CapacitorError, PlanError
from capacitor.fleet.power import format_power

TP_CHOICES = (1, 2, 4, 8)
PP_CHOICES = (1, 2)
MAX_NUM_SEQS_CHOICES = (None, 256)  # ASSUMPTION: the engine default and a smaller batch
OBJECTIVES = ("cost", "gpus", "power")
MAX_ROUNDS = 8  # choose, measure the chosen shapes in their cells, choose again


@dataclass(frozen=True)
class Candidate:
    """One deployment shape, sized for the deployment's peak."""

    deployment: str
    site: str
    gpu: str
    tp: int
    pp: int
    ep: int | None
    max_num_seqs: int | None
    capacity_rps: float = 0.0  # per replica
    replicas: int = 0
    gpus: int = 0
    power_mw: float = 0.0
    cost_usd_per_month: float | None = None
    margin_pct: float = 0.0  # replicas up x capacity / peak - 1
    cell_replicas: int = 0  # the cell the capacity was measured in (1: a stage-1 estimate)
    ttft_p99_ms: float | None = None  # worst tenant's TTFT p99 at the capacity rate (a bound
    # on the sized fleet's: its replicas run at or below that rate); None = not recorded

    @property
    def label(self) -> str:
        seqs = f" seqs{self.max_num_seqs}" if self.max_num_seqs is not None else ""
        return (f"{self.gpu}@{self.site} tp{self.tp}{f' pp{self.pp}' if self.pp > 1 else ''}"
                f"{f' ep{self.ep}' if self.ep else ''}{seqs}")

    def objective(self, name: str) -> float:
        if name == "gpus":
            return float(self.gpus)
        if name == "power":
            return self.power_mw
        return self.cost_usd_per_month if self.cost_usd_per_month is not None \
            else float(self.gpus)


def with_shape(scenario: Any, cand: Candidate, replicas: int | None = None) -> Any:
    """``scenario`` with ``cand``'s deployment reshaped (and given ``replicas``)."""
    deps = []
    for d in scenario.deployments:
        if d.name == cand.deployment:
            update = {"site": cand.site, "gpu": cand.gpu, "tp": cand.tp, "pp": cand.pp,
                      "ep": cand.ep, "max_num_seqs": cand.max_num_seqs}
            if replicas is not None:
                update["replicas"] = replicas
            d = d.model_copy(update=update)
        deps.append(d)
    return scenario.model_copy(update={"deployments": deps})


def buildable(scenario: Any, cand: Candidate) -> bool:
    """The candidate's replica can be built: the model fits, the GPU has the precision, the
    parallelism divides the model (pruned otherwise, without simulating)."""
    from capacitor.engine.replica import build_replica
    from capacitor.perf.profile import load_profile
    from capacitor.scenario.checks import replica_spec

    dep = with_shape(scenario, cand).deployment(cand.deployment)
    profile = scenario.simulation.profile
    try:
        build_replica(replica_spec(dep), load_profile(profile) if profile else None)
    except CapacitorError:
        return False
    return True


def candidates(scenario: Any, deployment: str) -> list[Candidate]:
    """Every shape of ``deployment`` the sites' inventories offer (before the build check)."""
    dep = scenario.deployment(deployment)
    moe = dep.ep is not None and dep.ep > 1
    out = []
    for site in scenario.sites:
        for gpu in site.gpus:
            for tp in TP_CHOICES:
                for pp in PP_CHOICES:
                    for seqs in MAX_NUM_SEQS_CHOICES:
                        out.append(Candidate(deployment, site.name, gpu, tp, pp,
                                             tp if moe else None, seqs))
    return out


def size(scenario: Any, cand: Candidate, peak_rps: float,
         capacity: Callable[[Any, str, int, float], float], cell: int,
         scale: float = 1.0, at_limit: bool = False) -> Candidate:
    """``cand`` with its per-replica capacity in a cell of ``cell`` replicas, replica count,
    GPUs, power, cost and margin at ``peak_rps``; ``capacity(scenario, deployment,
    cell_replicas, hint)`` is per replica; ``scale`` multiplies it (stage 1's cell gain).
    ``at_limit``: sized on the top of the capacity's band instead (the search's rate seen
    to miss, with ``capacity.find`` giving the bracket, and the low end of an hour's share
    down, :func:`capacitor.planner.capacity.down_share_low`): the fewest replicas that may
    serve the peak, within tolerance."""
    from dataclasses import replace

    from capacitor.fleet.power import facility_power_mw
    from capacitor.planner.capacity import down_share, down_share_low, failure_unit_gpus
    from capacitor.planner.runway import gpu_month_usd, replicas_needed

    shaped = with_shape(scenario, cand)
    hint = cand.capacity_rps if cand.capacity_rps > 0 else peak_rps / 1000.0
    find = getattr(capacity, "find", None)
    ttft = None
    if find is not None:
        found = find(shaped, cand.deployment, cell, hint)
        cap = (found.miss_rps if at_limit else found.rate_rps) * scale
        ttft = found.ttft_p99_ms
    else:
        cap = capacity(shaped, cand.deployment, cell, hint) * scale
    share = down_share(scenario, cand.site, cand.gpu, cand.tp * cand.pp)
    if at_limit:
        share = down_share_low(share, replicas_needed(peak_rps, cap * (1.0 - share)),
                               cand.tp * cand.pp,
                               failure_unit_gpus(scenario, cand.site, cand.gpu))
    up = cap * (1.0 - share)
    n = replicas_needed(peak_rps, up)
    site = scenario.site(cand.site)
    gpus = n * cand.tp * cand.pp
    mw = facility_power_mw({cand.gpu: gpus}, pue=site.pue,
                           server_overhead_factor={cand.gpu: site.overhead_factor(cand.gpu)})
    usd = gpu_month_usd(scenario, cand.site, cand.gpu)
    return replace(cand, capacity_rps=cap, replicas=n, gpus=gpus, power_mw=mw,
                   cost_usd_per_month=None if usd is None else gpus * usd,
                   margin_pct=100.0 * (n * up / peak_rps - 1.0), cell_replicas=cell,
                   ttft_p99_ms=ttft)


def choose(scenario: Any, sized: dict[str, list[Candidate]], objective: str
           ) -> tuple[dict[str, Candidate], int]:
    """The feasible choice of one candidate per deployment with the least total objective
    and the number of partial choices visited; PlanError naming the binding limit when
    none is feasible."""
    names = list(sized)
    for n in names:
        sized[n] = sorted(sized[n], key=lambda c: c.objective(objective))
        if not sized[n]:
            raise PlanError(f"deployment {n!r}: no shape fits any GPU of the sites' inventory "
                            "(memory, precision or parallelism)")
    floor = [min(c.objective(objective) for c in sized[n]) for n in names]
    rest = [sum(floor[i:]) for i in range(len(names) + 1)]
    inventory = {(s.name, g): c for s in scenario.sites for g, c in s.gpus.items()}
    caps = {s.name: s.power_cap_mw for s in scenario.sites}
    best: list[Any] = [None, float("inf")]
    visited = 0

    def dfs(i: int, used: dict, mw: dict, total: float, picked: list[Candidate]) -> None:
        nonlocal visited
        visited += 1
        if total + rest[i] >= best[1]:
            return
        if i == len(names):
            best[0], best[1] = list(picked), total
            return
        for c in sized[names[i]]:
            key = (c.site, c.gpu)
            if used.get(key, 0) + c.gpus > inventory.get(key, 0):
                continue
            if mw.get(c.site, 0.0) + c.power_mw > caps[c.site] + 1e-9:
                continue
            used[key] = used.get(key, 0) + c.gpus
            mw[c.site] = mw.get(c.site, 0.0) + c.power_mw
            picked.append(c)
            dfs(i + 1, used, mw, total + c.objective(objective), picked)
            picked.pop()
            used[key] -= c.gpus
            mw[c.site] -= c.power_mw

    dfs(0, {}, {}, 0.0, [])
    if best[0] is None:
        raise PlanError(*infeasible(sized, inventory, caps))
    return {c.deployment: c for c in best[0]}, visited


def infeasible(sized: dict[str, list[Candidate]], inventory: dict[tuple[str, str], int],
               caps: dict[str, float]) -> list[str]:
    """Why no choice fits: each deployment none of whose shapes fits on its own (its least
    need against the inventory), or else that they do not fit together."""
    have = ", ".join(f"{c:,} {g} at {s}" for (s, g), c in inventory.items())
    lines = []
    for n, cands in sized.items():
        alone = [c for c in cands if c.gpus <= inventory.get((c.site, c.gpu), 0)
                 and c.power_mw <= caps[c.site] + 1e-9]
        if not alone:
            least = min(cands, key=lambda c: c.gpus / max(inventory.get((c.site, c.gpu), 0), 1))
            lines.append(f"deployment {n!r}: no shape serves its peak within the SLOs on the "
                         f"GPUs there are: the closest, {least.label}, needs "
                         f"{least.replicas:,} replicas = {least.gpus:,} {least.gpu} and "
                         f"{format_power(least.power_mw)} (inventory {have}; power caps "
                         + ", ".join(f"{s}: {format_power(c)}" for s, c in caps.items()) + ")")
    if not lines:
        need = "; ".join(f"{n}: {min(v, key=lambda c: c.gpus).gpus:,} GPUs at least"
                         for n, v in sized.items())
        lines.append("no configuration serves the peak within the SLOs: each deployment fits "
                     f"alone but not all together ({need}; inventory {have}; power caps "
                     + ", ".join(f"{s}: {format_power(c)}" for s, c in caps.items()) + ")")
    return lines


@dataclass
class PlanResult:
    chosen: dict[str, Candidate]
    sized: dict[str, list[Candidate]]
    considered: int  # shapes enumerated
    pruned: int  # shapes that cannot be built
    combinations: int  # partial choices the depth-first search visited
    seconds: float
    peaks: dict[str, float]
    at_limit: bool = False  # no choice serves the peak for sure; this one may, within
    # tolerance (sized on the top of the capacity's band): the verification run decides
    reasons: list[str] = field(default_factory=list)  # at_limit: why none serves for sure


def plan(scenario: Any, objective: str,
         capacity: Callable[[Any, str, int, float], float],
         progress: Callable[[str], None] | None = None) -> PlanResult:
    """Search the shapes of every served deployment of ``scenario`` and choose (see the
    module docstring)."""
    from capacitor.planner.capacity import deployment_mix, workload_peak_rps

    if objective not in OBJECTIVES:
        raise PlanError(f"--objective {objective!r}: valid values are {', '.join(OBJECTIVES)}")
    started = time.perf_counter()
    served = {w.deployment for w in scenario.workloads}
    peaks = {d.name: sum(workload_peak_rps(scenario, w) for w in scenario.workloads
                         if w.deployment == d.name)
             for d in scenario.deployments if d.name in served}
    considered = pruned = 0
    sized: dict[str, list[Candidate]] = {}
    gain: dict[str, float] = {}
    shard = scenario.simulation.shard_replicas
    for name, peak in peaks.items():
        deployment_mix(scenario, name)  # a deployment the planner cannot size fails here
        shapes = []
        for cand in candidates(scenario, name):
            considered += 1
            if not buildable(scenario, cand):
                pruned += 1
                continue
            if progress is not None:
                progress(f"{name}: {cand.label}")
            shapes.append(size(scenario, cand, peak, capacity, 1))
        gain[name] = cell_gain(scenario, name, shapes, peak, capacity)
        sized[name] = [size(scenario, c, peak, capacity, 1, gain[name]) for c in shapes]
    at_limit, reasons = False, []
    try:
        chosen, visited = settle(scenario, sized, peaks, objective, capacity, progress)
    except PlanError as err:  # none serves the peak for sure: one that may, within tolerance?
        banded = {name: [size(scenario, c, peaks[name], capacity, c.cell_replicas,
                              gain.get(name, 1.0) if c.cell_replicas == 1 < shard else 1.0,
                              at_limit=True) for c in cands]
                  for name, cands in sized.items()}
        try:
            chosen, visited = settle(scenario, banded, peaks, objective, capacity, progress,
                                     at_limit=True)
        except PlanError:
            raise err from None
        sized, at_limit, reasons = banded, True, list(err.problems)
    return PlanResult(chosen=chosen, sized=sized, considered=considered, pruned=pruned,
                      combinations=visited, seconds=time.perf_counter() - started,
                      peaks=peaks, at_limit=at_limit, reasons=reasons)


def pareto(cands: list[Candidate], objective: str) -> list[Candidate]:
    """The candidates no other beats on both the objective and the TTFT p99 at their
    capacity rate (lower is better on both; ties on both keep the first), by objective;
    those without a TTFT are left out."""
    known = [c for c in cands if c.ttft_p99_ms is not None]
    front = []
    for c in sorted(known, key=lambda c: (c.objective(objective), c.ttft_p99_ms)):
        if not front or c.ttft_p99_ms < front[-1].ttft_p99_ms:
            front.append(c)
    return front


def settle(scenario: Any, sized: dict[str, list[Candidate]], peaks: dict[str, float],
           objective: str, capacity: Callable[[Any, str, int, float], float],
           progress: Callable[[str], None] | None = None, at_limit: bool = False,
           ) -> tuple[dict[str, Candidate], int]:
    """Choose, measure the chosen stage-1 estimates in their own cell, choose again (at most
    :data:`MAX_ROUNDS` rounds; ``sized`` updated in place): the choice and the partial
    choices visited."""
    shard = scenario.simulation.shard_replicas
    visited = 0
    for _ in range(MAX_ROUNDS):
        chosen, n = choose(scenario, {k: list(v) for k, v in sized.items()}, objective)
        visited += n
        estimates = [c for c in chosen.values() if c.cell_replicas == 1 < shard]
        if not estimates:
            break
        for c in estimates:  # measure the chosen shapes in their cell, then choose again
            exact = sized_in_cell(scenario, c, peaks[c.deployment], capacity, progress,
                                  at_limit=at_limit)
            sized[c.deployment] = [exact if x == c else x for x in sized[c.deployment]]
    return chosen, visited


def sized_in_cell(scenario: Any, cand: Candidate, peak_rps: float,
                  capacity: Callable[[Any, str, int, float], float],
                  progress: Callable[[str], None] | None = None,
                  at_limit: bool = False) -> Candidate:
    """``cand`` sized by its capacity in a routing cell of ``simulation.shard_replicas``
    replicas, or of its replica count when that is fewer (settled in up to three rounds)."""
    shard = scenario.simulation.shard_replicas
    cell = min(shard, cand.replicas)
    for _ in range(3):
        if progress is not None:
            progress(f"{cand.deployment}: {cand.label} in a cell of {cell}")
        out = size(scenario, cand, peak_rps, capacity, cell, at_limit=at_limit)
        if min(shard, out.replicas) == cell:
            break
        cell = min(shard, out.replicas)
    return out


def cell_gain(scenario: Any, deployment: str, shapes: list[Candidate], peak_rps: float,
              capacity: Callable[[Any, str, int, float], float]) -> float:
    """Per-replica capacity in a cell / alone, of the deployment's shape in the scenario
    (1 when that shape is not among ``shapes``): stage 1 scales every shape by it."""
    dep = scenario.deployment(deployment)
    for c in shapes:
        if (c.site, c.gpu, c.tp, c.pp, c.max_num_seqs) == (
                dep.site, dep.gpu, dep.tp, dep.pp, dep.max_num_seqs):
            return sized_in_cell(scenario, c, peak_rps, capacity).capacity_rps / c.capacity_rps
    return 1.0


__all__ = ["MAX_NUM_SEQS_CHOICES", "OBJECTIVES", "PP_CHOICES", "TP_CHOICES", "Candidate",
           "PlanResult", "buildable", "candidates", "choose", "pareto", "plan", "size",
           "with_shape"]
