"""The fit behind ``frontier_report.py --fit``: in sample and leave one hardware out.

Free constants (log-multipliers on the shipped profile, :mod:`capacitor.calibrate`'s
machinery and priors), chosen to transfer to a GPU the fit has not seen:

* per engine (sglang, trtllm): ``gemm_kernel_s`` (the fixed cost of one GEMM kernel: with
  the fixed attention / small-kernel costs it prices an MLA + MoE layer's kernels;
  one model cannot tell the three apart, so the other two stay at their prior),
  ``per_seq_s`` (per sequence in the batch) and ``ingress_s`` (request path: TTFT);
* global (every GPU family alike): ``gemm_max_low_precision`` (FP8 / FP4 GEMM efficiency:
  prefill and large-batch decode) and ``weight_bw``.

No per-family (per-GPU) multiplier is fitted, so the left-out GPU gets exactly what the
others say. Fitted metrics: output tokens/s, median TPOT, median TTFT.
"""

from __future__ import annotations

from pathlib import Path

from capacitor.calibrate import Observation, Param, fit
from capacitor.catalog.hardware import get_gpu
from capacitor.perf.profile import PerfProfile, load_profile

#: Stage 1 fits the step-time constants to throughput and TPOT; stage 2 the request path
#: alone to TTFT, with stage 1's constants held. (Fitted together, TTFT's large residuals
#: -- SGLang's scheduler polling interval and its prefill batches that pause decoding, which
#: the engine model lacks -- pull the step-time constants far from their priors and worsen
#: throughput and TPOT in sample.)
STEP_METRICS = ("output_tokens_per_s", "tpot_median_ms")
PATH_METRICS = ("ttft_median_ms",)
ENGINES = ("sglang", "trtllm")


def params() -> list[Param]:
    out = []
    for eng in ENGINES:
        out += [
            Param("engine", eng, "overhead", "gemm_kernel_s", 0.7),
            Param("engine", eng, "overhead", "per_seq_s", 2.0),
        ]
    out += [
        Param("global", "*", "efficiency", "gemm_max_low_precision", 0.3),
        Param("global", "*", "efficiency", "weight_bw", 0.3),
    ]
    return out


def path_params() -> list[Param]:
    return [Param("engine", eng, "request_path", "ingress_s", 2.0) for eng in ENGINES]


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
    from frontier_report import predict  # noqa: PLC0415
    import tempfile
    import yaml

    prior = load_profile(None)
    obs = observations(rows, exp_path, meas)
    obs_path = observations(rows, exp_path, meas, PATH_METRICS)
    results = {}

    def fitted(hardware_left_out, label):
        step = fit([o for o in obs if o.cells["hardware"] != hardware_left_out], prior,
                   params(), max_nfev=max_evaluations, starts=1)
        stage1 = PerfProfile(step.profile, origin=f"<{label}: step>")
        res = fit([o for o in obs_path if o.cells["hardware"] != hardware_left_out], stage1,
                  path_params(), max_nfev=max_evaluations, starts=1)
        res.multipliers = {**step.multipliers, **res.multipliers}
        mult = ", ".join(f"{k.split(':', 2)[1]}:{k.split('.')[-1]} x{v:.2f}"
                         for k, v in res.multipliers.items())
        print(f"  fit {label}: {step.num_evaluations}+{res.num_evaluations} evaluations; {mult}")
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
