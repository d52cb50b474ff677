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

import numpy as np

from capacitor.calibrate.params import (
    FAILED_ROW_PENALTY,
    FRACTION_KEYS,
    MEASUREMENT_SIGMA,
    MIN_ROWS,
    MIN_VALUES_PER_CONSTANT,
    FitResult,
    Observation,
    Param,
    constants_key,
    fit_engines,
    free_params,
    profile_dict,
)
from capacitor.errors import CalibrationError, CapacitorError
from capacitor.parallel import default_workers, map_ordered
from capacitor.perf.profile import PerfProfile, upper_bound
from capacitor.validate.experiments import Row, predict_row


class Predictor:
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
            keys.append((i, None if consts is None else constants_key(consts)))
        todo = [k for k in dict.fromkeys(keys) if k not in self.cache]
        self.num_simulations += len(todo)
        preds = map_ordered(
            lambda k: self._simulate(self.observations[k[0]], profile), todo, self.workers)
        self.cache.update(zip(todo, preds, strict=True))
        return [self.cache[k] for k in keys]


def predict(observations: Sequence[Observation],
            profile: PerfProfile) -> dict[str, dict[str, float]]:
    """{id: {metric: predicted}} of every row under ``profile`` (empty where a row fails)."""
    preds = Predictor(observations).predict(profile)
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
    predictor = Predictor(usable)
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
    engines, keys = set(fit_engines(result.params)), {p.key for p in result.params}
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
