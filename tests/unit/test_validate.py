"""The validate contract: file errors stop the run, row errors stay on their row."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from capacitor.errors import ValidationDataError
from capacitor.validate.experiments import (
    Row,
    RowError,
    boolean,
    fraction,
    integer,
    one_of,
    run_validate,
)
from capacitor.validate.metrics import PREDICTION_COLUMNS

CLOSED_LOOP = {
    "id": "closed",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "hardware": "H100",
    "tp": 1,
    "precision": "FP16",
    "workload": "closed_loop",
    "concurrency": 8,
    "isl": 512,
    "osl": 128,
    "num_requests": 80,
}
OFFLINE = {
    "id": "offline",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "hardware": "H100",
    "num_gpus": 1,
    "tp": 1,
    "pp": 1,
    "precision": "FP8",
    "engine": "trtllm",
    "workload": "offline",
    "isl": 128,
    "osl": 128,
    "num_requests": 200,
}

# (id, overrides of the small shared-prefix row, text the error must contain)
ROW_ERRORS = [
    ("bad-stages", {"stages": "abc"}, "stages='abc'"),
    ("missing-stages", {"stages": ""}, "stages (blank): missing"),
    ("mismatch", {"num_requests": 61}, "num_requests=61"),
    ("unknown-model", {"model": "acme/NoSuchModel-7B"}, "model='acme/NoSuchModel-7B'"),
    ("unknown-hardware", {"hardware": "TPU-v9"}, "hardware='TPU-v9'"),
    ("no-fit", {"model": "llama-3.1-405b-instruct", "hardware": "L40S"}, "does not fit"),
    ("num-gpus", {"num_gpus": 2}, "num_gpus=2"),
    ("bad-bool", {"enable_prefix_caching": "maybe"}, "enable_prefix_caching='maybe'"),
    ("bad-workload", {"workload": "batch"}, "workload='batch'"),
    ("bad-engine", {"engine": "tgi"}, "engine='tgi'"),
    ("bad-int", {"max_num_seqs": "12.5"}, "max_num_seqs='12.5'"),
    ("bad-arrival", {"arrival": "bursty"}, "arrival='bursty'"),
    ("bad-fraction", {"gpu_memory_utilization": "1.5"}, "gpu_memory_utilization='1.5'"),
    ("blank-model", {"model": ""}, "model (blank): missing (needed by every row)"),
    ("bad-kv-dtype", {"kv_cache_dtype": "int3"}, "kv_cache_dtype"),
    ("recv-not-sglang", {"scheduler_recv_interval": 10}, "scheduler_recv_interval=10: an SGLang"),
    ("bad-recv", {"engine": "sglang", "scheduler_recv_interval": 0}, "scheduler_recv_interval='0'"),
    ("adp-no-dpa", {"engine": "trtllm", "attention_dp_timeout_iters": 60},
     "attention_dp_timeout_iters=60: TensorRT-LLM's attention-DP balancing"),
]


def test_parsers() -> None:
    assert integer(1)("128") == 128 and integer(1)("128.0") == 128
    for bad in ("12.5", "x", "nan", "0"):
        with pytest.raises(ValueError):
            integer(1)(bad)
    assert integer(0)("0") == 0
    assert [boolean(t) for t in ("true", "TRUE", "1", "yes", "false", "0", "No")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    with pytest.raises(ValueError):
        boolean("maybe")
    assert fraction("0.9") == 0.9
    with pytest.raises(ValueError):
        fraction("0")
    assert one_of(("vllm", "trtllm"))("vLLM") == "vllm"


def test_row_errors_name_the_column(tmp_path) -> None:
    row = Row({"tp": "two", "stages": ""}, tmp_path)
    with pytest.raises(RowError, match="tp='two': not an integer"):
        row.get("tp", integer(1), 1)
    row.workload = "shared_prefix"
    needed = r"stages \(blank\): missing \(needed by workload=shared_prefix\)"
    with pytest.raises(RowError, match=needed):
        row.get("stages", required=True)
    assert row.get("absent", integer(1), 5) == 5


def test_missing_required_column_stops_the_run(tmp_path, write_experiments) -> None:
    path = write_experiments(tmp_path / "e.csv", [{"id": "a", "model": "m", "hardware": "H100"}])
    with pytest.raises(ValidationDataError, match="missing required column.*workload"):
        run_validate(path, tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_unreadable_files_stop_the_run(tmp_path, small_row, write_experiments) -> None:
    with pytest.raises(ValidationDataError, match="cannot be read"):
        run_validate(tmp_path / "absent.csv", tmp_path / "p.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValidationDataError, match="is empty"):
        run_validate(tmp_path / "empty.csv", tmp_path / "p.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValidationDataError):
        run_validate(tmp_path / "binary.csv", tmp_path / "p.csv")
    good = write_experiments(tmp_path / "e.csv", [small_row])
    with pytest.raises(ValidationDataError, match="measured CSV"):
        run_validate(good, tmp_path / "p.csv", measured_path=tmp_path / "absent.csv")


def test_row_errors_fill_only_their_row(tmp_path, small_row, write_experiments, read_predictions):
    rows = [dict(small_row, id="good-1")]
    rows += [dict(small_row, id=rid, **over) for rid, over, _ in ROW_ERRORS]
    rows += [dict(small_row, id="good-2", extra_column="ignored")]
    path = write_experiments(tmp_path / "e.csv", rows)
    seen: list[tuple[int, int, str]] = []
    report = run_validate(
        path, tmp_path / "p.csv", progress=lambda d, t, r, e: seen.append((d, t, r))
    )
    assert report.exit_code == 1 and report.num_errors == len(ROW_ERRORS)
    assert seen == [(i + 1, len(rows), r["id"]) for i, r in enumerate(rows)]
    text = (tmp_path / "p.csv").read_text()
    assert text.splitlines()[0] == ",".join(PREDICTION_COLUMNS)
    preds = read_predictions(tmp_path / "p.csv")
    assert list(preds) == [r["id"] for r in rows]
    for rid in ("good-1", "good-2"):
        assert preds[rid]["error"] == ""
        assert int(preds[rid]["completed"]) == 60
        for col in PREDICTION_COLUMNS[2:-1]:
            assert float(preds[rid][col]) > 0, (rid, col)
    assert preds["good-1"] == dict(preds["good-2"], id="good-1")
    for rid, _, expected in ROW_ERRORS:
        error = preds[rid]["error"]
        assert expected in error, (rid, error)
        assert "\n" not in error and "internal error" not in error
        assert all(preds[rid][c] == "" for c in PREDICTION_COLUMNS[1:-1]), rid


def test_predictions_are_byte_identical(tmp_path, small_row, write_experiments) -> None:
    rows = [small_row, CLOSED_LOOP, OFFLINE, dict(small_row, id="dup"), dict(small_row, id="dup")]
    path = write_experiments(tmp_path / "e.csv", rows)
    run_validate(path, tmp_path / "a.csv")
    run_validate(path, tmp_path / "b.csv", workers=1)
    run_validate(path, tmp_path / "c.csv", workers=3)  # rows on threads, in row order
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "c.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert "earlier row" in (tmp_path / "c.csv").read_text().splitlines()[-1]


def test_closed_loop_obeys_littles_law(tmp_path, write_experiments, read_predictions) -> None:
    path = write_experiments(tmp_path / "e.csv", [CLOSED_LOOP])
    report = run_validate(path, tmp_path / "p.csv")
    assert report.exit_code == 0
    pred = read_predictions(tmp_path / "p.csv")["closed"]
    assert int(pred["completed"]) == 80
    throughput = float(pred["request_throughput_rps"])
    oracle = 8 / (float(pred["e2e_mean_ms"]) / 1e3)
    assert throughput == pytest.approx(oracle, rel=0.10)
    assert float(pred["output_tokens_per_s"]) == pytest.approx(128 * throughput)


def test_recv_interval_column_delays_first_tokens(
    tmp_path, write_experiments, read_predictions
) -> None:
    """SGLang rows honour ``scheduler_recv_interval``: polling every 30 decode steps holds
    a closed-loop client's next request back, so the median TTFT grows. (Lengths vary, so
    clients finish at different steps: with equal lengths they all finish together, the
    engine is idle and polls at once.)"""
    row = dict(CLOSED_LOOP, engine="sglang", min_length_fraction=0.5)
    rows = [row, dict(row, id="polled", scheduler_recv_interval=30)]
    write_experiments(tmp_path / "e.csv", rows)
    assert run_validate(tmp_path / "e.csv", tmp_path / "p.csv").exit_code == 0
    preds = read_predictions(tmp_path / "p.csv")
    every_step, polled = (float(preds[i]["ttft_median_ms"]) for i in ("closed", "polled"))
    itl = float(preds["closed"]["itl_median_ms"])
    assert polled > every_step + 3 * itl  # about half of 30 decode steps on average


def test_closed_loop_warmup_is_excluded(tmp_path, write_experiments, read_predictions) -> None:
    row = dict(CLOSED_LOOP, num_warmup_requests=16, min_length_fraction=0.5, seed=3)
    write_experiments(tmp_path / "e.csv", [row, dict(row, id="all-warmup", num_warmup_requests=80)])
    run_validate(tmp_path / "e.csv", tmp_path / "p.csv")
    preds = read_predictions(tmp_path / "p.csv")
    assert int(preds["closed"]["completed"]) == 64
    assert "num_warmup_requests=80" in preds["all-warmup"]["error"]


def test_offline_row(tmp_path, write_experiments, read_predictions) -> None:
    write_experiments(tmp_path / "e.csv", [OFFLINE])
    assert run_validate(tmp_path / "e.csv", tmp_path / "p.csv").exit_code == 0
    pred = read_predictions(tmp_path / "p.csv")["offline"]
    assert int(pred["completed"]) == 200
    assert float(pred["output_tokens_per_s"]) > 1000


def test_measured_errors(tmp_path, small_row, write_experiments, read_predictions) -> None:
    path = write_experiments(tmp_path / "e.csv", [small_row, dict(small_row, id="bad", tp="x")])
    run_validate(path, tmp_path / "p.csv")
    ttft = float(read_predictions(tmp_path / "p.csv")["small"]["ttft_mean_ms"])
    measured = tmp_path / "m.csv"
    measured.write_text(f"id,ttft_mean_ms,e2e_p99_ms\nsmall,{ttft * 1.25!r},\nbad,1.0,2.0\n")
    report = run_validate(path, tmp_path / "p2.csv", measured_path=measured)
    assert report.ape_columns == ["ttft_mean_ms", "e2e_p99_ms"]
    assert report.ape == {"small": {"ttft_mean_ms": pytest.approx(20.0)}}
    assert report.median_ape == {"ttft_mean_ms": pytest.approx(20.0)}


def test_model_config_path_relative_to_the_file(
    tmp_path, shared_data, small_row, write_experiments, read_predictions
) -> None:
    (tmp_path / "sub" / "cfg").mkdir(parents=True)
    shutil.copy(shared_data / "models" / "llama-2-7b-hf" / "config.json", tmp_path / "sub" / "cfg")
    write_experiments(tmp_path / "sub" / "e.csv", [dict(small_row, model="cfg/config.json")])
    assert run_validate(tmp_path / "sub" / "e.csv", tmp_path / "p.csv").exit_code == 0
    assert read_predictions(tmp_path / "p.csv")["small"]["error"] == ""


def test_blank_cells_take_defaults(
    tmp_path, small_row, write_experiments, read_predictions
) -> None:
    row = dict(small_row, tp="", engine="", precision="", max_num_seqs="", arrival="", seed="")
    write_experiments(tmp_path / "e.csv", [row])
    assert run_validate(tmp_path / "e.csv", tmp_path / "p.csv").exit_code == 0
    assert np.isfinite(float(read_predictions(tmp_path / "p.csv")["small"]["e2e_p99_ms"]))


def test_duplicate_and_blank_ids_are_row_errors(tmp_path, small_row, write_experiments) -> None:
    rows = [small_row, dict(small_row, seed=1), dict(small_row, id="")]
    report = run_validate(write_experiments(tmp_path / "e.csv", rows), tmp_path / "p.csv")
    errors = [p["error"] for p in report.predictions]
    assert errors[0] == ""
    assert errors[1] == "id='small': appears on an earlier row too"
    assert errors[2] == "id (blank): missing"
