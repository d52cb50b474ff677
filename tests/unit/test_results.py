"""Metrics of one run against numbers computed by hand on a tiny fabricated result."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import (
    ITL_BIN_REL_WIDTH,
    ITL_BINS_PER_E,
    ITL_MIN_S,
    ITL_NUM_BINS,
    EngineResult,
)
from capacitor.errors import ValidationDataError
from capacitor.validate.metrics import (
    METRIC_COLUMNS,
    PREDICTION_COLUMNS,
    absolute_percentage_errors,
    format_value,
    read_measured,
    request_metrics,
    requests_table,
    write_predictions,
)

NAN = math.nan


def _hist(gaps_s: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hist = np.zeros((1, ITL_NUM_BINS), np.int64)
    for g in gaps_s:
        hist[0, int(math.floor(math.log(g / ITL_MIN_S) * ITL_BINS_PER_E))] += 1
    return hist, np.array([sum(gaps_s)]), np.array([len(gaps_s)], np.int64)


def _run() -> tuple[RequestBatch, EngineResult, np.ndarray]:
    """Five requests: 0 is warm-up, 1 has one output token, 3 was rejected."""
    batch = RequestBatch.simple(
        arrival_s=np.array([0.0, 1.0, 1.5, 2.0, 2.0]),
        prompt_len=np.array([10, 10, 10, 10, 10]),
        output_len=np.array([3, 1, 4, 2, 3]),
    )
    batch.rejected[3] = True
    hist, itl_sum, itl_count = _hist([0.01, 0.02, 0.03])
    result = EngineResult(
        send_s=np.array([0.0, 1.0, 1.5, 2.0, 2.0]),
        first_token_s=np.array([0.1, 1.2, 1.6, NAN, 2.4]),
        finish_s=np.array([0.3, 1.2, 2.5, 2.0, 3.2]),
        completed=np.array([True, True, True, False, True]),
        num_preemptions=np.zeros(5, np.int32),
        num_cached_tokens=np.zeros(5, np.int32),
        itl_hist=hist,
        itl_sum_s=itl_sum,
        itl_count=itl_count,
        num_steps=10,
        busy_s=3.0,
        max_blocks_used=4,
    )
    return batch, result, np.array([False, True, True, True, True])


def test_metrics_match_hand_computation() -> None:
    batch, result, measured = _run()
    m = request_metrics(batch, result, measured)
    assert list(m) == list(METRIC_COLUMNS)
    assert m["completed"] == 3  # requests 1, 2, 4
    # TTFT 200, 100, 400 ms: sorted 100, 200, 400; p90 at position 1.8, p99 at 1.98.
    assert m["ttft_mean_ms"] == pytest.approx(700 / 3)
    assert m["ttft_median_ms"] == pytest.approx(200)
    assert m["ttft_p90_ms"] == pytest.approx(360)
    assert m["ttft_p99_ms"] == pytest.approx(396)
    # E2E 200, 1000, 1200 ms.
    assert m["e2e_mean_ms"] == pytest.approx(800)
    assert m["e2e_median_ms"] == pytest.approx(1000)
    assert m["e2e_p90_ms"] == pytest.approx(1160)
    assert m["e2e_p99_ms"] == pytest.approx(1196)
    # TPOT: request 1 (one token) has none; (1000-100)/3 = 300, (1200-400)/2 = 400.
    assert m["tpot_mean_ms"] == pytest.approx(350)
    assert m["tpot_median_ms"] == pytest.approx(350)
    assert m["tpot_p90_ms"] == pytest.approx(390)
    assert m["tpot_p99_ms"] == pytest.approx(399)
    # ITL gaps 10, 20, 30 ms: the mean is exact, quantiles within the bin width (0.1%).
    assert ITL_BIN_REL_WIDTH <= 1e-3
    assert m["itl_mean_ms"] == pytest.approx(20, rel=1e-12)
    assert m["itl_median_ms"] == pytest.approx(20, rel=1e-3)
    assert m["itl_p90_ms"] == pytest.approx(28, rel=1e-3)
    assert m["itl_p99_ms"] == pytest.approx(29.8, rel=1e-3)
    # Window: first measured send 1.0 s to last finish 3.2 s; 1 + 4 + 3 output tokens.
    assert m["request_throughput_rps"] == pytest.approx(3 / 2.2)
    assert m["output_tokens_per_s"] == pytest.approx(8 / 2.2)


def test_no_completed_request_gives_nan() -> None:
    batch, result, measured = _run()
    result.completed[:] = False
    result.itl_hist[:] = 0
    result.itl_count[:] = 0
    m = request_metrics(batch, result, measured)
    assert m["completed"] == 0
    assert all(math.isnan(v) for k, v in m.items() if k != "completed")


def test_measured_mask_shape_is_checked() -> None:
    batch, result, _ = _run()
    with pytest.raises(ValueError):
        request_metrics(batch, result, np.ones(3, bool))


def test_requests_table() -> None:
    batch, result, measured = _run()
    table = requests_table(batch, result, measured)
    assert table.num_rows == 5
    ttft = table.column("ttft_ms").to_numpy()
    assert ttft[1] == pytest.approx(200) and math.isnan(ttft[3])
    assert table.column("completed").to_pylist() == [True, True, True, False, True]


def test_format_value_round_trips() -> None:
    assert format_value(0.1 + 0.2) == "0.30000000000000004"
    assert float(format_value(np.float64(1 / 3))) == 1 / 3
    assert format_value(np.int64(7)) == "7"
    assert format_value(NAN) == ""
    assert format_value("") == ""


def test_write_predictions_has_the_contract_columns(tmp_path) -> None:
    path = tmp_path / "p.csv"
    write_predictions(path, [{"id": "a", "completed": 2, "ttft_mean_ms": 1.5, "error": ""}])
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(PREDICTION_COLUMNS)
    assert lines[1].startswith("a,2,1.5,")


def test_absolute_percentage_errors() -> None:
    preds = [
        {"id": "a", "ttft_mean_ms": 110.0, "e2e_mean_ms": 900.0, "error": ""},
        {"id": "b", "ttft_mean_ms": 50.0, "e2e_mean_ms": NAN, "error": ""},
        {"id": "c", "ttft_mean_ms": "", "error": "model='x': unknown"},
        {"id": "d", "ttft_mean_ms": 10.0, "error": ""},
    ]
    measured = {
        "a": {"ttft_mean_ms": 100.0, "e2e_mean_ms": 1000.0},
        "b": {"ttft_mean_ms": 40.0, "e2e_mean_ms": 1000.0},
        "c": {"ttft_mean_ms": 1.0},
        "d": {"ttft_mean_ms": 0.0},
    }
    ape, median = absolute_percentage_errors(preds, measured, ["ttft_mean_ms", "e2e_mean_ms"])
    assert ape["a"] == pytest.approx({"ttft_mean_ms": 10.0, "e2e_mean_ms": 10.0})
    assert ape["b"] == pytest.approx({"ttft_mean_ms": 25.0})
    assert "c" not in ape and ape["d"] == {}
    assert median == pytest.approx({"ttft_mean_ms": 17.5, "e2e_mean_ms": 10.0})


def test_read_measured(tmp_path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,ttft_mean_ms,extra,itl_mean_ms\na,1.5,zz,\nb,2,,3\n")
    columns, measured = read_measured(path)
    assert columns == ["ttft_mean_ms", "itl_mean_ms"]
    assert measured == {"a": {"ttft_mean_ms": 1.5}, "b": {"ttft_mean_ms": 2.0, "itl_mean_ms": 3.0}}
    path.write_text("id,ttft_mean_ms\na,fast\n")
    with pytest.raises(ValidationDataError, match="ttft_mean_ms='fast'"):
        read_measured(path)
    path.write_text("name,ttft_mean_ms\na,1\n")
    with pytest.raises(ValidationDataError, match="missing required column"):
        read_measured(path)
    with pytest.raises(ValidationDataError, match="cannot be read"):
        read_measured(tmp_path / "absent.csv")


@given(gap=st.floats(-1.0, 1e5, allow_nan=False), prev=st.integers(0, ITL_NUM_BINS - 1),
       nudge=st.sampled_from([0.0, 1e-12, -1e-12, 1e-9, -1e-9]))
@settings(max_examples=400, deadline=None)
def test_kernel_bin_lookup_matches_the_logarithm(gap, prev, nudge):
    from capacitor.engine._kernel_util import _itl_bin, _itl_bin_interior, _itl_bin_near
    from capacitor.engine.result import ITL_EDGES_S

    for g in (gap, float(ITL_EDGES_S[prev]) * (1.0 + nudge)):  # also right at bin edges
        b = _itl_bin_near(g, prev, ITL_EDGES_S)
        assert b == _itl_bin(g)
        lo, hi = _itl_bin_interior(b, ITL_EDGES_S)
        # every gap strictly inside the interior the kernel trusts lies in that bin
        for x in (np.nextafter(lo, np.inf), np.nextafter(hi, -np.inf)):
            if np.isfinite(x) and x > 0:
                assert _itl_bin(float(x)) == b
