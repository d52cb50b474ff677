"""The ``validate`` contract: an experiments CSV in, a predictions CSV out.

``experiments``  one CSV row -> a replica, a workload and its simulated predictions
``metrics``      per-request metric summaries (TTFT, ITL, TPOT, E2E), CSV reading and
                 writing, absolute percentage errors against measurements
"""

from capacitor.validate.experiments import (
    PREDICTION_COLUMNS,
    REQUIRED_COLUMNS,
    Row,
    RowError,
    ValidateReport,
    build_row,
    predict_row,
    run_validate,
)

__all__ = [
    "PREDICTION_COLUMNS",
    "REQUIRED_COLUMNS",
    "Row",
    "RowError",
    "ValidateReport",
    "build_row",
    "predict_row",
    "run_validate",
]
