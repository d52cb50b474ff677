"""Outputs and flags through the CLI: ``run --out`` refuses a non-empty directory unless
``--force``; ``validate --out`` / ``calibrate --out`` overwrite a file but refuse a directory;
a bad flag value is one line naming the flag and the valid values; small sites print kW."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from capacitor.cli import main
from tests.factories import SMALL, scenario_dict
from tests.integration.test_robust_io import invoke, one_error


@pytest.fixture()
def good(tmp_path, small_row, write_experiments) -> dict[str, Path]:
    exp = write_experiments(tmp_path / "good_exp.csv", [small_row])
    meas = tmp_path / "good_meas.csv"
    meas.write_text("id,ttft_mean_ms\nsmall,20\n")
    scenario = tmp_path / "good.yaml"
    scenario.write_text(yaml.safe_dump(scenario_dict(SMALL)))
    return {"exp": exp, "meas": meas, "scenario": scenario}


# ---- outputs ----------------------------------------------------------------------------------


def test_run_refuses_a_non_empty_out_directory_unless_forced(tmp_path, good) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = one_error(invoke("run", good["scenario"], "--out", out))
    assert f"--out {out}: directory is not empty" in line and "--force" in line
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    line = one_error(invoke("run", good["scenario"], "--out", out / "notes.txt"))
    assert "notes.txt: is a file" in line
    result = invoke("run", good["scenario"], "--out", out, "--force")
    assert result.exit_code in (0, 1), (result.output, result.exception)
    assert (out / "summary.json").is_file() and (out / "notes.txt").read_text() == "mine"
    assert "--force" in invoke("run", "--help").stdout


def test_an_output_file_that_is_a_directory_is_one_line(tmp_path, good) -> None:
    target = tmp_path / "outdir"
    target.mkdir()
    line = one_error(invoke("validate", good["exp"], "--out", target))
    assert f"--out {target}: is a directory" in line and "predictions.csv" in line
    line = one_error(invoke("calibrate", "--experiments", good["exp"], "--measured",
                            good["meas"], "--out", target))
    assert f"--out {target}: is a directory" in line and "profile.yaml" in line


# ---- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, phrase", [
    (["run", "--backend", "foo"], "--backend 'foo': valid values are local and ray"),
    (["run", "--fidelity", "rough"], "--fidelity 'rough': valid values are exact and sampled"),
    (["run", "--workers", "0"], "--workers 0: must be at least 1"),
    (["run", "--workers", "-3"], "--workers -3: must be at least 1"),
    (["calibrate", "--experiments", "e.csv", "--measured", "m.csv", "--out", "f.yaml",
      "--leave-out", "gpu"], "--leave-out 'gpu': valid values are model, hardware and none"),
    (["calibrate", "--experiments", "e.csv", "--measured", "m.csv", "--out", "f.yaml",
      "--starts", "-1"], "--starts=-1: must be >= 1"),
    (["calibrate", "--experiments", "e.csv", "--measured", "m.csv", "--out", "f.yaml",
      "--max-evaluations", "0"], "--max-evaluations=0: must be >= 1"),
])
def test_a_bad_flag_value_is_one_line_naming_the_flag(argv, phrase) -> None:
    assert phrase in one_error(invoke(*argv))


def test_an_output_file_inside_a_file_is_one_line(tmp_path, good) -> None:
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("x")
    line = one_error(invoke("validate", good["exp"], "--out", blocker / "sub" / "p.csv"))
    assert f"{blocker} is a file, not a directory" in line, line
    assert blocker.read_text() == "x"


def test_a_small_site_prints_kw_where_mw_would_round_to_zero(tmp_path, good) -> None:
    result = invoke("run", good["scenario"], "--out", tmp_path / "run")
    assert result.exit_code in (0, 1), (result.output, result.exception)
    site = next(line for line in result.stdout.splitlines() if line.startswith("site s:"))
    # 8 H100: about 5 kW; summary.json keeps MW to 3 decimals (0.005), energy rounds to 0.0
    assert " kW mean / " in site and " kW peak of 1.0 MW cap" in site, site
    assert "< 0.5 kWh" in site and "0.0 MW" not in result.stdout, result.stdout


@pytest.mark.parametrize("argv, phrases", [
    (["run", "--workers", "abc"], ["Invalid value for '--workers'", "(got 'abc')",
                                   "see capacitor run --help"]),
    (["calibrate", "--starts=x"], ["'--starts'", "(got 'x')"]),
    (["run", "--bogus"], ["No such option: --bogus"]),
    (["validate"], ["Missing argument 'experiments'"]),
    (["nosuchcommand"], ["No such command 'nosuchcommand'"]),
])
def test_a_usage_error_is_one_line_not_a_panel(capsys, argv, phrases) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(p in lines[0] for p in phrases), lines[0]


def test_help_and_success_keep_their_exit_codes(capsys) -> None:
    for argv in (["--help"], ["run", "--help"], ["gpus"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0, argv
    with pytest.raises(SystemExit) as done:
        main([])  # no command: the help, as before
    assert done.value.code == 2 and "Usage: capacitor" in capsys.readouterr().out
