"""``capacitor bench``: simulated requests per second of wall time on the standard workload.

The standard workload is the replica-twin benchmark: Llama-3.1-8B-Instruct on one H100
(TP1, FP16, vLLM, ``max_num_seqs`` 128, ``max_num_batched_tokens`` 2048, prefix caching
on) serving inference-perf's shared-prefix stream (9 groups x 5 users, 100-token system
prompt + 447-token question, 248 output tokens, single turn) at Poisson 25 requests/s.

Everything goes through the same code path as ``capacitor validate``: an experiments row
is turned into a replica (catalogue + shipped step-time model), a workload, a simulation
and the predictions columns. Timed separately:

* ``end to end``: workload generation + replica build + simulation + metrics;
* ``engine core``: the numba kernel alone (``capacitor.engine.simulate``);
* ``reference``: the plain-Python twin on a smaller run of the same row, in this process;
* ``fleet``: ``capacitor run`` end to end (demand, admission, routing, summary) on a fleet of
  256 such replicas in routing cells of 64 behind power-of-two routers, exact fidelity, at
  5 requests/s per replica (batch occupancy ~8%, a production-like load) — beside the same
  fleet with its replicas kept in lockstep (a non-binding tenant concurrency cap turns off
  running ahead, :mod:`capacitor.engine._lookahead`), the baseline for that optimisation;
* ``MTP``: the numba kernel on DeepSeek-R1 (B200 TP8, SGLang) with MTP speculative decoding
  (3 drafts, acceptance 0.85, overlap scheduling on), a closed loop of 64 clients (1024 in /
  1024 out), beside the same row with speculative decoding off and the reference on a
  smaller run.
* ``disaggregated``: ``capacitor validate``'s path end to end for a disaggregated deployment
  (:data:`DISAGG_ROW`: one prefill and two decode H100s serving Llama-3.1-8B, 64 closed-loop
  clients, 1024 / 256 tokens).

The first call to the kernel in a process loads it from numba's on-disk cache (compiled on
the very first run after install); that start-up cost is reported on its own line.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np

from capacitor.engine import reference, simulate
from capacitor.parallel import default_workers
from capacitor.perf.profile import load_profile
from capacitor.scenario import parse_scenario
from capacitor.simulate import run_scenario
from capacitor.validate import Row, build_row, predict_row
from capacitor.validate.metrics import request_metrics

STANDARD_ROW: dict[str, str] = {
    "id": "bench-standard",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "hardware": "H100",
    "tp": "1",
    "precision": "FP16",
    "engine": "vllm",
    "max_num_seqs": "128",
    "max_num_batched_tokens": "2048",
    "enable_prefix_caching": "true",
    "workload": "shared_prefix",
    "system_prompt_len": "100",
    "question_len": "447",
    "output_len": "248",
    "num_groups": "9",
    "users_per_group": "5",
    "enable_multi_turn_chat": "false",
    "arrival": "poisson",
    "seed": "42",
}
RATE_RPS = 25.0
MTP_ROW: dict[str, str] = {
    "id": "bench-mtp", "model": "deepseek-ai/DeepSeek-R1-0528", "hardware": "B200",
    "tp": "8", "ep": "8", "precision": "FP8", "engine": "sglang", "workload": "closed_loop",
    "concurrency": "64", "isl": "1024", "osl": "1024", "min_length_fraction": "0.8",
    "speculative": "mtp", "seed": "1",
    # pinned (not the defaults) so that timings stay comparable across releases
    "num_speculative_tokens": "3", "mtp_acceptance_rate": "0.85", "async_scheduling": "true",
}

DISAGG_ROW: dict[str, str] = {
    "id": "bench-disaggregated",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "hardware": "H100",
    "num_gpus": "3",
    "precision": "FP16",
    "engine": "sglang",
    "prefill_workers": "1",
    "prefill_tp": "1",
    "decode_workers": "2",
    "decode_tp": "1",
    "workload": "closed_loop",
    "concurrency": "64",
    "isl": "1024",
    "osl": "256",
    "seed": "42",
}
FLEET_SCENARIO = """
name: bench-fleet
sites: [{name: s, power_cap_mw: 10, pue: 1.2, gpus: {H100: 256}}]
deployments:
  - {name: chat, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: s, precision: BF16,
     max_num_seqs: 64, max_num_batched_tokens: 2048, replicas: 256}
tenants: [{name: t, tier: 0, rate_limits: {max_concurrent: LIMIT}}]
workloads:
  - name: chat
    tenant: t
    deployment: chat
    arrival: {kind: poisson, rate_rps: 1280}
    lengths:
      kind: distribution
      input: {kind: lognormal, mean_tokens: 600, p99_tokens: 1500}
      output: {kind: lognormal, mean_tokens: 150, p99_tokens: 400}
routing: {policy: power_of_two}
simulation: {window: {duration_s: 600, warmup_s: 60}, fidelity: exact, shard_replicas: 64}
"""


@dataclass(slots=True)
class BenchResult:
    """Rates in simulated requests per second of wall time (process CPU contention aside)."""

    num_requests: int
    end_to_end_s: float
    engine_s: float
    reference_requests: int
    reference_s: float
    startup_s: float
    peak_rss_mb: float
    fleet_requests: int = 0
    fleet_s: float = 0.0
    fleet_lockstep_s: float = 0.0
    fleet_threads: int = 1  # the local backend's threads in the last fleet row
    fleet_threaded_s: float = 0.0
    mtp_requests: int = 0
    mtp_s: float = 0.0
    mtp_off_s: float = 0.0
    mtp_reference_requests: int = 0
    mtp_reference_s: float = 0.0
    disagg_requests: int = 0
    disagg_s: float = 0.0

    @property
    def end_to_end_rps(self) -> float:
        return self.num_requests / self.end_to_end_s

    @property
    def engine_rps(self) -> float:
        return self.num_requests / self.engine_s

    @property
    def reference_rps(self) -> float:
        return self.reference_requests / self.reference_s


def standard_row(num_requests: int) -> dict[str, str]:
    """The standard row sending ``num_requests`` at 25 requests/s."""
    row = dict(STANDARD_ROW)
    row["stages"] = f"{RATE_RPS:g}@{num_requests / RATE_RPS:g}"
    row["num_requests"] = str(num_requests)
    return row


def _plan(cells: dict[str, str]):

    return build_row(Row(cells, "."), load_profile(None))


def run_disaggregated(num_requests: int) -> float:
    """Seconds for :data:`DISAGG_ROW` with ``num_requests`` end to end (as validate)."""
    t0 = time.perf_counter()
    predict_row(Row({**DISAGG_ROW, "num_requests": str(num_requests)}, "."),
                load_profile(None))
    return time.perf_counter() - t0


def run(num_requests: int = 1_000_000, reference_requests: int = 2_000,
        disagg_requests: int = 100_000) -> BenchResult:
    """Measure the standard workload; see the module docstring for what each time covers."""

    t0 = time.perf_counter()
    warm = _plan(standard_row(50))
    simulate(warm.batch, warm.config, warm.coeffs)
    startup = time.perf_counter() - t0

    t0 = time.perf_counter()
    plan = _plan(standard_row(num_requests))
    t1 = time.perf_counter()
    cls = np.where(plan.measured_mask, 0, -1)
    result = simulate(plan.batch, plan.config, plan.coeffs, itl_class=cls)
    t2 = time.perf_counter()
    request_metrics(plan.batch, result, plan.measured_mask)
    t3 = time.perf_counter()

    small = _plan(standard_row(reference_requests))
    r0 = time.perf_counter()
    reference.simulate(small.batch, small.config, small.coeffs)
    r1 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fleet_n, fleet_s, lockstep_s, threads, threaded_s = run_fleet()
    mtp_n, mtp_s, mtp_off_s, mtp_ref_n, mtp_ref_s = run_mtp()
    run_disaggregated(64)  # loads the disaggregated kernel
    disagg_s = run_disaggregated(disagg_requests)
    return BenchResult(num_requests, t3 - t0, t2 - t1, reference_requests, r1 - r0, startup,
                       rss_mb, fleet_n, fleet_s, lockstep_s, threads, threaded_s,
                       mtp_n, mtp_s, mtp_off_s, mtp_ref_n, mtp_ref_s,
                       disagg_requests, disagg_s)


def run_mtp(num_requests: int = 200_000, reference_requests: int = 256
            ) -> tuple[int, float, float, int, float]:
    """The MTP benchmark: (requests, kernel seconds with MTP, without it, reference
    requests, reference seconds with MTP)."""
    times = []
    for speculative, n in (("mtp", 64), ("mtp", num_requests), ("none", num_requests)):
        plan = _plan({**MTP_ROW, "speculative": speculative, "num_requests": str(n)})
        t0 = time.perf_counter()
        simulate(plan.batch, plan.config, plan.coeffs)  # the first: load the kernel
        times.append(time.perf_counter() - t0)
    small = _plan({**MTP_ROW, "num_requests": str(reference_requests)})
    t0 = time.perf_counter()
    reference.simulate(small.batch, small.config, small.coeffs)
    return num_requests, times[1], times[2], reference_requests, time.perf_counter() - t0


def run_fleet() -> tuple[int, float, float, int, float]:
    """The fleet benchmark: (requests, seconds on one thread, seconds with the replicas in
    lockstep, the CPUs, seconds with a thread per CPU as ``capacitor run`` runs it)."""

    times = []
    n = 0
    threads = default_workers()
    # no cap: run ahead; a cap that never binds: lockstep; run ahead on every CPU
    for limit, workers in (("null", 1), ("1000000000", 1), ("null", threads)):
        spec = parse_scenario(FLEET_SCENARIO.replace("LIMIT", limit), origin="<bench-fleet>")
        t0 = time.perf_counter()
        run = run_scenario(spec, keep_pools=False, workers=workers)
        times.append(time.perf_counter() - t0)
        n = run.num_simulated
    return n, times[0], times[1], threads, times[2]


def run_bench(num_requests: int = 1_000_000, reference_requests: int = 2_000) -> int:
    """Run :func:`run` and print a rich table; returns the exit code (0)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    with console.status(f"simulating {num_requests:,} requests of the standard workload..."):
        res = run(num_requests, reference_requests)
    table = Table(title="capacitor bench: standard workload (Llama-3.1-8B, H100, 25 req/s)")
    table.add_column("path")
    table.add_column("requests", justify="right")
    table.add_column("wall s", justify="right")
    table.add_column("simulated req/s", justify="right")
    table.add_column("vs reference", justify="right")
    ref = res.reference_rps
    table.add_row(
        "end to end (as validate)",
        f"{res.num_requests:,}",
        f"{res.end_to_end_s:.2f}",
        f"{res.end_to_end_rps:,.0f}",
        f"{res.end_to_end_rps / ref:,.0f}x",
    )
    table.add_row(
        "engine core (numba)",
        f"{res.num_requests:,}",
        f"{res.engine_s:.2f}",
        f"{res.engine_rps:,.0f}",
        f"{res.engine_rps / ref:,.0f}x",
    )
    table.add_row(
        "reference (plain Python)",
        f"{res.reference_requests:,}",
        f"{res.reference_s:.2f}",
        f"{ref:,.0f}",
        "1x",
    )
    table.add_row(
        "fleet: 256 replicas, exact, 1 thread",
        f"{res.fleet_requests:,}",
        f"{res.fleet_s:.2f}",
        f"{res.fleet_requests / res.fleet_s:,.0f}",
        f"{res.fleet_requests / res.fleet_s / ref:,.0f}x",
    )
    table.add_row(
        "  same, replicas in lockstep",
        f"{res.fleet_requests:,}",
        f"{res.fleet_lockstep_s:.2f}",
        f"{res.fleet_requests / res.fleet_lockstep_s:,.0f}",
        f"{res.fleet_requests / res.fleet_lockstep_s / ref:,.0f}x",
    )
    table.add_row(
        f"  same, {res.fleet_threads} threads (capacitor run)",
        f"{res.fleet_requests:,}",
        f"{res.fleet_threaded_s:.2f}",
        f"{res.fleet_requests / res.fleet_threaded_s:,.0f}",
        f"{res.fleet_requests / res.fleet_threaded_s / ref:,.0f}x",
    )
    mtp_ref = res.mtp_reference_requests / res.mtp_reference_s
    for name, seconds in (("MTP: DeepSeek-R1 B200 TP8, 64 clients (numba)", res.mtp_s),
                          ("  same, speculative none (numba)", res.mtp_off_s)):
        table.add_row(name, f"{res.mtp_requests:,}", f"{seconds:.2f}",
                      f"{res.mtp_requests / seconds:,.0f}",
                      f"{res.mtp_requests / seconds / mtp_ref:,.0f}x (MTP ref.)")
    table.add_row("  MTP reference (plain Python)", f"{res.mtp_reference_requests:,}",
                  f"{res.mtp_reference_s:.2f}", f"{mtp_ref:,.0f}", "1x")
    table.add_row(
        "disaggregated: 1 prefill + 2 decode (as validate)",
        f"{res.disagg_requests:,}",
        f"{res.disagg_s:.2f}",
        f"{res.disagg_requests / res.disagg_s:,.0f}",
        f"{res.disagg_requests / res.disagg_s / ref:,.0f}x",
    )
    console.print(table)
    console.print(
        f"start-up (kernel load + first tiny run): {res.startup_s:.2f} s; "
        f"peak RSS {res.peak_rss_mb:,.0f} MB"
    )
    return 0
