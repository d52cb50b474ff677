"""The fit behind ``frontier_report.py --fit``: in sample and leave one hardware out.

Free constants (log-multipliers on the shipped profile, :mod:`capacitor.calibrate`'s
machinery and priors), chosen to transfer to a GPU the fit has not seen:

* per engine (sglang, trtllm): ``gemm_kernel_s`` (the fixed cost of one GEMM kernel: with
  the fixed attention / small-kernel costs it prices an MLA + MoE layer's kernels;
  one model cannot tell the three apart, so the other two stay at their prior),
  ``mla_per_seq_s`` (per sequence in the batch, MLA models only: a fitted engine-wide
  ``per_seq_s`` would also move every other model's predictions on that engine) and
  ``eager_kernel_s`` (host time per kernel of a step with prefill chunks, run without
  CUDA graphs; MLA models only);
* optionally (environment ``FRONTIER_GLOBAL=weight_bw,gemm_max_low_precision``) global
  multipliers of efficiencies, the same for every GPU family. Off by default: fitted to one
  GPU they trade bandwidth against compute (B200 alone: weight_bw x1.33, FP8/FP4 GEMM
  x0.48) and the other GPU pays (leave one hardware out 18.2 / 19.1% instead of 12.9 /
  10.8% on throughput / TPOT).

No per-family (per-GPU) multiplier is fitted, so the left-out GPU gets exactly what the
others say.
"""

from __future__ import annotations

from pathlib import Path

from capacitor.calibrate import Observation, Param, fit
from capacitor.catalog.hardware import get_gpu
from capacitor.perf.profile import PerfProfile, load_profile

#: Fitted metrics: throughput, median TPOT and median TTFT. TTFT joined the fit with the
#: eager-prefill kernel cost (``eager_kernel_s``), the engine constant it mostly sees; before
#: that its residuals were dominated by what the engine model lacked, and a request-path
#: constant fitted to them on one GPU (x165 on B200) made the other's TTFT worse.
STEP_METRICS = ("output_tokens_per_s", "tpot_median_ms", "ttft_median_ms")
ENGINES = ("sglang", "trtllm")


def params() -> list[Param]:
    out = []
    for eng in ENGINES:
        out += [
            Param("engine", eng, "overhead", "gemm_kernel_s", 0.7),
            Param("engine", eng, "overhead", "mla_per_seq_s", 2.0),
            Param("engine", eng, "overhead", "eager_kernel_s", 1.0),
        ]
    import os

    for key in filter(None, os.environ.get("FRONTIER_GLOBAL", "").split(",")):
        out.append(Param("global", "*", "efficiency", key, 0.3))
    return out


def start_profile() -> PerfProfile:
    """The shipped profile without the values this fit ships (the engine- and family-level
    MLA constants: ``calibrate.MLA_ENGINE_KEYS`` / ``MLA_FAMILY_KEYS``), i.e. with their
    physical priors from the root layer. Every fit starts here, so a leave-one-hardware-out
    fit sees nothing fitted to the hardware it predicts."""
    from capacitor.calibrate import MLA_ENGINE_KEYS, MLA_FAMILY_KEYS

    data = load_profile(None).to_dict()
    keys = {(sec, key) for sec, key, _ in MLA_ENGINE_KEYS + MLA_FAMILY_KEYS}
    layers = list((data.get("engines") or {}).values())
    for fam in (data.get("families") or {}).values():
        layers.append(fam.get("defaults") or {})
        layers += list((fam.get("engines") or {}).values())
    for layer in layers:
        for sec, key in keys:
            (layer.get(sec) or {}).pop(key, None)
    return PerfProfile(data, origin="<shipped profile without its MLA fit>")


def observations(rows, exp_path: Path, meas, metrics=STEP_METRICS) -> list[Observation]:
    import csv

    with open(exp_path, newline="") as f:
        cells = {r["id"]: r for r in csv.DictReader(f)}
    out = []
    for r in rows:
        c = cells[r["id"]]
        o = Observation(cells=c, measured={m: meas[r["id"]][m] for m in metrics
                                           if m in meas[r["id"]]}, base_dir=exp_path.parent)
        o.family = get_gpu(c["hardware"]).family
        o.engine = c["engine"].lower()
        out.append(o)
    return out


def fit_and_report(rows, exp_path: Path, meas, table, max_evaluations: int, out_dir=None):
    import tempfile

    import yaml
    from frontier_report import predict  # noqa: PLC0415

    prior = start_profile()
    obs = observations(rows, exp_path, meas)
    results = {}

    def fitted(hardware_left_out, label):
        res = fit([o for o in obs if o.cells["hardware"] != hardware_left_out], prior,
                  params(), max_nfev=max_evaluations, starts=1)
        mult = ", ".join(f"{k.split(':', 2)[1]}:{k.split('.')[-1]} x{v:.2f}"
                         for k, v in res.multipliers.items())
        print(f"  fit {label}: {res.num_evaluations} evaluations; {mult}")
        return PerfProfile(res.profile, origin=f"<{label}>"), res

    prof_all, res_all = fitted(None, "in sample (all rows)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in_sample.yaml"
        path.write_text(yaml.safe_dump(res_all.profile, sort_keys=False))
        results["in"] = predict(exp_path, str(path))
        table("in sample (fitted to every row)", rows, results["in"], meas)
        loo = {}
        for hw in sorted({r["hardware"] for r in rows}):
            prof, res = fitted(hw, f"without {hw}")
            p = Path(tmp) / f"without_{hw}.yaml"
            p.write_text(yaml.safe_dump(res.profile, sort_keys=False))
            pred = predict(exp_path, str(p))
            loo.update({r["id"]: pred[r["id"]] for r in rows if r["hardware"] == hw})
        table("leave one hardware out (fitted to the other GPU's rows)", rows, loo, meas)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "frontier_in_sample.yaml").write_text(
                yaml.safe_dump(res_all.profile, sort_keys=False))
    return res_all
