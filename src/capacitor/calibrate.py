"""Fit the step-time model's constants to measured runs: ``capacitor calibrate``.

The model keeps its physical structure (weights streamed, KV read, GEMM and attention FLOPs,
all-reduce, CPU overheads, the request path); calibration only moves the few constants of the
profile (:mod:`capacitor.perf.profile`) that scale those terms. It fits them to
*workload-level* measurements — mean and tail TTFT, ITL and E2E, throughput — by simulating
every measured run with the candidate constants, not to single steps.

Parameters are log-multipliers on the prior profile's values, in three scopes:

* ``global``: one multiplier per hardware constant shared by every GPU family, so a family
  with no measurements (B200, MI355X ...) inherits what the data says about the others;
* ``family``: a deviation for one family (``hopper``, ``ampere`` ...), from its rows only;
* ``engine``: per-engine CPU overheads and request-path times (``vllm``, ``trtllm`` ...).

The objective is the sum of squared log errors ``log(predicted / measured)`` over every
metric present (scaled by an assumed 5% measurement noise), plus a Gaussian prior on each
log-multiplier (standard deviation ``sigma``), so constants the data cannot see stay at their
physical prior. It is minimised with
``scipy.optimize.least_squares`` on a forward-difference Jacobian with a 2% step in every
log-multiplier (:data:`FD_STEP`); predictions are memoised per (row, resolved constants), so
a finite-difference step on one family's constant re-simulates only that family's rows.

A fit needs at least three measured runs and two measured values per free constant, and
refuses otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from capacitor.errors import CalibrationError, CapacitorError
from capacitor.parallel import default_workers, map_ordered
from capacitor.perf.profile import FAMILIES, PerfProfile, load_profile, upper_bound
from capacitor.results import read_csv, read_measured
from capacitor.validate import REQUIRED_COLUMNS, Row, predict_row

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
    from capacitor.catalog.hardware import get_gpu

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
    # its MLA per-sequence cost. Without MLA rows the set is unchanged.
    mla_engines = {o.engine for o in observations if _has_latency(o) and _is_mla(o)}
    other_engines = {o.engine for o in observations if _has_latency(o) and not _is_mla(o)}
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
        if key in ("gemm_kernel_s", "mla_per_seq_s"):
            params += [Param("engine", eng, section, key, sigma) for eng in sorted(mla_engines)]
    return params


def _is_mla(obs: Observation) -> bool:
    """Whether a row's model uses multi-head latent attention (False if unknown)."""
    from capacitor.catalog.models import resolve_model

    try:
        return resolve_model(Row(obs.cells, obs.base_dir).model_ref()).is_mla
    except CapacitorError:
        return False


def _has_latency(obs: Observation) -> bool:
    """Whether a row measured a latency (TTFT, ITL, TPOT or E2E), not only throughput."""
    return any(m.startswith(("ttft", "itl", "tpot", "e2e")) for m in obs.measured)


def _filters_vocab(obs: Observation) -> bool:
    """Whether a row's model samples with top-p / top-k by default (False if unknown)."""
    from capacitor.catalog.models import resolve_model

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
    fit_engines = _fit_engines(params)
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
            for eng in fit_engines:
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


def _fit_engines(params: Sequence[Param]) -> list[str]:
    """The engines whose layers a fit writes: those of its engine constants (vLLM if none)."""
    return sorted({p.group for p in params if p.scope == "engine"}) or ["vllm"]


def _clamp(section: str, key: str, value: float) -> float:
    """``value`` capped at the largest the profile schema accepts (1.0 for an efficiency), so
    a trust-region step past it costs what the bound costs instead of failing."""
    bound = upper_bound(section, key)
    return value if bound is None else min(value, bound)


def _constants_key(consts: Any) -> tuple:
    """A hashable fingerprint of resolved ProfileConstants (memo key)."""
    parts: list[Any] = [consts.family, consts.engine]
    for section in ("efficiency", "overhead", "request_path", "memory"):
        obj = getattr(consts, section)
        for name in obj.__slots__:
            value = getattr(obj, name)
            parts.append(tuple(sorted(value.items())) if hasattr(value, "items") else value)
    return tuple(parts)


class _Predictor:
    """Row predictions memoised on the row's resolved constants; the rows to simulate run
    ``workers`` at a time on threads (the engine kernel releases the GIL; each row is a
    pure function of its cells and constants, so the results do not depend on it)."""

    def __init__(self, observations: Sequence[Observation], workers: int | None = None):
        self.observations = list(observations)
        self.cache: dict[tuple, dict[str, float] | None] = {}
        self.num_simulations = 0
        self.workers = default_workers() if workers is None else workers

    def _simulate(self, obs: Observation, profile: PerfProfile) -> dict[str, float] | None:
        try:
            pred = predict_row(Row(obs.cells, obs.base_dir), profile)
        except Exception:  # noqa: BLE001 - a failing row is charged a penalty
            return None
        return {k: float(v) for k, v in pred.items() if isinstance(v, int | float)}

    def predict(self, profile: PerfProfile) -> list[dict[str, float] | None]:
        keys = []
        for i, obs in enumerate(self.observations):
            try:
                consts = profile.constants(obs.family, obs.engine) if obs.family else None
            except CapacitorError:
                consts = None
            keys.append((i, None if consts is None else _constants_key(consts)))
        todo = [k for k in dict.fromkeys(keys) if k not in self.cache]
        self.num_simulations += len(todo)
        preds = map_ordered(
            lambda k: self._simulate(self.observations[k[0]], profile), todo, self.workers)
        self.cache.update(zip(todo, preds, strict=True))
        return [self.cache[k] for k in keys]


def predict(observations: Sequence[Observation],
            profile: PerfProfile) -> dict[str, dict[str, float]]:
    """{id: {metric: predicted}} of every row under ``profile`` (empty where a row fails)."""
    preds = _Predictor(observations).predict(profile)
    return {obs.id: pred or {} for obs, pred in zip(observations, preds, strict=True)}


def log_errors(obs: Observation, pred: dict[str, float] | None) -> list[float]:
    """``log(predicted / measured)`` per measured metric (penalty when it cannot run)."""
    out = []
    for metric, meas in sorted(obs.measured.items()):
        value = None if pred is None else pred.get(metric)
        if value is None or not math.isfinite(value) or value <= 0:
            out.append(FAILED_ROW_PENALTY)
        else:
            out.append(math.log(value / meas))
    return out


#: Finite-difference step of the fit's Jacobian, in log-multiplier (2%). A discrete-event
#: simulation is piecewise smooth in its constants: below some step an event merely moves in
#: time and above it events reorder, so a derivative needs a step well above that jitter.
FD_STEP = 0.02
#: Optimizer starts ``capacitor calibrate`` averages (see :func:`fit`), and their seed.
FIT_STARTS = 4
FIT_SEED = 0


def forward_jacobian(
    fun: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, step: float
) -> np.ndarray:
    """Forward differences of ``fun`` at ``theta`` with the same absolute ``step`` in every
    coordinate.

    NOTE: not scipy's ``diff_step``, which is *relative* to ``theta`` and falls back to
    ~1e-8 where a coordinate is 0 -- exactly where every fit starts (the prior).
    """
    base = np.asarray(fun(theta), np.float64)
    jac = np.empty((base.shape[0], theta.shape[0]))
    for i in range(theta.shape[0]):
        moved = np.array(theta, np.float64, copy=True)
        moved[i] += step
        jac[:, i] = (np.asarray(fun(moved), np.float64) - base) / step
    return jac


def fit(
    observations: Sequence[Observation],
    prior: PerfProfile,
    params: Sequence[Param] | None = None,
    *,
    max_nfev: int = 60,
    starts: int = 1,
    progress: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Fit ``params`` (default :func:`free_params`) to ``observations``.

    ``max_nfev`` bounds the trust-region steps (scipy's ``max_nfev`` with an explicit
    Jacobian) of each start; each step's Jacobian costs one more simulated pass per free
    constant.

    ``starts`` > 1 runs the optimizer from the prior and from ``starts - 1`` points drawn
    from it (half its width, a fixed seed) and returns the mean of the solutions' log-
    multipliers. A simulated run is a piecewise-smooth function of the constants (a step
    boundary crossing an arrival moves a request by a step), so one descent stops in one of
    many nearby local minima, and constants the rows hardly tell apart (per-step versus
    per-sequence cost, GEMM versus attention efficiency) land wherever the path left them;
    averaging the starts keeps what they agree on and shrinks the rest toward the middle of
    their valley (:data:`FIT_STARTS` is what ``capacitor calibrate`` uses).

    Raises:
        CalibrationError: fewer measured rows than free constants, or no usable rows.
    """
    from scipy.optimize import least_squares

    params = list(free_params(observations) if params is None else params)
    usable = [o for o in observations if o.family]
    if not usable:
        raise CalibrationError("no measured row names a known GPU: nothing to fit")
    num_free = len(params)
    num_values = sum(len(o.measured) for o in usable)
    if num_values < MIN_VALUES_PER_CONSTANT * num_free or len(usable) < MIN_ROWS:
        raise CalibrationError(
            f"{len(usable)} measured rows ({num_values} measured values) cannot fit "
            f"{num_free} free constants ({', '.join(p.name for p in params[:4])}"
            f"{' ...' if num_free > 4 else ''}): a fit needs at least {MIN_ROWS} rows and "
            f"{MIN_VALUES_PER_CONSTANT} measured values per constant "
            f"({MIN_VALUES_PER_CONSTANT * num_free}); add rows or measured metrics"
        )
    predictor = _Predictor(usable)
    sigmas = np.array([p.sigma for p in params])
    calls = [0]

    def residuals(theta: np.ndarray) -> np.ndarray:
        profile = PerfProfile(profile_dict(prior, params, theta), origin="<calibration>")
        res: list[float] = []
        for obs, pred in zip(usable, predictor.predict(profile), strict=True):
            res += log_errors(obs, pred)
        calls[0] += 1
        out = np.concatenate([np.asarray(res) / MEASUREMENT_SIGMA, theta / sigmas])
        if progress is not None:
            progress(calls[0], float(0.5 * np.sum(out**2)))
        return out

    def jacobian(theta: np.ndarray) -> np.ndarray:
        return forward_jacobian(residuals, theta, FD_STEP)

    rng = np.random.default_rng(FIT_SEED)
    solutions, messages = [], []
    for start in range(max(int(starts), 1)):
        x0 = np.zeros(num_free) if start == 0 else rng.normal(0.0, sigmas / 2.0)
        # x_scale: each log-multiplier in units of its prior width, as the residuals use it.
        sol = least_squares(
            residuals, x0, jac=jacobian, method="trf", max_nfev=max_nfev, xtol=1e-6,
            ftol=1e-6, x_scale=sigmas,
        )
        solutions.append(sol.x)
        messages.append(str(sol.message))
    theta = np.mean(solutions, axis=0)
    cost = 0.5 * float(np.sum(residuals(theta) ** 2))
    data = profile_dict(prior, params, theta)
    final = PerfProfile(data, origin="<calibration>")
    preds = predictor.predict(final)
    return FitResult(
        profile=data,
        params=params,
        theta=theta,
        predictions={o.id: (p or {}) for o, p in zip(usable, preds, strict=True)},
        cost=cost,
        num_evaluations=calls[0],
        message="; ".join(sorted(set(messages))),
        multipliers={p.name: float(math.exp(t)) for p, t in zip(params, theta, strict=True)},
    )


#: A fitted log-multiplier this many prior widths from its prior is reported.
IMPLAUSIBLE_WIDTHS = 3.0


def plausibility_warnings(result: FitResult) -> list[str]:
    """Fitted constants to question before trusting the profile: an efficiency at the 1.0
    cap (all of the hardware's peak), an engine cost at the largest value a profile accepts,
    or a multiplier more than :data:`IMPLAUSIBLE_WIDTHS`
    prior widths from its prior. Either usually means the constant stands in for a cost
    the model lacks, and it will carry that into predictions for other rows."""
    out = []
    for param, theta in zip(result.params, result.theta, strict=True):
        widths = abs(float(theta)) / param.sigma
        if widths > IMPLAUSIBLE_WIDTHS:
            out.append(f"{param.name} moved to x{math.exp(theta):.3g} its prior, {widths:.1f} "
                       "prior widths away")
    # Only what this fit moved: the starting profile's other engines and constants (e.g. a
    # shipped TensorRT-LLM efficiency at the cap, under a vLLM fit) are not its doing.
    engines, keys = set(_fit_engines(result.params)), {p.key for p in result.params}
    capped: dict[tuple[str, str], list[str]] = {}
    for fam, fam_data in sorted(result.profile.get("families", {}).items()):
        for eng, layer in sorted((fam_data.get("engines") or {}).items()):
            for key, value in sorted((layer.get("efficiency") or {}).items()):
                if eng in engines and key in keys and key in FRACTION_KEYS and value >= 1.0:
                    capped.setdefault((eng, key), []).append(fam)
    for (eng, key), fams in sorted(capped.items()):
        out.append(f"{eng} efficiency.{key} reached 1.0, all of the peak ({', '.join(fams)})")
    for eng, layer in sorted(result.profile.get("engines", {}).items()):
        for section in ("overhead", "request_path"):
            for key, value in sorted((layer.get(section) or {}).items()):
                bound = upper_bound(section, key)
                if eng in engines and key in keys and bound is not None and value >= bound:
                    out.append(f"{eng} {section}.{key} reached {bound:g}, the largest a "
                               "profile accepts")
    return out


def ape_table(
    observations: Sequence[Observation], predictions: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """{id: {metric: absolute percentage error}} (NaN where a prediction is missing)."""
    out = {}
    for obs in observations:
        pred = predictions.get(obs.id, {})
        out[obs.id] = {
            m: (abs(pred[m] / v - 1.0) * 100.0 if pred.get(m) else math.nan)
            for m, v in obs.measured.items()
        }
    return out


def leave_one_out(
    observations: Sequence[Observation],
    prior: PerfProfile,
    group_of: Callable[[Observation], str],
    *,
    max_nfev: int = 60,
    starts: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Out-of-sample predictions: for each group (a model, a GPU), fit on the other rows
    (``max_nfev`` and ``starts`` as :func:`fit`) and predict that group's rows with it."""
    groups = sorted({group_of(o) for o in observations})
    out: dict[str, dict[str, float]] = {}
    for g in groups:
        if progress is not None:
            progress(g)
        train = [o for o in observations if group_of(o) != g]
        test = [o for o in observations if group_of(o) == g]
        result = fit(train, prior, free_params(train), max_nfev=max_nfev, starts=starts)
        profile = PerfProfile(result.profile, origin="<leave-one-out>")
        for obs, pred in zip(test, _Predictor(test).predict(profile), strict=True):
            out[obs.id] = pred or {}
    return out


def write_profile(data: dict[str, Any], path: str | Path, description: str,
                  header: str = "# capacitor engine profile written by `capacitor calibrate`; "
                                "use it with --profile\n") -> None:
    """Write a fitted profile YAML (validated first)."""
    data = dict(data)
    data["description"] = description
    PerfProfile(data, origin=str(path))
    Path(path).write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def run_calibrate(
    pairs: Sequence[tuple[str | Path, str | Path]],
    out_path: str | Path,
    *,
    profile_path: str | Path | None = None,
    leave_out: str = "model",
    max_nfev: int = 60,
    starts: int = FIT_STARTS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit, report in-sample and leave-one-out error, and write the profile to ``out_path``.

    ``leave_out`` is ``model``, ``hardware`` or ``none``; ``max_nfev`` and ``starts`` as
    :func:`fit`. The shipped profile is never changed; ``profile_path`` is the prior
    (default: the shipped profile).
    """
    if leave_out not in ("model", "hardware", "none"):
        raise CalibrationError(f"leave_out={leave_out!r}; valid: model, hardware, none")
    prior = load_profile(profile_path)
    observations = load_observations(pairs)
    if progress:
        progress(
            f"fitting {len(free_params(observations))} constants to "
            f"{len(observations)} measured rows"
        )
    result = fit(observations, prior, max_nfev=max_nfev, starts=starts)
    report: dict[str, Any] = {
        "rows": len(observations),
        "free_constants": len(result.params),
        "multipliers": result.multipliers,
        "warnings": plausibility_warnings(result),
        "in_sample": ape_table(observations, result.predictions),
    }
    if leave_out != "none":

        def group_of(o: Observation) -> str:
            return o.cells.get(leave_out, "")

        loo = leave_one_out(
            observations,
            prior,
            group_of,
            max_nfev=max_nfev,
            starts=starts,
            progress=(lambda g: progress(f"leave-one-{leave_out}-out: {g}")) if progress else None,
        )
        report["out_of_sample"] = ape_table(observations, loo)
    write_profile(
        result.profile,
        out_path,
        f"fitted by capacitor calibrate to {len(observations)} measured rows",
    )
    return report


def median_by_metric(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """Median absolute percentage error per metric over the rows of an APE table."""
    metrics = sorted({m for row in table.values() for m in row})
    return {m: float(np.nanmedian([row[m] for row in table.values() if m in row])) for m in metrics}


__all__ = [
    "ENGINE_KEYS",
    "FAMILY_KEYS",
    "MLA_ENGINE_KEYS",
    "MLA_FAMILY_KEYS",
    "FitResult",
    "Observation",
    "Param",
    "ape_table",
    "fit",
    "forward_jacobian",
    "free_params",
    "leave_one_out",
    "load_observations",
    "median_by_metric",
    "plausibility_warnings",
    "predict",
    "profile_dict",
    "run_calibrate",
    "write_profile",
]
