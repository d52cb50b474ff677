"""Site power: what the GPUs of a site draw, per window, and whether the cap binds.

Model. A GPU that is up draws a fraction of its TDP that depends on how busy it is::

    gpu_w = tdp_w * (idle_power_fraction
                     + (busy_power_fraction - idle_power_fraction) * utilization)

where ``utilization`` is the fraction of the window the replica spent executing engine steps.
The site draws ``sum(gpu_w) * server_overhead_factor * pue``: the overhead factor adds the
rest of the server (CPUs, NVSwitch, NICs, fans, drives) as a multiple of GPU power, and PUE
adds cooling and power distribution (:func:`facility_draw_w`, per GPU type and window). A
down GPU (failed, or its site out) draws nothing. The site's draw is capped at ``cap_mw``:
:func:`cap_power` gives a :class:`SitePower` with the demand, the capped draw and a
``capped`` flag per window (what throttling does to latency is the simulator's business).
The fleet run's timeline (:func:`capacitor.simulate.summary.timeline`) is built from these
two functions.

Constants and their sources:

- ``BUSY_POWER_FRACTION = 0.6055``: the median ``average_power`` (a fraction of TDP) of the
  260 rows of ``../shared/data/published/splitwise_static_batches.csv`` that measured power
  (Splitwise, Patel et al. ISCA 2024; Mutinifni/splitwise-sim ``data/perf_model.csv``, MIT):
  Llama-2-70B at TP 2/4/8 and BLOOM-176B at TP 8 on DGX-A100, static batches of 1-16
  running back to back (mean 0.573, per-TP means 0.69 / 0.56 / 0.52; peak_power averages
  0.94). Only the A100 rows carry power (the H100 rows are 0.0 = not measured), so the same
  fraction is assumed for every GPU. The TP 2 batch-64 rows the data README flags as broken
  carry no power and do not enter.
- ``IDLE_POWER_FRACTION = 0.15``: an assumption. An inference server keeps its model loaded,
  so its idle GPUs hold a CUDA context, which lifts them 26-50 W above bare idle on HBM parts
  (Vadari, "The Model Parking Tax", arXiv 2605.23918); about 100 W on a 700 W H100, and the
  commonly quoted "idle is ~15 % of TDP".
- ``SERVER_OVERHEAD_FACTOR = 1.82`` (10.2 / 5.6 = 1.821, rounded to the two digits scenarios
  quote): NVIDIA DGX H100, maximum system input 10.2 kW for eight 700 W GPUs (5.6 kW)
  (six 3.3 kW PSUs, 4+2; DGX H100 user guide power specification, as quoted by
  supercluster.blog "AI Supercluster: NVIDIA DGX Power, Cooling, and Efficiency"; typical
  draw 6.5-8.5 kW). This is a nameplate ratio for the facility check; applied to measured GPU
  draw it makes the non-GPU part scale with GPU load, a simplification. Network switches are
  not included (no sourced figure; a few per cent).
- PUE: ``PUE_INDUSTRY_AVERAGE = 1.56`` (Uptime Institute 2024 survey), ``PUE_HYPERSCALE =
  1.1`` (hyperscale 1.1-1.2, secondary citation, uncertain), both from
  ``../shared/data/fleet/fleet_facts.csv``.

:func:`facility_power_mw` is the inventory check: every GPU at full TDP, times the overhead
factor, times PUE (the scenario check compares it with the site's cap and names the YAML
path, :mod:`capacitor.scenario.checks`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real

import numpy as np

from capacitor.catalog.hardware import get_gpu
from capacitor.errors import ConfigError

BUSY_POWER_FRACTION = 0.6055
IDLE_POWER_FRACTION = 0.15
SERVER_OVERHEAD_FACTOR = 1.82  # the one definition: scenario defaults refer to it
PUE_INDUSTRY_AVERAGE = 1.56
PUE_HYPERSCALE = 1.1


@dataclass(frozen=True, slots=True)
class SitePower:
    """Power of a site per window.

    Attributes:
        demand_mw: what the site would draw without a cap (float64 per window).
        power_mw: what it draws: ``min(demand_mw, cap_mw)``.
        capped: windows where the demand exceeded the cap (bool).
        cap_mw: the cap (``inf`` when none).
    """

    demand_mw: np.ndarray
    power_mw: np.ndarray
    capped: np.ndarray
    cap_mw: float

    @property
    def any_capped(self) -> bool:
        return bool(np.any(self.capped))


def _factor(fn: str, name: str, value: object, minimum: float, maximum: float = math.inf,
            strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value) \
            or (value <= minimum if strict else value < minimum) or value > maximum:
        lo = f"> {minimum:g}" if strict else f">= {minimum:g}"
        hi = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
        raise ConfigError(f"{fn}: bad {name}={value!r}; expected a number {lo}{hi}")
    return float(value)


def _fractions(fn: str, busy: float, idle: float) -> tuple[float, float]:
    b = _factor(fn, "busy_power_fraction", busy, 0.0, 1.5)
    i = _factor(fn, "idle_power_fraction", idle, 0.0, 1.5)
    if i > b:
        raise ConfigError(f"{fn}: bad idle_power_fraction={idle!r}; expected <= "
                          f"busy_power_fraction={busy!r}")
    return b, i


def _array(fn: str, name: str, value: object, *, lo: float = 0.0,
           hi: float = math.inf) -> np.ndarray:
    a = np.asarray(value, np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < lo) or np.any(a > hi):
        bad = a[~(np.isfinite(a) & (a >= lo) & (a <= hi))].ravel()[:1]
        rng = f"[{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
        raise ConfigError(f"{fn}: bad {name} value {bad.tolist()}; expected finite values {rng}")
    return a


def _capped(fn: str, demand_mw: np.ndarray, cap_mw: float) -> SitePower:
    cap = _factor(fn, "cap_mw", cap_mw, 0.0, strict=True)
    return SitePower(demand_mw, np.minimum(demand_mw, cap), demand_mw > cap, cap)


def gpu_power_w(utilization: float | np.ndarray, tdp_w: float | np.ndarray, *,
                busy_power_fraction: float = BUSY_POWER_FRACTION,
                idle_power_fraction: float = IDLE_POWER_FRACTION) -> np.ndarray:
    """Mean draw of one up GPU, W, at ``utilization`` in [0, 1] (linear idle-to-busy)."""
    fn = "gpu_power_w"
    b, i = _fractions(fn, busy_power_fraction, idle_power_fraction)
    u = _array(fn, "utilization", utilization, hi=1.0)
    tdp = _array(fn, "tdp_w", tdp_w)
    return tdp * (i + (b - i) * u)


def facility_draw_w(utilization: float | np.ndarray, tdp_w: float, num_gpus: float, *,
                    server_overhead_factor: float, pue: float,
                    busy_power_fraction: float = BUSY_POWER_FRACTION,
                    idle_power_fraction: float = IDLE_POWER_FRACTION) -> np.ndarray:
    """Facility watts drawn by ``num_gpus`` up GPUs of one type at ``utilization`` (per window):
    ``gpu_power_w(utilization, tdp_w) * server_overhead_factor * pue * num_gpus``.

    Example: 10 H100 (700 W) fully busy, overhead 1.82, PUE 1.2: 423.85 W x 1.82 x 1.2 x 10
    = 9,256.9 W.
    """
    fn = "facility_draw_w"
    k = _factor(fn, "server_overhead_factor", server_overhead_factor, 1.0)
    p = _factor(fn, "pue", pue, 1.0)
    n = _factor(fn, "num_gpus", num_gpus, 0.0)
    # NOTE: multiplied in this order so the run's timeline keeps its bytes from before this
    # function existed (floating-point products are not associative).
    return gpu_power_w(utilization, tdp_w, busy_power_fraction=busy_power_fraction,
                       idle_power_fraction=idle_power_fraction) * k * p * n


def cap_power(demand_mw: float | np.ndarray, cap_mw: float) -> SitePower:
    """A site's power per window: the ``demand_mw`` it would draw, held to ``cap_mw``."""
    fn = "cap_power"
    return _capped(fn, np.atleast_1d(_array(fn, "demand_mw", demand_mw)), cap_mw)


def facility_power_mw(gpus: Mapping[str, int], *, pue: float,
                      server_overhead_factor: float | Mapping[str, float] =
                      SERVER_OVERHEAD_FACTOR,
                      tdp_w: Mapping[str, float] | None = None) -> float:
    """Nameplate facility power, MW: each GPU at full TDP x server overhead x PUE.

    ``gpus`` maps GPU names (catalogue ids or aliases) to counts; TDPs come from the GPU
    catalogue unless ``tdp_w`` gives them by the same names. ``server_overhead_factor`` is one
    factor for every GPU, or a mapping by the same names (GPUs it leaves out get
    :data:`SERVER_OVERHEAD_FACTOR`).
    """
    fn = "facility_power_mw"
    p = _factor(fn, "pue", pue, 1.0)
    per_gpu = isinstance(server_overhead_factor, Mapping)
    if not per_gpu:
        k_all = _factor(fn, "server_overhead_factor", server_overhead_factor, 1.0)
    total_w = 0.0
    for name, count in gpus.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ConfigError(f"{fn}: bad count {count!r} for GPU {name!r}; expected an "
                              "integer >= 0")
        if tdp_w is not None and name in tdp_w:
            watts = _factor(fn, f"tdp_w[{name!r}]", tdp_w[name], 0.0, strict=True)
        else:
            watts = get_gpu(name).require("tdp_w")
        k = _factor(fn, f"server_overhead_factor[{name!r}]",
                    server_overhead_factor.get(name, SERVER_OVERHEAD_FACTOR), 1.0) \
            if per_gpu else k_all
        total_w += int(count) * watts * k
    return total_w * p / 1e6


__all__ = [
    "BUSY_POWER_FRACTION",
    "IDLE_POWER_FRACTION",
    "PUE_HYPERSCALE",
    "PUE_INDUSTRY_AVERAGE",
    "SERVER_OVERHEAD_FACTOR",
    "SitePower",
    "cap_power",
    "facility_draw_w",
    "facility_power_mw",
    "gpu_power_w",
]
