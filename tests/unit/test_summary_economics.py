"""The summary's economics: contract share, GPU-hours, energy and unit costs of a window,
computed from a scenario by the economics functions (simulate/summary.py).

Expected values are worked by hand in the comments."""

from __future__ import annotations

import copy

import pytest
import yaml

from capacitor.scenario import parse_scenario
from capacitor.simulate.summary import economics_summary

BASE = yaml.safe_load("""
name: eco
sites:
  - name: east
    power_cap_mw: 1.0
    pue: 1.3
    gpus: {H100: 64}
  - name: west
    power_cap_mw: 0.1
    pue: 1.4
    gpus: {L40S: 32}
deployments:
  - {name: d, model: meta-llama/Llama-3.1-8B-Instruct, gpu: H100, site: east, replicas: 1}
tenants: [{name: t, tier: 0}]
workloads:
  - name: w
    tenant: t
    deployment: d
    arrival: {kind: poisson, rate_rps: 1}
    lengths: {kind: fixed, input_tokens: 100, output_tokens: 10}
economics:
  contracts:
    - name: east_lease
      site: east
      price_usd_per_month: 150000
      start: "2026-05"
      end: "2027-05"
      ramp_discounts: {"2026-05": 0.5}
      includes_energy: true
  gpu_hour_usd: {L40S: 1.0}
  energy_usd_per_mwh: 80
simulation:
  window: {month: "2026-08", duration_s: 600, warmup_s: 60}
""")
#: MWh per site over the window, as the summary measures it from the timeline.
ENERGY = {"east": 0.5, "west": 0.1}


def _economics(energy=ENERGY, output_tokens=10e6, **changes):
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = data
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[keys[-1]] = value
    scenario = parse_scenario(yaml.safe_dump(data), origin="<eco>")
    return economics_summary(scenario, 600.0, output_tokens, energy)


def test_window_cost_contract_share_and_gpu_hours() -> None:
    eco = _economics()
    # contract: $150,000 x 600 s / (31 days x 86,400 s) in August = $33.602
    assert eco.contracts["east_lease"].window_cost_usd == 33.6
    assert eco.contracts["east_lease"].month == "2026-08"
    # + 32 L40S x 1/6 h x $1 = $5.333, + west's energy, which no lease includes: 0.1 MWh x $80
    # = $8 -> $46.935
    assert eco.window_cost_usd == 46.94
    # per million output tokens: $46.935 / 10 = $4.694; per GPU-hour: $46.935 / (96 x 1/6 h)
    assert eco.usd_per_million_output_tokens == 4.694
    assert eco.usd_per_gpu_hour_effective == 2.933
    # energy 0.5 + 0.1 MWh at $80 = $48, all reported (east's is in the lease price)
    assert eco.energy_mwh == 0.6
    assert eco.energy_cost_usd == 48.0


def test_without_a_window_month_the_contract_bills_its_first_month() -> None:
    eco = _economics(**{"simulation.window.month": None})
    # May 2026 at half price: $75,000 x 600 / (31 x 86,400) = $16.80
    assert eco.contracts["east_lease"].month == "2026-05"
    assert eco.contracts["east_lease"].window_cost_usd == 16.8


def test_the_contract_end_month_is_not_billed() -> None:
    # the lease ends 2027-05 (exclusive): April 2027 is billed (30 days), May 2027 is not
    april = _economics(**{"simulation.window.month": "2027-04"})
    assert april.contracts["east_lease"].window_cost_usd == pytest.approx(
        150_000 * 600 / (30 * 86_400), abs=0.005)
    may = _economics(**{"simulation.window.month": "2027-05"})
    assert may.contracts["east_lease"].window_cost_usd == 0.0


def test_no_tokens_or_no_price_gives_null_not_a_number() -> None:
    eco = _economics(output_tokens=0.0, **{"economics.energy_usd_per_mwh": None})
    assert eco.usd_per_million_output_tokens is None
    assert eco.energy_cost_usd is None


def test_gpu_hour_prices_bill_only_gpus_no_contract_covers() -> None:
    # an H100 price as well: east's 64 H100 are under the lease, so they cost nothing more
    # (64 x 1/6 h x $2 = $21.33 would be double billing); west's L40S still cost $5.33
    # (energy unpriced here, to see the GPU-hours alone)
    eco = _economics(**{"economics.gpu_hour_usd": {"L40S": 1.0, "H100": 2.0},
                        "economics.energy_usd_per_mwh": None})
    assert eco.window_cost_usd == 38.94
    # a fleet-wide lease (no site) covers west too: only the lease's $33.60 remains
    fleet = _economics(**{"economics.contracts.0.site": None,
                          "economics.energy_usd_per_mwh": None})
    assert fleet.window_cost_usd == 33.6
    # with no contract at all, every priced GPU is billed: 64 x 1/6 x $2 + 32 x 1/6 x $1 = $26.67
    rented = _economics(**{"economics.contracts": [], "economics.energy_usd_per_mwh": None,
                           "economics.gpu_hour_usd": {"L40S": 1.0, "H100": 2.0}})
    assert rented.window_cost_usd == 26.67


def test_energy_is_added_unless_a_contract_includes_it() -> None:
    # a lease without energy: east's 0.5 MWh x $80 = $40 is added too: $46.935 + $40 = $86.94
    bare = _economics(**{"economics.contracts.0.includes_energy": False})
    assert bare.window_cost_usd == 86.94
    assert bare.energy_cost_usd == 48.0  # the energy reported is the same either way
    # an all-in fleet-wide lease covers both sites' energy (and west's GPUs): $33.60
    all_in = _economics(**{"economics.contracts.0.site": None})
    assert all_in.window_cost_usd == 33.6


def test_free_energy_is_priced_at_zero_not_left_unpriced() -> None:
    # energy_usd_per_mwh: 0 is a price (free electricity), unlike null (not priced)
    eco = _economics(**{"economics.energy_usd_per_mwh": 0})
    assert eco.energy_cost_usd == 0.0
    assert eco.window_cost_usd == 38.94  # lease $33.60 + west's GPU-hours $5.33, no energy


def test_after_its_term_a_contract_covers_nothing() -> None:
    # May 2027 is past the lease (end exclusive): it bills $0, and east's 64 H100 are priced
    # by the hour (64 x 1/6 h x $2 = $21.33) and its 0.5 MWh paid at $80 (= $40), like west's
    # 32 L40S ($5.33) and 0.1 MWh ($8): $74.67
    eco = _economics(**{"simulation.window.month": "2027-05",
                        "economics.gpu_hour_usd": {"L40S": 1.0, "H100": 2.0}})
    assert eco.contracts["east_lease"].window_cost_usd == 0.0
    assert eco.window_cost_usd == 74.67
