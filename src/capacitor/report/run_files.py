"""A run directory read back for the report: ``summary.json`` (checked against its schema),
the resolved ``scenario.yaml``, ``timeline.parquet`` and the completed requests of
``requests.parquet`` (see :mod:`capacitor.simulate.outputs` for what a run writes).

``requests.parquet`` is optional (``capacitor run --no-requests`` skips it): without it the
report draws what the summary and timeline hold and says what it left out.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from capacitor.errors import RunDirError
from capacitor.simulate.summary_model import RunSummary

#: The columns of requests.parquet the report reads (the others stay on disk).
READ_COLUMNS = ("tenant", "tier", "deployment", "arrival_s", "status", "ttft_ms", "e2e_ms",
                "output_tokens", "counted")


@dataclass(frozen=True, slots=True)
class CompletedRequests:
    """The completed requests of a run, one array entry each (warm-up included; ``counted``
    marks those sent after it). ``tenant`` and ``deployment`` index ``tenant_names`` and
    ``deployment_names``; ``weight`` is the deployment's scale (replicas / simulated
    replicas): how many fleet requests the simulated one stands for."""

    tenant: np.ndarray
    tenant_names: list[str]
    tier: np.ndarray
    deployment: np.ndarray
    deployment_names: list[str]
    arrival_s: np.ndarray
    ttft_ms: np.ndarray
    e2e_ms: np.ndarray
    output_tokens: np.ndarray
    counted: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True, slots=True)
class RunFiles:
    """What the report reads from a run directory."""

    run_dir: Path
    summary: RunSummary
    scenario: dict[str, Any]
    scenario_text: str
    timeline: dict[str, np.ndarray]
    requests: CompletedRequests | None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found; a run directory holds summary.json, "
                          "scenario.yaml and timeline.parquet (written by capacitor run)"
                          ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot be read ({exc})") from None


def _dictionary(column) -> tuple[np.ndarray, list[str]]:
    """Indices and names of a dictionary-encoded column (chunks unified)."""
    combined = column.unify_dictionaries().combine_chunks() if column.num_chunks else column
    if hasattr(combined, "indices"):
        return (np.asarray(combined.indices.to_numpy(zero_copy_only=False), np.int64),
                [str(v) for v in combined.dictionary.to_pylist()])
    names, codes = np.unique(np.asarray(column.to_pylist(), dtype=object).astype(str),
                             return_inverse=True)
    return codes.astype(np.int64), [str(n) for n in names]


def read_completed_requests(path: Path) -> CompletedRequests | None:
    """The completed requests of ``requests.parquet``; None when the file is absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        return None
    try:
        table = pq.read_table(path, columns=list(READ_COLUMNS))
        meta = (table.schema.metadata or {}).get(b"scale_by_deployment", b"{}")
        scale = ast.literal_eval(meta.decode())
    except (OSError, ValueError, KeyError, SyntaxError, pa.ArrowException) as exc:
        raise RunDirError(f"{path}: cannot be read as the requests of a run ({exc})") from None
    status, status_names = _dictionary(table.column("status"))
    done = status == (status_names.index("completed") if "completed" in status_names else -1)
    tenant, tenant_names = _dictionary(table.column("tenant"))
    deployment, deployment_names = _dictionary(table.column("deployment"))
    per_dep = np.array([float(scale.get(n, 1.0)) for n in deployment_names] or [1.0])

    def col(name: str) -> np.ndarray:
        return table.column(name).to_numpy()[done]

    return CompletedRequests(
        tenant=tenant[done], tenant_names=tenant_names, tier=col("tier"),
        deployment=deployment[done], deployment_names=deployment_names,
        arrival_s=col("arrival_s"), ttft_ms=col("ttft_ms"), e2e_ms=col("e2e_ms"),
        output_tokens=col("output_tokens"), counted=col("counted"),
        weight=per_dep[deployment[done]])


def read_run(run_dir: Path) -> RunFiles:
    """Read ``run_dir``.

    Raises:
        RunDirError: the directory or one of summary.json, scenario.yaml, timeline.parquet is
            missing or unreadable (requests.parquet may be absent).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pydantic

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory; give the run directory capacitor run "
                          "wrote (its --out)")
    summary_path = run_dir / "summary.json"
    try:
        summary = RunSummary.model_validate_json(_read_text(summary_path))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RunDirError(f"{summary_path}: {where}: {first['msg']} (not the summary.json "
                          "of this version of capacitor)") from None
    scenario_text = _read_text(run_dir / "scenario.yaml")
    try:
        scenario = yaml.load(scenario_text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise RunDirError(f"{run_dir / 'scenario.yaml'}: not YAML ({exc})") from None
    if not isinstance(scenario, dict):
        raise RunDirError(f"{run_dir / 'scenario.yaml'}: not a scenario (a mapping expected)")
    timeline_path = run_dir / "timeline.parquet"
    if not timeline_path.exists():
        raise RunDirError(f"{timeline_path}: not found; a run directory holds summary.json, "
                          "scenario.yaml and timeline.parquet (written by capacitor run)")
    try:
        table = pq.read_table(timeline_path)
    except (OSError, pa.ArrowException) as exc:
        raise RunDirError(f"{timeline_path}: cannot be read ({exc})") from None
    timeline = {name: table.column(name).to_numpy(zero_copy_only=False)
                for name in table.column_names}
    return RunFiles(run_dir=run_dir, summary=summary, scenario=scenario,
                    scenario_text=scenario_text, timeline=timeline,
                    requests=read_completed_requests(run_dir / "requests.parquet"))


__all__ = ["READ_COLUMNS", "CompletedRequests", "RunFiles", "read_completed_requests",
           "read_run"]
