"""Scenario files: the embedded and example scenarios load; bad input gives one-line errors
naming the YAML path and the value."""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from capacitor.errors import CapacitorError, ScenarioError
from capacitor.scenario import (
    dump_resolved,
    expected_arrivals,
    facility_power_mw,
    load_scenario,
    parse_scenario,
    power_warnings,
    replica_spec,
    resolve_replicas,
    scenario_json_schema,
    summary_lines,
    window_start_hour,
)
from capacitor.scenario.models import LognormalTokens, Scenario
from tests.factories import TWO_SITES, scenario_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "canonical.yaml"

BASE = TWO_SITES


def parse(data: dict) -> Scenario:
    return parse_scenario(yaml.safe_dump(data), origin="bad.yaml")


def error_of(data: dict | str) -> str:
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, origin="bad.yaml")
    return str(info.value)


def edited(path: str, value: object) -> dict:
    """BASE with the dotted path (list indices as numbers) set to ``value``."""
    return scenario_dict(BASE, **{path: value})


# ---- good scenarios ----------------------------------------------------------------------------


def test_base_scenario_loads_and_resolves_fill():
    scenario = parse(BASE)
    assert resolve_replicas(scenario) == {"d0": 16, "d1": 4}
    assert scenario.deployments[0].gpu == "H100"
    assert scenario.source == "bad.yaml"


def test_embedded_colossus_loads_within_power_cap():
    scenario = load_scenario(None)
    site = scenario.sites[0]
    assert sum(site.gpus.values()) == 220_000
    assert facility_power_mw(site) <= site.power_cap_mw == 300
    # the power sum of the YAML comment: 246.2 MW IT x 1.2
    assert facility_power_mw(site) == pytest.approx(295.392, rel=1e-6)
    replicas = resolve_replicas(scenario)
    used = sum(replicas[d.name] * d.gpus_per_replica for d in scenario.deployments)
    assert used == 220_000
    assert replicas == {"large_h200": 6250, "large_gb200": 5000, "large_h100": 9000,
                        "mid_h100": 1000, "small_h100": 4000}
    tiers = {t.name: t.tier for t in scenario.tenants}
    assert tiers == {"enterprise_api": 0, "consumer": 1, "coding_agent": 2}
    contract = scenario.economics.contracts[0]
    assert (contract.price_usd_per_month, contract.start, contract.end, contract.notice_days,
            contract.term_months) == (1.25e9, "2026-05", "2029-05", 90, 36)
    assert set(contract.ramp_discounts) == {"2026-05", "2026-06"}
    # the request count the file's header states: ~273M in the peak hour
    total = sum(v for v in expected_arrivals(scenario).values() if v is not None)
    assert total == pytest.approx(273e6, rel=0.01)


def test_colossus_every_number_has_a_basis_comment():
    text = resources.files("capacitor").joinpath("scenarios/colossus.yaml").read_text()
    lines = text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0]
        if not re.search(r":\s*-?[0-9]", code) and not re.search(r"\{.*[0-9]", code):
            continue
        if "#" in line:
            continue
        prev = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
        if prev.startswith("#"):
            continue
        bare.append(f"{i + 1}: {line.strip()}")
    assert not bare, "numbers without a comment:\n" + "\n".join(bare)


def test_example_loads_and_uses_every_section():
    scenario = load_scenario(EXAMPLE)
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert set(raw) == set(Scenario.model_fields)
    assert len(scenario.sites) == 2 and len(scenario.deployments) == 2
    assert len(scenario.tenants) == 2
    assert resolve_replicas(scenario) == {"chat_east": 64, "chat_west": 32}
    assert window_start_hour(scenario) == 15  # hour: null -> the diurnal peak hour


def test_dump_resolved_round_trips(tmp_path):
    scenario = load_scenario(EXAMPLE)
    text = dump_resolved(scenario)
    data = yaml.safe_load(text)
    assert data["deployments"][0]["replicas"] == 64
    assert data["deployments"][1]["max_num_seqs"] == 256  # vLLM default on a < 70 GiB GPU
    assert data["simulation"]["window"]["hour"] == 15
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    again = load_scenario(path)
    assert again.model_dump(mode="json") == data
    assert dump_resolved(again).split("\n", 1)[1] == text.split("\n", 1)[1]


def test_embedded_dump_resolved_is_loadable(tmp_path):
    path = tmp_path / "colossus.yaml"
    path.write_text(dump_resolved(load_scenario(None)))
    assert resolve_replicas(load_scenario(path))["small_h100"] == 4000


def test_json_schema_has_a_description_for_every_field():
    schema = scenario_json_schema()
    assert schema["title"] == "capacitor scenario"
    missing = []
    for name, node in [("Scenario", schema), *schema["$defs"].items()]:
        assert node.get("description"), name
        for key, prop in node.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{key}")
    assert not missing
    assert schema["$defs"]["Site"]["additionalProperties"] is False
    assert "MW" in schema["$defs"]["Site"]["properties"]["power_cap_mw"]["description"]


def test_summary_lines():
    lines = summary_lines(load_scenario(None))
    assert "295.4 MW of 300 MW cap" in lines[1]
    assert lines[-1].startswith("window 2026-07 17:00 UTC, 3600 s: ~273,")
    # 36 months May 2026 - April 2029 at $1.25B, less 0.5 x and 0.25 x $1.25B in the ramp:
    # $44.0625B; notice on 1 July 2026 + 90 days = 29 September: July, August and 28/30 of
    # September still owed = $1.25B x (2 + 28/30) = $3,666,666,667
    assert lines[-2] == (
        "contract colossus1_lease: 36 months 2026-05 to 2029-04, $44,062,500,000 in all; "
        "notice 90 days: given 2026-07-01, billing stops 2026-09-29 with $3,666,666,667 "
        "still owed")


def test_a_contract_line_uses_the_notice_period():
    data = edited("economics", {"contracts": [
        {"name": "c", "price_usd_per_month": 3100, "start": "2026-05", "end": "2026-12",
         "notice_days": 10}]})
    data["simulation"] = {"window": {"month": "2026-06"}}
    lines = summary_lines(parse(data))
    # 7 months at $3,100; notice on 1 June + 10 days: 10 of June's 30 days still owed
    assert ("contract c: 7 months 2026-05 to 2026-11, $21,700 in all; notice 10 days: given "
            "2026-06-01, billing stops 2026-06-11 with $1,033 still owed") in lines


def test_replica_spec_matches_the_deployment():
    scenario = load_scenario(None)
    spec = replica_spec(scenario.deployment("large_h100"))
    assert (spec.tp, spec.pp, spec.ep, spec.gpu.name) == (8, 2, 8, "H100")


def test_gpu_aliases_are_canonicalised():
    scenario = parse(edited("sites.0.gpus", {"h100-sxm-80gb": 16}))
    assert scenario.sites[0].gpus == {"H100": 16}


# ---- bad scenarios: one line per problem, naming path and value --------------------------------


def test_unknown_key():
    msg = error_of(edited("sites.0.power_cap_kw", 300))
    assert "bad.yaml: sites[0].power_cap_kw = 300: unknown key" in msg
    assert "power_cap_mw" in msg  # the valid keys are listed


def test_unknown_key_inside_a_tagged_union():
    msg = error_of(edited("workloads.0.arrival.rate", 3))
    assert "workloads[0].arrival.rate = 3: unknown key" in msg
    assert "rate_rps" in msg


def test_wrong_type_names_the_unit():
    msg = error_of(edited("sites.0.power_cap_mw", "300 MW"))
    assert "sites[0].power_cap_mw = '300 MW'" in msg and "(in MW)" in msg


def test_negative_power_cap():
    msg = error_of(edited("sites.0.power_cap_mw", -5))
    assert "sites[0].power_cap_mw = -5: input should be greater than 0" in msg


def test_unknown_gpu():
    msg = error_of(edited("deployments.1.gpu", "H1000"))
    assert "deployments[1].gpu = 'H1000': unknown GPU 'H1000'" in msg
    msg = error_of(edited("sites.1.gpus", {"L40X": 8}))
    assert "sites[1].gpus.L40X: unknown GPU 'L40X'" in msg
    assert len(msg.splitlines()) == 1  # no cascade of follow-on errors


def test_unknown_model():
    msg = error_of(edited("deployments.0.model", "acme/Llama-9-1T"))
    assert "deployments[0].model = 'acme/Llama-9-1T': unknown model" in msg


def test_inventory_over_subscribed():
    msg = error_of(edited("deployments.1.replicas", 9))
    assert "sites[1].gpus.L40S = 8: over-subscribed: deployments need 9" in msg


def test_two_fills_of_one_gpu_type():
    data = scenario_dict(BASE)
    data["deployments"].append({**data["deployments"][0], "name": "d2"})
    assert "deployments[2].replicas = 'fill'" in error_of(data)


def test_fill_with_nothing_left():
    data = scenario_dict(BASE)
    data["deployments"].append({**data["deployments"][0], "name": "d2", "replicas": 16})
    assert "deployments[0].replicas = 'fill': 0 H100 left" in error_of(data)


def test_power_above_cap_is_a_warning_with_both_numbers_and_the_factor():
    scenario = parse(edited("sites.0.power_cap_mw", 0.02))  # runs (power-capped), not refused
    (msg,) = power_warnings(scenario)
    # 16 x 700 W x 1.82 x 1.2 = 0.02446 MW
    assert "sites[0].power_cap_mw = 0.02: the inventory's nameplate is 0.02446 MW" in msg
    assert "server_overhead_factor 1.82" in msg and "pue 1.2" in msg
    assert "power-capped" in msg
    assert any(line.startswith("warning: sites[0].power_cap_mw") for line in
               summary_lines(scenario))
    assert power_warnings(parse(BASE)) == []


def test_model_does_not_fit():
    data = edited("deployments.1.model", "meta-llama/Llama-3.1-405B-Instruct")
    msg = error_of(data)
    assert "deployments[1] (d1): the model does not fit the replica" in msg
    assert "L40S" in msg and "tp=1" in msg


def test_bad_parallelism_points_at_the_key():
    msg = error_of(edited("deployments.0.tp", 3))
    assert "deployments[0].tp (d0): tp=3: must divide num_attention_heads" in msg


def test_yaml_object_tag_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg and "line 1" in msg and "python/object" in msg


def test_unknown_tenant_and_deployment_references():
    data = edited("workloads.1.tenant", "platinum")
    data["workloads"][0]["deployment"] = "nope"
    msg = error_of(data)
    assert "workloads[1].tenant = 'platinum': no such tenant" in msg
    assert "workloads[0].deployment = 'nope': no such deployment" in msg
    assert len(msg.splitlines()) == 2


def test_unknown_site_reference():
    assert "deployments[1].site = 'c': no such site" in error_of(edited("deployments.1.site",
                                                                         "c"))


def test_every_problem_is_reported_one_per_line():
    data = edited("sites.0.pue", 0.5)
    data["deployments"][1]["tp"] = 0
    data["tenants"][0]["slo"]["ttft_p99_ms"] = "fast"
    lines = error_of(data).splitlines()
    assert len(lines) == 3
    assert all(line.startswith("bad.yaml: ") for line in lines)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("workloads.0.arrival.kind", "gamma", "workloads[0].arrival.kind = 'gamma': unknown kind"),
        ("workloads.0.arrival", {"kind": "stages", "stages": "5@x"},
         "workloads[0].arrival.stages = '5@x'"),
        ("workloads.0.arrival", {"kind": "diurnal", "mean_rate_rps": 1, "peak_to_mean": 3,
                                 "peak_hour": 3},
         "workloads[0].arrival.peak_to_mean = 3: input should be less than or equal to 2"),
        ("workloads.0.arrival", {"kind": "bursty", "rate_rps": 5, "burst_rate_rps": 1,
                                 "mean_burst_s": 1, "mean_gap_s": 1},
         "burst_rate_rps = 1.0 is below rate_rps = 5.0"),
        ("deployments.0.replicas", "all", "deployments[0].replicas = 'all': expected an integer"),
        ("deployments.0.precision", "int4", "deployments[0].precision = 'int4'"),
        ("name", "bad name!", "name = 'bad name!': a name is letters"),
        ("tenants.0.slo.max_throttled_pct", 150, "tenants[0].slo.max_throttled_pct = 150"),
        ("workloads.0.lengths", {"kind": "distribution",
                                 "input": {"kind": "lognormal", "mean_tokens": 100,
                                           "p99_tokens": 50},
                                 "output": {"kind": "uniform", "min_tokens": 1,
                                            "max_tokens": 9}},
         "workloads[0].lengths.input = "),
        ("simulation", {"window": {"month": "2026-13"}},
         "simulation.window.month = '2026-13': expected a month 'YYYY-MM'"),
        ("admission", {"policy": "queue_length"}, "admission.max_queue: missing"),
        ("economics", {"contracts": [{"name": "c", "price_usd_per_month": 1, "start": "2026-05",
                                      "end": "2026-05"}]},
         "economics.contracts[0] = "),
        ("economics", {"contracts": [{"name": "c", "price_usd_per_month": 1, "start": "2026-05",
                                      "end": "2026-05"}]},
         "bad end='2026-05'; expected a month after start='2026-05' (end is exclusive)"),
        ("economics", {"contracts": [{"name": "c", "price_usd_per_month": 1, "start": "2026-05",
                                      "end": "2026-07", "ramp_discounts": {"2026-07": 0.5}}]},
         "bad ramp_discounts month '2026-07'; expected within the term [2026-05, 2026-07)"),
        ("economics", {"contracts": [{"name": "c", "site": "zz", "price_usd_per_month": 1,
                                      "start": "2026-05", "end": "2027-05"}]},
         "economics.contracts[0].site = 'zz': no such site"),
        ("economics", {"gpu_hour_usd": {"Z9": 1.0}}, "economics.gpu_hour_usd.Z9: unknown GPU"),
        ("tenants.1.name", "gold", "tenants[1].name = 'gold': duplicate of tenants[0]"),
    ],
)
def test_bad_values_name_path_and_value(path, value, expected):
    assert expected in error_of(edited(path, value))


def test_null_predicted_ttft_limit_is_the_tenants_common_ttft_slo():
    data = edited("tenants.1.slo", {"ttft_p99_ms": 500})  # gold and free: 500 ms
    data["admission"] = {"policy": "predicted_ttft"}
    scenario = parse(data)
    assert scenario.admission.max_predicted_ttft_ms == 500
    assert "max_predicted_ttft_ms: 500" in dump_resolved(scenario)
    data["admission"]["max_predicted_ttft_ms"] = 250  # an explicit limit stays
    assert parse(data).admission.max_predicted_ttft_ms == 250
    # another policy leaves null alone (the limit is not used)
    assert parse(edited("admission", {"policy": "token_bucket"})
                 ).admission.max_predicted_ttft_ms is None


def test_null_predicted_ttft_limit_with_different_tenant_slos_is_an_error():
    message = error_of(edited("admission", {"policy": "predicted_ttft"}))
    assert "admission.max_predicted_ttft_ms = null" in message
    assert "gold 500, free None" in message  # free has no TTFT target
    assert "\n" not in message
    data = edited("tenants.1.slo", {"ttft_p99_ms": 2000})
    data["admission"] = {"policy": "predicted_ttft"}
    assert "gold 500, free 2000" in error_of(data)


def test_max_queue_is_refused_where_no_policy_uses_it():
    message = error_of(edited("admission", {"policy": "predicted_ttft",
                                            "max_predicted_ttft_ms": 300, "max_queue": 8}))
    assert message.startswith("bad.yaml: admission.max_queue = 8: not used by policy "
                              "predicted_ttft")
    # token_bucket and queue_length use it
    for policy in ("token_bucket", "queue_length"):
        assert parse(edited("admission", {"policy": policy, "max_queue": 8})
                     ).admission.max_queue == 8


def test_missing_section_and_missing_kind():
    data = scenario_dict(BASE)
    del data["tenants"]
    del data["workloads"][0]["arrival"]["kind"]
    msg = error_of(data)
    assert "tenants: missing (required)" in msg
    assert "workloads[0].arrival.kind: missing (required); valid: 'poisson'" in msg


def test_top_level_must_be_a_mapping_and_yaml_must_parse():
    assert "expected a mapping of sections" in error_of("- a\n- b\n")
    assert "line 2" in error_of("name: [a\n")


def test_unreadable_file(tmp_path):
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(tmp_path / "absent.yaml")


def test_scenario_error_is_a_capacitor_error():
    assert issubclass(ScenarioError, CapacitorError)


# ---- traces and relative paths ----------------------------------------------------------------


def test_trace_path_is_relative_to_the_scenario_file(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [0]}\n')
    data = scenario_dict(BASE)
    data["workloads"][0].pop("arrival")
    data["workloads"][0]["lengths"] = {"kind": "trace", "path": "t.jsonl", "format": "mooncake",
                                       "target_rate_rps": 4}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    scenario = load_scenario(path)
    assert scenario.workloads[0].lengths.path == str(trace)
    assert expected_arrivals(scenario)["w0"] == pytest.approx(4 * 3600)
    data["workloads"][0]["lengths"]["path"] = "missing.jsonl"
    data["workloads"][0]["arrival"] = {"kind": "poisson", "rate_rps": 1}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert "workloads[0].lengths.path = 'missing.jsonl': no such file" in msg
    assert "workloads[0].arrival: a trace workload takes its arrivals from the trace" in msg


def test_workload_without_arrival_needs_a_trace():
    data = scenario_dict(BASE)
    del data["workloads"][1]["arrival"]
    assert ("workloads[1].arrival: missing (required unless lengths.kind is trace, or "
            "workflow with a trace)") in error_of(data)


def test_profile_path_is_checked(tmp_path):
    data = edited("simulation", {"profile": "nope.yaml"})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match=r"simulation.profile = .*nope.yaml"):
        load_scenario(path)


# ---- derived numbers ----------------------------------------------------------------------------


def test_expected_arrivals_per_kind():
    data = scenario_dict(BASE)
    data["simulation"] = {"window": {"duration_s": 600, "hour": 12, "month": "2026-03"}}
    data["workloads"][0]["arrival"] = {"kind": "stages", "stages": "2@300;4@600"}
    data["workloads"][1]["arrival"] = {"kind": "bursty", "rate_rps": 1, "burst_rate_rps": 11,
                                       "mean_burst_s": 10, "mean_gap_s": 90,
                                       "monthly_growth_pct": 10, "base_month": "2026-01"}
    counts = expected_arrivals(parse(data))
    assert counts["w0"] == pytest.approx(600 + 4 * 300)  # the second stage is cut at 600 s
    assert counts["w1"] == pytest.approx(2.0 * 600 * 1.1**2)  # MMPP mean 2 rps, 2 months growth


def test_diurnal_rate_and_peak_hour():
    data = scenario_dict(BASE)
    diurnal = {"kind": "diurnal", "mean_rate_rps": 10, "peak_to_mean": 1.5, "peak_hour": 20}
    data["workloads"][0]["arrival"] = diurnal
    scenario = parse(data)
    assert window_start_hour(scenario) == 20
    arrival = scenario.workloads[0].arrival
    assert arrival.rate_at(20.5) == pytest.approx(15.0)
    assert arrival.rate_at(8.5) == pytest.approx(5.0)
    # the peak hour holds 10 x 3600 x (1 + 0.5 x sinc(pi/24)) requests
    k = math.pi / 24
    assert expected_arrivals(scenario)["w0"] == pytest.approx(36000 * (1 + 0.5 * math.sin(k) / k))


def test_lognormal_mean_and_p99_round_trip():
    dist = LognormalTokens(kind="lognormal", mean_tokens=1155, p99_tokens=4142)
    mu, sigma = dist.mu_sigma()
    assert math.exp(mu + sigma**2 / 2) == pytest.approx(1155)
    assert math.exp(mu + 2.3263478740408408 * sigma) == pytest.approx(4142)


def test_the_lognormal_p99_point_is_defined_once():
    from statistics import NormalDist

    from capacitor.scenario import models
    from capacitor.workload import lengths

    assert models.Z99 is lengths.Z99
    assert models.Z99 == pytest.approx(2.3263479, abs=1e-7) == NormalDist().inv_cdf(0.99)
