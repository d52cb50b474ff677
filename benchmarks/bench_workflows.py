"""Speed of a 10,000-workflow coding-agent run (not a test). Run from the repository root:

    python benchmarks/bench_workflows.py

One deployment of 64 replicas of Llama-3.1-8B at TP 8 on H100s (room in KV for ~30 contexts
of ~150 k tokens per replica) (exact fidelity, every replica simulated) serves
coding-agent workflows arriving at 10,000 per hour for an hour (Poisson: ~10,000
workflows, ~830,000 model calls); the engine runs until the last one ends. Runs the scenario
twice (the first may compile the kernel) and prints the second, warm, time; the target is
10 s.
"""

from __future__ import annotations

import sys
import time

import yaml

from capacitor.scenario import parse_scenario
from capacitor.simulate import run_scenario

TARGET_S = 10.0
SCENARIO = """
name: coding-agents
sites:
  - {name: s, power_cap_mw: 50.0, pue: 1.2, gpus: {H100: 512}}
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    precision: BF16
    tp: 8
    max_num_seqs: 64
    max_num_batched_tokens: 8192
    replicas: 64
tenants:
  - {name: dev, tier: 0, slo: {ttft_p99_ms: 10000}}
workloads:
  - name: agent
    tenant: dev
    deployment: d
    arrival: {kind: poisson, rate_rps: 2.7778}
    lengths: {kind: workflow, preset: coding-agent}
routing: {policy: session_affinity}
simulation:
  window: {duration_s: 3600, warmup_s: 0}
  fidelity: exact
  shard_replicas: 64
"""


def main() -> int:
    scenario = parse_scenario(SCENARIO, origin="<bench>")
    best = None
    for _ in range(2):
        start = time.perf_counter()
        run = run_scenario(scenario, keep_pools=False)
        best = time.perf_counter() - start
    stats = run.summary.workflows["agent"]["dev"]
    print(f"{stats.workflows:,.0f} workflows, {run.num_simulated:,} model calls: "
          f"{best:.2f} s warm (target <= {TARGET_S} s); completed {stats.completed:,.0f}, "
          f"prefix hit rate {stats.prefix_hit_rate}")
    print(yaml.safe_dump({"agent": stats.model_dump()}, sort_keys=True))
    return 0 if best <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
