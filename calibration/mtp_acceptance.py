"""MTP acceptance rate on the InferenceMAX DeepSeek-R1 MTP rows, leave one hardware out.

    python calibration/mtp_acceptance.py [--grid 0.3:0.9:0.05]

The aggregated MTP rows (latest date each, the server flags of
``frontier_report.server_flags``) are predicted at every per-position acceptance rate of the
grid (``mtp_acceptance_rate``, :mod:`capacitor.perf.speculative`); nothing else moves. For
each hardware, the rate is chosen on the *other* hardware's rows (the lowest sum of the
median APE of output tokens/s and of median TPOT) and that hardware's error at the chosen rate
is reported beside its error at the documented default
(:data:`capacitor.perf.speculative.DEFAULT_MTP_ACCEPTANCE_RATE`) and its own best rate (in
sample, for reference only). About 10 s per grid point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from frontier_report import (  # noqa: E402
    METRICS,
    measured,
    predict,
    primary_rows,
    signed_errors,
    write_experiments,
)

from capacitor.perf.speculative import DEFAULT_MTP_ACCEPTANCE_RATE as DEFAULT  # noqa: E402


def _errors(rows, pred, meas):
    errs = signed_errors(pred, meas, [r["id"] for r in rows])
    return {m: statistics.median(abs(x) for x in errs[m]) for m in METRICS if errs.get(m)}


def _fmt(table, hardware, rate) -> str:
    return " / ".join(f"{table[(hardware, rate)][m]:.1f}" for m in METRICS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", default="0.3:0.9:0.05", help="start:stop:step (inclusive)")
    args = ap.parse_args(argv)
    lo, hi, step = (float(x) for x in args.grid.split(":"))
    grid = [round(lo + i * step, 6) for i in range(int(round((hi - lo) / step)) + 1)]
    if DEFAULT not in grid:
        grid.append(DEFAULT)
    rows = primary_rows(speculative="mtp")
    meas = measured()
    hardware = sorted({r["hardware"] for r in rows})
    by_hw = {h: [r for r in rows if r["hardware"] == h] for h in hardware}
    table: dict[tuple[str, float], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rate in sorted(grid):
            exp = Path(tmp) / f"mtp_{rate}.csv"
            write_experiments([dict(r, mtp_acceptance_rate=str(rate)) for r in rows], exp)
            pred = predict(exp)
            for h in hardware:
                table[(h, rate)] = _errors(by_hw[h], pred, meas)
            table[("all", rate)] = _errors(rows, pred, meas)
    score = {key: v[METRICS[0]] + v[METRICS[1]] for key, v in table.items()}
    print(f"{len(rows)} MTP rows; median APE % throughput / median TPOT / median TTFT")
    print(f"  {'rate':>5s} " + " ".join(f"{h:>22s}" for h in [*hardware, "all"]))
    for rate in sorted(grid):
        cells = [" / ".join(f"{table[(h, rate)][m]:.1f}" for m in METRICS)
                 for h in [*hardware, "all"]]
        print(f"  {rate:5.2f} " + " ".join(f"{c:>22s}" for c in cells))
    print("\nleave one hardware out (rate fitted on the other hardware):")
    for h in hardware:
        others = [o for o in hardware if o != h]
        fitted = min(sorted(grid), key=lambda g: sum(score[(o, g)] for o in others))
        own = min(sorted(grid), key=lambda g: score[(h, g)])
        print(f"  {h}: fitted on {', '.join(others)} = {fitted:.2f}: {_fmt(table, h, fitted)}; "
              f"default {DEFAULT}: {_fmt(table, h, DEFAULT)}; "
              f"in-sample best {own:.2f}: {_fmt(table, h, own)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
