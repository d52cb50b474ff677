"""`capacitor run` end to end: the embedded Colossus scenario, run directories, determinism,
verdicts and exit codes, and the scenario commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from capacitor.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "canonical.yaml"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _assert_small_example_verdict(result, summary_path: Path) -> None:
    """What the shortened example answers: its 150 s end before west's outage at 300 s, its
    free-tier conversations end and stay within max_model_len, and its monthly quota covers
    the window's pro-rata tokens, so nothing is throttled or invalid. Premium meets its SLO;
    free may miss refused_pct only by being shed by admission control in its bursts (80
    requests/s), which depends on the seed and the routing cells. The exit code says
    which."""
    summary = json.loads(summary_path.read_text())
    ok = summary["verdict"]["ok"]
    assert result.exit_code == (0 if ok else 1), (result.output, result.exception)
    assert {(m["tenant"], m["metric"]) for m in summary["verdict"]["misses"]} <= \
        {("free", "refused_pct")}
    for tenant in summary["tenants"].values():
        assert tenant["refusals"]["throttled"] == tenant["refusals"]["invalid"] == 0.0


def _small_example(tmp_path: Path, **simulation) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["simulation"]["window"]["duration_s"] = 120
    data["simulation"]["window"]["warmup_s"] = 30
    data["simulation"].update(simulation)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_run_answers_for_the_embedded_colossus_scenario(tmp_path):
    out = tmp_path / "colossus"
    result = invoke("run", "--out", out)
    # the README's answer: the embedded scenario serves its window within SLO for all tiers
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "colossus1"
    verdict = summary["verdict"]
    assert (verdict["ok"], verdict["misses"]) == (True, [])
    # the coding agent's prompts longer than the model's context are invalid: counted and
    # named, not judged
    assert verdict["invalid_requests"] > 0 and verdict["failed_requests"] == 0
    assert verdict["text"] == ("serves the window within SLO for all tiers; not judged: "
                               f"{verdict['invalid_requests']:,.0f} invalid requests (over "
                               "max_model_len)")
    assert summary["tenants"]["coding_agent"]["refusals"]["invalid_pct"] > 0
    contract = summary["economics"]["contracts"]["colossus1_lease"]
    assert contract["term_total_usd"] == 44_062_500_000.0  # see test_contract_in_summary.py
    first_line = result.stdout.splitlines()[0]
    assert summary["verdict"]["text"] in " ".join(result.stdout.split())
    assert first_line.startswith("colossus1:")  # the verdict comes first
    assert set(summary["tenants"]) == {"enterprise_api", "consumer", "coding_agent"}
    assert summary["sites"]["colossus1"]["gpus"] == 220_000
    assert 0 < summary["sites"]["colossus1"]["power_mw_peak"] <= 300
    assert summary["economics"]["usd_per_million_output_tokens"] > 0
    # the coding agent's workloads share a 512-token system prompt (colossus.yaml): their
    # deployments find it in the prefix cache; the others' prompts share nothing
    hits = {d: v["prefix_hit_rate"] for d, v in summary["deployments"].items()}
    assert hits["large_gb200"] > 0 and hits["small_h100"] > 0
    assert hits["large_h200"] == hits["large_h100"] == hits["mid_h100"] == 0.0
    requests = pq.read_table(out / "requests.parquet")
    assert requests.num_rows > 1_000_000
    assert {"tenant", "tier", "deployment", "replica", "arrival_s", "status", "ttft_ms",
            "e2e_ms", "input_tokens", "output_tokens", "prefix_hit_tokens", "refusal"} <= set(
        requests.column_names)
    timeline = pq.read_table(out / "timeline.parquet")
    assert {"minute", "arrivals", "power_mw", "utilization", "replicas_up", "throttled", "shed",
            "invalid", "failed"} <= set(timeline.column_names)
    assert yaml.safe_load((out / "scenario.yaml").read_text())["name"] == "colossus1"
    # the report of the default run: one file under 10 MB (plotly.js is 4.8 MB of it)
    assert 4_000_000 < (out / "report.html").stat().st_size < 10_000_000


def test_same_scenario_and_seed_give_byte_identical_summaries(tmp_path):
    scenario = _small_example(tmp_path)
    a = invoke("run", scenario, "--out", tmp_path / "a")
    b = invoke("run", scenario, "--out", tmp_path / "b")
    _assert_small_example_verdict(a, tmp_path / "a" / "summary.json")
    _assert_small_example_verdict(b, tmp_path / "b" / "summary.json")
    assert (tmp_path / "a" / "summary.json").read_bytes() == \
        (tmp_path / "b" / "summary.json").read_bytes()
    other = invoke("run", _small_example(tmp_path, seed=99), "--out", tmp_path / "c")
    _assert_small_example_verdict(other, tmp_path / "c" / "summary.json")
    assert (tmp_path / "c" / "summary.json").read_bytes() != \
        (tmp_path / "a" / "summary.json").read_bytes()


def test_a_missed_slo_names_the_tier_and_exits_1(tmp_path):
    data = yaml.safe_load(_small_example(tmp_path).read_text())
    for tenant in data["tenants"]:
        tenant["slo"]["ttft_p99_ms"] = 0.001  # impossible
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(data))
    result = invoke("run", path, "--json", "--out", tmp_path / "strict")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert not summary["verdict"]["ok"]
    missed = {m["tenant"] for m in summary["verdict"]["misses"] if m["metric"] == "ttft_p99_ms"}
    assert missed == {t["name"] for t in data["tenants"]}


def test_bad_scenarios_and_flags_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsites: []\nbogus_key: 1\n")
    for args in (("run", bad), ("scenario", "check", bad), ("run", "--backend", "spark")):
        result = invoke(*args)
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) >= 1
        assert "Traceback" not in result.output
    assert "bogus_key" in invoke("scenario", "check", bad).stderr


def test_scenario_schema_and_check(tmp_path):
    schema = invoke("scenario", "schema")
    assert schema.exit_code == 0
    doc = json.loads(schema.stdout)
    assert "properties" in doc and "sites" in doc["properties"]
    check = invoke("scenario", "check", EXAMPLE)
    assert check.exit_code == 0, check.output


def _assert_same_run(run_dir: Path, other_dir: Path) -> None:
    """Byte-identical summaries and the same requests, row for row."""
    assert (run_dir / "summary.json").read_bytes() == (other_dir / "summary.json").read_bytes()
    rows = pq.read_table(run_dir / "requests.parquet")
    other = pq.read_table(other_dir / "requests.parquet")
    assert rows.schema.equals(other.schema, check_metadata=True)
    for name in other.column_names:  # row order too; NaN (no first token) equals NaN
        a = rows[name].combine_chunks()
        b = other[name].combine_chunks()
        if hasattr(b, "dictionary"):
            assert a.to_pylist() == b.to_pylist(), name
        else:
            assert np.array_equal(a.to_numpy(zero_copy_only=False),
                                  b.to_numpy(zero_copy_only=False),
                                  equal_nan=b.type.id in (pa.float32().id, pa.float64().id)), name


def test_ray_backend_gives_the_local_results(tmp_path):
    import pytest

    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    scenario = _small_example(tmp_path, shard_replicas=16)  # 64 + 32 replicas: 6 shards
    local = invoke("run", scenario, "--out", tmp_path / "local")
    ray_run = invoke("run", scenario, "--backend", "ray", "--out", tmp_path / "ray")
    assert ray_run.exit_code == local.exit_code, ray_run.output
    _assert_same_run(tmp_path / "ray", tmp_path / "local")


def test_local_threads_give_the_single_thread_results(tmp_path):
    scenario = _small_example(tmp_path, shard_replicas=16)  # 64 + 32 replicas: 6 shards
    one = invoke("run", scenario, "--workers", "1", "--out", tmp_path / "one")
    three = invoke("run", scenario, "--workers", "3", "--out", tmp_path / "three")
    _assert_small_example_verdict(one, tmp_path / "one" / "summary.json")
    _assert_small_example_verdict(three, tmp_path / "three" / "summary.json")
    _assert_same_run(tmp_path / "three", tmp_path / "one")
    assert invoke("run", scenario, "--workers", "0").exit_code == 2


def test_exact_shards_stream_every_request_with_fleet_wide_replica_ids(tmp_path):
    scenario = _small_example(tmp_path, shard_replicas=16)
    result = invoke("run", scenario, "--out", tmp_path / "run")
    _assert_small_example_verdict(result, tmp_path / "run" / "summary.json")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    table = pq.read_table(tmp_path / "run" / "requests.parquet")
    logged = int((tmp_path / "run" / "run.log").read_text().split()[1])
    assert table.num_rows == logged
    counted = table["counted"].to_numpy()
    deployment = np.array(table["deployment"].to_pylist())
    replica = table["replica"].to_numpy()
    for name, dep in summary["deployments"].items():
        assert dep["simulated_replicas"] == dep["replicas"]  # exact: every replica
        mine = counted & (deployment == name)
        assert mine.sum() == dep["requests"]
        routed = replica[mine & (replica >= 0)]
        assert routed.min() == 0 and routed.max() == dep["replicas"] - 1


def test_ray_address_needs_the_ray_backend():
    result = invoke("run", "--ray-address", "auto")
    assert result.exit_code == 2
    assert "--backend ray" in result.stderr


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    result = invoke("run", _small_example(tmp_path), "--backend", "ray", "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "pip install" in result.stderr and "[ray]" in result.stderr


def test_fidelity_flag_overrides_the_scenario(tmp_path):
    scenario = _small_example(tmp_path, fidelity="exact")
    out = tmp_path / "sampled"
    result = invoke("run", scenario, "--fidelity", "sampled", "--out", out)
    _assert_small_example_verdict(result, out / "summary.json")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fidelity"] == "sampled"
    assert yaml.safe_load((out / "scenario.yaml").read_text())["simulation"]["fidelity"] == \
        "sampled"
    assert any(d["simulated_replicas"] < d["replicas"] for d in summary["deployments"].values())
    bad = invoke("run", scenario, "--fidelity", "approximate")
    assert bad.exit_code == 2
    assert "--fidelity 'approximate'" in bad.stderr and "exact and sampled" in bad.stderr
