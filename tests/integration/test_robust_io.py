"""Bad input through the CLI, as a hostile user gives it: every case exits 2 with exactly one
line on stderr (one per problem for a scenario) that names the file, field or flag, never a
traceback and never a silently wrong answer."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from capacitor.cli import app
from tests.factories import SMALL, scenario_dict

runner = CliRunner()
MODELS = Path(__file__).resolve().parents[2] / "src" / "capacitor" / "catalog" / "data" / "models"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(result, code: int = 2) -> list[str]:
    """stderr's lines, after checking the exit code, that every line is an error line and
    that no traceback was printed."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    return lines


def one_error(result) -> str:
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---- files that are not UTF-8 text ------------------------------------------------------------

#: kind -> (how to make it at a path, a phrase the error line must hold)
BAD_FILES = {
    "binary": (lambda p: p.write_bytes(bytes(range(256)) * 4), "not a text file"),
    "png": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "PNG image"),
    "gzip": (lambda p: p.write_bytes(gzip.compress(b"name: x\n")), "gzip"),
    "latin1": (lambda p: p.write_bytes("name: caf\xe9\n".encode("latin-1")),
               "not UTF-8 text (byte 0xe9 at line 1, column 10"),
    "utf16": (lambda p: p.write_bytes("name: x\n".encode("utf-16")), "UTF-16"),
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "missing": (lambda p: None, "no such file"),
}


@pytest.fixture()
def good(tmp_path, small_row, write_experiments) -> dict[str, Path]:
    """Valid inputs for the arguments a case does not spoil."""
    exp = write_experiments(tmp_path / "good_exp.csv", [small_row])
    meas = tmp_path / "good_meas.csv"
    meas.write_text("id,ttft_mean_ms\nsmall,20\n")
    scenario = tmp_path / "good.yaml"
    scenario.write_text(yaml.safe_dump(scenario_dict(SMALL)))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(MODELS / "llama-3.1-8b-instruct.json", model_dir / "config.json")
    return {"exp": exp, "meas": meas, "scenario": scenario, "model": model_dir}


def _trace_scenario(tmp_path: Path, trace: Path) -> Path:
    data = scenario_dict(SMALL, **{"workloads.0.lengths": {
        "kind": "trace", "path": trace.name, "format": "azure"}})
    del data["workloads"][0]["arrival"]
    path = tmp_path / "with_trace.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


#: command -> (name of the bad file, argv given the bad path and the good inputs)
COMMANDS = {
    "scenario check": ("s.yaml", lambda bad, g, t: ["scenario", "check", bad]),
    "run": ("s.yaml", lambda bad, g, t: ["run", bad, "--out", t / "out"]),
    "run --profile": ("p.yaml", lambda bad, g, t: ["run", g["scenario"], "--profile", bad,
                                                   "--out", t / "out"]),
    "scenario trace": ("trace.csv", lambda bad, g, t: ["scenario", "check",
                                                       _trace_scenario(t, bad)]),
    "validate": ("e.csv", lambda bad, g, t: ["validate", bad, "--out", t / "p.csv"]),
    "validate --measured": ("m.csv", lambda bad, g, t: ["validate", g["exp"], "--out",
                                                        t / "p.csv", "--measured", bad]),
    "validate --profile": ("p.yaml", lambda bad, g, t: ["validate", g["exp"], "--out",
                                                        t / "p.csv", "--profile", bad]),
    "calibrate --experiments": ("e.csv", lambda bad, g, t: [
        "calibrate", "--experiments", bad, "--measured", g["meas"], "--out", t / "f.yaml"]),
    "calibrate --measured": ("m.csv", lambda bad, g, t: [
        "calibrate", "--experiments", g["exp"], "--measured", bad, "--out", t / "f.yaml"]),
    "models import": ("c.json", lambda bad, g, t: ["models", "import", bad]),
    "generation_config.json": ("generation_config.json",
                               lambda bad, g, t: ["models", "import", g["model"]]),
}


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path, good, command, kind) -> None:
    name, argv = COMMANDS[command]
    if command == "generation_config.json":
        if kind in ("missing", "directory"):
            pytest.skip("an absent generation_config.json is allowed")
        bad = good["model"] / name
    else:
        bad = tmp_path / name
    make, phrase = BAD_FILES[kind]
    make(bad)
    line = one_error(invoke(*argv(bad, good, tmp_path)))
    if command == "models import" and kind == "directory":  # a directory holds config.json
        assert str(bad / "config.json") in line and "no such file" in line, line
    elif command == "scenario trace" and kind == "missing":  # a scenario check's own line
        assert "lengths.path = 'trace.csv': no such file" in line, line
    else:
        assert name in line and phrase in line and "expected" in line, line
    assert not (tmp_path / "out").exists()  # nothing written before the input was read


def test_an_unreadable_file_is_one_line(tmp_path, good, monkeypatch) -> None:
    bad = tmp_path / "locked.yaml"
    bad.write_text("name: x\n")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.yaml":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)  # the tests run as root
    line = one_error(invoke("scenario", "check", bad))
    assert "locked.yaml: cannot be read: permission denied" in line


def test_a_utf8_bom_is_accepted(tmp_path, good) -> None:
    bom_yaml = tmp_path / "bom.yaml"
    bom_yaml.write_bytes(b"\xef\xbb\xbf" + good["scenario"].read_bytes())
    assert invoke("scenario", "check", bom_yaml).exit_code == 0


# ---- scenarios: one line per problem ----------------------------------------------------------


def test_each_scenario_problem_is_its_own_line(tmp_path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(
        SMALL, **{"workloads.0.deployment": "nope", "workloads.1.tenant": "nobody"})))
    for argv in (["scenario", "check", path], ["run", path, "--out", tmp_path / "o"]):
        lines = error_lines(invoke(*argv))
        assert len(lines) == 2, lines
        assert "two.yaml: workloads[0].deployment = 'nope': no such deployment" in lines[0]
        assert "two.yaml: workloads[1].tenant = 'nobody': no such tenant" in lines[1]
    path.write_text(yaml.safe_dump(scenario_dict(
        SMALL, **{"sites.0.pue": "x", "tenants.0.tier": -1})))
    lines = error_lines(invoke("scenario", "check", path))
    assert len(lines) == 2 and "sites[0].pue = 'x'" in lines[0] and "tier = -1" in lines[1]


# ---- experiments and measured CSVs ------------------------------------------------------------


def test_an_experiments_file_without_rows_is_an_error(tmp_path, good) -> None:
    header = tmp_path / "header.csv"
    header.write_text("id,model,hardware,workload\n\n")
    line = one_error(invoke("validate", header, "--out", tmp_path / "p.csv"))
    assert "experiments CSV" in line and "header.csv" in line and "no rows" in line
    assert not (tmp_path / "p.csv").exists()
    line = one_error(invoke("calibrate", "--experiments", header, "--measured", good["meas"],
                            "--out", tmp_path / "f.yaml"))
    assert "header.csv" in line and "no rows" in line
    empty_meas = tmp_path / "meas.csv"
    empty_meas.write_text("id,ttft_mean_ms\n")
    line = one_error(invoke("validate", good["exp"], "--out", tmp_path / "p.csv",
                            "--measured", empty_meas))
    assert "measured CSV" in line and "meas.csv" in line and "no rows" in line


def test_memory_fit_is_checked_when_total_kv_blocks_is_given(tmp_path, write_experiments,
                                                             read_predictions) -> None:
    row = {"id": "big", "model": "meta-llama/Llama-3.1-405B-Instruct", "hardware": "H100",
           "tp": 1, "precision": "BF16", "workload": "offline", "num_requests": 4, "isl": 100,
           "osl": 10, "total_kv_blocks": 1000}
    path = write_experiments(tmp_path / "e.csv", [row])
    result = invoke("validate", path, "--out", tmp_path / "p.csv")
    assert result.exit_code == 1, result.output  # a row error: the other rows would run
    error = read_predictions(tmp_path / "p.csv")["big"]["error"]
    assert "does not fit on H100" in error and "total_kv_blocks=1000" in error, error
    assert "weights 756.0 GiB" in error
    assert "row big:" in result.stderr


# ---- silently wrong answers: keys and columns given twice, cells beyond the header ------------


def test_a_yaml_key_given_twice_is_one_line(tmp_path, good) -> None:
    text = good["scenario"].read_text().replace("  seed: 3\n", "  seed: 3\n  seed: 4\n")
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    line = one_error(invoke("scenario", "check", path))
    assert "twice.yaml: line" in line and "key 'seed' is given twice" in line, line
    profile = tmp_path / "twice_profile.yaml"
    profile.write_text("defaults: {overhead: {per_seq_s: 1.0e-5, per_seq_s: 2.0e-5}}\n")
    line = one_error(invoke("validate", good["exp"], "--out", tmp_path / "p.csv",
                            "--profile", profile))
    assert "twice_profile.yaml: line 1" in line and "key 'per_seq_s' is given twice" in line


def test_a_csv_column_given_twice_or_a_row_longer_than_the_header_is_one_line(tmp_path) -> None:
    twice = tmp_path / "twice.csv"
    twice.write_text("id,model,hardware,workload,tp,tp\n"
                     "x,meta-llama/Llama-3.1-8B-Instruct,H100,offline,1,2\n")
    line = one_error(invoke("validate", twice, "--out", tmp_path / "p.csv"))
    assert "twice.csv: column(s) tp appear more than once" in line, line
    longer = tmp_path / "longer.csv"
    longer.write_text("id,model,hardware,workload\nx,meta-llama/Llama-3.1-8B-Instruct,H100,"
                      "offline,extra\ny,m,h,offline,,\n")
    line = one_error(invoke("validate", longer, "--out", tmp_path / "p.csv"))
    assert "longer.csv: line 2: 5 cells but the header has 4 columns" in line, line


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused_not_read_forever(tmp_path) -> None:
    line = one_error(invoke("scenario", "check", "/dev/zero"))
    assert "/dev/zero: is a device or socket, not a file" in line
    line = one_error(invoke("validate", "/dev/null", "--out", tmp_path / "p.csv"))
    assert "experiments CSV /dev/null: is a device" in line


def test_infinite_or_out_of_range_numbers_are_refused(tmp_path, write_experiments,
                                                      read_predictions) -> None:
    path = tmp_path / "inf.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(
        SMALL, **{"simulation.window.duration_s": float("inf")})))
    line = one_error(invoke("scenario", "check", path))
    assert "simulation.window.duration_s = inf: input should be a finite number" in line
    row = {"id": "huge", "model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": "H100",
           "workload": "offline", "num_requests": 2, "isl": 10**12, "osl": 10}
    exp = write_experiments(tmp_path / "e.csv", [row])
    assert invoke("validate", exp, "--out", tmp_path / "p.csv").exit_code == 1
    error = read_predictions(tmp_path / "p.csv")["huge"]["error"]
    assert error == "isl='1000000000000': must be <= 2,147,483,647", error
