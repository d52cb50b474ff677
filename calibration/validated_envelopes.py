"""Write the validated envelopes (``src/capacitor/perf/data/validated_envelopes.json``): every
configuration class the model has been checked against on measured runs.

    python calibration/validated_envelopes.py [--check]

An envelope is one (engine, GPU, architecture, precision, disaggregated, speculative) class
of the measured datasets, with the tp range and the number of its rows: the real vLLM runs
(``../shared/data/validation``), the TensorRT-LLM offline table and the InferenceMAX
DeepSeek-R1 rows (``../shared/data/published``). Architecture is ``dense``, ``moe`` or
``mla_moe`` (from the model's config, :mod:`capacitor.catalog.models`); precision is 16-bit
(FP16 and BF16 alike), FP8 or FP4. A simulated deployment outside every envelope is labelled
extrapolated (:mod:`capacitor.perf.validity`). ``--check`` exits 1 when the shipped file
differs from what the data gives (tests run it).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "src" / "capacitor" / "perf" / "data" / "validated_envelopes.json"
#: (dataset file, what it is) — the measured sets the fidelity tables report on
DATASETS = (
    ("validation/experiments_trainval.csv", "real vLLM servers (README: Fidelity)"),
    ("published/trtllm_v0.17_offline_experiments.csv",
     "TensorRT-LLM v0.17 offline throughput (README: Fidelity)"),
    ("published/inferencemax_dsr1/experiments.csv",
     "InferenceMAX DeepSeek-R1 (README: Fidelity, frontier)"),
)


def envelopes(data: Path = DATA) -> list[dict]:
    """The envelopes of the measured datasets under ``data`` (see the module docstring)."""
    from capacitor.catalog.hardware import get_gpu
    from capacitor.catalog.models import resolve_model
    from capacitor.perf.validity import architecture, precision_class

    found: dict[tuple, dict] = {}
    for name, what in DATASETS:
        with open(data / name, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                spec = resolve_model(row["model"])
                disagg = bool(row.get("prefill_workers"))
                tp = int(row.get("decode_tp") if disagg else row["tp"])
                key = (row["engine"], get_gpu(row["hardware"]).name, architecture(spec),
                       precision_class(row["precision"]), disagg,
                       row.get("speculative") or "none", name)
                env = found.setdefault(key, {
                    "engine": key[0], "gpu": key[1], "architecture": key[2],
                    "precision": key[3], "disaggregated": disagg, "speculative": key[5],
                    "tp_min": tp, "tp_max": tp, "rows": 0, "source": f"{name}: {what}"})
                env["tp_min"], env["tp_max"] = min(env["tp_min"], tp), max(env["tp_max"], tp)
                env["rows"] += 1
    return [found[k] for k in sorted(found)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the shipped file differs from the data")
    args = parser.parse_args()
    text = json.dumps(envelopes(), indent=1) + "\n"
    if args.check:
        same = OUT.read_text(encoding="utf-8") == text
        print("validated envelopes: up to date" if same else
              f"{OUT} differs from the data: run python calibration/validated_envelopes.py")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(json.loads(text))} envelopes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
