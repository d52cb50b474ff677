"""A reader that stops reading (``capacitor run SCENARIO | head -1``) does not change the
answer: the run directory is whole (report included) and the exit code is still the verdict
(rich's default on a broken pipe exits 1, which would say an SLO was missed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "single_vllm_replica.yaml"


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_a_closed_stdout_keeps_the_verdict_and_the_report(tmp_path: Path, flags) -> None:
    out = tmp_path / "run"
    with subprocess.Popen(
        [sys.executable, "-c", "from capacitor.cli import main; main()", "run", str(EXAMPLE),
         "--out", str(out), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:
        proc.stdout.close()  # closed before anything is printed: every write to it fails
        err = proc.stderr.read().decode()
        code = proc.wait()
    assert code == 0, err  # the example serves its window within SLO
    assert "Traceback" not in err
    for name in ("summary.json", "report.html", "requests.parquet", "timeline.parquet"):
        assert (out / name).is_file(), name
