"""The fidelity report, reproduced in one command (the README's "Fidelity" numbers):

    python calibration/fidelity_report.py            # ~8.5 minutes on 2 cores
    python calibration/fidelity_report.py --quick    # skips the TRT-LLM and Splitwise refits
                                                     # (~3 minutes)

For each public dataset in ``../shared/data`` and each metric: the median and p90 absolute
percentage error of the physical prior, of the shipped profile (fitted to these same rows:
in sample), and out of sample — leave one model out for the real vLLM runs, leave one GPU out
for the TensorRT-LLM throughput table — where each held-out group is predicted by a profile
refitted from the prior without it. Published errors of other simulators on the same kind of
data are printed beside them. Then the Splitwise static-batch check
(``calibration/splitwise_check.py``: the shipped profile, and refits to those rows in sample
and leaving one GPU out). ``--out FILE.md`` also writes the tables to a file.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import splitwise_check  # calibration/, beside this script

from capacitor.calibrate import ape_table, leave_one_out, load_observations, predict
from capacitor.perf.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PRIOR = ROOT / "src" / "capacitor" / "perf" / "data" / "prior_profile.yaml"
SPLITWISE = splitwise_check.DATA
DATASETS = (
    # name, experiments, measured, held-out group column, refit budget and optimizer starts
    # (as calibration/fit_shipped.py fits the shipped profile), published errors
    ("real vLLM servers (13 runs, H100)", DATA / "validation" / "experiments_trainval.csv",
     DATA / "validation" / "measured_trainval.csv", "model", (60, 8),
     "published on a held-out set of 37 such runs: best simulator E2E 6.7 / TTFT 17.6 / ITL "
     "7.1; Vidur several hundred %; a pure roofline E2E 33 / TTFT 650"),
    ("TensorRT-LLM v0.17 offline throughput (373 rows)",
     DATA / "published" / "trtllm_v0.17_offline_experiments.csv",
     DATA / "published" / "trtllm_v0.17_offline_measured.csv", "hardware", (8, 1),
     "target: median <= 12% out of sample"),
)


def _stats(values: list[float]) -> str:
    v = np.array([x for x in values if math.isfinite(x)])
    return "—" if v.size == 0 else f"{np.median(v):.1f} / {np.percentile(v, 90):.1f}"


def _rows(tables: dict[str, dict], observations, group: str | None = None) -> list[str]:
    metrics = sorted({m for o in observations for m in o.measured})
    out = []
    for m in metrics:
        cells = []
        for table in tables.values():
            cells.append(_stats([table[o.id].get(m, math.nan) for o in observations
                                 if o.id in table and (group is None or
                                                       o.cells.get("hardware") == group)]))
        out.append(f"| {m}{'' if group is None else f' ({group})'} | " + " | ".join(cells) + " |")
    return out


def report(quick: bool) -> list[str]:
    prior = load_profile(PRIOR)
    shipped = load_profile(None)
    lines = []
    for name, experiments, measured, held_out, (budget, starts), published in DATASETS:
        observations = load_observations([(experiments, measured)])
        print(f"{name}: prior and shipped predictions ...", file=sys.stderr, flush=True)
        tables = {
            "prior": ape_table(observations, predict(observations, prior)),
            "shipped (in sample)": ape_table(observations, predict(observations, shipped)),
        }
        if not (quick and held_out == "hardware"):
            def group_of(o, column=held_out):
                return o.cells.get(column, "")

            def progress(g, column=held_out):
                print(f"  leave one {column} out: {g}", file=sys.stderr, flush=True)

            loo = leave_one_out(observations, prior, group_of, max_nfev=budget,
                                starts=starts, progress=progress)
            tables[f"leave one {held_out} out"] = ape_table(observations, loo)
        lines += [f"### {name}", "", "median / p90 absolute percentage error", "",
                  "| metric | " + " | ".join(tables) + " |",
                  "|---|" + "---:|" * len(tables)]
        lines += _rows(tables, observations)
        if held_out == "hardware":
            for gpu in sorted({o.cells.get("hardware", "") for o in observations}):
                lines += _rows(tables, observations, gpu)
        lines += ["", published, ""]
    if SPLITWISE.is_file():
        print("Splitwise static batches ...", file=sys.stderr, flush=True)
        lines += ["### Splitwise static batches (Llama-2-70B, A100 / H100; engine not named)", "",
                  *splitwise_check.report(refit=not quick), ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip the refits of the TensorRT-LLM table and the Splitwise check")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"reference data not found at {DATA}", file=sys.stderr)
        return 2
    lines = report(args.quick)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
