"""The typed summary behind ``summary.json`` (simulate/summary_model.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from capacitor.simulate.summary_model import RunSummary, summary_json_schema

_UNIT = {"cost_usd": 0.0, "input_tokens": 0.0, "output_tokens": 0.0,
         "usd_per_million_input_tokens": None, "usd_per_million_output_tokens": None,
         "usd_per_million_total_tokens": None}
#: A hand-written summary.json of a two-tenant run (the shape ``capacitor run`` writes).
SUMMARY = {
    "notes": [],
    "scenario": "tiny",
    "seed": 3,
    "fidelity": "exact",
    "window": {"month": None, "duration_s": 60.0, "warmup_s": 10.0},
    "verdict": {
        "ok": False,
        "text": "tier 1 b misses ttft_p99_ms (1200.0 vs 1000.0, +20.0%)",
        "misses": [{"tenant": "b", "tier": 1, "metric": "ttft_p99_ms", "target": 1000.0,
                    "value": 1200.0, "over_pct": 20.0, "cause": "capacity",
                    "why": "too few or too slow replicas for the demand"}],
        "invalid_requests": 0.0, "failed_requests": 2.0,
    },
    "tenants": {
        name: {"tier": tier, "requests": 100.0, "completed": 99.0, "refused_pct": 0.0,
               "refusals": {"throttled": 0.0, "shed": 0.0, "invalid": 0.0, "failed": 1.0,
                            "throttled_pct": 0.0, "shed_pct": 0.0, "invalid_pct": 0.0,
                            "failed_pct": 1.0},
               "ttft_ms": {"p50": 50.0, "p90": 80.0, "p99": p99},
               "itl_ms": {"p50": 7.0, "p90": 8.0, "p99": None},
               "e2e_ms": {"p50": 900.0, "p90": 1000.0, "p99": 1100.0},
               "goodput_rps": 1.5, "throughput_rps": 1.65, "output_tokens_per_s": 165.0,
               "slo": {"ttft_p99_ms": 1000.0, "itl_p99_ms": None, "e2e_p99_ms": None,
                       "max_throttled_pct": 1.0}, "limit_shares": None}
        for name, tier, p99 in (("a", 0, 120.0), ("b", 1, 1200.0))
    },
    "deployments": {"d": {"site": "s", "gpu": "H100", "replicas": 8, "simulated_replicas": 8,
                          "scale": 1.0, "requests": 200.0, "completed": 198.0,
                          "preemptions": 0.0, "prefix_hit_rate": 0.25, "utilization": 0.5,
                          "batch_occupancy": 0.1,
                          "output_tokens_per_s": 330.0, "availability": 1.0,
                          "gpu_power_w_mean": 400.0, "power_mw_mean": 0.006,
                          "energy_mwh": 0.0, "joules_per_output_token": 5.0,
                          "step_slowdown_compute": 1.0, "step_slowdown_memory": 1.0,
                          "validated": True, "validity": "inside: vllm on H100"}},
    "sites": {"s": {"power_mw_mean": 0.01, "power_mw_peak": 0.012, "power_cap_mw": 1.0,
                    "at_cap": False, "gpus": 8, "energy_mwh": 0.0,
                    "gpu_power_limit_pct": None, "uncapped_power_mw_peak": None}},
    "economics": {"window_cost_usd": 0.0, "contracts": {}, "usd_per_million_output_tokens": 0.0,
                  "usd_per_gpu_hour_effective": 0.0, "energy_mwh": 0.0,
                  "energy_cost_usd": None, "month_estimate": _UNIT, "window": _UNIT,
                  "deployments": {"d": {"month_estimate": _UNIT, "window": _UNIT}},
                  "tiers": {"0": {"month_estimate": _UNIT, "window": _UNIT}}},
    "totals": {"output_tokens": 19800.0, "requests": 200.0},
    "power_cap": None,
}


def test_a_summary_round_trips_byte_for_byte() -> None:
    text = json.dumps(SUMMARY, indent=2, sort_keys=True) + "\n"
    summary = RunSummary.model_validate_json(text)
    assert summary.to_json() == text
    assert summary.verdict.misses[0].over_pct == 20.0
    assert summary.tenants["b"].ttft_ms.p99 == 1200.0
    assert summary.tenants["a"].itl_ms.p99 is None


def test_item_access_reads_the_fields_like_the_old_dict() -> None:
    summary = RunSummary.model_validate(SUMMARY)
    assert summary["verdict"]["ok"] is False
    assert summary["tenants"]["a"]["ttft_ms"]["p50"] == 50.0
    assert summary["verdict"]["misses"][0]["tenant"] == "b"
    with pytest.raises(KeyError):
        summary["no_such_key"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("fidelity",), "approximate"),  # exact | sampled
        (("sites", "s", "gpus"), "eight"),
        (("verdict", "misses", 0, "metric"), "ttft_p50_ms"),
        (("totals", "tokens"), 5.0),  # unknown key
    ],
)
def test_a_summary_that_breaks_the_schema_is_refused(path: tuple, value: object) -> None:
    data = json.loads(json.dumps(SUMMARY))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError, match=str(path[-1])):
        RunSummary.model_validate(data)


def _leaves(schema: dict, node: dict, path: str, out: list[tuple[str, str]]) -> None:
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    for name, prop in node.get("properties", {}).items():
        out.append((f"{path}.{name}", prop.get("description", "")))
        target = prop
        for key in ("anyOf", "additionalProperties", "items"):
            if isinstance(target, dict) and key in target:
                inner = target[key]
                target = next((x for x in inner if "$ref" in x), inner[0]) \
                    if isinstance(inner, list) else inner
        if isinstance(target, dict) and ("$ref" in target or "properties" in target):
            _leaves(schema, target, f"{path}.{name}", out)


def test_every_field_of_the_schema_is_described_and_numbers_carry_units() -> None:
    schema = summary_json_schema()
    leaves: list[tuple[str, str]] = []
    _leaves(schema, schema, "summary", leaves)
    assert len(leaves) > 60
    assert [p for p, d in leaves if not d] == []
    units = ("ms", "MW", "MWh", "USD", "%", " s", "second", "0-1", "GPU", "Replicas",
             "Requests", "tokens", "Tokens", "Preemptions", "decimal")
    numbers = {"requests", "completed", "p50", "p99", "power_mw_peak", "energy_mwh",
               "window_cost_usd", "duration_s", "utilization", "refused_pct"}
    for path, description in leaves:
        if path.rsplit(".", 1)[-1] in numbers:
            assert any(u in description for u in units), (path, description)


def test_run_schema_prints_the_summary_schema_and_exits_0(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from capacitor.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["title"] == "RunSummary"
    assert "window_cost_usd" in schema["$defs"]["EconomicsSummary"]["properties"]
    assert list(tmp_path.iterdir()) == []  # nothing simulated, no run directory
    assert "--schema" in CliRunner().invoke(app, ["run", "--help"]).stdout


def test_the_terminal_report_reads_the_typed_summary() -> None:
    from rich.console import Console

    from capacitor.report.terminal import print_run

    console = Console(record=True, width=200)
    print_run(console, RunSummary.model_validate(SUMMARY))
    text = console.export_text()
    assert "tiny: tier 1 b misses ttft_p99_ms (1200.0 vs 1000.0, +20.0%)" in text
    assert "50 / 1,200" in text  # b's TTFT p50 / p99, ms
    assert "8 GPUs, power 10 kW mean / 12 kW peak of 1.0 MW cap" in text  # 0.01, 0.012 MW


def test_the_terminal_report_prints_the_summary_notes() -> None:
    """``summary.notes`` (e.g. a deployment that outgrew its share of a tenant's limits) are
    printed under the verdict, each on its own line."""
    from rich.console import Console

    from capacitor.report.terminal import print_run

    console = Console(record=True, width=200)
    notes = ["tenant bronze: d received 70.0% of its requests", "a second note"]
    print_run(console, RunSummary.model_validate({**SUMMARY, "notes": notes}))
    lines = console.export_text().splitlines()
    assert "note: tenant bronze: d received 70.0% of its requests" in lines
    assert "note: a second note" in lines
