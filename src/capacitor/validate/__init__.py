"""The ``validate`` contract: an experiments CSV in, a predictions CSV out.

``rows``         typed cells of one CSV row, their parsers, and the one-line RowError
``replicas``     a row's replica(s): one of tp x pp GPUs, offline data-parallel replicas,
                 or a disaggregated row's prefill and decode pools
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
