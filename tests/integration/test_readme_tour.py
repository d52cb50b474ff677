"""Every command of the README's five-minute tour runs, in a fresh directory, and says what
the README says it says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- tour:begin.*?```bash\n(.*?)```.*?<!-- tour:end -->", text,
                      re.S)
    assert block, "README.md has no tour block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    commands = _tour_commands()
    assert len(commands) == 5
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = dict(os.environ, CAPACITOR_CACHE_DIR=str(tmp_path / "cache"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = {}
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=1800)
        assert done.returncode in (0, 1), (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        out[command] = done
    runs = tmp_path / "runs"
    # 1-2: the default run, its verdict first, and a report beside it
    default = out[commands[0]]
    assert default.returncode == 0
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_line = default.stdout.splitlines()[0]
    assert first_line.startswith("colossus1: serves the window within SLO for all tiers")
    assert " ".join(first_line.split()) in " ".join(readme.split())  # quoted as printed
    assert (runs / "colossus" / "report.html").stat().st_size > 1_000_000
    # 3: four times the rate on the 70B node: paying misses ITL for capacity, free is
    # throttled by its rate limit; exit 1
    busier = out[commands[2]]
    assert busier.returncode == 1
    first = busier.stdout.splitlines()[0]
    assert "tier 0 paying misses itl_p99_ms" in first and "- capacity:" in first
    assert "tier 1 free misses refused_pct" in first and "- rate_limit:" in first
    # 4: the plan: the node is too small, and by how much
    plan = out[commands[3]]
    assert plan.returncode == 1
    # 16 H100 x 700 W x 1.82 server overhead x 1.2 PUE = 24,461 W, in kW where MW would read
    # 0.0; the node's cap 0.02 MW = 20 kW
    assert "needs 2 replicas = 16 H100 and 24 kW" in plan.stdout + plan.stderr
    assert "power caps node: 20 kW" in plan.stdout + plan.stderr
    # the runway's first failing months, as the README gives them
    runway = json.loads((runs / "runway" / "runway.json").read_text())
    first_fail = {name: g["tiers"]["0"]["first_failing_month"]
                  for name, g in runway["growth"].items()}
    assert first_fail["scenario"] == "2029-01"
    assert first_fail["base"] == "2028-10"
    assert first_fail["stress"] == "2028-04"
    # and its report: a chart per deployment, GPUs to add and monthly cost
    page = (runs / "runway" / "report.html").read_text(encoding="utf-8")
    assert page.count('id="chart-') == 3 and "2029-01" in page
