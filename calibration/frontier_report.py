"""Frontier report: DeepSeek-R1 on H200 / B200 (InferenceMAX, aggregated; MTP on its own).

    python calibration/frontier_report.py [--fit] [--max-evaluations N] [--out DIR]
    python calibration/frontier_report.py --disaggregated-only

Prints the median absolute percentage error (and the median signed error) of output
tokens/s, median TPOT and median TTFT per hardware x engine x precision:

* ``shipped``: the shipped profile, nothing fitted here;
* with ``--fit``: ``in-sample`` (the frontier constants fitted to every row) and
  ``leave-one-hardware-out`` (fitted to the other hardware's rows, predicting this one's).

Rows: ``../shared/data/published/inferencemax_dsr1/experiments.csv``, aggregated
deployments (no ``prefill_workers``) with ``speculative = none``; of a configuration
(hardware, framework, precision, tp, ep, dp_attention, concurrency, isl, osl) measured on
several dates, only the latest (the current software) is kept. The public aggregated rows
cover H200 and B200 only (H100 and GB200 appear only in disaggregated deployments), so
leave one hardware out is H200 -> B200 and B200 -> H200.

The aggregated MTP rows (``speculative = mtp``, latest date each) are a group of their own,
printed twice: as run (MTP speculative decoding, :mod:`capacitor.perf.speculative`, at its
documented default acceptance, nothing fitted on them) and with MTP ignored (``speculative``
set to none: what the model predicted before it modelled MTP). The fit uses the non-MTP rows
only.

A second table covers the disaggregated (Dynamo) rows, latest date per configuration,
non-MTP, with :func:`disagg_flags`; nothing is fitted to them. At the commit that added it
(98 of 102 run; decode_tp 48 / 24 over 256 experts is refused): 20.2 / 24.7 / 90.4 median
APE (H200 9.1 / 4.3, B200 12.5 / 18.9, H100 102 / 24, GB200 47.9 / 68.1: its wide-EP
decode workers, decode_tp 32 with DP attention, step about 8x too slowly, e.g. 175 ms for
2048 sequences against a measured 21 ms TPOT; TTFT too low everywhere). The disaggregated
MTP rows follow as a table of their own (:func:`disagg_rows` with ``speculative="mtp"``).

Each row gets the server flags the InferenceMAX launch scripts set
(SemiAnalysisAI/InferenceX ``benchmarks/dsr1_*``; :func:`server_flags`) as validate
columns. The fit (``frontier_fit.py``) moves only constants that transfer across GPUs (per
engine, MLA models only: the fixed cost of one GEMM kernel and a per-sequence cost), never
a per-hardware multiplier; throughput and median TPOT are fitted, TTFT is reported only.
Timing is printed at the end: 5-8 minutes on two shared cores without ``--fit`` (the
aggregated, MTP, MTP-ignored and disaggregated tables; the MTP and disaggregated rows take
the general kernel path), several more with it (the first run after clearing numba's cache
also compiles the kernel).

Results at the commit that added the fit (median APE %, throughput / median TPOT / median
TTFT, the 126 latest-date configurations):

* the 62d3ea7 model on the same rows and flags: 47.0 / 32.0 / 77.8;
* shipped profile (= the in-sample fit): 9.4 / 8.3 / 69.3 (H200 6.5 / 7.0, B200 12.7 / 12.2);
* with the B200 launch scripts' ``--scheduler-recv-interval`` modelled (a later commit):
  TTFT 69.3 -> 48.5 (B200 SGLang 85 -> 52), throughput and TPOT unchanged;
* leave one hardware out: 13.0 / 10.7 / 68.8 (H200 predicted from B200: 6.6 / 5.5; B200
  from H200: 14.0 / 13.1, its TensorRT-LLM FP4 rows 20.5 / 26.1: H200 has no FP4 rows).

With the eager-launch cost of prefill steps (``overhead.eager_kernel_s``) and the MLA
constants refitted with median TTFT in the objective (the shipped profile since): in sample
11.3 / 11.6 / 19.8, leave one hardware out 11.5 / 11.2 / 30.2 (B200 from H200 13.4 / 11.4 /
27.4, H200 from B200 8.8 / 9.5 / 43.2); MTP rows 24.8 / 20.3 / 18.2; disaggregated rows (102,
the wide-EP ones now included) 18.4 / 17.7 / 71.7 (68.0 at the commit below, median signed
TTFT -36%).

With a transferred request's first decode-pool step costed as a decode (not a prefill
chunk) and its first token streamed with the second at that step's end: disaggregated
18.4 / 17.9 / 65.7 (signed TTFT -32%; B200 19.0 / 16.0 / 80.0, GB200 18.8 / 19.9 / 70.5,
H100 104 / 27.1 / 96.0, H200 9.4 / 10.0 / 44.2). What remains is not in the hand-off: at
concurrency <= 16 the 8k-prompt FP8 rows' TTFT is 135-210 ms above the model (FP4 rows,
with the same KV bytes to move, 0-40 ms: prefill compute, not transfer); several H100 /
GB200 TensorRT-LLM rows at concurrency 3-11 wait about one whole request before their
first token (measured decoding streams about half the clients: decode seats below the
concurrency in the Dynamo recipes, which the data does not carry); and rows with an
attention-DP TensorRT-LLM prefill pool are predicted prefill-bound (TTFT +200% to
+2000%) where the measurement is not (each attention-DP rank has its own token budget;
the model gives the replica one).

The 68 MTP rows at the commit that modelled MTP: MTP ignored 27.7 / 39.0 / 66.0 (throughput
under-predicted, median signed -26%); MTP modelled at the documented default acceptance 0.85
29.7 / 25.9 / 56.3 (over-predicted, +30%). ``calibration/mtp_acceptance.py`` fits the
acceptance rate leave one hardware out (0.60-0.65; H200 14.9 / 15.0, B200 18.6 / 22.0).

With the MTP launch scripts' flags (:func:`_sglang_mtp_flags`, :func:`_trtllm_mtp_flags`),
draft passes that no longer pay the scheduler's overheads again and the default acceptance
0.69 (InferenceX's measured acceptance length ~2.50 on chat-templated random prompts): MTP
rows 24.8 / 20.3 / 18.2 -> 15.3 / 15.7 / 20.9 (H200 16.0 / 15.7 / 14.1, B200 15.2 / 15.0 /
28.0; B200 SGLang FP8 still 47 / 27 / 36), nothing fitted; the 75 disaggregated MTP rows (a
table of their own) 37.7 / 29.2 / 53.4 -> 30.6 / 30.6 / 53.5.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = (HERE / "../../shared/data/published/inferencemax_dsr1").resolve()
METRICS = ("output_tokens_per_s", "tpot_median_ms", "ttft_median_ms")
CONFIG_KEY = ("hardware", "framework", "precision", "tp", "ep", "dp_attention",
              "concurrency", "isl", "osl")
ENGINE_OF = {"sglang": "sglang", "trt": "trtllm"}


def server_flags(row: dict[str, str]) -> dict[str, str]:
    """Validate columns for the server flags of the row's InferenceMAX launch script.

    SGLang (``sglang.launch_server``), SemiAnalysisAI/InferenceX benchmarks/:
    * dsr1_fp8_b200.sh: TP8 ``--mem-fraction-static 0.82 --chunked-prefill-size 32768
      --max-running-requests 128``; TP4 0.95 / 8192 / 32; ``--kv-cache-dtype fp8_e4m3``.
    * dsr1_fp4_b200.sh: ``--mem-fraction-static 0.85 --chunked-prefill-size 16384
      --max-running-requests 256 --kv-cache-dtype fp8_e4m3``.
    * dsr1_fp8_h200.sh: ``--mem-fraction-static 0.82 --chunked-prefill-size 32768
      --max-running-requests 512`` (1k/1k; 256 otherwise); KV cache default (bf16).
    All three: ``--disable-radix-cache``; the overlap scheduler is SGLang's default. The
    two B200 scripts also set ``--scheduler-recv-interval`` 10, or 30 from concurrency 16
    (FP8 TP4: 10 always); the H200 script does not (1, SGLang's default).
    TensorRT-LLM (``trtllm-serve --backend pytorch``): dsr1_fp4_b200_trt.sh,
    dsr1_fp8_b200_trt.sh, dsr1_fp8_h200_trt.sh: ``kv_cache_config: dtype fp8,
    enable_block_reuse false, free_gpu_memory_fraction`` 0.8 (B200; 0.7 at CONC >= 256 and
    0.75 for FP8 8k/1k TP4) / 0.75 (H200); ``--max_num_tokens`` = max(8192, ceil((CONC + ISL
    + 64) / 64) x 64); the PyTorch backend's overlap scheduler is on by default
    (TensorRT-LLM docs/source/features/overlap-scheduler.md). With attention DP they add
    ``attention_dp_config: {enable_balance: true, batching_wait_iters: 0, timeout_iters:
    60}``.
    """
    hw, fw, prec = row["hardware"], row["framework"], row["precision"].upper()
    tp, conc = int(row["tp"]), int(row["concurrency"])
    isl, osl = int(row["isl"]), int(row["osl"])
    out = {"enable_prefix_caching": "false", "block_size": "1" if fw == "sglang" else "32"}
    if fw == "sglang":
        if hw == "B200" and prec == "FP8":
            mem, chunk, seqs = (0.82, 32768, 128) if tp == 8 else (0.95, 8192, 32)
            out["kv_cache_dtype"] = "fp8"
            out["scheduler_recv_interval"] = "30" if tp == 8 and conc >= 16 else "10"
        elif hw == "B200":
            mem, chunk, seqs = 0.85, 16384, 256
            out["kv_cache_dtype"] = "fp8"
            out["scheduler_recv_interval"] = "30" if conc >= 16 else "10"
        else:
            mem, chunk, seqs = 0.82, 32768, 512 if (isl, osl) == (1024, 1024) else 256
        out.update(gpu_memory_utilization=str(mem), max_num_batched_tokens=str(chunk),
                   max_num_seqs=str(max(seqs, conc)), async_scheduling="true")
        if row.get("speculative") == "mtp":
            out.update(_sglang_mtp_flags())
    else:
        frac = 0.75 if hw == "H200" else 0.8
        if hw == "B200" and conc >= 256:
            frac = 0.7
        if hw == "B200" and prec == "FP8" and (isl, osl) == (8192, 1024) and tp == 4:
            frac = 0.75
        tokens = max(8192, math.ceil((conc + isl + 64) / 64) * 64)
        out.update(kv_cache_dtype="fp8", gpu_memory_utilization=str(frac),
                   max_num_batched_tokens=str(tokens), async_scheduling="true")
        if row.get("speculative") == "mtp":
            out.update(_trtllm_mtp_flags(row))
        if row["dp_attention"] == "true":  # attention_dp_config in the same scripts
            out["attention_dp_timeout_iters"] = "60"
    return out


def _sglang_mtp_flags() -> dict[str, str]:
    """SGLang's MTP launch scripts (SemiAnalysisAI/InferenceX ``dsr1_fp8_b200_mtp.sh``,
    ``dsr1_fp4_b200_mtp.sh``, later ``benchmarks/single_node/``): ``--speculative-algorithm
    EAGLE --speculative-num-steps 2 --speculative-eagle-topk 1 --speculative-num-draft-tokens
    3``: a chain of 2 drafts. The scripts write ``SGLANG_ENABLE_SPEC_V2=1`` as a shell
    variable without ``export``, so the server runs speculative decoding v1, with which SGLang
    turns its overlap scheduler off ("Overlap scheduler is disabled when spec v2 is off",
    sglang ``server_args.py``): synchronous scheduling."""
    return {"num_speculative_tokens": "2", "async_scheduling": "false"}


def _trtllm_mtp_flags(row: dict[str, str]) -> dict[str, str]:
    """TensorRT-LLM's MTP launch scripts (SemiAnalysisAI/InferenceX ``dsr1_fp4_b200_trt_mtp.sh``,
    ``dsr1_fp8_b200_trt_mtp.sh``, ``dsr1_fp8_h200_trt_mtp.sh``): ``num_nextn_predict_layers``
    3, or 1 with attention DP; ``max_batch_size`` = CONC, or CONC / TP per attention-DP rank;
    ``max_num_tokens`` = ``((MTP + 1) x max_batch_size + ISL + 64)`` rounded up to 64 (no
    8192 floor, unlike the non-MTP scripts), per rank; ``free_gpu_memory_fraction`` 0.8
    (B200) / 0.75 (H200) at every concurrency. The replica is one scheduler over the ranks
    (:class:`capacitor.engine.replica.ReplicaSpec`), so it gets the ranks' sums."""
    tp, conc, isl = int(row["tp"]), int(row["concurrency"]), int(row["isl"])
    dp = row.get("dp_attention", "").lower() == "true"
    drafts = 1 if dp else 3
    ranks = tp if dp else 1
    per_rank = max(1, conc // ranks)
    tokens = math.ceil(((drafts + 1) * per_rank + isl + 64) / 64) * 64
    return {"num_speculative_tokens": str(drafts),
            "max_num_seqs": str(per_rank * ranks),
            "max_num_batched_tokens": str(tokens * ranks),
            "gpu_memory_utilization": "0.75" if row["hardware"] == "H200" else "0.8"}


def primary_rows(all_dates: bool = False, speculative: str = "none") -> list[dict[str, str]]:
    """Aggregated rows with this ``speculative`` (none: the primary non-MTP rows); the
    latest date of each configuration (every date with ``all_dates``)."""
    with open(DATA / "experiments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    latest: dict[tuple, dict[str, str]] = {}
    for r in rows:
        if r["prefill_workers"] or r["speculative"] != speculative:
            continue
        if all_dates:
            latest[(r["id"],)] = r
            continue
        key = tuple(r[k] for k in CONFIG_KEY)
        if key not in latest or r["date"] > latest[key]["date"]:
            latest[key] = r
    return sorted(latest.values(), key=lambda r: r["id"])


DISAGG_KEY = CONFIG_KEY + ("prefill_workers", "prefill_tp", "prefill_ep",
                           "prefill_dp_attention", "decode_workers", "decode_tp", "decode_ep",
                           "decode_dp_attention")


def disagg_rows(speculative: str = "none") -> list[dict[str, str]]:
    """Disaggregated (Dynamo) rows with this ``speculative`` (none: the non-MTP rows), the
    latest date of each configuration."""
    with open(DATA / "experiments.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if r["prefill_workers"] and r["speculative"] == speculative]
    latest: dict[tuple, dict[str, str]] = {}
    for r in rows:
        key = tuple(r[k] for k in DISAGG_KEY)
        if key not in latest or r["date"] > latest[key]["date"]:
            latest[key] = r
    return sorted(latest.values(), key=lambda r: r["id"])


def disagg_flags(row: dict[str, str]) -> dict[str, str]:
    """Validate columns for a disaggregated row's workers (both pools). ASSUMPTION: the
    aggregated scripts' cache settings (no prefix cache; KV cache FP8 except SGLang on
    Hopper; SGLang page size 1, TensorRT-LLM 32; overlap scheduling), the engines' default
    token budgets, and room for every client on each decode worker (``max_num_seqs`` =
    concurrency): the Dynamo recipes' per-worker flags are not in the data."""
    fw = row["framework"].removeprefix("dynamo-")
    out = {"enable_prefix_caching": "false", "block_size": "1" if fw == "sglang" else "32",
           "async_scheduling": "true", "max_num_seqs": row["concurrency"]}
    if fw != "sglang" or row["hardware"] in ("B200", "GB200"):
        out["kv_cache_dtype"] = "fp8"
    if row.get("speculative") == "mtp" and fw == "sglang":
        # the Dynamo SGLang MTP recipes (InferenceX benchmarks/multi_node/srt-slurm-recipes/
        # sglang/dsr1/*/mtp/*.yaml): speculative-num-steps 2, eagle-topk 1, 3 draft tokens,
        # with SGLANG_ENABLE_SPEC_V2 (overlap kept)
        out["num_speculative_tokens"] = "2"
    return out


def write_experiments(rows: list[dict[str, str]], path: Path) -> None:
    out = [dict(r, **(disagg_flags(r) if r["prefill_workers"] else server_flags(r)))
           for r in rows]
    cols = list(out[0].keys())
    for r in out:
        cols += [k for k in r if k not in cols]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(out)


def measured() -> dict[str, dict[str, float]]:
    with open(DATA / "measured.csv", newline="") as f:
        return {r["id"]: {m: float(r[m]) for m in METRICS if r.get(m)} for r in csv.DictReader(f)}


def signed_errors(pred: dict[str, dict], meas: dict[str, dict], ids) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for i in ids:
        p = pred.get(i)
        if not p or p.get("error"):
            continue
        for m in METRICS:
            if m in meas[i] and p.get(m) not in (None, ""):
                out[m].append(100.0 * (float(p[m]) - meas[i][m]) / meas[i][m])
    return out


def table(title: str, rows, pred, meas) -> None:
    groups: dict[tuple, list[str]] = defaultdict(list)
    for r in rows:
        groups[(r["hardware"], r["framework"].removeprefix("dynamo-"),
                r["precision"])].append(r["id"])
        groups[(r["hardware"], "all", "")].append(r["id"])
        groups[("all", "", "")].append(r["id"])
    print(f"\n{title}: median APE % (median signed %)")
    head = " ".join(f"{m:>22s}" for m in METRICS)
    print(f"  {'hardware engine precision':28s} {'n':>4s} {head}")
    for g in sorted(groups, key=lambda g: (g[0] == "all", g)):
        errs = signed_errors(pred, meas, groups[g])
        n = len(errs.get(METRICS[0], []))
        cells = []
        for m in METRICS:
            v = errs.get(m, [])
            med_abs = statistics.median(abs(x) for x in v) if v else 0.0
            cells.append(f"{med_abs:7.1f} ({statistics.median(v):+6.1f})" if v else "-")
        failed = sum(1 for i in groups[g] if pred.get(i, {}).get("error"))
        extra = f"  ({failed} rows failed)" if failed else ""
        line = " ".join(f"{c:>22s}" for c in cells)
        print(f"  {' '.join(x for x in g if x):28s} {n:4d} {line}{extra}")


def predict(path: Path, profile: str | None = None) -> dict[str, dict]:
    from capacitor.validate import run_validate

    with tempfile.TemporaryDirectory() as tmp:
        rep = run_validate(path, Path(tmp) / "p.csv", profile_path=profile)
    return {str(p["id"]): p for p in rep.predictions}


def _disagg_table(profile: str | None, meas: dict[str, dict[str, float]]) -> None:
    """The disaggregated rows' tables: the latest non-MTP configurations, then the MTP ones."""
    drows = disagg_rows()
    dmtp = disagg_rows(speculative="mtp")
    with tempfile.TemporaryDirectory() as tmp:
        exp_d = Path(tmp) / "experiments_disaggregated.csv"
        write_experiments(drows, exp_d)
        table(f"disaggregated prefill/decode (Dynamo), {len(drows)} latest non-MTP "
              "configurations, shipped profile (nothing fitted to them)",
              drows, predict(exp_d, profile), meas)
        exp_dm = Path(tmp) / "experiments_disaggregated_mtp.csv"
        write_experiments(dmtp, exp_dm)
        table(f"disaggregated MTP rows ({len(dmtp)} latest configurations), MTP modelled",
              dmtp, predict(exp_dm, profile), meas)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", action="store_true",
                    help="also fit: in sample and leave one hardware out")
    ap.add_argument("--max-evaluations", type=int, default=8)
    ap.add_argument("--all-dates", action="store_true",
                    help="also print the shipped profile's table over every date of every "
                         "configuration (earlier engine versions)")
    ap.add_argument("--profile", default=None, help="profile YAML (default: the shipped one)")
    ap.add_argument("--out", default=None, help="directory for the in-sample fitted profile")
    ap.add_argument("--disaggregated-only", action="store_true",
                    help="print only the disaggregated table (under a minute once compiled)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    rows = primary_rows()
    meas = measured()
    if args.disaggregated_only:
        _disagg_table(args.profile, meas)
        print(f"\ntook {time.perf_counter() - start:.0f} s")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / "experiments.csv"
        write_experiments(rows, exp)
        print(f"{len(rows)} configurations (latest date each) of {DATA / 'experiments.csv'}")
        pred = predict(exp, args.profile)
        table("shipped profile" if args.profile is None else args.profile, rows, pred, meas)
        if args.all_dates:
            every = primary_rows(all_dates=True)
            exp_all = Path(tmp) / "experiments_all_dates.csv"
            write_experiments(every, exp_all)
            table(f"shipped profile, all {len(every)} aggregated non-MTP rows (every date)",
                  every, predict(exp_all, args.profile), meas)
        mtp = primary_rows(speculative="mtp")
        if mtp:
            exp_mtp = Path(tmp) / "experiments_mtp.csv"
            write_experiments(mtp, exp_mtp)
            table(f"MTP rows ({len(mtp)} aggregated, latest date each), MTP modelled",
                  mtp, predict(exp_mtp, args.profile), meas)
            ignored = [dict(r, speculative="none") for r in mtp]
            exp_ign = Path(tmp) / "experiments_mtp_ignored.csv"
            write_experiments(ignored, exp_ign)
            table("the same MTP rows, MTP ignored (speculative=none)", ignored,
                  predict(exp_ign, args.profile), meas)
        _disagg_table(args.profile, meas)
        if args.fit:
            from frontier_fit import fit_and_report  # noqa: PLC0415

            fit_and_report(rows, exp, meas, table, args.max_evaluations, args.out)
    print(f"\ntook {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
