"""Check the step-time model against the Splitwise static-batch profiles, and refit it to them.

    python calibration/splitwise_check.py              # shipped profile, then the refits
    python calibration/splitwise_check.py --no-fit     # shipped profile only (seconds)

``../shared/data/published/splitwise_static_batches.csv`` (Splitwise, ISCA'24) times static
batches of Llama-2-70B at TP 2 / 4 / 8 on A100 and H100 nodes: ``prompt_time_ms`` (the
prefill of the whole batch), ``token_time_ms`` (the mean decode iteration) and
``e2e_time_ms``, for batch sizes 1-64, prompts of 512-8192 tokens and outputs of 128-8192.
Each configuration (repeats averaged; the TP2 batch-64 rows excluded as the data README
says, and those longer than Llama-2's 4,096-token context, which vLLM refuses) becomes one
``validate`` row: an offline batch of ``batch_size`` requests that one
replica admits at once (``max_num_seqs`` = batch, a token budget that holds every prompt,
no prefix cache, no asynchronous scheduling), measured as TTFT mean = prompt time, ITL
mean = token time, E2E mean = e2e time.

The serving engine is not named. Its token time barely moves from TP4 to TP8 (H100: 29-31
ms at batch 1 either way, where the weight stream halves), so most of it is a fixed cost
per step, likely on the host, not bytes or FLOPs: the shipped vLLM profile (CUDA graphs) is checked
against it to show that gap, and :func:`capacitor.calibrate.fit` then refits the profile's
constants to these rows, on both GPUs and leaving one GPU out, as a user would fit their own
engine with ``capacitor calibrate``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from capacitor.calibrate import fit, load_observations, predict
from capacitor.perf.profile import PerfProfile, load_profile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "published" / "splitwise_static_batches.csv"
PRIOR = ROOT / "src" / "capacitor" / "perf" / "data" / "prior_profile.yaml"
MODELS = {"llama2-70b": "meta-llama/Llama-2-70b-hf"}  # BLOOM-176B is not in the catalogue
GPUS = {"a100-80gb": "A100-80GB", "h100-80gb": "H100"}  # the power-capped H100 is left out
#: Llama-2's context (max_position_embeddings): vLLM refuses longer requests, so the
#: configurations whose prompt + output exceed it (outputs of 4,096 and 8,192) are left out.
MAX_MODEL_LEN = 4096
METRICS = {"ttft_mean_ms": "prompt_time_ms", "itl_mean_ms": "token_time_ms",
           "e2e_mean_ms": "e2e_time_ms"}


def write_rows(out_dir: Path) -> tuple[Path, Path]:
    """The validate experiments and measured CSVs of the usable configurations."""
    groups: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    with DATA.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if r["model"] not in MODELS or r["hardware"] not in GPUS:
                continue
            tp, batch = int(r["tensor_parallel"]), int(r["batch_size"])
            if tp == 2 and batch == 64:  # prefill below batch 32's: broken (data README)
                continue
            if int(r["prompt_size_tokens"]) + int(r["token_size_tokens"]) > MAX_MODEL_LEN:
                continue
            groups[(r["model"], r["hardware"], tp, int(r["prompt_size_tokens"]), batch,
                    int(r["token_size_tokens"]))].append(r)
    exp_path, meas_path = out_dir / "splitwise_experiments.csv", out_dir / "splitwise_measured.csv"
    with exp_path.open("w", newline="") as fe, meas_path.open("w", newline="") as fm:
        exp = csv.writer(fe)
        meas = csv.writer(fm)
        exp.writerow(["id", "model", "hardware", "tp", "precision", "engine", "workload",
                      "num_requests", "isl", "osl", "max_num_seqs", "max_num_batched_tokens",
                      "enable_prefix_caching", "async_scheduling"])
        meas.writerow(["id", *METRICS])
        for (model, hw, tp, isl, batch, osl), rows in sorted(groups.items()):
            row_id = f"sw-{hw}-tp{tp}-p{isl}-b{batch}-o{osl}"
            exp.writerow([row_id, MODELS[model], GPUS[hw], tp, "FP16", "vllm", "offline", batch,
                          isl, osl, batch, max(batch * isl, 2048), "false", "false"])
            meas.writerow([row_id, *(f"{np.mean([float(r[c]) for r in rows]):.4f}"
                                     for c in METRICS.values())])
    return exp_path, meas_path


def table(observations, predictions: dict[str, dict[str, float]], title: str) -> list[str]:
    """Median absolute and median signed percentage error per GPU, TP and metric."""
    lines = ["", title, "", "| GPU | TP | rows | " + " | ".join(
        f"{m} median abs / signed %" for m in METRICS) + " |",
        "|---|---:|---:|" + "---:|" * len(METRICS)]
    ran = [o for o in observations
           if all(math.isfinite(predictions.get(o.id, {}).get(m, math.nan)) for m in METRICS)]
    keys = sorted({(o.cells["hardware"], int(o.cells["tp"])) for o in observations})
    for hw, tp in keys + [("all", 0)]:
        sel = [o for o in ran
               if hw == "all" or (o.cells["hardware"] == hw and int(o.cells["tp"]) == tp)]
        cells = []
        for m in METRICS:
            errs = [100 * (predictions[o.id][m] / o.measured[m] - 1) for o in sel]
            cells.append(f"{np.median(np.abs(errs)):.1f} / {np.median(errs):+.1f}"
                         if errs else "—")
        lines.append(f"| {hw} | {tp or 'all'} | {len(sel)} | " + " | ".join(cells) + " |")
    if len(ran) < len(observations):
        lines.append(f"({len(observations) - len(ran)} configurations could not be simulated)")
    return lines


def report(refit: bool = True, max_nfev: int = 15) -> list[str]:
    """The check's tables: the shipped profile, then (``refit``) the refits in sample and
    leaving one GPU out, each refit with at most ``max_nfev`` trust-region steps."""
    with tempfile.TemporaryDirectory() as tmp:
        observations = load_observations([write_rows(Path(tmp))])
    lines = [f"{len(observations)} configurations of Llama-2-70B on A100 and H100"]
    lines += table(observations, predict(observations, load_profile(None)),
                   "Shipped profile (vLLM constants, not fitted to these rows)")
    if not refit:
        return lines
    prior = load_profile(PRIOR)
    result = fit(observations, prior, max_nfev=max_nfev)
    lines += table(observations, result.predictions, "Refitted to all rows (in sample)")
    lines += [""] + [f"    {name:48s} x{mult:.3f}" for name, mult in result.multipliers.items()]
    held: dict[str, dict[str, float]] = {}
    for gpu in sorted({o.cells["hardware"] for o in observations}):
        train = [o for o in observations if o.cells["hardware"] != gpu]
        test = [o for o in observations if o.cells["hardware"] == gpu]
        print(f"  Splitwise: refitting without {gpu} ...", file=sys.stderr, flush=True)
        profile = PerfProfile(fit(train, prior, max_nfev=max_nfev).profile,
                              origin=f"<fit without {gpu}>")
        held.update(predict(test, profile))
    lines += table(observations, held,
                   "Leave one GPU out (each GPU predicted by a fit to the other)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-fit", action="store_true", help="check the shipped profile only")
    parser.add_argument("--max-evaluations", type=int, default=15,
                        help="trust-region steps of each refit (default 15)")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        print(f"Splitwise data not found at {DATA}", file=sys.stderr)
        return 2
    print("\n".join(report(not args.no_fit, args.max_evaluations)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
