"""MTP speculative decoding from validate rows and scenario deployments: defaults, overrides,
and one-line errors for bad values and models without MTP layers."""

from __future__ import annotations

import pytest

from capacitor.perf import step_time as st
from capacitor.perf.profile import load_profile
from capacitor.validate.experiments import Row, RowError, build_replica_for_row

CELLS = {
    "id": "r1", "model": "deepseek-ai/DeepSeek-R1-0528", "hardware": "B200", "tp": "8",
    "ep": "8", "precision": "FP8", "engine": "sglang", "workload": "closed_loop",
    "concurrency": "4", "isl": "1024", "osl": "1024", "speculative": "mtp",
}


def _replica(**over):
    return build_replica_for_row(Row({**CELLS, **over}, "."), load_profile(None))


def test_mtp_row_runs_with_the_documented_defaults() -> None:
    cfg, coeffs = _replica()
    # SGLang: InferenceX's --speculative-num-steps 2; speculative decoding v1 without the
    # overlap scheduler
    assert cfg.num_speculative_tokens == 2 and cfg.async_scheduling is False
    assert cfg.mtp_acceptance_rate == 0.69
    cfg_trt, _ = _replica(engine="trtllm")
    assert cfg_trt.num_speculative_tokens == 3
    cfg_trt_dp, _ = _replica(engine="trtllm", dp_attention="true")
    assert cfg_trt_dp.num_speculative_tokens == 1
    cfg_async, _ = _replica(async_scheduling="true")
    assert cfg_async.async_scheduling is True
    assert _replica(speculative="none")[0].async_scheduling is True
    # the draft pass is one layer of 61 (plus the shared LM head): far cheaper to stream
    draft = cfg.draft_coeffs
    assert 0 < draft[st.C_WEIGHT_S] < coeffs[st.C_WEIGHT_S] / 5
    assert 0 < draft[st.C_MOE_WEIGHT_S] < coeffs[st.C_MOE_WEIGHT_S] / 40
    cfg_dp, _ = _replica(dp_attention="true")
    assert cfg_dp.num_speculative_tokens == 2
    cfg_none, _ = _replica(speculative="none")
    assert cfg_none.num_speculative_tokens == 0 and cfg_none.draft_coeffs == ()
    cfg_blank, _ = _replica(speculative="")
    assert cfg_blank.num_speculative_tokens == 0


def test_mtp_overrides() -> None:
    cfg, _ = _replica(num_speculative_tokens="2", mtp_acceptance_rate="0.7")
    assert cfg.num_speculative_tokens == 2 and cfg.mtp_acceptance_rate == 0.7


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        (dict(speculative="eagle"), "speculative='eagle'"),
        (dict(num_speculative_tokens="0"), "num_speculative_tokens='0'"),
        (dict(mtp_acceptance_rate="1.5"), "mtp_acceptance_rate='1.5'"),
    ],
)
def test_bad_speculative_cells_name_column_and_value(over, expected) -> None:
    with pytest.raises(RowError) as err:
        _replica(**over)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg
    if "speculative" in over:
        assert "none, mtp" in msg


def test_mtp_on_a_model_without_mtp_layers_is_one_line() -> None:
    from capacitor.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _replica(model="meta-llama/Llama-3.1-8B-Instruct", tp="1", ep="", precision="BF16",
                 hardware="H100")
    msg = str(err.value)
    assert "speculative=mtp" in msg and "no MTP layers" in msg and "\n" not in msg


def test_scenario_deployment_takes_speculative_in_its_schema() -> None:
    from pydantic import ValidationError

    from capacitor.scenario.models import Deployment

    schema = Deployment.model_json_schema()["properties"]
    for name in ("speculative", "num_speculative_tokens", "mtp_acceptance_rate"):
        assert schema[name]["description"]
    base = dict(name="d", model="deepseek-ai/DeepSeek-R1-0528", gpu="B200", site="s",
                replicas=1)
    dep = Deployment(**base, speculative="MTP", num_speculative_tokens=2)
    assert dep.speculative == "mtp" and dep.num_speculative_tokens == 2
    with pytest.raises(ValidationError, match="speculative"):
        Deployment(**base, speculative="eagle")


def test_scenario_with_mtp_on_a_model_without_mtp_layers_names_the_deployment() -> None:
    from tests.factories import TWO_SITES, scenario_dict
    from tests.unit.test_scenario import error_of

    msg = error_of(scenario_dict(TWO_SITES, **{"deployments.0.speculative": "mtp"}))
    assert "deployments[0].speculative" in msg and "no MTP layers" in msg
    msg = error_of(scenario_dict(TWO_SITES, **{"deployments.0.speculative": "eagle"}))
    assert "speculative" in msg and "'none'" in msg and "'mtp'" in msg


def test_mtp_row_speeds_decode_at_full_acceptance_and_slows_it_at_none() -> None:
    """A closed-loop row end to end: at acceptance 1 each step emits 1 + 3 tokens, so TPOT
    falls and each inter-token gap (one per chunk) is longer than TPOT; at acceptance 0 a
    step emits one token but pays the verify and draft passes, so TPOT rises."""
    from capacitor.validate.experiments import predict_row

    cells = {**CELLS, "num_requests": "16", "osl": "256", "isl": "256"}

    def run(**over):
        return predict_row(Row({**cells, **over}, "."), load_profile(None))

    plain, full, none = (run(speculative="none"),
                         run(mtp_acceptance_rate="1.0", num_speculative_tokens="3"),
                         run(mtp_acceptance_rate="0.0", num_speculative_tokens="3"))
    assert full["tpot_median_ms"] < 0.5 * plain["tpot_median_ms"]
    assert full["itl_median_ms"] > 2.0 * full["tpot_median_ms"]
    assert full["output_tokens_per_s"] > 2.0 * plain["output_tokens_per_s"]
    assert none["tpot_median_ms"] > plain["tpot_median_ms"]
    assert none["itl_median_ms"] == pytest.approx(none["tpot_median_ms"], rel=0.05)


def test_draft_pass_pays_no_scheduler_overheads() -> None:
    """The draft passes run inside the verifying iteration: the profile's per-iteration and
    per-request scheduler costs (step_fixed_s, per_seq_s, mla_per_seq_s, per_prefill_seq_s)
    are paid once, by the target step, not again by each draft pass."""
    from capacitor.perf.coefficients import build_coefficients
    from capacitor.perf.speculative import draft_model

    constants = load_profile(None).constants("blackwell", "sglang")
    o = constants.overhead
    cfg, coeffs = _replica()
    draft = cfg.draft_coeffs
    # the target's per-sequence slot is the scheduler's per_seq_s + mla_per_seq_s + the LM
    # head of one sequence; the draft keeps only the LM head (same tp, same head)
    assert draft[st.C_PER_SEQ_S] == pytest.approx(
        coeffs[st.C_PER_SEQ_S] - o.per_seq_s - o.mla_per_seq_s, rel=1e-12)
    assert draft[st.C_PER_SEQ_S] > 0.0
    assert draft[st.C_PER_PREFILL_SEQ_S] == 0.0
    # fixed: a one-layer step of the same model with the full profile, less step_fixed_s
    one_layer = build_coefficients(draft_model(cfg_model()), get_gpu(CELLS['hardware']), tp=8, ep=8,
                                   precision="fp8", engine="sglang", profile=constants)
    assert draft[st.C_FIXED_S] == pytest.approx(
        one_layer[st.C_FIXED_S] - o.step_fixed_s, rel=1e-12)
    assert 0.0 < draft[st.C_FIXED_S] < coeffs[st.C_FIXED_S] / 20


def get_gpu(name):
    from capacitor.catalog.hardware import get_gpu as lookup

    return lookup(name)


def cfg_model():
    from capacitor.catalog.models import resolve_model

    return resolve_model(CELLS["model"])
