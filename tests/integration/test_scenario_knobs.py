"""Each scenario knob moves the answer in the documented direction (small, fast scenarios)."""

from __future__ import annotations

import numpy as np
import yaml

from capacitor.scenario import parse_scenario
from capacitor.simulate import run_scenario
from tests.factories import make_scenario, scenario_dict


def _run(**changes):
    return run_scenario(make_scenario(**changes)).summary


def test_power_cap_binds_and_power_stays_under_it():
    ok = _run()["sites"]["s"]
    assert 0 < ok["power_mw_mean"] <= ok["power_mw_peak"] <= ok["power_cap_mw"]
    # 8 x 700 W x 1.82 x 1.2 PUE = 12.2 kW at nameplate, above a 5 kW cap: the scenario runs
    # power-capped, its GPUs limited so that no minute draws more than the cap
    capped = _run(**{"sites.0.power_cap_mw": 0.005})
    site = capped["sites"]["s"]
    assert site["at_cap"] and site["gpu_power_limit_pct"] < 100.0
    assert site["power_mw_peak"] <= 0.005
    assert capped["deployments"]["d"]["step_slowdown_compute"] > 1.0
    more_load = _run(**{"workloads.0.arrival": {"kind": "poisson", "rate_rps": 120}})["sites"]["s"]
    assert more_load["power_mw_mean"] >= ok["power_mw_mean"]


def test_a_site_outage_loses_and_refuses_work():
    healthy = _run()
    outage = _run(**{"sites.0.failures": {"outages": [{"start_s": 30, "duration_s": 20}]}})
    assert outage["deployments"]["d"]["availability"] < healthy["deployments"]["d"]["availability"]
    assert outage["tenants"]["gold"]["refused_pct"] > healthy["tenants"]["gold"]["refused_pct"]
    assert outage["tenants"]["gold"]["completed"] < healthy["tenants"]["gold"]["completed"]


def test_a_tighter_rate_limit_throttles_more_and_can_miss_the_tier():
    loose = _run(**{"tenants.1.rate_limits": {"requests_per_min": 6000}})
    tight = _run(**{"tenants.1.rate_limits": {"requests_per_min": 900}})  # 15 rps of 30
    assert tight["tenants"]["bronze"]["refused_pct"] > 30.0
    assert loose["tenants"]["bronze"]["refused_pct"] < 1.0
    assert any(m["tenant"] == "bronze" and m["metric"] == "refused_pct"
               for m in tight["verdict"]["misses"])
    assert tight["tenants"]["gold"]["refused_pct"] == 0.0  # the other tier is untouched


def test_more_demand_raises_latency_and_fewer_replicas_hurt():
    base = _run()["tenants"]["gold"]["ttft_ms"]["p99"]
    busy = _run(**{"workloads.0.arrival": {"kind": "poisson", "rate_rps": 120}})
    assert busy["tenants"]["gold"]["ttft_ms"]["p99"] > base
    fewer = _run(**{"deployments.0.replicas": 2})
    assert fewer["tenants"]["gold"]["ttft_ms"]["p99"] > base


def _mooncake_scenario() -> dict:
    """The small scenario, its one workload replaying the Mooncake trace at 4 requests/s."""
    from tests.conftest import require_data

    path = require_data("traces", "mooncake_fast25", "conversation_trace.jsonl")
    data = scenario_dict(**{"deployments.0.max_model_len": 131072})
    data["workloads"] = [{
        "name": "agent", "tenant": "gold", "deployment": "d",
        "lengths": {"kind": "trace", "path": str(path), "format": "mooncake",
                    "target_rate_rps": 4.0, "loop": True},
    }]
    return data


def test_a_mooncake_trace_workload_replays_with_prefix_hits():
    data = _mooncake_scenario()
    run = run_scenario(parse_scenario(yaml.safe_dump(data), origin="<trace>"))
    pool = run.pools[0]
    n = len(pool.status)
    assert 4.0 * 70 * 0.8 < n < 4.0 * 70 * 1.2  # ~4 requests/s over warm-up + window
    assert pool.result.num_cached_tokens.sum() > 0  # shared hash ids hit the prefix cache
    assert run.summary.tenants["gold"].completed > 0


def test_preempting_lower_tiers_protects_the_top_tier_under_memory_pressure():
    pressure = {
        "deployments.0.gpu_memory_utilization": 0.3,  # ~7 GB of KV per replica
        "deployments.0.replicas": 2,
        "workloads.0.lengths": {"kind": "fixed", "input_tokens": 2000, "output_tokens": 400},
        "workloads.1.lengths": {"kind": "fixed", "input_tokens": 2000, "output_tokens": 400},
        "workloads.0.arrival": {"kind": "poisson", "rate_rps": 8},
        "workloads.1.arrival": {"kind": "poisson", "rate_rps": 8},
    }
    fcfs = _run(**pressure)
    tiers = _run(**pressure, **{"admission": {"policy": "token_bucket", "bucket_depth_s": 1,
                                              "preempt_lower_tiers": True}})
    assert fcfs["deployments"]["d"]["preemptions"] > 0
    gold_f, gold_t = fcfs["tenants"]["gold"], tiers["tenants"]["gold"]
    bronze_f, bronze_t = fcfs["tenants"]["bronze"], tiers["tenants"]["bronze"]
    assert gold_t["ttft_ms"]["p99"] < gold_f["ttft_ms"]["p99"]
    assert gold_t["e2e_ms"]["p50"] < gold_f["e2e_ms"]["p50"]
    assert bronze_t["ttft_ms"]["p99"] > bronze_f["ttft_ms"]["p99"]


def test_a_monthly_token_quota_throttles_once_the_windows_allowance_is_used():
    # bronze sends 30 rps x 600 tokens over the 70 s span = 1.26 M tokens; a quota whose
    # pro-rata allowance for 70 s of a mean month is half that lasts ~35 s, i.e. until 25 s
    # into the counted 60 s: ~58% of the counted requests are refused.
    from capacitor.fleet.admission import MEAN_MONTH_S

    quota = 0.63e6 * MEAN_MONTH_S / 70.0
    out = _run(**{"tenants.1.quotas": {"tokens_per_month": quota}})
    assert 45.0 < out["tenants"]["bronze"]["refused_pct"] < 70.0
    assert out["tenants"]["gold"]["refused_pct"] == 0.0
    assert any(m["tenant"] == "bronze" and m["metric"] == "refused_pct"
               for m in out["verdict"]["misses"])
    roomy = _run(**{"tenants.1.quotas": {"tokens_per_month": 3 * quota}})
    assert roomy["tenants"]["bronze"]["refused_pct"] == 0.0


def test_slot_shares_cap_what_a_tenant_holds_in_flight():
    free = _run()["tenants"]["bronze"]["refused_pct"]
    # 8 replicas x 64 seqs = 512 slots; 1% = 5 in flight, below bronze's ~30 rps x E2E
    capped = _run(**{"tenants.1.quotas": {"max_share_pct": 1}})["tenants"]
    assert free == 0.0 and capped["bronze"]["refused_pct"] > 10.0
    assert capped["gold"]["refused_pct"] == 0.0
    # gold's guarantee of 99% leaves bronze the same 5 slots
    held = _run(**{"tenants.0.quotas": {"guaranteed_share_pct": 99}})["tenants"]
    assert held["bronze"]["refused_pct"] > 10.0 and held["gold"]["refused_pct"] == 0.0


def test_a_tenants_limits_are_split_over_its_deployments_by_expected_demand():
    from capacitor.simulate import tenant_shares

    data = scenario_dict(**{"deployments.0.replicas": 4})
    data["deployments"].append({**data["deployments"][0], "name": "d2"})
    data["workloads"].append({**data["workloads"][1], "name": "b2", "deployment": "d2",
                              "arrival": {"kind": "poisson", "rate_rps": 10}})
    scenario = parse_scenario(yaml.safe_dump(data), origin="<knobs>")
    assert tenant_shares(scenario, "d").tolist() == [1.0, 0.75]
    assert tenant_shares(scenario, "d2").tolist() == [0.0, 0.25]
    # bronze's 2,400 requests/min fleet-wide: 1,800 on d (30 rps, none refused), 600 on d2
    data["tenants"][1]["rate_limits"] = {"requests_per_min": 2400}
    out = run_scenario(parse_scenario(yaml.safe_dump(data), origin="<knobs>")).summary
    assert out["tenants"]["bronze"]["refused_pct"] < 5.0
    data["tenants"][1]["rate_limits"] = {"requests_per_min": 1200}  # half the demand
    out = run_scenario(parse_scenario(yaml.safe_dump(data), origin="<knobs>")).summary
    assert 35.0 < out["tenants"]["bronze"]["refused_pct"] < 65.0


def test_the_cells_of_an_exact_run_replay_the_whole_trace_between_them():
    data = _mooncake_scenario()
    whole = run_scenario(parse_scenario(yaml.safe_dump(data), origin="<trace>"))
    data["simulation"]["shard_replicas"] = 3  # 8 replicas: cells of 3, 3 and 2
    cells = run_scenario(parse_scenario(yaml.safe_dump(data), origin="<trace>"))
    assert len(cells.pools) == 3
    sent = np.sort(np.concatenate([p.result.send_s for p in cells.pools]))
    np.testing.assert_array_equal(sent, np.sort(whole.pools[0].result.send_s))
    prompts = np.sort(np.concatenate([p.demand.batch.prompt_len for p in cells.pools]))
    np.testing.assert_array_equal(prompts, np.sort(whole.pools[0].demand.batch.prompt_len))
