"""Shared fixtures: where the reference data lives, and small experiments files.

The reference data (``shared/data`` beside the repository) is part of the test suite's
contract: CI has a copy, so a missing file FAILS the tests that need it (a skip would let
every accuracy guard pass silently). :func:`require_data` is the one way to reach it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: ``shared/data`` beside the repository (a copy sits beside the clone in CI).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def require_data(*parts: str) -> Path:
    """``SHARED_DATA / parts``, failing the test (not skipping it) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"reference data not found at {path}: the accuracy guards need ../shared/data "
            "beside the repository (CI has it)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's reference data directory; fails the test when it is absent."""
    return require_data()


def _write_experiments(path: Path, rows: list[dict[str, object]]) -> Path:
    """Write ``rows`` as an experiments CSV (the union of their keys as columns)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read_predictions(path: Path) -> dict[str, dict[str, str]]:
    """Predictions CSV as {id: row}."""
    with path.open(newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


#: A small shared-prefix row on one H100 that runs in well under a second.
SMALL_SHARED_PREFIX = {
    "id": "small",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "hardware": "H100",
    "tp": 1,
    "precision": "FP16",
    "engine": "vllm",
    "max_num_seqs": 128,
    "max_num_batched_tokens": 2048,
    "enable_prefix_caching": "true",
    "workload": "shared_prefix",
    "system_prompt_len": 100,
    "question_len": 200,
    "output_len": 50,
    "num_groups": 3,
    "users_per_group": 2,
    "enable_multi_turn_chat": "true",
    "arrival": "poisson",
    "stages": "4@5;8@5",
    "num_requests": 60,
    "seed": 7,
}


@pytest.fixture()
def small_row() -> dict[str, object]:
    return dict(SMALL_SHARED_PREFIX)


@pytest.fixture()
def write_experiments():
    """``write_experiments(path, rows) -> path``: an experiments CSV from dicts."""
    return _write_experiments


@pytest.fixture()
def read_predictions():
    """``read_predictions(path) -> {id: row}``."""
    return _read_predictions
