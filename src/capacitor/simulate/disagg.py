"""One routing cell of a disaggregated deployment (``deployments[i].disaggregated``),
simulated: ``k`` units, i.e. ``k x prefill.workers`` prefill workers and ``k x decode.workers``
decode workers behind one router each (:func:`capacitor.engine.disaggregated.
simulate_disaggregated`), serving the cell's demand after its tenants' rate limits and
quotas.

KV transfer: each request's prompt KV (:func:`capacitor.perf.memory.kv_transfer_s`, from the
model's KV layout on a prefill worker of ``prefill.tp`` GPUs) over the link the GPUs of the
cell share (:meth:`capacitor.catalog.hardware.GPUSpec.kv_link_gb_s`): NVLink when the cell's
``k x`` GPUs per unit fit one NVLink domain (a GB200 NVL72 rack), else the scale-out NIC. A
request is counted on the unit whose prefill worker took it (``replica``).
"""

from __future__ import annotations

import math

import numpy as np

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.engine.disaggregated import simulate_disaggregated
from capacitor.perf.memory import kv_transfer_s
from capacitor.simulate.digest import MINUTE_S
from capacitor.simulate.records import DisaggCell


def cell_link_gb_s(dep, units: int) -> float:
    """Per-GPU KV link of a cell of ``units`` units of deployment ``dep``, GB/s."""
    return get_gpu(dep.gpu).kv_link_gb_s(units * dep.gpus_per_replica)


def simulate_cell(scenario, dep, units: int, pools, demand, failures=None):
    """Simulate ``units`` units of disaggregated deployment ``dep`` serving ``demand``;
    ``pools`` is ``[(config, coeffs)]`` of a prefill and a decode worker; ``failures`` the
    workers' (:func:`capacitor.engine.disaggregated.simulate_disaggregated`). Returns the
    engine's result (``replica``: the unit, in the cell) and the cell's
    :class:`DisaggCell`."""
    sim = scenario.simulation
    window = sim.window
    d = dep.disaggregated
    workers = (units * d.prefill.workers, units * d.decode.workers)
    transfer = kv_transfer_s(resolve_model(dep.model), d.prefill.tp, dep.kv_cache_dtype,
                             demand.batch.prompt_len, cell_link_gb_s(dep, units))
    itl_class = np.where(demand.batch.arrival_s >= window.warmup_s,
                         demand.tenant.astype(np.int64), -1)
    (config_p, coeffs_p), (config_d, coeffs_d) = pools
    result = simulate_disaggregated(
        demand.batch, (config_p, coeffs_p, workers[0]), (config_d, coeffs_d, workers[1]),
        transfer, routing=scenario.routing.policy, seed=sim.seed, itl_class=itl_class,
        num_itl_classes=max(len(scenario.tenants), 1), busy_bin_s=MINUTE_S,
        num_busy_bins=int(math.ceil((window.warmup_s + window.duration_s) / MINUTE_S)),
        failures=failures,
    )
    result.replica = np.where(result.replica >= 0, result.replica // d.prefill.workers,
                              -1).astype(np.int32)
    return result, DisaggCell(workers=workers, tp=(d.prefill.tp, d.decode.tp),
                              coeffs=(coeffs_p, coeffs_d))


__all__ = ["cell_link_gb_s", "simulate_cell"]
