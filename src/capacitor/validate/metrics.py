"""Per-request records and the metric summaries every report and the validate contract use.

One replica run gives a :class:`~capacitor.engine.requests.RequestBatch` (what was sent)
and an :class:`~capacitor.engine.result.EngineResult` (what happened to it). This module
turns the pair into

- :func:`request_metrics`: the predictions-CSV metrics of one run (counts, latency
  mean / median / p90 / p99 in milliseconds, throughputs), and
- :func:`requests_table`: the per-request records as an Arrow table (``requests.parquet``),
- the CSV side of ``capacitor validate``: :func:`write_predictions` (``repr`` floats, so the
  same numbers give the same bytes), :func:`read_measured` and
  :func:`absolute_percentage_errors` against measurements.

Definitions (DESIGN.md, "validate"):

- TTFT = first token − send; E2E = last token − send (send = arrival, or the moment a
  closed-loop client or a session sent it).
- TPOT per request = (E2E − TTFT) / (output tokens − 1); requests with one output token have
  no TPOT.
- ITL is over the gaps between consecutive output tokens of all measured requests, from the
  engine's histogram of ITL class 0 (warm-up requests are class −1 and not counted).
- Throughputs are over the measured window: the first send to the last finish of the measured
  completed requests.
- Percentiles use NumPy's default linear interpolation (``numpy.percentile``, method
  ``"linear"``), as vLLM's ``benchmark_serving`` and inference-perf report them; it is the
  one definition in capacitor (the engine's ITL histogram quantiles and the fleet summary's
  :func:`capacitor.simulate.summary.weighted_percentiles` compute the same). A request the
  server rejected is not completed and is in no latency statistic.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from capacitor.engine.requests import RequestBatch
from capacitor.engine.result import EngineResult
from capacitor.errors import ValidationDataError
from capacitor.textio import read_text

LATENCY_METRICS = ("ttft", "itl", "tpot", "e2e")
STATISTICS = ("mean", "median", "p90", "p99")
_QUANTILES = {"median": 0.5, "p90": 0.9, "p99": 0.99}

#: The metric columns of a predictions row, in order (after ``id``, before ``error``).
METRIC_COLUMNS: tuple[str, ...] = (
    "completed",
    *(f"{m}_{s}_ms" for m in LATENCY_METRICS for s in STATISTICS),
    "request_throughput_rps",
    "output_tokens_per_s",
)
#: Columns of the predictions CSV of ``capacitor validate``, in order.
PREDICTION_COLUMNS: tuple[str, ...] = ("id", *METRIC_COLUMNS, "error")


def _summary_ms(values_s: np.ndarray) -> dict[str, float]:
    """Mean / median / p90 / p99 of ``values_s`` (seconds), in milliseconds; NaN if empty."""
    if values_s.size == 0:
        return dict.fromkeys(STATISTICS, math.nan)
    ms = values_s * 1e3
    out = {"mean": float(ms.mean())}
    pcts = np.percentile(ms, [100.0 * q for q in _QUANTILES.values()])
    out.update({name: float(v) for name, v in zip(_QUANTILES, pcts, strict=True)})
    return out


def measured_completed(
    batch: RequestBatch, result: EngineResult, measured_mask: np.ndarray
) -> np.ndarray:
    """Boolean mask of the requests that are measured, not rejected, and completed."""
    mask = np.asarray(measured_mask, np.bool_) & np.asarray(result.completed, np.bool_)
    return mask & ~np.asarray(batch.rejected, np.bool_)


def request_metrics(
    batch: RequestBatch, result: EngineResult, measured_mask: np.ndarray
) -> dict[str, float | int]:
    """The predictions-CSV metrics of one run, keyed by :data:`METRIC_COLUMNS`.

    Args:
        batch: the requests that were simulated.
        result: the engine's outcome for them (ITL class 0 holds the measured gaps).
        measured_mask: requests that count (False for closed-loop warm-up requests).

    Latencies are milliseconds; a statistic with no sample is NaN.
    """
    n = len(batch)
    if np.shape(measured_mask) != (n,):
        raise ValueError(f"measured_mask has shape {np.shape(measured_mask)}, expected ({n},)")
    done = measured_completed(batch, result, measured_mask)
    send = np.asarray(result.send_s, np.float64)[done]
    first = np.asarray(result.first_token_s, np.float64)[done]
    finish = np.asarray(result.finish_s, np.float64)[done]
    out_tokens = np.asarray(batch.output_len, np.int64)[done]

    ttft_s = first - send
    e2e_s = finish - send
    multi = out_tokens > 1
    tpot_s = (e2e_s[multi] - ttft_s[multi]) / (out_tokens[multi] - 1)

    metrics: dict[str, float | int] = {"completed": int(done.sum())}
    for name, values in (("ttft", ttft_s), ("itl", None), ("tpot", tpot_s), ("e2e", e2e_s)):
        stats = _itl_summary_ms(result) if values is None else _summary_ms(values)
        for stat in STATISTICS:
            metrics[f"{name}_{stat}_ms"] = stats[stat]

    window_s = float(finish.max() - send.min()) if send.size else 0.0
    if window_s > 0.0:
        metrics["request_throughput_rps"] = float(send.size / window_s)
        metrics["output_tokens_per_s"] = float(out_tokens.sum() / window_s)
    else:
        metrics["request_throughput_rps"] = math.nan
        metrics["output_tokens_per_s"] = math.nan
    return metrics


def _itl_summary_ms(result: EngineResult) -> dict[str, float]:
    """ITL mean / median / p90 / p99 of class 0 from the engine's histogram, milliseconds."""
    if result.itl_count.shape[0] == 0 or int(result.itl_count[0]) == 0:
        return dict.fromkeys(STATISTICS, math.nan)
    out = {"mean": float(result.itl_mean_s(0)) * 1e3}
    qs = result.itl_quantiles_s(list(_QUANTILES.values()), 0)
    out.update({name: float(v) * 1e3 for name, v in zip(_QUANTILES, qs, strict=True)})
    return out


def requests_table(
    batch: RequestBatch, result: EngineResult, measured_mask: np.ndarray
) -> pa.Table:
    """Per-request records as an Arrow table (the run directory's ``requests.parquet``).

    Times are seconds on the run's clock; ``ttft_ms`` / ``e2e_ms`` are NaN for requests
    that did not complete.
    """
    done = np.asarray(result.completed, np.bool_) & ~np.asarray(batch.rejected, np.bool_)
    send = np.asarray(result.send_s, np.float64)
    first = np.asarray(result.first_token_s, np.float64)
    finish = np.asarray(result.finish_s, np.float64)
    nan = np.full(len(batch), np.nan)
    return pa.table(
        {
            "request": np.arange(len(batch), dtype=np.int64),
            "arrival_s": np.asarray(batch.arrival_s, np.float64),
            "send_s": send,
            "first_token_s": first,
            "finish_s": finish,
            "prompt_len": np.asarray(batch.prompt_len, np.int32),
            "output_len": np.asarray(batch.output_len, np.int32),
            "cached_tokens": np.asarray(result.num_cached_tokens, np.int64),
            "preemptions": np.asarray(result.num_preemptions, np.int32),
            "rejected": np.asarray(batch.rejected, np.bool_),
            "completed": done,
            "measured": np.asarray(measured_mask, np.bool_),
            "ttft_ms": np.where(done, (first - send) * 1e3, nan),
            "e2e_ms": np.where(done, (finish - send) * 1e3, nan),
        }
    )


def absolute_percentage_errors(
    predictions: list[dict[str, object]],
    measured: dict[str, dict[str, float]],
    columns: list[str],
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Absolute percentage errors of predictions against measurements, per row and median.

    APE = |predicted − measured| / |measured| × 100, for every metric in ``columns`` that a
    row has both values of (a failed row, a blank, NaN or zero measurement gives none).

    Returns:
        ({row id: {metric: APE}}, {metric: median APE over the rows that have one}).
    """
    ape: dict[str, dict[str, float]] = {}
    for pred in predictions:
        rid = str(pred["id"])
        if pred.get("error") or rid not in measured:
            continue
        row_ape = {}
        for col in columns:
            meas = measured[rid].get(col)
            value = pred.get(col)
            if meas is None or meas == 0 or math.isnan(meas):
                continue
            if not isinstance(value, int | float | np.number) or math.isnan(float(value)):
                continue
            row_ape[col] = abs(float(value) - meas) / abs(meas) * 100.0
        ape[rid] = row_ape
    median = {}
    for col in columns:
        vals = [r[col] for r in ape.values() if col in r]
        if vals:
            median[col] = float(np.median(vals))
    return ape, median


def read_csv(
    path: str | Path, required: tuple[str, ...], what: str
) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows of stripped cells) of a CSV; header names lower-cased, blank lines skipped.

    Raises:
        ValidationDataError: the file cannot be read, is empty, has no rows, or lacks a
            required column.
    """
    path = Path(path)
    text = read_text(path, f"{what} {path}", ValidationDataError, expected="a UTF-8 CSV file")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in next(reader, [])]
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if any(c.strip() for c in cells[len(header):]):
                raise ValidationDataError(
                    f"{what} {path}: line {reader.line_num}: {len(cells)} cells but the header "
                    f"has {len(header)} columns; quote a value that holds a comma")
            rows.append({h: c.strip() for h, c in zip(header, cells, strict=False) if h})
    except csv.Error as exc:
        raise ValidationDataError(f"{what} {path}: line {reader.line_num}: not valid CSV "
                                  f"({exc}); expected a UTF-8 CSV file") from None
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise ValidationDataError(
            f"{what} {path}: column(s) {', '.join(twice)} appear more than once in the header; "
            "give each column once")
    missing = [c for c in required if c not in header]
    if missing:
        raise ValidationDataError(
            f"{what} {path}: missing required column(s) {', '.join(missing)} "
            f"(required: {', '.join(required)})"
        )
    if not rows:
        raise ValidationDataError(f"{what} {path}: has a header but no rows; expected one "
                                  "row per experiment below the header")
    return header, rows


def read_measured(path: str | Path) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(metric columns present, {id: {column: value}}) of a measured CSV; blanks left out."""
    header, rows = read_csv(path, ("id",), "measured CSV")
    columns = [c for c in METRIC_COLUMNS if c in header]
    measured: dict[str, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        values = {}
        for col in columns:
            if row.get(col, ""):
                try:
                    values[col] = float(row[col])
                except ValueError:
                    raise ValidationDataError(
                        f"measured CSV {path}: line {line}: {col}={row[col]!r} is not a number"
                    ) from None
        measured[row.get("id", "")] = values
    return columns, measured


def format_value(value: object) -> str:
    """CSV text of one cell: ints as ints, floats by ``repr`` (exact round trip), NaN blank."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, int | np.integer):
        return str(int(value))
    f = float(value)  # type: ignore[arg-type]
    return "" if math.isnan(f) else repr(f)


def write_predictions(path: Path, predictions: list[dict[str, object]]) -> None:
    """Write the predictions CSV with exactly :data:`PREDICTION_COLUMNS`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(PREDICTION_COLUMNS)
            for pred in predictions:
                writer.writerow([format_value(pred.get(c, "")) for c in PREDICTION_COLUMNS])
    except OSError as exc:
        raise ValidationDataError(f"predictions CSV {path}: cannot be written ({exc})") from exc


__all__ = [
    "LATENCY_METRICS",
    "METRIC_COLUMNS",
    "PREDICTION_COLUMNS",
    "STATISTICS",
    "absolute_percentage_errors",
    "format_value",
    "measured_completed",
    "read_csv",
    "read_measured",
    "request_metrics",
    "requests_table",
    "write_predictions",
]
