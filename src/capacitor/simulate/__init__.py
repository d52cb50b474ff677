"""Scenario -> results: every deployment's pool simulated over the window, reduced to
digests, then the summary, per-tier verdicts and the run directory's files.

Modules, in the order a run flows through them:

``deployment``  one deployment's routing cell: demand, limits, failures, the pool kernel
``disagg``      a disaggregated deployment's routing cell: its prefill and decode pools
``digest``      a simulated pool reduced to what the summary reads
``activity``    per minute, the HBM and tensor-core seconds of a pool's work (for power)
``shards``      one cell simulated and reduced (a pure function; backends run it)
``backends``    local threads or Ray tasks
``run``         :func:`run_scenario`: all cells, merged in task order, then the summary
``power_cap``   a site over its power cap: GPU power limits, the capped deployments re-run
``site_power``  per-minute GPU and site power, from the digests' activity
``summary``     per-tier verdicts, utilisation, power and unit costs (``summary.json``)
``summary_model`` the typed summary: what ``summary.json`` holds, its JSON Schema
``outputs``     the run directory: ``summary.json``, ``requests.parquet``, ``timeline.parquet``
"""

from capacitor.simulate.deployment import shard_sizes, simulate_deployment, tenant_shares
from capacitor.simulate.records import PoolRun, RunResult, ShardOutput
from capacitor.simulate.run import run_scenario
from capacitor.simulate.shards import run_shard

__all__ = ["PoolRun", "RunResult", "ShardOutput", "run_scenario", "run_shard", "shard_sizes",
           "simulate_deployment", "tenant_shares"]
