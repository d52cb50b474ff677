"""The one exception tree of capacitor.

Every error a user can cause by bad input derives from :class:`CapacitorError`; the CLI
turns them into a one-line message and exit code 2, never a traceback::

    CapacitorError
    ├── CatalogError          unknown GPU / model, a spec the catalogue does not have,
    │                          a malformed Hugging Face config.json
    ├── ConfigError           an engine or parallelism setting that cannot work
    │   └── MemoryFitError    the model does not fit in the replica's GPU memory
    ├── ValidationDataError   an experiments / measured CSV that cannot be read or used
    ├── ScenarioError         a scenario YAML that does not validate
    ├── CalibrationError      a calibration fit that cannot be made (too few rows, ...)
    ├── RunDirError           a run directory the report cannot be built from
    └── PlanError             a capacity plan that cannot be made (nothing fits the
                               inventory, an SLO below what the hardware can do)

Messages name the offending field and value and say what would be valid.
"""

from __future__ import annotations


class CapacitorError(Exception):
    """Base of every capacitor error caused by user input or data.

    ``CapacitorError("one problem")`` or ``CapacitorError(*problems)``: several problems
    (e.g. every problem of a scenario file) are one message, a line each; :attr:`problems`
    holds them, each on one line, for the CLI to print one line per problem.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems: tuple[str, ...] = tuple(" ".join(str(p).split()) for p in problems)


class CatalogError(CapacitorError):
    """An unknown or incomplete hardware or model entry."""


class ConfigError(CapacitorError):
    """An engine, parallelism or workload setting that cannot work."""


class MemoryFitError(ConfigError):
    """The model's weights (plus reserve) do not fit the replica's GPU memory."""


class ValidationDataError(CapacitorError):
    """An experiments or measured CSV that cannot be read, or a row that cannot run."""


class ScenarioError(CapacitorError):
    """A scenario file that does not validate."""


class CalibrationError(CapacitorError):
    """A calibration fit that cannot be made."""


class RunDirError(CapacitorError):
    """A run directory that lacks a file the report needs, or holds one it cannot read."""
class PlanError(CapacitorError):
    """A capacity plan that cannot be made: no configuration fits the inventory or the power
    cap, or an SLO is below what the hardware can do at any load (an answer, exit 1)."""


__all__ = [
    "CalibrationError",
    "CapacitorError",
    "CatalogError",
    "ConfigError",
    "MemoryFitError",
    "RunDirError",
    "PlanError",
    "ScenarioError",
    "ValidationDataError",
]
