"""capacitor: a digital twin of an LLM inference fleet.

Answers "can this fleet deliver this demand?" with an analytical GPU step-time model
(`capacitor.perf`), a request-level simulator of vLLM-style serving engines
(`capacitor.engine`), workloads (`capacitor.workload`) and the `validate` contract.
"""

from capacitor.errors import (
    CalibrationError,
    CapacitorError,
    CatalogError,
    ConfigError,
    ScenarioError,
    ValidationDataError,
)

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "CapacitorError",
    "CatalogError",
    "ConfigError",
    "ScenarioError",
    "ValidationDataError",
    "__version__",
]
