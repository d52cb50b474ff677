"""Engine flags of a scenario deployment reach the replica the simulator builds: SGLang's
scheduler recv interval, TensorRT-LLM's attention-DP balancing, DP attention and redundant
experts; a flag the engine does not have is one line naming the deployment's field."""

from __future__ import annotations

import pytest

from capacitor.engine.replica import build_replica
from capacitor.errors import ScenarioError
from capacitor.scenario.specs import replica_spec
from tests.factories import make_scenario


def _dep(**fields):
    over = {f"deployments.0.{k}": v for k, v in fields.items()}
    return make_scenario(**over).deployments[0]


def test_sglang_recv_interval_reaches_the_engine() -> None:
    config, _ = build_replica(replica_spec(_dep(engine="sglang", scheduler_recv_interval=10)))
    assert config.scheduler_recv_interval == 10
    default, _ = build_replica(replica_spec(_dep(engine="sglang")))
    assert default.scheduler_recv_interval == 1


def test_trtllm_attention_dp_balancing_reaches_the_engine() -> None:
    dep = _dep(engine="trtllm", tp=8, dp_attention=True, attention_dp_timeout_iters=60,
               replicas=1)
    config, _ = build_replica(replica_spec(dep))
    assert config.attention_dp_timeout_iters == 60
    assert config.attention_dp_ranks == 8  # one attention-DP rank per GPU


def test_redundant_experts_reach_the_replica() -> None:
    # DeepSeek-R1 FP8 on 8 B200, experts over the 8 GPUs: 256 + 32 = 288 = 36 per GPU
    moe = {"sites.0.gpus": {"B200": 8}, "sites.0.power_cap_mw": 5.0,
           "deployments.0.model": "deepseek-ai/DeepSeek-R1-0528", "deployments.0.gpu": "B200",
           "deployments.0.precision": "FP8", "deployments.0.tp": 8, "deployments.0.ep": 8,
           "deployments.0.replicas": 1}
    spec = replica_spec(make_scenario(**moe, **{
        "deployments.0.ep_num_redundant_experts": 32}).deployments[0])
    assert spec.ep_num_redundant_experts == 32
    with_32, _ = build_replica(spec)
    plain, _ = build_replica(replica_spec(make_scenario(**moe).deployments[0]))
    assert with_32.num_gpu_blocks < plain.num_gpu_blocks  # 32 more experts' weights


@pytest.mark.parametrize(("fields", "where"), [
    ({"scheduler_recv_interval": 10}, "deployments[0].scheduler_recv_interval"),
    ({"engine": "sglang", "attention_dp_timeout_iters": 60},
     "deployments[0].attention_dp_timeout_iters"),
    ({"ep_num_redundant_experts": 32}, "deployments[0].ep_num_redundant_experts"),
])
def test_a_flag_the_engine_lacks_names_the_field(fields, where) -> None:
    with pytest.raises(ScenarioError) as err:
        _dep(**fields)
    lines = [line for line in str(err.value).splitlines() if where in line]
    assert len(lines) == 1, str(err.value)
