"""``capacitor calibrate`` end to end, and the error tables of the fidelity report: absolute
percentage errors per row (:func:`ape_table`), leave-one-group-out refits
(:func:`leave_one_out`), the fitted profile written as YAML (:func:`write_profile`).
"""


from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from capacitor.calibrate.fit import FIT_STARTS, Predictor, fit, plausibility_warnings
from capacitor.calibrate.params import Observation, free_params, load_observations
from capacitor.errors import CalibrationError
from capacitor.perf.profile import PerfProfile, load_profile


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
        for obs, pred in zip(test, Predictor(test).predict(profile), strict=True):
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
