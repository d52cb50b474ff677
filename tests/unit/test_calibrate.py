"""capacitor calibrate: the fit recovers known constants from synthetic measurements.

The oracle is independent of the shipped constants: a *truth* profile is made by scaling
the physical prior (``prior_profile.yaml``, not the regenerated fit) by known factors;
"measurements" are the model's predictions under the truth; the fit starts from that prior
and must find the factors again.
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from capacitor.calibrate import (
    FD_STEP,
    FitResult,
    Observation,
    Param,
    fit,
    forward_jacobian,
    free_params,
    load_observations,
    plausibility_warnings,
    profile_dict,
    run_calibrate,
)
from capacitor.errors import CalibrationError
from capacitor.perf.profile import PerfProfile, load_profile
from capacitor.validate import Row, predict_row

TRUTH = {  # (scope, group, section, key) -> factor applied to the shipped value
    ("global", "*", "efficiency", "weight_bw"): 0.80,
    ("engine", "vllm", "overhead", "step_fixed_s"): 3.0,
    ("engine", "vllm", "request_path", "ingress_s"): 4.0,
}
METRICS = ("ttft_mean_ms", "itl_mean_ms", "e2e_mean_ms", "output_tokens_per_s")


MODELS = (
    ("meta-llama/Llama-3.1-8B-Instruct", "1"),
    ("mistralai/Mistral-Nemo-Instruct-2407", "1"),
    ("meta-llama/Llama-3.1-70B-Instruct", "4"),
)


def _rows(hardware: str) -> list[dict[str, str]]:
    """Closed-loop runs of a small and a large model (different weight bytes per GPU make
    the per-step overhead and the weight-streaming efficiency separately identifiable)."""
    rows = []
    for i, (conc, isl, osl) in enumerate(
        [
            (1, 256, 64),
            (4, 512, 128),
            (16, 1024, 128),
            (32, 256, 256),
            (8, 2048, 64),
            (64, 512, 128),
            (2, 4096, 32),
            (24, 1024, 256),
            (12, 128, 512),
            (48, 768, 96),
            (1, 1024, 128),
            (6, 256, 64),
        ]
    ):
        model, tp = MODELS[i % 3]
        rows.append(
            {
                "id": f"r{i}",
                "model": model,
                "hardware": hardware,
                "tp": tp,
                "precision": "FP16",
                "engine": "vllm",
                "max_num_seqs": "64",
                "max_num_batched_tokens": "2048",
                "workload": "closed_loop",
                "concurrency": str(conc),
                "isl": str(isl),
                "osl": str(osl),
                "num_requests": str(4 * conc + 8),
                "seed": "7",
            }
        )
    return rows


def _truth_profile(prior: PerfProfile, params: list[Param]) -> PerfProfile:
    theta = [math.log(TRUTH.get((p.scope, p.group, p.section, p.key), 1.0)) for p in params]
    return PerfProfile(profile_dict(prior, params, theta), origin="<truth>")


def _write(tmp_path, rows, profile):
    exp = tmp_path / "exp.csv"
    with exp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meas = tmp_path / "meas.csv"
    with meas.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *METRICS])
        for row in rows:
            pred = predict_row(Row(row, "."), profile)
            w.writerow([row["id"], *(repr(pred[m]) for m in METRICS)])
    return exp, meas


PRIOR = Path(__file__).resolve().parents[2] / "src/capacitor/perf/data/prior_profile.yaml"
#: the file ``load_profile(None)`` parses (where the installed package has it)
SHIPPED = Path(str(resources.files("capacitor.perf").joinpath("data", "default_profile.yaml")))


def test_fit_recovers_known_constants_on_a_different_gpu(tmp_path):
    prior = load_profile(PRIOR)
    rows = _rows("A100-80GB")  # not the GPU family of the public vLLM runs
    skeleton = [
        Observation(
            cells=r,
            measured={"e2e_mean_ms": 1.0},
            base_dir=tmp_path,
            family="ampere",
            engine="vllm",
        )
        for r in rows
    ]
    params = free_params(skeleton)
    exp, meas = _write(tmp_path, rows, _truth_profile(prior, params))
    observations = load_observations([(exp, meas)])
    assert len(observations) == len(rows)
    result = fit(observations, prior, max_nfev=80)
    for (scope, group, section, key), factor in TRUTH.items():
        name = f"{scope}:{group}:{section}.{key}"
        assert result.multipliers[name] == pytest.approx(factor, rel=0.15), name
    # the fitted profile reproduces the synthetic measurements
    for obs in observations:
        for metric, value in obs.measured.items():
            assert result.predictions[obs.id][metric] == pytest.approx(value, rel=0.03)


def test_throughput_rows_leave_the_request_path_and_step_cost_at_their_prior(tmp_path):
    rows = _rows("H100")

    def names(measured):
        obs = [Observation(r, measured, tmp_path, family="hopper", engine="vllm") for r in rows]
        return {p.key for p in free_params(obs)}

    throughput = names({"output_tokens_per_s": 1.0})
    latency = names({"e2e_mean_ms": 1.0})
    assert {"ingress_s", "egress_s", "step_fixed_s", "per_layer_s"} & throughput == set()
    assert {"ingress_s", "egress_s", "step_fixed_s", "per_seq_s", "per_layer_s"} <= latency
    assert "per_seq_s" in throughput and "weight_bw" in throughput


def test_rows_simulated_on_threads_predict_what_one_thread_does(tmp_path):
    from capacitor.calibrate import Predictor

    prior = load_profile(PRIOR)
    rows = _rows("H100")[:6]
    obs = [Observation(r, {"e2e_mean_ms": 1.0}, tmp_path, family="hopper", engine="vllm")
           for r in rows]
    one = Predictor(obs, workers=1).predict(prior)
    three = Predictor(obs, workers=3)
    assert three.predict(prior) == one
    assert all(p is not None and p["e2e_mean_ms"] > 0 for p in one)
    assert three.predict(prior) == one and three.num_simulations == len(rows)  # memoised


def test_too_few_rows_is_refused_with_a_clear_message(tmp_path):
    prior = load_profile(None)
    rows = _rows("H100")[:3]
    exp, meas = _write(tmp_path, rows, prior)
    with pytest.raises(CalibrationError, match="cannot fit .* free constants"):
        run_calibrate([(exp, meas)], tmp_path / "out.yaml", leave_out="none")
    assert not (tmp_path / "out.yaml").exists()


def test_calibrate_writes_a_loadable_profile_and_keeps_the_shipped_one(tmp_path):
    prior = load_profile(None)
    # the file on disk, not load_profile(None): that one is parsed once and cached
    shipped_bytes = SHIPPED.read_bytes()
    rows = _rows("H100")
    exp, meas = _write(tmp_path, rows, prior)
    out = tmp_path / "fitted.yaml"
    report = run_calibrate([(exp, meas)], out, leave_out="none", max_nfev=30)
    fitted = load_profile(out)
    assert fitted.constants("hopper", "vllm").efficiency.weight_bw > 0
    assert report["rows"] == len(rows)
    # measurements made with the prior: the fit stays near it
    for mult in report["multipliers"].values():
        assert 0.8 < mult < 1.25
    assert SHIPPED.read_bytes() == shipped_bytes
    assert load_profile(SHIPPED).to_dict() == prior.to_dict()


def test_several_starts_average_the_solutions_from_the_prior_and_seeded_draws(
    tmp_path, monkeypatch
):
    import scipy.optimize

    from capacitor.calibrate import FIT_SEED

    prior = load_profile(PRIOR)
    rows = _rows("H100")[:6]
    exp, meas = _write(tmp_path, rows, prior)
    observations = load_observations([(exp, meas)])
    params = free_params(observations)
    sigmas = np.array([p.sigma for p in params])
    seen = []

    class _Solution:
        def __init__(self, x):
            self.x, self.cost, self.message = x, 0.0, "stub"

    def one_step_from(fun, x0, **kwargs):  # every descent "ends" one unit above its start
        seen.append(np.array(x0))
        return _Solution(np.asarray(x0) + 1.0)

    monkeypatch.setattr(scipy.optimize, "least_squares", one_step_from)
    single = fit(observations, prior, params)
    np.testing.assert_allclose(single.theta, np.ones(len(params)))
    seen.clear()
    three = fit(observations, prior, params, starts=3)
    draws = np.random.default_rng(FIT_SEED).normal(0.0, sigmas / 2.0, size=(2, len(params)))
    np.testing.assert_allclose(seen[0], 0.0)  # the prior itself
    np.testing.assert_allclose(seen[1:], draws)
    np.testing.assert_allclose(three.theta, 1.0 + draws.sum(axis=0) / 3.0)
    assert fit(observations, prior, params, starts=3).theta.tolist() == three.theta.tolist()


def test_forward_jacobian_steps_by_the_absolute_step_even_at_the_prior():
    """A discrete-event simulation is flat below its event-time jitter: a derivative taken
    with a step relative to theta (scipy's ``diff_step``, ~1e-8 at theta = 0, where every
    fit starts) sees nothing, or a jump. The fit's Jacobian steps 2% in every coordinate."""

    def stepped(theta):  # piecewise constant below 1e-3, slopes 2, -3 and 1 above it
        q = np.floor(np.asarray(theta) * 1e3) / 1e3
        return np.array([2.0 * q[0], q[0] - 3.0 * q[1]])

    jac = forward_jacobian(stepped, np.zeros(2), FD_STEP)
    assert FD_STEP == pytest.approx(0.02)
    np.testing.assert_allclose(jac, [[2.0, 0.0], [1.0, -3.0]], atol=0.06)
    # a relative step at theta = 0 would have seen a flat function
    assert not np.any(forward_jacobian(stepped, np.zeros(2), 1e-8))


def test_allreduce_bandwidth_is_free_only_with_saturated_multi_gpu_throughput(tmp_path):
    def obs(workload, tp, measured):
        cells = {"id": "x", "workload": workload, "tp": str(tp), "engine": "vllm"}
        return Observation(cells=cells, measured=measured, base_dir=tmp_path,
                           family="hopper", engine="vllm")

    def keys(observations):
        return {p.key for p in free_params(observations)}

    serving = obs("shared_prefix", 4, {"ttft_mean_ms": 50.0, "e2e_mean_ms": 4000.0})
    assert "allreduce_bw" not in keys([serving])  # decode steps: latency-bound all-reduce
    assert "allreduce_bw" not in keys([serving, obs("offline", 1, {"output_tokens_per_s": 1e4})])
    assert "allreduce_bw" not in keys([obs("offline", 2, {"e2e_mean_ms": 1e4})])
    for workload in ("offline", "closed_loop"):
        assert "allreduce_bw" in keys([serving, obs(workload, 2, {"output_tokens_per_s": 1e4})])


def test_low_precision_gemm_is_free_only_with_two_low_precision_models(tmp_path):
    def obs(model, precision):
        cells = {"id": model, "model": model, "precision": precision, "workload": "offline"}
        return Observation(cells=cells, measured={"output_tokens_per_s": 1e4},
                           base_dir=tmp_path, family="hopper", engine="vllm")

    def free(observations):
        return "gemm_max_low_precision" in {p.key for p in free_params(observations)}

    assert not free([obs("a", "FP16"), obs("b", "FP16")])
    assert not free([obs("a", "FP8"), obs("a", "fp8"), obs("b", "FP16")])  # one model
    assert free([obs("a", "FP8"), obs("b", "FP4")])


def test_sampler_cost_is_free_only_with_latency_rows_of_a_model_that_samples_top_p(tmp_path):
    def obs(model, engine, measured):
        cells = {"id": model, "model": model, "workload": "shared_prefix", "engine": engine}
        return Observation(cells=cells, measured=measured, base_dir=tmp_path,
                           family="hopper", engine=engine)

    def free(observations):
        key = "sampler_bytes_per_seq_vocab"
        return {p.group for p in free_params(observations) if p.key == key}

    latency = {"itl_mean_ms": 10.0}
    nemo = "mistralai/Mistral-Nemo-Instruct-2407"  # not listed: costed without filtering
    qwen = "Qwen/Qwen2.5-7B-Instruct"  # top-k 20, top-p 0.8
    assert free([obs(nemo, "vllm", latency)]) == set()
    assert free([obs(qwen, "vllm", {"output_tokens_per_s": 1e4})]) == set()  # throughput only
    assert free([obs(nemo, "vllm", latency), obs(qwen, "vllm", latency),
                 obs(nemo, "sglang", latency)]) == {"vllm"}
    assert free([obs("no/such-model", "vllm", latency)]) == set()


def test_a_step_past_a_profile_bound_is_clamped_not_fatal():
    # a candidate far outside what a profile file accepts (per_prefill_seq_s <= 0.1 s,
    # efficiencies <= 1) still makes a loadable profile, at the bound, and is flagged
    prior = load_profile(PRIOR)
    params = [Param("engine", "vllm", "overhead", "per_prefill_seq_s", 2.0),
              Param("global", "*", "efficiency", "kv_bw", 0.3)]
    theta = np.log([1e4, 5.0])
    profile = PerfProfile(profile_dict(prior, params, theta), origin="<test>")
    assert profile.constants("hopper", "vllm").overhead.per_prefill_seq_s == 0.1
    assert profile.constants("ampere", "vllm").efficiency.kv_bw == 1.0
    result = FitResult(profile=profile.to_dict(), params=params, theta=theta, predictions={},
                       cost=0.0, num_evaluations=0)
    warnings = plausibility_warnings(result)
    assert "vllm overhead.per_prefill_seq_s reached 0.1, the largest a profile accepts" in warnings
    assert any("vllm efficiency.kv_bw reached 1.0" in w for w in warnings)


def test_warnings_name_only_what_the_fit_moved():
    # a vLLM fit started from a profile whose TensorRT-LLM GEMM efficiency is at the cap and
    # whose vLLM egress is at its bound says nothing about either
    doc = load_profile(PRIOR).to_dict()
    families = doc.setdefault("families", {})
    families.setdefault("hopper", {}).setdefault("engines", {}).setdefault(
        "trtllm", {}).setdefault("efficiency", {})["gemm_max"] = 1.0
    doc.setdefault("engines", {}).setdefault("vllm", {}).setdefault(
        "request_path", {})["egress_s"] = 10.0
    start = PerfProfile(doc, origin="<test>")
    params = [Param("engine", "vllm", "overhead", "step_fixed_s", 2.0)]
    theta = np.zeros(1)
    result = FitResult(profile=profile_dict(start, params, theta), params=params, theta=theta,
                       predictions={}, cost=0.0, num_evaluations=0)
    assert plausibility_warnings(result) == []


def test_plausibility_warnings_name_a_capped_efficiency_and_a_far_multiplier():
    prior = load_profile(PRIOR)
    params = [Param("global", "*", "efficiency", "gemm_max", 0.3),
              Param("global", "*", "efficiency", "allreduce_bw", 0.3),
              Param("engine", "vllm", "request_path", "ingress_s", 2.0)]

    def result(multipliers):
        theta = np.log(multipliers)
        return FitResult(profile=profile_dict(prior, params, theta), params=params,
                         theta=theta, predictions={}, cost=0.0, num_evaluations=0)

    assert plausibility_warnings(result([1.1, 0.9, 3.0])) == []  # within 3 prior widths
    warnings = plausibility_warnings(result([2.3, 0.14, 6.0]))
    text = "\n".join(warnings)
    assert "allreduce_bw moved to x0.14" in text and "6.6 prior widths" in text
    assert "efficiency.gemm_max reached 1.0" in text  # 0.80 x 2.3, capped at the peak
    assert "gemm_max moved" not in text  # 2.3x is 2.8 widths: the cap is the finding
    assert "ingress_s" not in text  # 6x is 0.9 widths of its wide prior
