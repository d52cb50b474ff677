"""Disaggregated deployments in scenarios (``deployments[i].disaggregated``): a request on
an idle pair of pools against hand-computed times, GPU counting of both pools (inventory,
power), worker failures at its site, one-line refusals naming the field, determinism and
the GB200 example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from capacitor.engine import reference
from capacitor.engine.replica import build_replica
from capacitor.engine.requests import RequestBatch
from capacitor.errors import ScenarioError
from capacitor.perf.step_time import step_time_s
from capacitor.scenario import (
    dump_resolved,
    load_scenario,
    parse_scenario,
    resolve_replicas,
    scenario_json_schema,
    summary_lines,
)
from capacitor.scenario.specs import replica_spec
from capacitor.simulate import run_scenario
from capacitor.simulate.site_power import pool_facility_w, site_draw_w
from capacitor.simulate.summary import timeline
from tests.factories import scenario_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dsr1_gb200_disagg.yaml"

#: One unit (a prefill and a decode worker of one H100 each) serving one request of a
#: 1000-token prompt and 4 output tokens, sent at t = 0.5 s (one constant-rate stage).
ONE: dict = yaml.safe_load("""
name: disagg-one
sites:
  - {name: s, power_cap_mw: 1.0, pue: 1.2, gpus: {H100: 8}}
deployments:
  - name: d
    model: meta-llama/Llama-3.1-8B-Instruct
    gpu: H100
    site: s
    precision: BF16
    disaggregated:
      prefill: {workers: 1, tp: 1}
      decode: {workers: 1, tp: 1}
    replicas: 1
tenants:
  - {name: t, tier: 0}
workloads:
  - name: w
    tenant: t
    deployment: d
    arrival: {kind: stages, stages: "1@1", process: constant}
    lengths: {kind: fixed, input_tokens: 1000, output_tokens: 4}
simulation:
  window: {duration_s: 120}
  fidelity: exact
""")


def _parse(data: dict):
    return parse_scenario(yaml.safe_dump(data), origin="<test>")


def test_one_request_on_an_idle_unit_matches_hand_computed_times():
    """TTFT = the prefill worker's time to its first token + the KV transfer + the decode
    worker's first decode step.

    The prefill worker's part is what one aggregated replica of the same settings takes for
    the same request with one output token (ingress + one prefill step + egress), from the
    reference twin (engine/reference.py): the decode worker admits the request the moment
    its KV arrives (idle), runs one decode step for it (one sequence, one token, no prefill
    chunk, attending to the 1000 prompt tokens + the first token: context 1001; priced by
    perf.step_time) and streams the prefill's token with the second, with the same egress.
    KV transfer, by hand (perf.memory.kv_transfer_s's model): Llama-3.1-8B holds
    2 (K, V) x 32 layers x 8 KV heads x 128 dims x 2 bytes (BF16) = 131,072 bytes per
    token, all on the prefill worker's one GPU; the unit's 2 H100 share an NVLink domain
    (8 GPUs), 450 GB/s per direction (catalogue interconnect_gb_s); plus 1 ms of
    setup (KV_TRANSFER_LATENCY_S):
        0.001 + 1000 x 131072 / 450e9 = 0.001 + 0.000291271 = 0.001291271 s
    """
    scenario = _parse(ONE)
    run = run_scenario(scenario)
    pool = run.pools[0]
    res = pool.result
    assert len(res.send_s) == 1 and pool.status[0] == 1  # one request, completed
    transfer = 0.001 + 1000 * 131072 / 450e9
    dep = scenario.deployments[0]
    config_p, coeffs_p = build_replica(replica_spec(dep, "prefill"))
    config_d, coeffs_d = build_replica(replica_spec(dep, "decode"))
    one = RequestBatch.simple(np.zeros(1), np.array([1000], np.int32), np.array([1], np.int32))
    single = reference.simulate(one, config_p, coeffs_p)
    prefill_ttft = single.first_token_s[0] - single.send_s[0]
    assert config_p.egress_s == config_d.egress_s
    ttft = res.first_token_s[0] - res.send_s[0]
    first_decode = step_time_s(coeffs_d, 1.0, 1.0, 0.0, 0.0, 1001.0)
    assert first_decode > 0
    assert ttft == pytest.approx(prefill_ttft + transfer + first_decode, rel=1e-9)
    # and the whole request as the reference disaggregated twin runs it with that transfer
    from capacitor.engine import reference_disagg

    four = RequestBatch.simple(np.zeros(1), np.array([1000], np.int32),
                               np.array([4], np.int32))
    ref = reference_disagg.simulate_disaggregated(
        four, (config_p, coeffs_p, 1), (config_d, coeffs_d, 1), np.array([transfer]))
    assert res.finish_s[0] - res.send_s[0] == pytest.approx(ref.finish_s[0], rel=1e-9)
    assert ref.finish_s[0] > ref.first_token_s[0] > transfer


#: a unit of 1 prefill worker x tp 2 + 2 decode workers x tp 4 = 10 H100
TEN = scenario_dict(ONE, **{
    "sites.0.gpus.H100": 32,
    "deployments.0.disaggregated": {"prefill": {"workers": 1, "tp": 2},
                                    "decode": {"workers": 2, "tp": 4}},
    "deployments.0.replicas": "fill",
})


def test_gpus_of_both_pools_count_in_inventory_and_power():
    scenario = _parse(TEN)
    dep = scenario.deployments[0]
    assert dep.gpus_per_replica == 10  # 1 x 2 + 2 x 4
    assert resolve_replicas(scenario) == {"d": 3}  # fill: 32 // 10 = 3 units, 30 GPUs
    assert "3 x meta-llama/Llama-3.1-8B-Instruct on 10 H100" in "\n".join(
        summary_lines(scenario))
    with pytest.raises(ScenarioError) as err:  # 4 units need 40 of the 32
        _parse(scenario_dict(TEN, **{"deployments.0.replicas": 4}))
    assert "sites[0].gpus.H100 = 32: over-subscribed: deployments need 40" in str(err.value)
    run = run_scenario(scenario)
    digest = run.digests[0]
    assert digest.replicas * digest.gpus_per_replica == 30
    # minute 1 (60-120 s): the one request is long done, every GPU idles at 15% of its
    # 700 W TDP (the Hopper power curve): the deployment's 30 GPUs draw
    #   30 x 700 x 0.15 x 1.82 (server overhead) x 1.2 (PUE) = 6,879.6 W
    # and the site's 32 (2 in no deployment) 32 x 105 x 1.82 x 1.2 = 7,338.24 W
    site = scenario.sites[0]
    assert pool_facility_w(site, digest)[1] == pytest.approx(6879.6, rel=1e-12)
    assert site_draw_w(site, run.digests, 2)[1] == pytest.approx(7338.24, rel=1e-12)
    # minute 0 has the request's steps: more than idle
    assert pool_facility_w(site, digest)[0] > 6879.6 * 1.0001
    assert run.summary.sites["s"].gpus == 32
    # busy time counts per GPU: the cell's 3 prefill workers (2 GPUs each, busy_bins rows
    # 0-2) and 6 decode workers (4 GPUs each, rows 3-8); the site's utilisation in minute
    # 0 is their busy GPU-seconds over its 32 GPUs x 60 s
    rows = run.pools[0].result.busy_bins
    assert rows.shape[0] == 9
    gpu_s = 2 * rows[:3, 0].sum() + 4 * rows[3:, 0].sum()
    assert gpu_s > 0
    util = timeline(run)["utilization"][0]
    assert util == pytest.approx(gpu_s / (32 * 60), rel=1e-9)


def test_failures_at_its_site_take_workers_down_and_availability_below_100():
    # TEN (3 units of 1 prefill x 2 H100 + 2 decode x 4 H100) for 20 minutes at 1 req/s,
    # at a site whose GPUs fail every 2 hours with a 6-minute mean repair: 30 GPUs x 1200 s
    # / 7,200 s = 5 failures expected in the window, plus repairs left from before it.
    # A down worker's share of its unit's GPUs counts down.
    data = scenario_dict(TEN, **{
        "sites.0.failures": {"gpu_mtbf_hours": {"H100": 2}, "repair_hours": 0.1},
        "workloads.0.arrival": {"kind": "stages", "stages": "1@1200", "process": "poisson"},
        "workloads.0.lengths": {"kind": "fixed", "input_tokens": 500, "output_tokens": 400},
        "simulation.window": {"duration_s": 1200},
        "simulation.seed": 3,
    })
    run = run_scenario(_parse(data))
    pool = run.pools[0]
    assert pool.downtime_s > 0
    avail = run.summary.deployments["d"].availability
    assert 0.0 < avail < 1.0
    assert avail == pytest.approx(1.0 - pool.downtime_s / (3 * 1200), abs=1e-6)
    # requests were lost on the failed workers, and the deployment's up units dip
    assert (pool.status == 4).sum() > 0
    up = timeline(run)["replicas_up"]  # the site's one deployment
    assert min(up) < max(up) <= 3
    # a worker down a whole minute counts its share of its unit's 10 GPUs: a prefill worker
    # 2 / 10 = 0.2 of a unit, a decode worker 4 / 10 = 0.4; such minutes are 3 - 0.2 a - 0.4 b,
    # some of them not a whole number of units
    tenths = 10 * (3 - up)
    whole = np.abs(tenths - np.round(tenths)) < 1e-9
    assert (whole & (np.round(tenths) % 10 != 0)).any()
    # without failures, nothing is lost and every unit is up
    quiet = run_scenario(_parse(scenario_dict(data, **{"sites.0.failures": {}})))
    assert quiet.pools[0].downtime_s == 0 and (quiet.pools[0].status == 4).sum() == 0


@pytest.mark.parametrize(("changes", "line"), [
    # Llama-3.1-70B in BF16 (141 GB of weights) fits 4 H100, not one
    ({"deployments.0.model": "meta-llama/Llama-3.1-70B-Instruct",
      "deployments.0.disaggregated.prefill.tp": 4},
     "deployments[0].disaggregated.decode.tp = 1 (d): the model does not fit a decode "
     "worker: "),
    ({"deployments.0.disaggregated.decode.tp": 3},
     "deployments[0].disaggregated.decode.tp (d): tp=3: must divide num_attention_heads"),
    ({"deployments.0.tp": 2},
     "deployments[0].tp = 2 (d): a disaggregated deployment sets tp per pool"),
    ({"deployments.0.dp_attention": True},
     "deployments[0].dp_attention = True (d): a disaggregated deployment sets dp_attention "
     "per pool"),
    ({"deployments.0.cpu_offload": True},
     "deployments[0].cpu_offload = true (d): disaggregated pools have no host KV tier"),
    ({"admission": {"policy": "queue_length", "max_queue": 4}},
     "admission.policy = 'queue_length': sheds inside the engine"),
    ({"admission": {"policy": "token_bucket", "preempt_lower_tiers": True}},
     "admission.preempt_lower_tiers = true: priority scheduling"),
    ({"admission": {"policy": "token_bucket"}, "tenants.0.rate_limits": {"max_concurrent": 8}},
     "tenants[0].rate_limits.max_concurrent = 8: enforced by the engine's admission"),
    ({"routing": {"policy": "session_affinity"}},
     "routing.policy = 'session_affinity': not modelled with a disaggregated deployment"),
    ({"deployments.0.disaggregated.decode.workers": 0},
     "deployments[0].disaggregated.decode.workers = 0"),
    # MI300X has no NVLink domain and no catalogued NIC: a run would fail at the KV transfer
    ({"deployments.0.gpu": "MI300X", "sites.0.gpus": {"MI300X": 8}},
     "deployments[0].gpu = 'MI300X' (d): a routing cell of 1 units is 2 GPUs, so its KV "
     "moves over the scale-out network, and the GPU catalogue has no scaleout_gb_s for "
     "MI300X"),
])
def test_what_a_disaggregated_deployment_cannot_be_is_one_line_naming_the_field(changes,
                                                                               line):
    with pytest.raises(ScenarioError) as err:
        _parse(scenario_dict(ONE, **changes))
    text = str(err.value)
    assert len(text.strip().splitlines()) == 1, text
    assert line in text, text


def test_gb200_cells_beyond_one_rack_move_kv_over_the_catalogued_nic():
    # a cell of 2 units of 40 GB200 (80 GPUs) spans two NVL72 racks: accepted, its KV link
    # the compute trays' ConnectX-7 NIC, 400 Gb/s = 50 GB/s per GPU
    from capacitor.simulate.disagg import cell_link_gb_s

    spec = _parse(scenario_dict(ONE, **{
        "deployments.0.gpu": "GB200", "sites.0.gpus": {"GB200": 80},
        "deployments.0.disaggregated.prefill.workers": 32,
        "deployments.0.disaggregated.decode.tp": 8, "deployments.0.replicas": 2}))
    dep = spec.deployments[0]
    assert dep.gpus_per_replica == 40
    assert cell_link_gb_s(dep, 2) == 50.0 and cell_link_gb_s(dep, 1) == 900.0


def test_schema_describes_the_pools_and_the_resolved_yaml_loads_again():
    schema = scenario_json_schema()
    defs = schema["$defs"]
    assert "replicas counts units" in defs["Deployment"]["properties"]["disaggregated"][
        "description"]
    for name in ("Disaggregated", "DisaggPool"):
        for key, prop in defs[name]["properties"].items():
            assert prop.get("description"), (name, key)
    scenario = _parse(TEN)
    again = parse_scenario(dump_resolved(scenario), origin="<resolved>")
    pools = again.deployments[0].disaggregated
    assert (pools.prefill.tp, pools.decode.workers, pools.decode.tp) == (2, 2, 4)
    assert pools.decode.max_num_seqs is not None and again.deployments[0].replicas == 3


def test_the_gb200_example_runs_the_same_twice():
    """examples/dsr1_gb200_disagg.yaml: six units of InferenceMAX imxp0550's 1 prefill +
    2 decode workers of 4 GB200 fill the rack's 72 GPUs; same seed, same summary."""
    scenario = load_scenario(EXAMPLE)
    assert resolve_replicas(scenario) == {"dsr1": 6}
    first = run_scenario(scenario, keep_pools=False)
    again = run_scenario(load_scenario(EXAMPLE), keep_pools=False)
    assert first.summary.to_json() == again.summary.to_json()
    s = first.summary
    dep = s.deployments["dsr1"]
    assert dep.replicas == 6 and s.sites["rack"].gpus == 72
    assert dep.completed == dep.requests > 1000  # 12 requests/s for 300 s, all served
    # KV over NVLink (6 units x 12 = 72 GPUs, one NVL72 domain): at 1,024 tokens of
    # 70,272 bytes (DeepSeek-R1's 576-wide latent x 61 layers x 2 bytes) over 900 GB/s,
    # 0.08 ms + 1 ms: TTFT stays near the prefill's, far below the 2 s SLO
    assert s.tenants["chat"].ttft_ms.p99 < 2000


def test_a_rack_failure_takes_every_worker_of_its_nvlink_domain():
    # GB200 units of 1 prefill x 4 + 2 decode x 4 GPUs = 12 (imxp0550): an NVL72 rack holds
    # units 0-5 (GPUs 0-71) and the next rack units 6-11. With the blast radius every
    # failure drains a whole rack: each of a rack's 18 workers has the same down intervals,
    # the two racks' differ. Engine ids in a cell of 6 simulated units (of 12 drawn): prefill
    # worker of unit u = u, decode workers 6 + 2 u and 7 + 2 u.
    from capacitor.simulate.deployment import _worker_failures

    scenario = _parse(scenario_dict(ONE, **{
        "sites.0.gpus": {"GB200": 144},
        "sites.0.failures": {"gpu_mtbf_hours": {"GB200": 50}, "repair_hours": 0.2,
                             "nvlink_domain_blast_radius": True},
        "deployments.0.gpu": "GB200",
        "deployments.0.disaggregated": {"prefill": {"workers": 1, "tp": 1},
                                        "decode": {"workers": 2, "tp": 1}},
        "deployments.0.replicas": 12,
    }))
    dep = scenario.deployments[0]
    dep = dep.model_copy(update={"disaggregated": dep.disaggregated.model_copy(update={
        "prefill": dep.disaggregated.prefill.model_copy(update={"tp": 4}),
        "decode": dep.disaggregated.decode.model_copy(update={"tp": 4})})})
    assert dep.gpus_per_replica == 12
    events, down_s, by_minute = _worker_failures(scenario.sites[0], dep, 6, 12, 36000.0,
                                                 np.random.default_rng(0))
    start, worker, repair = events
    assert start.size > 0
    per_worker = {w: sorted(zip(start[worker == w], repair[worker == w], strict=True))
                  for w in range(18)}
    assert all(per_worker[w] == per_worker[0] for w in range(18))  # one rack, one history
    # down time, in units: a unit's three workers hold 4/12 of its GPUs each, so a rack down
    # for x seconds counts 6 units x x; over both drawn racks, x the cell's share 6 / 12:
    #   down_s = (6 x ours + 6 x theirs) x 6 / 12  ->  theirs = down_s / 3 - ours
    ours = sum(r for _, r in per_worker[0])
    theirs = down_s / 3 - ours
    assert theirs > 0 and abs(theirs - ours) > 1.0  # the other rack fails on its own
    assert by_minute.sum() == pytest.approx(down_s, rel=1e-9)
