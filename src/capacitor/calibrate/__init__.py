"""Fit the step-time model's constants to measured runs (``capacitor calibrate``).

``params``  which constants a fit may move, the measured runs, the profile a fit stands for
``fit``     the regularised least-squares fit over simulated runs
``run``     ``capacitor calibrate`` end to end; error tables and leave-one-group-out refits
"""

from capacitor.calibrate.fit import (
    FD_STEP,
    FIT_SEED,
    FIT_STARTS,
    Predictor,
    fit,
    forward_jacobian,
    log_errors,
    plausibility_warnings,
    predict,
)
from capacitor.calibrate.params import (
    ENGINE_KEYS,
    FAMILY_KEYS,
    MLA_ENGINE_KEYS,
    MLA_FAMILY_KEYS,
    FitResult,
    Observation,
    Param,
    free_params,
    load_observations,
    profile_dict,
)
from capacitor.calibrate.run import (
    ape_table,
    leave_one_out,
    median_by_metric,
    run_calibrate,
    write_profile,
)

__all__ = [
    "ENGINE_KEYS",
    "FAMILY_KEYS",
    "FD_STEP",
    "FIT_SEED",
    "FIT_STARTS",
    "FitResult",
    "MLA_ENGINE_KEYS",
    "MLA_FAMILY_KEYS",
    "Observation",
    "Param",
    "Predictor",
    "ape_table",
    "fit",
    "forward_jacobian",
    "free_params",
    "leave_one_out",
    "load_observations",
    "log_errors",
    "median_by_metric",
    "plausibility_warnings",
    "predict",
    "profile_dict",
    "run_calibrate",
    "write_profile",
]
