"""The example's free-tier chat is a real conversation that ends and stays within the
model's context: no request is refused for exceeding max_model_len through session growth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from capacitor.scenario import parse_scenario
from capacitor.simulate import run_scenario
from capacitor.simulate.outputs import requests_table

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "canonical.yaml"


def _run(**free_chat):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["simulation"]["window"].update(duration_s=240, warmup_s=30)
    # chat_west at 4,096 tokens: round k of free_chat is 1,000 + 200 + 400k tokens + 200
    # out, so rounds 0..6 fit (1,400 ... 3,800) and round 7 (4,200) does not
    data["deployments"][1]["max_model_len"] = 4096
    data["workloads"][2]["lengths"].update(free_chat)
    run = run_scenario(parse_scenario(yaml.safe_dump(data), base_dir=EXAMPLE.parent))
    table = requests_table(run)
    free = np.array(table["tenant"].to_pylist()) == "free"
    prompt = np.array(table["input_tokens"].to_pylist())[free]
    output = np.array(table["output_tokens"].to_pylist())[free]
    return run.summary.tenants["free"], prompt, output


def test_the_example_sessions_never_exceed_max_model_len():
    free, prompt, output = _run()  # the example's own: 2 rounds on average, truncate
    assert free.refusals.invalid == 0.0
    assert int((prompt + output).max()) <= 4096
    # a geometric conversation (mean 2) is round k with probability 2^-(k+1): mean round 1,
    # so the mean prompt is 1,200 + 400 = 1,600 (rounds past 6 are truncated to 3,600, which
    # lowers it by 400 x sum_{k>6} (k - 6) 2^-(k+1) = 400 x 2^-7 ~ 3)
    assert abs(prompt.mean() - 1600) < 60
    # rounds past 6 happen (2^-7 of requests ~ 0.8%) and are cut to round 6, 3,600 tokens
    assert (prompt == 3600).sum() > 0 and int(prompt.max()) == 3600


def test_a_context_that_grows_without_end_is_refused_as_invalid():
    # inference-perf's sessions: one conversation per user, refused at max_model_len
    free, prompt, _ = _run(mean_rounds_per_session=None, context_full="refuse")
    assert free.refusals.invalid_pct > 50.0
    assert prompt.mean() > 3000
