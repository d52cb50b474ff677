"""A golden ``summary.json``: a scenario small enough that every number checked was worked
out by hand (golden/tiny.yaml; the expected fields are golden/tiny_summary.json).

The hand arithmetic:

* Arrivals: constant, 1 request/s from t = 0 over warm-up + window = 60 + 600 s: sends at
  t = 0, 1, ..., 659. Counted: those at t >= 60, i.e. 600 requests.
* Service: each request (100 prompt tokens, 10 output) takes well under 1 s on an H100, so
  nothing queues, nothing is refused and every counted request completes: 600 completed,
  600 x 10 = 6000 output tokens; per second of window: 600 / 600 = 1.0 completed (all within
  their SLOs: goodput 1.0) and 6000 / 600 = 10.0 tokens.
* Site "spare": 1000 H100 that no deployment uses, idle at 15% of their 700 W TDP: 105 W,
  x 10.2 / 5.6 server overhead = 191.25 W, x PUE 1.6 = 306 W each; 1000 of them 0.306 MW,
  every minute (mean = peak). Energy over the window's 10 minutes (minutes 1..10; minute 0 is
  warm-up): 10 x 0.306 / 60 = 0.051 MWh.
* Power caps: the sites' nameplates (1 x 700 W x 1.82 x 1.25 = 1.6 kW; 1000 x 700 W x 1.82
  x 1.6 = 2.04 MW) are under their caps (1 MW, 3 MW): no GPU is power-limited
  (``gpu_power_limit_pct`` null, step slowdowns 1.0, ``power_cap`` null).
* Economics: 1001 H100 at $3.00 per GPU-hour for 600 s (1/6 h): 1001 x 3 / 6 = $500.50;
  per GPU-hour effective $3.00; per million output tokens 500.5 / 0.006 = $83,416.667.
* Validated: Llama-3.1-8B (dense, BF16) on one H100 with vLLM at tp 1 lies inside the
  real-vLLM-servers class (vLLM, H100, dense, 16-bit, tp 1-4): ``validated`` true.
* Prefix reuse: every prompt is 100 fresh tokens, nothing shared: ``prefix_hit_rate`` 0.0.
* Refusals: none of any cause (nothing throttled, shed, invalid or failed); the verdict's
  text has nothing it did not judge.
* Unit costs. Window: deployment d holds the 1 GPU of site "serve": 1 x $3 x 1/6 h = $0.50,
  over 60,000 input tokens (600 x 100) = $8.333 per M, 6,000 output = $83.333 per M, 66,000
  in all = $7.576 per M; tier 0 is all of d. Month (no month named: a mean month,
  365.25 / 12 days = 2,629,800 s = 730.5 h): the fleet's bill 1001 x $3 x 730.5 h =
  $2,193,691.50, d's 1 x $3 x 730.5 = $2,191.50; constant demand scales to the month by
  2,629,800 / 600 = 4,383: 6,000 x 4,383 = 26,298,000 output and 60,000 x 4,383 =
  262,980,000 input tokens, so $/M equal the window's ($2,193,691.50 / 26.298 = $83,416.667).
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from capacitor.cli import app

GOLDEN = Path(__file__).resolve().parent / "golden"


def _fields_differing(expected: object, got: object, path: str = "") -> list[str]:
    """Every leaf of ``expected`` that ``got`` does not hold exactly, as 'path: want != got'."""
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"{path}: a mapping expected, got {got!r}"]
        out: list[str] = []
        for key, value in expected.items():
            where = f"{path}.{key}" if path else key
            if key not in got:
                out.append(f"{where}: missing")
            else:
                out += _fields_differing(value, got[key], where)
        return out
    return [] if got == expected and type(got) is type(expected) else [
        f"{path}: {expected!r} != {got!r}"]


def test_the_tiny_scenario_gives_the_hand_checked_summary(tmp_path):
    result = CliRunner().invoke(app, ["run", str(GOLDEN / "tiny.yaml"), "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 0, (result.output, result.exception)  # within SLO: exit 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    expected = json.loads((GOLDEN / "tiny_summary.json").read_text())
    assert _fields_differing(expected, summary) == []
