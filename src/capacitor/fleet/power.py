"""Power: what a GPU draws from what it does, what a site draws, and what a power cap costs.

**Per GPU.** A GPU whose replica is up draws, over a stretch of time (a minute of the run)::

    gpu_w = tdp_w * (idle * (1 - busy) + busy * min(stepping, 1, limit))
    stepping = stalled + memory * u_mem + compute * u_comp

``busy`` is the share of the time the replica executes engine steps; while stepping,
``u_mem`` is the share of the step time the HBM roofline terms account for (weights streamed
once per step, KV cache read by decodes) and ``u_comp`` the share the tensor-core terms would
take at full efficiency (dense and expert GEMM FLOPs of every token, prefill attention
FLOPs), both from the perf layer's coefficients (:func:`roofline_seconds`). The rest of a
step (kernel launches, CPU scheduling, all-reduce latency) keeps the GPU clocked up but
neither unit busy: ``stalled``. Board power never exceeds the power limit, TDP by default
(``limit`` < 1 when the site runs power-capped). One :class:`PowerCurve` per GPU generation
(:data:`POWER_CURVES`), fractions of TDP:

- Ampere (A100), **fitted** by least squares on the 27 Llama-2-70B configurations of
  ``../shared/data/published/splitwise_static_batches.csv`` that carry power (DGX-A100,
  TP 2/4/8, prompt 128-2048 tokens, batch 1-16, 128 output tokens; Splitwise, Patel et al.
  ISCA 2024; Mutinifni/splitwise-sim ``data/perf_model.csv``, MIT): ``u_mem`` and ``u_comp``
  of each static batch from the perf coefficients over its measured ``e2e_time_ms``;
  ``stalled`` 0.295, ``memory`` 0.576, ``compute`` 1.068; every configuration within 7.5 % of
  its ``average_power`` (the test ``tests/unit/test_power_model.py`` recomputes them). The
  rows with 4096- and 8192-token prompts are left out: their ``average_power`` falls as the
  prefill share rises (0.17 of TDP at 8192 tokens, while ``peak_power`` reaches 1.0), which no
  activity model reproduces; the batch-32/64 rows carry no power.
- Hopper (H100, H200), **solved** from three H100 SXM measurements of Llama-3.3-70B FP8 at
  TP 4 under vLLM: 480 W per GPU at 64 concurrent requests and 520 W at 128 (nvitop, gist
  lhl/bf81a9c7dfc4244c974335e1605dcf22, Jan 2025, ShareGPT prompts; the GPU model is
  ASSUMPTION, the gist names the model and engine), and about 300 W at batch 1 (ML.ENERGY
  Benchmark v3.0 H100-SXM5 anchor, as quoted by the vLLM semantic-router fleet-sim power
  model docs); lengths ASSUMPTION 220 prompt / 200 output tokens: ``stalled`` 0.281,
  ``memory`` 0.223, ``compute`` 1.397. Memory-bound decode so draws 0.40-0.45 of TDP,
  as Ma et al., "The Illusion of Power Capping in LLM Decode" (arXiv 2605.11999, 2026)
  measure on H200 (decode 137-300 W of 700 W, never reaching a cap). Checks, not fitted:
  Llama-3.1-8B BF16 on one B200 at 2,043 running sequences, 691 W (leadgreen
  green-token-index, CC BY 4.0) -> the Hopper curve gives 695 W; Llama-3.1-8B on one H100 at
  511 sequences, 688 W -> 508 W (26 % low: the one miss, left as is).
- Blackwell (B200, GB200) and the families without a measurement (Ada, CDNA): ASSUMPTION,
  the Hopper curve (the B200 check above supports it for Blackwell).

``idle`` = 0.15 of TDP for every generation (:data:`IDLE_POWER_FRACTION`): an assumption.
An inference server keeps its model loaded, so its idle GPUs hold a CUDA context, which lifts
them 26-50 W above bare idle on HBM parts (Vadari, "The Model Parking Tax", arXiv
2605.23918); about 100 W on a 700 W H100.

**Per site.** The site draws ``sum(gpu_w) * server_overhead_factor * pue``: the overhead
factor adds the rest of the server (CPUs, NVSwitch, NICs, fans, drives) as a multiple of GPU
power, and PUE adds cooling and power distribution (:func:`facility_draw_w`). GPUs no
deployment uses draw ``idle``.

**A binding cap** (:func:`cap_slowdown`, :func:`power_limit_for_cap`). A site whose draw would
exceed ``power_cap_mw`` runs power-capped: every GPU of the site gets the same power limit, a
fraction ``limit`` of its TDP (``nvidia-smi -pl``), the largest that holds the site's busiest
minute to the cap, and no lower than the driver's minimum (:data:`MIN_POWER_LIMIT_FRACTION`).
The GPU lowers its clocks to stay under the limit, so work that would draw more than the
limit runs slower. From the Splitwise data: the power-capped H100 rows (``h100-80gb-pcap``)
run every prompt phase (compute-bound) 1.30x as long as the uncapped H100 rows and every token
phase (memory-bound) exactly as long, in all 76 configurations; the capped DGX-H100 is rated
7,140 W against 10,200 W, 70 % (splitwise-sim ``configs/hardware_repo/skus/dgx-h100-pcap.yaml``
and ``dgx-h100.yaml``); the per-GPU limit, 50 % of TDP, is the paper's Splitwise-HHcap setting
as we read it (it is not in the data file). Work whose uncapped draw
is ``p`` (fraction of TDP) under a limit ``limit < p`` takes ``(p / limit) ** CAP_EXPONENT``
times as long, ``CAP_EXPONENT = ln 1.3 / ln 2 = 0.379`` (compute-bound work draws the full
TDP, ``p = 1``, so a 50 % limit gives 1.30x; decode at 0.40-0.45 of TDP is untouched by a
50 % limit, as measured). The compute roofline terms of a deployment's step time scale by the
compute-bound slowdown, its memory terms by the memory-bound one (``p = stalled + memory``,
fully memory-bound); overheads and communication do not change. The power law between the
two Splitwise points is ASSUMPTION (the shape of a DVFS curve; one measured point).

Other constants:

- ``SERVER_OVERHEAD_FACTOR = 1.82`` (10.2 / 5.6 = 1.821, rounded to the two digits scenarios
  quote): NVIDIA DGX H100, maximum system input 10.2 kW for eight 700 W GPUs (5.6 kW)
  (six 3.3 kW PSUs, 4+2; DGX H100 user guide power specification, as quoted by
  supercluster.blog "AI Supercluster: NVIDIA DGX Power, Cooling, and Efficiency"; typical
  draw 6.5-8.5 kW). This is a nameplate ratio; applied to the modelled GPU draw it makes the
  non-GPU part scale with GPU load, a simplification. Network switches are not included (no
  sourced figure; a few per cent).
- PUE: ``PUE_INDUSTRY_AVERAGE = 1.56`` (Uptime Institute 2024 survey), ``PUE_HYPERSCALE =
  1.1`` (hyperscale 1.1-1.2, secondary citation, uncertain), both from
  ``../shared/data/fleet/fleet_facts.csv``.
- ``MIN_POWER_LIMIT_FRACTION = 200 / 700``: the lowest power limit the driver accepts on an
  H100 SXM (``nvidia-smi -q -d POWER``: min 200 W, max 700 W), applied to every GPU as a
  fraction of TDP (ASSUMPTION for the other parts).

:func:`facility_power_mw` is the inventory's nameplate: every GPU at full TDP, times the
overhead factor, times PUE. A site whose nameplate exceeds its cap runs (capped when its draw
would exceed it); the scenario check only warns (:mod:`capacitor.scenario.checks`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real

import numpy as np

from capacitor.catalog.hardware import get_gpu
from capacitor.errors import ConfigError
from capacitor.perf.step_time import (
    C_ATTN_DECODE_S_PER_TOKEN,
    C_ATTN_PREFILL_S_PER_PAIR,
    C_GEMM_S_PER_TOKEN,
    C_MOE_GEMM_S_PER_TOKEN,
    C_MOE_WEIGHT_S,
    C_WEIGHT_S,
    moe_touched_fraction,
)

IDLE_POWER_FRACTION = 0.15
SERVER_OVERHEAD_FACTOR = 1.82  # the one definition: scenario defaults refer to it
PUE_INDUSTRY_AVERAGE = 1.56
PUE_HYPERSCALE = 1.1
MIN_POWER_LIMIT_FRACTION = 200.0 / 700.0
CAP_EXPONENT = math.log(1.3) / math.log(2.0)


@dataclass(frozen=True, slots=True)
class PowerCurve:
    """Board power of one GPU generation, fractions of TDP (see the module docstring)."""

    idle: float  # model loaded, no step running
    stalled: float  # stepping, neither HBM nor tensor cores busy
    memory: float  # added per unit of u_mem (HBM roofline share of the step time)
    compute: float  # added per unit of u_comp (tensor-core share at full efficiency)

    def stepping(self, u_mem, u_comp) -> np.ndarray:
        """Draw while stepping, fraction of TDP, at most 1 (the default power limit)."""
        return np.minimum(self.stalled + self.memory * np.asarray(u_mem, np.float64)
                          + self.compute * np.asarray(u_comp, np.float64), 1.0)

    @property
    def memory_bound(self) -> float:
        """Draw of a fully memory-bound step (``u_mem`` = 1), fraction of TDP."""
        return min(self.stalled + self.memory, 1.0)


_AMPERE = PowerCurve(idle=IDLE_POWER_FRACTION, stalled=0.295, memory=0.576, compute=1.068)
_HOPPER = PowerCurve(idle=IDLE_POWER_FRACTION, stalled=0.281, memory=0.223, compute=1.397)
#: Per GPU family (``GPUSpec.family``); families not listed use :data:`DEFAULT_POWER_CURVE`.
POWER_CURVES: dict[str, PowerCurve] = {"ampere": _AMPERE, "hopper": _HOPPER,
                                       "blackwell": _HOPPER}
DEFAULT_POWER_CURVE = _HOPPER  # ASSUMPTION for Ada and CDNA (no measurement)


def power_curve(gpu: str) -> PowerCurve:
    """The :class:`PowerCurve` of GPU ``gpu`` (catalogue id or alias), by its family."""
    return POWER_CURVES.get(get_gpu(gpu).family, DEFAULT_POWER_CURVE)


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


def roofline_seconds(coeffs: np.ndarray, *, steps, tokens, prefill_pairs,
                     decode_ctx_tokens) -> tuple[np.ndarray, np.ndarray]:
    """HBM and tensor-core seconds of some engine work, from the step-time coefficients
    (:mod:`capacitor.perf.step_time`): ``(memory_s, compute_s)``.

    ``steps`` engine steps (each streams the dense weights once, and the routed experts its
    ``tokens / steps`` tokens touch), ``tokens`` tokens through the GEMMs (prefill and
    decode), ``prefill_pairs`` causal attention pairs of the prefills, ``decode_ctx_tokens``
    context tokens read by the decodes. Compute is at full GEMM efficiency (the FLOPs over
    the peak rate): what the tensor cores do, not how long the step waits for them.
    """
    steps = np.asarray(steps, np.float64)
    tokens = np.asarray(tokens, np.float64)
    per_step = np.divide(tokens, steps, out=np.zeros_like(tokens), where=steps > 0)
    touched = np.vectorize(lambda t: moe_touched_fraction(coeffs, float(t)),
                           otypes=[np.float64])(per_step) if coeffs[C_MOE_WEIGHT_S] > 0 \
        else 0.0
    memory_s = steps * (coeffs[C_WEIGHT_S] + coeffs[C_MOE_WEIGHT_S] * touched) \
        + coeffs[C_ATTN_DECODE_S_PER_TOKEN] * np.asarray(decode_ctx_tokens, np.float64)
    compute_s = (coeffs[C_GEMM_S_PER_TOKEN] + coeffs[C_MOE_GEMM_S_PER_TOKEN]) * tokens \
        + coeffs[C_ATTN_PREFILL_S_PER_PAIR] * np.asarray(prefill_pairs, np.float64)
    return memory_s, compute_s


def gpu_power_w(busy: float | np.ndarray, u_mem: float | np.ndarray,
                u_comp: float | np.ndarray, tdp_w: float, curve: PowerCurve, *,
                limit: float = 1.0) -> np.ndarray:
    """Mean draw of one up GPU, W: ``busy`` share of the time stepping (in [0, 1]), with
    roofline shares ``u_mem`` and ``u_comp`` of the step time (each in [0, 1]), under a power
    ``limit`` (fraction of TDP)."""
    fn = "gpu_power_w"
    b = _array(fn, "busy", busy, hi=1.0)
    m = _array(fn, "u_mem", u_mem, hi=1.0)
    c = _array(fn, "u_comp", u_comp, hi=1.0)
    tdp = _factor(fn, "tdp_w", tdp_w, 0.0)
    lim = _factor(fn, "limit", limit, 0.0, 1.0, strict=True)
    return tdp * (curve.idle * (1.0 - b) + b * np.minimum(curve.stepping(m, c), lim))


def facility_draw_w(gpu_w: float | np.ndarray, num_gpus: float, *,
                    server_overhead_factor: float, pue: float) -> np.ndarray:
    """Facility watts of ``num_gpus`` GPUs each drawing ``gpu_w`` (per window):
    ``gpu_w * num_gpus * server_overhead_factor * pue``.

    Example: 10 H100 at 423.85 W, overhead 1.82, PUE 1.2: 4,238.5 W x 1.82 x 1.2
    = 9,256.9 W.
    """
    fn = "facility_draw_w"
    k = _factor(fn, "server_overhead_factor", server_overhead_factor, 1.0)
    p = _factor(fn, "pue", pue, 1.0)
    n = _factor(fn, "num_gpus", num_gpus, 0.0)
    return _array(fn, "gpu_w", gpu_w) * n * k * p


def cap_power(demand_mw: float | np.ndarray, cap_mw: float) -> SitePower:
    """A site's power per window: the ``demand_mw`` it would draw, held to ``cap_mw``."""
    fn = "cap_power"
    return _capped(fn, np.atleast_1d(_array(fn, "demand_mw", demand_mw)), cap_mw)


def cap_slowdown(draw: float, limit: float) -> float:
    """How many times as long work takes that draws ``draw`` (fraction of TDP) uncapped,
    under a power limit ``limit`` (fraction of TDP): ``(draw / limit) ** CAP_EXPONENT`` when
    the limit binds, else 1. Splitwise's capped H100: ``cap_slowdown(1.0, 0.5)`` = 1.30."""
    fn = "cap_slowdown"
    d = _factor(fn, "draw", draw, 0.0)
    lim = _factor(fn, "limit", limit, 0.0, strict=True)
    return (d / lim) ** CAP_EXPONENT if d > lim else 1.0


def step_slowdowns(curve: PowerCurve, limit: float) -> tuple[float, float]:
    """``(compute, memory)`` step-time multipliers of a GPU with ``curve`` under ``limit``:
    for the compute roofline terms (work drawing the full TDP) and the memory terms (a
    fully memory-bound step, :attr:`PowerCurve.memory_bound`)."""
    return cap_slowdown(1.0, limit), cap_slowdown(curve.memory_bound, limit)


def power_limit_for_cap(draw_w, cap_w: float, *, tol: float = 1e-6) -> float | None:
    """The largest power limit (fraction of TDP, >= :data:`MIN_POWER_LIMIT_FRACTION`) under
    which a site's draw fits ``cap_w``; None when the draw fits uncapped.

    ``draw_w(limit)`` gives the site's facility watts per minute under ``limit`` (an array);
    it must not increase as the limit falls. Bisection to ``tol``; the minimum limit when
    even it does not fit (the caller reports the site still over its cap).
    """
    if float(np.max(draw_w(1.0))) <= cap_w:
        return None
    lo, hi = MIN_POWER_LIMIT_FRACTION, 1.0
    if float(np.max(draw_w(lo))) > cap_w:
        return lo
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if float(np.max(draw_w(mid))) > cap_w:
            hi = mid
        else:
            lo = mid
    return lo


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


def format_power(mw: float | None, unit: str = "W", *, positive: bool = False) -> str:
    """Power in MW (energy in MWh with ``unit="Wh"``) to one decimal, or in whole kW (kWh)
    below 1 MW, where MW would round to zero on a small site (summary.json keeps MW to three
    decimals, so 1 kW is its resolution); ``positive``: a 0 that summary.json rounded down."""
    if mw is None:
        return "-"
    if abs(mw) >= 1.0:
        return f"{mw:,.1f} M{unit}"
    if mw == 0 and positive:
        return f"< 0.5 k{unit}"
    return f"{mw * 1e3:,.0f} k{unit}"


__all__ = [
    "format_power",
    "CAP_EXPONENT",
    "DEFAULT_POWER_CURVE",
    "IDLE_POWER_FRACTION",
    "MIN_POWER_LIMIT_FRACTION",
    "POWER_CURVES",
    "PowerCurve",
    "PUE_HYPERSCALE",
    "PUE_INDUSTRY_AVERAGE",
    "SERVER_OVERHEAD_FACTOR",
    "SitePower",
    "cap_power",
    "cap_slowdown",
    "facility_draw_w",
    "facility_power_mw",
    "gpu_power_w",
    "power_curve",
    "power_limit_for_cap",
    "roofline_seconds",
    "step_slowdowns",
]
