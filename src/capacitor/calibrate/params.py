"""The calibration's vocabulary: which profile constants a fit may move (:data:`FAMILY_KEYS`,
:data:`ENGINE_KEYS`) and with what prior width, the measured runs it fits
(:class:`Observation`), the free parameters a set of runs can identify (:func:`free_params`)
and the profile a vector of log-multipliers stands for (:func:`profile_dict`).
"""


from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capacitor.catalog.hardware import get_gpu
from capacitor.catalog.models import resolve_model
from capacitor.errors import CapacitorError
from capacitor.perf.profile import FAMILIES, PerfProfile, upper_bound
from capacitor.validate.experiments import REQUIRED_COLUMNS, Row
from capacitor.validate.metrics import read_csv, read_measured

#: Hardware constants (per GPU family): (section, key, prior sigma of the log-multiplier).
FAMILY_KEYS: tuple[tuple[str, str, float], ...] = (
    ("efficiency", "weight_bw", 0.3),
    ("efficiency", "kv_bw", 0.3),
    ("efficiency", "gemm_max", 0.3),
    ("efficiency", "gemm_max_low_precision", 0.3),
    ("efficiency", "attention", 0.4),
    # The all-reduce *bandwidth* fraction, not its fixed latency (kept at the microbenchmark
    # value): large-batch rows need a per-token tensor-parallel overhead, and a latency fitted
    # to stand in for it would charge every low-concurrency decode step for it. Free only
    # with saturated throughput rows (see free_params).
    ("efficiency", "allreduce_bw", 0.3),
)
#: Engine constants (per serving engine). Their priors are rough (CPU costs vary with the
#: host and the engine version), so their prior widths are wide: a factor e^2 ~ 7.
ENGINE_KEYS: tuple[tuple[str, str, float], ...] = (
    ("overhead", "step_fixed_s", 2.0),
    ("overhead", "per_seq_s", 2.0),
    ("overhead", "per_prefill_seq_s", 2.0),
    # Kernel fixed costs from microbenchmarks (perf/data/prior_profile.yaml): a factor e^0.7.
    ("overhead", "per_layer_s", 0.7),
    ("request_path", "ingress_s", 2.0),
    ("request_path", "egress_s", 2.0),
    # Measured for the PyTorch sort path (perf/data/prior_profile.yaml): a factor e^0.7 ~ 2.
    ("overhead", "sampler_bytes_per_seq_vocab", 0.7),
)
#: Constants only MLA models use (per-kernel fixed costs of
#: ``perf.coefficients.layers_fixed_s``; the absorbed-MLA decode FLOP efficiency): never in
#: :func:`free_params`' default set (no vLLM / TensorRT-LLM v0.17 row moves them), but a fit
#: given them as parameters (``calibration/frontier_report.py``) writes them like the
#: engine / hardware constants above.
MLA_ENGINE_KEYS: tuple[tuple[str, str, float], ...] = (
    ("overhead", "gemm_kernel_s", 0.7),
    ("overhead", "attention_kernel_s", 0.7),
    ("overhead", "small_kernel_s", 0.7),
    ("overhead", "mla_per_seq_s", 2.0),
    ("overhead", "eager_kernel_s", 1.0),
)
MLA_FAMILY_KEYS: tuple[tuple[str, str, float], ...] = (
    ("efficiency", "mla_decode_attention", 0.3),
)
#: Fractions of a peak may not exceed 1.
FRACTION_KEYS = {"weight_bw", "kv_bw", "gemm_max", "gemm_max_low_precision", "attention",
                 "allreduce_bw", "mla_decode_attention"}
#: Metrics the fit compares, when the measured file has them.
FIT_METRICS = (
    "ttft_mean_ms",
    "ttft_median_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "itl_mean_ms",
    "itl_median_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "tpot_mean_ms",
    "tpot_median_ms",
    "e2e_mean_ms",
    "e2e_median_ms",
    "e2e_p90_ms",
    "e2e_p99_ms",
    "request_throughput_rps",
    "output_tokens_per_s",
)

FAILED_ROW_PENALTY = 5.0  # log-error charged per metric when a row cannot run
#: Run-to-run noise assumed for a measured metric (log scale, ~5%): a data residual is
#: log(predicted / measured) / MEASUREMENT_SIGMA, a prior residual log-multiplier / sigma.
MEASUREMENT_SIGMA = 0.05
MIN_ROWS = 3  # a fit needs at least this many measured runs ...
MIN_VALUES_PER_CONSTANT = 2  # ... and this many measured values per free constant


@dataclass(frozen=True, slots=True)
class Param:
    """One free log-multiplier: scope ``global`` / ``family`` / ``engine``, the group it
    applies to (a family, an engine, or ``*``), and the profile key it scales."""

    scope: str
    group: str
    section: str
    key: str
    sigma: float

    @property
    def name(self) -> str:
        return f"{self.scope}:{self.group}:{self.section}.{self.key}"


@dataclass(slots=True)
class Observation:
    """One measured run: its experiments cells and measured metrics."""

    cells: dict[str, str]
    measured: dict[str, float]
    base_dir: Path
    family: str = ""
    engine: str = ""

    @property
    def id(self) -> str:
        return self.cells.get("id", "")


@dataclass(slots=True)
class FitResult:
    """A fitted profile and how well it predicts its own rows."""

    profile: dict[str, Any]
    params: list[Param]
    theta: np.ndarray
    predictions: dict[str, dict[str, float]]
    cost: float
    num_evaluations: int
    message: str = ""
    multipliers: dict[str, float] = field(default_factory=dict)


def load_observations(pairs: Sequence[tuple[str | Path, str | Path]]) -> list[Observation]:
    """Rows of (experiments CSV, measured CSV) pairs that have at least one measured metric.

    Raises:
        ValidationDataError: a file cannot be read or lacks its required columns.
    """

    out: list[Observation] = []
    for exp_path, meas_path in pairs:
        exp_path = Path(exp_path)
        _, rows = read_csv(exp_path, REQUIRED_COLUMNS, "experiments CSV")
        _, measured = read_measured(meas_path)
        for cells in rows:
            values = {
                k: v
                for k, v in measured.get(cells.get("id", ""), {}).items()
                if k in FIT_METRICS and v > 0
            }
            if not values:
                continue
            obs = Observation(cells=cells, measured=values, base_dir=exp_path.parent)
            obs.engine = (cells.get("engine") or "vllm").lower()
            try:
                obs.family = get_gpu(cells.get("hardware", "")).family
            except CapacitorError:
                obs.family = ""  # the row will fail and be charged the penalty
            out.append(obs)
    return out


def free_params(observations: Sequence[Observation]) -> list[Param]:
    """The constants the observations can inform.

    Hardware constants get one ``global`` multiplier; with rows from two or more GPU
    families, each family also gets its own deviation (with half the prior width). Engine
    constants are per engine present. A constant the rows cannot inform is left out:

    * the low-precision GEMM efficiency without FP8 / FP4 rows of at least two models. One
      model's rows tune it to that model's own errors: on the vLLM validation runs, where
      Llama-4-Scout is the only FP8 model, it fell to 0.57x, the 16-bit GEMM rose to the
      1.0 cap, and FP8 prefill came out slower than 16-bit on H100;
    * the request path without latency measurements;
    * the per-step fixed cost with throughput alone (see below);
    * an engine's sampler cost without latency rows of a model whose requests sample with
      top-p / top-k (``ModelSpec.filters_vocab``): nothing else pays it;
    * the all-reduce bandwidth without the output throughput of a saturated (offline or
      closed-loop) multi-GPU row. A tensor-parallel all-reduce is latency-bound below a few
      hundred tokens per step (70B at TP4: ~10 us per collective against ~70 ns per
      token), so open-loop serving runs, whose steps are mostly decodes of tens of tokens,
      cannot tell its bandwidth: left free on the 13 vLLM validation runs it fell to 0.14x
      its measured value, standing in for per-sequence costs of the TP rows.
    """
    families = sorted({o.family for o in observations if o.family})
    engines = sorted({o.engine for o in observations if o.engine})
    low_precision_models = {
        o.cells.get("model", "")
        for o in observations
        if o.cells.get("precision", "").strip().upper() in ("FP8", "FP4")
    }
    saturated_multi_gpu = any(
        _int(o.cells.get("tp")) * _int(o.cells.get("pp")) > 1
        and o.cells.get("workload", "").strip().lower() in ("offline", "closed_loop")
        and "output_tokens_per_s" in o.measured
        for o in observations
    )
    latency = any(_has_latency(o) for o in observations)
    skip = set()
    if len(low_precision_models) < 2:
        skip.add("gemm_max_low_precision")
    if not saturated_multi_gpu:
        skip.add("allreduce_bw")
    if not latency:
        # Throughput alone hardly pins a fixed cost per step: like the weight-streaming term
        # it is paid once per step whatever the batch, and only different models' weight
        # bytes tell the two apart (on the TensorRT-LLM table a free step_fixed_s drifted to
        # 7-10x its prior, against the weight bandwidth, for a 0.2-point gain). It stays at
        # its prior.
        skip |= {"ingress_s", "egress_s", "step_fixed_s", "per_layer_s"}
    sampling_engines = {o.engine for o in observations if _has_latency(o) and _filters_vocab(o)}
    params: list[Param] = []
    for section, key, sigma in FAMILY_KEYS:
        if key in skip:
            continue
        params.append(Param("global", "*", section, key, sigma))
        if len(families) > 1:
            params += [Param("family", fam, section, key, sigma / 2) for fam in families]
    # An MLA model's layers are priced by per-kernel costs, not per_layer_s (perf.
    # coefficients.layers_fixed_s): an engine whose latency rows are all MLA models leaves
    # per_layer_s out, and an engine with MLA latency rows frees its GEMM kernel cost and
    # its MLA per-sequence and eager-kernel costs. Without MLA rows the set is unchanged.
    latency_rows = [(o.engine, _is_mla(o)) for o in observations if _has_latency(o)]
    mla_engines = {eng for eng, mla in latency_rows if mla}
    other_engines = {eng for eng, mla in latency_rows if not mla}
    for section, key, sigma in ENGINE_KEYS:
        if key in skip:
            continue
        for eng in engines:
            if key == "sampler_bytes_per_seq_vocab" and eng not in sampling_engines:
                continue
            if key == "per_layer_s" and eng in mla_engines and eng not in other_engines:
                continue
            params.append(Param("engine", eng, section, key, sigma))
    for section, key, sigma in MLA_ENGINE_KEYS:
        if key in ("gemm_kernel_s", "mla_per_seq_s", "eager_kernel_s"):
            params += [Param("engine", eng, section, key, sigma) for eng in sorted(mla_engines)]
    return params


def _is_mla(obs: Observation) -> bool:
    """Whether a row's model uses multi-head latent attention (False if unknown)."""
    try:
        return resolve_model(Row(obs.cells, obs.base_dir).model_ref()).is_mla
    except CapacitorError:
        return False


def _has_latency(obs: Observation) -> bool:
    """Whether a row measured a latency (TTFT, ITL, TPOT or E2E), not only throughput."""
    return any(m.startswith(("ttft", "itl", "tpot", "e2e")) for m in obs.measured)


def _filters_vocab(obs: Observation) -> bool:
    """Whether a row's model samples with top-p / top-k by default (False if unknown)."""

    try:
        return resolve_model(Row(obs.cells, obs.base_dir).model_ref()).filters_vocab
    except CapacitorError:
        return False


def _int(text: str | None) -> int:
    try:
        return max(int(text or 1), 1)
    except ValueError:
        return 1


def profile_dict(prior: PerfProfile, params: Sequence[Param], theta: np.ndarray) -> dict[str, Any]:
    """The prior profile's content with the fitted multipliers applied (a valid profile).

    Hardware constants are written per (family, engine) for the engines the parameters
    cover (``families.<family>.engines.<engine>``): a kernel's efficiency on a GPU is a
    property of the engine too (TensorRT-LLM's compiled kernels are not vLLM's), so a fit to
    one engine's runs leaves the others' constants alone. Engine constants go to
    ``engines.<engine>``.
    """
    data = prior.to_dict()
    families = data.setdefault("families", {})
    engines = data.setdefault("engines", {})
    engines_fitted = fit_engines(params)
    by_key: dict[tuple[str, str], dict[str, float]] = {}
    for p, t in zip(params, theta, strict=True):
        by_key.setdefault((p.section, p.key), {})[f"{p.scope}:{p.group}"] = float(t)
    for section, key, _ in FAMILY_KEYS + MLA_FAMILY_KEYS:
        logs = by_key.get((section, key))
        if not logs:
            continue
        for fam in FAMILIES:
            if "global:*" not in logs and f"family:{fam}" not in logs:
                continue
            log_mult = logs.get("global:*", 0.0) + logs.get(f"family:{fam}", 0.0)
            for eng in engines_fitted:
                base = getattr(getattr(prior.constants(fam, eng), section), key)
                value = _clamp(section, key, float(base) * math.exp(log_mult))
                layer = families.setdefault(fam, {}).setdefault("engines", {})
                layer.setdefault(eng, {}).setdefault(section, {})[key] = value
    for section, key, _ in ENGINE_KEYS + MLA_ENGINE_KEYS:
        for group, log_mult in by_key.get((section, key), {}).items():
            scope, eng = group.split(":")
            if scope != "engine":
                continue
            base = getattr(getattr(prior.constants("hopper", eng), section), key)
            engines.setdefault(eng, {}).setdefault(section, {})[key] = _clamp(
                section, key, float(base) * math.exp(log_mult))
            for fam_data in families.values():  # nothing more specific may shadow it
                for layer in [fam_data.get("defaults", {}),
                              fam_data.get("engines", {}).get(eng, {})]:
                    layer.get(section, {}).pop(key, None)
    return data


def fit_engines(params: Sequence[Param]) -> list[str]:
    """The engines whose layers a fit writes: those of its engine constants (vLLM if none)."""
    return sorted({p.group for p in params if p.scope == "engine"}) or ["vllm"]


def _clamp(section: str, key: str, value: float) -> float:
    """``value`` capped at the largest the profile schema accepts (1.0 for an efficiency), so
    a trust-region step past it costs what the bound costs instead of failing."""
    bound = upper_bound(section, key)
    return value if bound is None else min(value, bound)


def constants_key(consts: Any) -> tuple:
    """A hashable fingerprint of resolved ProfileConstants (memo key)."""
    parts: list[Any] = [consts.family, consts.engine]
    for section in ("efficiency", "overhead", "request_path", "memory"):
        obj = getattr(consts, section)
        for name in obj.__slots__:
            value = getattr(obj, name)
            parts.append(tuple(sorted(value.items())) if hasattr(value, "items") else value)
    return tuple(parts)
