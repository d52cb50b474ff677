"""Validated envelopes: which configurations the model was checked against on measured runs,
and the label a deployment outside them gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from capacitor.catalog.models import resolve_model
from capacitor.perf.validity import precision_class, validity

ROOT = Path(__file__).resolve().parents[2]
DSR1 = resolve_model("deepseek-ai/DeepSeek-R1-0528")
LLAMA70 = resolve_model("meta-llama/Llama-3.1-70B-Instruct")
LLAMA8 = resolve_model("meta-llama/Llama-3.1-8B-Instruct")


def test_the_shipped_envelopes_are_what_the_data_gives() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "calibration" / "validated_envelopes.py"),
                           "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_measured_classes_are_inside() -> None:
    # InferenceMAX: SGLang DeepSeek-R1 FP8 on 8 x H200, aggregated, no MTP (110 rows)
    v = validity(DSR1, gpu="H200", engine="sglang", precision="FP8", tp=8)
    assert v.validated and "110 measured rows" in v.basis
    # the real vLLM servers: Llama-3.1-8B BF16 on one H100 (16-bit dense, tp 1-4)
    assert validity(LLAMA8, gpu="H100", engine="vllm", precision="BF16", tp=1).validated
    # FP16 and BF16 are one class
    assert precision_class("BF16") == precision_class("FP16") == "16bit"


def test_an_engine_never_measured_on_the_model_class_is_extrapolated() -> None:
    # vLLM has no measured DeepSeek (MLA MoE) run: the default scenario's large deployments
    v = validity(DSR1, gpu="H200", engine="vllm", precision="FP8", tp=8)
    assert not v.validated
    assert v.basis.startswith("extrapolated: engine vllm (measured: ")


def test_a_tp_outside_the_measured_range_is_extrapolated() -> None:
    # TensorRT-LLM Llama-3.1-70B FP8 on H100 was measured at tp 1-8, not 16
    assert validity(LLAMA70, gpu="H100", engine="trtllm", precision="FP8", tp=8).validated
    v = validity(LLAMA70, gpu="H100", engine="trtllm", precision="FP8", tp=16)
    assert not v.validated and "tp 16 (measured: 1-8)" in v.basis


def test_speculative_and_disaggregated_are_their_own_classes() -> None:
    # H100 DeepSeek-R1 rows are all disaggregated
    assert validity(DSR1, gpu="H100", engine="trtllm", precision="FP8", tp=16,
                    disaggregated=True).validated
    assert not validity(DSR1, gpu="H100", engine="trtllm", precision="FP8", tp=16).validated
    assert validity(DSR1, gpu="H200", engine="trtllm", precision="FP8", tp=8,
                    speculative="mtp").validated
