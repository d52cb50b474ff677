"""calibration/splitwise_check.py: the Splitwise static batches as validate rows."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from tests.conftest import require_data

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "calibration" / "splitwise_check.py"


@pytest.fixture(autouse=True)
def _splitwise_data() -> None:
    """The script reads ../shared/data/published: fail, not skip, when it is absent."""
    require_data("published", "splitwise_static_batches.csv")


def _script():
    spec = importlib.util.spec_from_file_location("splitwise_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_static_batches_become_one_offline_row_each(tmp_path) -> None:
    exp_path, meas_path = _script().write_rows(tmp_path)
    with exp_path.open(newline="") as fe, meas_path.open(newline="") as fm:
        rows = list(csv.DictReader(fe))
        measured = {r["id"]: r for r in csv.DictReader(fm)}
    assert len(rows) == len(measured) == 88
    assert {r["hardware"] for r in rows} == {"A100-80GB", "H100"}
    assert not any(r["tp"] == "2" and r["num_requests"] == "64" for r in rows)
    assert max(int(r["isl"]) + int(r["osl"]) for r in rows) <= 4096  # Llama-2's context
    row = next(r for r in rows if r["id"] == "sw-h100-80gb-tp8-p512-b16-o128")
    # the whole batch is admitted at once and prefilled in one step
    assert row["max_num_seqs"] == row["num_requests"] == "16"
    assert row["max_num_batched_tokens"] == str(16 * 512)
    # repeats averaged: the file's first A100 TP2 rows take 54.80-54.88 ms per token
    first = measured["sw-a100-80gb-tp2-p512-b1-o128"]
    assert 54.80 <= float(first["itl_mean_ms"]) <= 54.88


def test_the_check_runs_on_the_shipped_profile(capsys) -> None:
    assert _script().main(["--no-fit"]) == 0
    out = capsys.readouterr().out
    assert "88 configurations" in out
    assert "| A100-80GB | 8 | 15 |" in out and "| all | all | 88 |" in out
