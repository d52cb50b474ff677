"""Model catalogue: import of Hugging Face configs, resolution, and counts against published sizes.

Expected sizes are the model cards' published numbers, not this code's formulas.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capacitor.catalog.models import (
    ModelSpec,
    from_hf_config,
    list_models,
    load_config_file,
    resolve_model,
)
from capacitor.errors import CatalogError

REQUIRED_IDS = [
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-70b-hf",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Meta-Llama-3-70B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai/Mistral-Nemo-Instruct-2407",
    "mistralai/Mixtral-8x7B-v0.1",
    "mistralai/Mixtral-8x22B-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "codellama/CodeLlama-34b-Instruct-hf",
    "01-ai/Yi-34B",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen3-14B",
    "Qwen/Qwen3-30B-A3B",
    "deepseek-ai/DeepSeek-V2-Lite",
    "deepseek-ai/DeepSeek-R1-0528",
    "deepseek-ai/DeepSeek-R1",
    "nvidia/DeepSeek-R1-0528-FP4",
]

BUNDLED = [
    "codellama-34b-instruct-hf",
    "deepseek-r1-0528",
    "deepseek-v2-lite",
    "glm-5.2-fp8",
    "llama-2-70b-hf",
    "llama-2-7b-hf",
    "llama-3.1-405b-instruct",
    "llama-3.1-70b-instruct",
    "llama-3.1-8b-instruct",
    "llama-4-scout-17b-16e-instruct-fp8-dynamic",
    "mistral-7b-instruct-v0.3",
    "mistral-nemo-instruct-2407",
    "mixtral-8x22b-v0.1",
    "mixtral-8x7b-v0.1",
    "qwen2.5-7b-instruct",
    "qwen3-14b",
    "qwen3-30b-a3b",
    "yi-34b",
]

# (model, published total params in billions, published active params or None); model cards.
PUBLISHED = [
    ("meta-llama/Llama-3.1-8B-Instruct", 8.03, None),
    ("meta-llama/Llama-3.1-70B-Instruct", 70.6, None),
    ("meta-llama/Llama-3.1-405B-Instruct", 405.0, None),
    ("meta-llama/Llama-2-7b-hf", 6.74, None),
    ("meta-llama/Llama-2-70b-hf", 69.0, None),
    ("mistralai/Mistral-7B-Instruct-v0.3", 7.25, None),
    ("mistralai/Mistral-Nemo-Instruct-2407", 12.2, None),
    ("01-ai/Yi-34B", 34.4, None),
    ("codellama/CodeLlama-34b-Instruct-hf", 33.7, None),
    ("Qwen/Qwen2.5-7B-Instruct", 7.61, None),
    ("Qwen/Qwen3-14B", 14.8, None),
    ("mistralai/Mixtral-8x7B-v0.1", 46.7, 12.9),
    ("mistralai/Mixtral-8x22B-v0.1", 141.0, 39.0),
    ("Qwen/Qwen3-30B-A3B", 30.5, 3.3),
    ("deepseek-ai/DeepSeek-R1", 671.0, 37.0),  # HF's 685B includes the MTP layer
    ("deepseek-ai/DeepSeek-V2-Lite", 15.7, ...),  # active: see test_deepseek_v2_lite_active
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 109.0, 17.0),  # 109B includes vision
]


def _close(value: float, published_b: float, tol: float = 0.03) -> bool:
    return abs(value / 1e9 - published_b) <= tol * published_b


# ---- resolution ------------------------------------------------------------------------------


def test_bundled_catalogue_has_all_configs() -> None:
    names = {m.name for m in list_models()}
    assert set(BUNDLED) <= names
    assert all(isinstance(m, ModelSpec) for m in list_models())


@pytest.mark.parametrize("hf_id", REQUIRED_IDS)
def test_required_hf_ids_resolve(hf_id: str) -> None:
    spec = resolve_model(hf_id)
    assert hf_id in spec.hf_ids
    assert resolve_model(hf_id.lower()) == spec
    assert resolve_model(f"  {hf_id.upper()} ") == spec


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_names_resolve_case_insensitively(name: str) -> None:
    assert resolve_model(name.upper()).name == name


def test_alias_overrides() -> None:
    assert resolve_model("meta-llama/Llama-4-Scout-17B-16E-Instruct").weight_dtype == "bf16"
    fp8 = resolve_model("RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic")
    assert fp8.weight_dtype == "fp8"
    assert resolve_model("nvidia/DeepSeek-R1-0528-FP4").weight_dtype == "fp4"
    assert resolve_model("deepseek-ai/DeepSeek-R1-0528").weight_dtype == "fp8"
    llama3 = resolve_model("meta-llama/Meta-Llama-3-70B-Instruct")
    llama31 = resolve_model("meta-llama/Llama-3.1-70B-Instruct")
    assert llama3.max_position_embeddings == 8192
    assert llama31.max_position_embeddings == 131072
    assert llama3.param_count() == llama31.param_count()
    assert resolve_model("meta-llama/Llama-3.3-70B-Instruct") is llama31


def test_unknown_model_error_says_how_to_fix() -> None:
    with pytest.raises(CatalogError) as info:
        resolve_model("acme/NoSuchModel-7B")
    msg = str(info.value)
    assert "acme/NoSuchModel-7B" in msg
    assert "llama-3.1-8b-instruct" in msg
    assert "config.json" in msg


def test_resolve_config_path_and_directory(tmp_path) -> None:
    cfg = _llama_like()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    by_file = resolve_model(str(path))
    by_dir = resolve_model(str(tmp_path))
    assert by_file.num_layers == by_dir.num_layers == 32
    assert by_file.name == str(path)
    assert load_config_file(path) == by_file


# ---- malformed input -------------------------------------------------------------------------


def _llama_like(**overrides) -> dict:
    cfg = {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "torch_dtype": "bfloat16",
    }
    cfg.update(overrides)
    return {k: v for k, v in cfg.items() if v is not ...}


def test_missing_field_names_field_and_file() -> None:
    with pytest.raises(CatalogError) as info:
        from_hf_config(_llama_like(num_hidden_layers=...), "my-model")
    assert "num_hidden_layers" in str(info.value)
    assert "my-model" in str(info.value)
    assert "integer" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden_size", "4096"),
        ("num_attention_heads", 0),
        ("vocab_size", 1.5),
        ("num_key_value_heads", True),
    ],
)
def test_malformed_field_names_field(field: str, value) -> None:
    with pytest.raises(CatalogError, match=field):
        from_hf_config(_llama_like(**{field: value}), "bad")


def test_moe_without_top_k_is_an_error() -> None:
    with pytest.raises(CatalogError, match="num_experts_per_tok"):
        from_hf_config(_llama_like(model_type="mixtral", num_local_experts=8), "moe")


def test_invalid_json_names_path(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 4096,')
    with pytest.raises(CatalogError, match=str(path).replace("\\", "\\\\")):
        load_config_file(path)
    with pytest.raises(CatalogError, match="cannot be read"):
        load_config_file(tmp_path / "missing.json")


def test_integer_quantization_is_refused() -> None:
    gptq = {"quant_method": "gptq", "bits": 4}
    with pytest.raises(CatalogError, match="gptq"):
        from_hf_config(_llama_like(quantization_config=gptq), "gptq")


# ---- published sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "total_b", "active_b"), PUBLISHED)
def test_param_counts_match_published(ref: str, total_b: float, active_b) -> None:
    spec = resolve_model(ref)
    assert _close(spec.param_count(), total_b), spec.param_count() / 1e9
    if active_b is None:  # dense
        assert spec.active_param_count() == spec.param_count()
        assert spec.expert_param_count() == 0
        assert not spec.is_moe
    else:
        assert spec.is_moe
        if active_b is not ...:
            assert _close(spec.active_param_count(), active_b), spec.active_param_count() / 1e9
    assert spec.dense_param_count() + spec.expert_param_count() == spec.param_count()


def test_deepseek_v2_lite_active() -> None:
    # DeepSeek-V2 paper: 2.4B activated, a count that leaves out the input embedding table
    # (a lookup, not a matmul); active_param_count() includes it.
    spec = resolve_model("deepseek-ai/DeepSeek-V2-Lite")
    embedding_table = spec.vocab_size * spec.hidden_size
    assert _close(spec.active_param_count() - embedding_table, 2.4)


def test_mixtral_expert_params_match_published_split() -> None:
    # 46.7B total, 12.9B active, top-2 of 8: the 6 idle experts per layer hold 46.7 - 12.9.
    spec = resolve_model("mistralai/Mixtral-8x7B-v0.1")
    assert _close(spec.expert_param_count(), (46.7 - 12.9) * 8 / 6)


def test_tied_embeddings_counted_once() -> None:
    # Qwen2.5-0.5B (tied embeddings): 0.49B parameters published.
    cfg = _llama_like(
        model_type="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    )
    spec = from_hf_config(cfg, "qwen2.5-0.5b")
    assert spec.embedding_param_count() == 151936 * 896
    assert _close(spec.param_count(), 0.494)


def test_llama4_maverick_interleaved_moe() -> None:
    # Llama-4-Maverick-17B-128E: 400B total, 17B active; MoE on every second layer.
    text = {
        "model_type": "llama4_text",
        "hidden_size": 5120,
        "intermediate_size": 8192,
        "intermediate_size_mlp": 16384,
        "num_hidden_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "num_local_experts": 128,
        "num_experts_per_tok": 1,
        "interleave_moe_layer_step": 2,
        "vocab_size": 202048,
        "max_position_embeddings": 1048576,
    }
    spec = from_hf_config({"model_type": "llama4", "text_config": text}, "maverick")
    assert spec.num_moe_layers == 24
    assert spec.intermediate_size == 16384 and spec.moe_intermediate_size == 8192
    assert _close(spec.param_count(), 400.0)
    assert _close(spec.active_param_count(), 17.0)


def test_qwen_moe_layer_selection() -> None:
    cfg = _llama_like(
        model_type="qwen3_moe",
        num_experts=128,
        num_experts_per_tok=8,
        moe_intermediate_size=768,
        decoder_sparse_step=2,
        mlp_only_layers=[1],
    )
    assert from_hf_config(cfg, "q").num_moe_layers == 15  # odd indices 3, 5, ..., 31


def test_glm_moe_dsa_imports() -> None:
    # GLM-5 family (MLA + DSA, 256 experts): ~744B total, ~40B active published for GLM-5.
    spec = resolve_model("glm-5.2-fp8")
    assert spec.is_mla and spec.is_moe
    assert spec.num_moe_layers == 75 and spec.weight_dtype == "fp8"
    assert spec.kv_values_per_token_per_layer() == 512 + 64
    assert _close(spec.param_count(), 744.0)
    assert _close(spec.active_param_count(), 40.0, tol=0.05)


# ---- KV cache and attention ------------------------------------------------------------------


def test_kv_bytes_llama31_8b() -> None:
    spec = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    assert spec.kv_bytes_per_token(2) == 32 * 2 * 8 * 128 * 2 == 131072
    assert spec.kv_bytes_per_token(1) == 65536


def test_kv_bytes_deepseek_mla() -> None:
    spec = resolve_model("deepseek-ai/DeepSeek-R1")
    assert spec.is_mla
    assert spec.kv_bytes_per_token(2) == 61 * 576 * 2


def test_kv_bytes_llama2_mha() -> None:
    spec = resolve_model("meta-llama/Llama-2-7b-hf")  # MHA: 32 layers x 2 x 32 heads x 128
    assert spec.kv_bytes_per_token(2) == 32 * 2 * 32 * 128 * 2


def test_attention_flops_per_pair() -> None:
    llama = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    assert llama.attention_flops_per_pair_per_layer() == 4 * 32 * 128
    r1 = resolve_model("deepseek-ai/DeepSeek-R1")
    assert r1.attention_flops_per_pair_per_layer() == 2 * 128 * ((128 + 64) + 128)


def test_mla_attention_params_deepseek_v2_lite() -> None:
    spec = resolve_model("deepseek-ai/DeepSeek-V2-Lite")
    assert spec.q_lora_rank == 0  # null in the config: plain q_proj
    q = 2048 * 16 * 192
    kv_a = 2048 * (512 + 64) + 512
    kv_b = 512 * 16 * (128 + 128)
    o = 16 * 128 * 2048
    assert spec.attention_param_count_per_layer() == q + kv_a + kv_b + o


# ---- sliding windows, precision --------------------------------------------------------------


def test_sliding_window_configs() -> None:
    mistral_v01 = from_hf_config(_llama_like(model_type="mistral", sliding_window=4096), "m")
    assert (mistral_v01.sliding_window, mistral_v01.num_sliding_layers) == (4096, 32)
    qwen = _llama_like(
        model_type="qwen2", sliding_window=4096, use_sliding_window=True, max_window_layers=24
    )
    assert from_hf_config(qwen, "q").num_sliding_layers == 8
    types = ["sliding_attention", "full_attention"] * 16
    gpt_oss_like = from_hf_config(_llama_like(sliding_window=128, layer_types=types), "g")
    assert (gpt_oss_like.sliding_window, gpt_oss_like.num_sliding_layers) == (128, 16)
    gemma3 = from_hf_config(_llama_like(sliding_window=1024, sliding_window_pattern=6), "g3")
    assert gemma3.num_sliding_layers == 32 - 5
    seq = mistral_v01.kv_bytes_for_sequence(10000, 2)
    assert seq == mistral_v01.kv_bytes_per_token(2) * 4096


def test_disabled_sliding_window_is_zero() -> None:
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct").sliding_window == 0  # use_sliding_window false
    assert resolve_model("mistralai/Mistral-7B-Instruct-v0.3").sliding_window == 0  # null
    off = _llama_like(model_type="qwen2", sliding_window=4096, use_sliding_window=False)
    assert (
        from_hf_config(off, "q").sliding_window,
        from_hf_config(off, "q").num_sliding_layers,
    ) == (0, 0)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("llama-2-7b-hf", "fp16"),
        ("llama-3.1-8b-instruct", "bf16"),
        ("deepseek-r1-0528", "fp8"),
        ("glm-5.2-fp8", "fp8"),
        ("llama-4-scout-17b-16e-instruct-fp8-dynamic", "fp8"),
    ],
)
def test_bundled_weight_dtypes(name: str, dtype: str) -> None:
    assert resolve_model(name).weight_dtype == dtype


@pytest.mark.parametrize(
    ("quant", "dtype"),
    [
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "fp4"),
        ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8"),
        ({"quant_method": "mxfp4"}, "fp4"),
        ({"quant_method": "fbgemm_fp8"}, "fp8"),
        (
            {
                "quant_method": "compressed-tensors",
                "format": "nvfp4-pack-quantized",
                "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float"}}},
            },
            "fp4",
        ),
    ],
)
def test_quantized_configs(quant: dict, dtype: str) -> None:
    assert from_hf_config(_llama_like(quantization_config=quant), "q").weight_dtype == dtype


# ---- invariants ------------------------------------------------------------------------------


@given(
    layers=st.integers(1, 96),
    hidden=st.sampled_from([1024, 2048, 4096, 8192]),
    experts=st.integers(2, 256),
    topk_frac=st.floats(0.0, 1.0),
    first_dense=st.integers(0, 4),
)
def test_moe_count_invariants(layers, hidden, experts, topk_frac, first_dense) -> None:
    topk = max(1, round(topk_frac * experts))
    cfg = _llama_like(
        hidden_size=hidden,
        num_hidden_layers=layers,
        n_routed_experts=experts,
        num_experts_per_tok=topk,
        moe_intermediate_size=512,
        n_shared_experts=1,
        first_k_dense_replace=first_dense,
    )
    spec = from_hf_config(cfg, "moe")
    assert spec.num_moe_layers == max(0, layers - first_dense)
    assert spec.dense_param_count() + spec.expert_param_count() == spec.param_count()
    assert spec.dense_param_count() <= spec.active_param_count() <= spec.param_count()
    if spec.num_moe_layers and topk == experts:
        assert spec.active_param_count() == spec.param_count()


# ---- 16-bit attention in quantized checkpoints ----------------------------------------------


def _fp8(ignore: list[str]) -> dict:
    quant = {"quant_method": "compressed-tensors", "ignore": ignore,
             "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}}}
    return _llama_like(quantization_config=quant)


def test_ignored_attention_projections_stay_16bit() -> None:
    from capacitor.perf.memory import weight_bytes_per_gpu

    layer0 = "model.layers.0.self_attn."
    kept = from_hf_config(_fp8([layer0 + p for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
                               + ["lm_head"]), "fp8-attn16")
    regex = from_hf_config(_fp8(["re:.*self_attn.*", "lm_head"]), "fp8-re")
    plain = from_hf_config(_fp8(["lm_head"]), "fp8")
    vision = from_hf_config(_fp8(["vision_model.layers.0.self_attn.q_proj"]), "fp8-vision")
    assert kept.weight_dtype == plain.weight_dtype == "fp8"
    assert kept.attention_16bit and regex.attention_16bit
    assert not plain.attention_16bit and not vision.attention_16bit
    # 32 layers x (q 4096x4096 + k, v 4096x1024 + o 4096x4096) at 2 bytes instead of 1
    attn_params = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024)
    extra = weight_bytes_per_gpu(kept, "fp8") - weight_bytes_per_gpu(plain, "fp8")
    assert extra == pytest.approx(attn_params * 1.0)
    # at 16-bit precision nothing changes
    assert weight_bytes_per_gpu(kept, "bf16") == weight_bytes_per_gpu(plain, "bf16")


# ---- sampling defaults (generation_config.json) -----------------------------------------------


def test_a_generation_config_beside_the_config_sets_the_sampling_defaults(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_llama_like()))
    assert not resolve_model(str(tmp_path)).filters_vocab  # no generation_config.json
    gen = tmp_path / "generation_config.json"
    gen.write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    assert not resolve_model(str(tmp_path)).filters_vocab  # no sampling keys
    gen.write_text(json.dumps({"do_sample": True, "temperature": 0.6, "top_p": 0.9}))
    spec = resolve_model(str(tmp_path / "config.json"))
    assert (spec.default_top_p, spec.default_top_k, spec.filters_vocab) == (0.9, 0, True)
    gen.write_text(json.dumps({"top_k": 20}))
    assert resolve_model(str(tmp_path)).filters_vocab
    gen.write_text(json.dumps({"top_k": -1, "top_p": 1.0}))  # vLLM's "off" values
    assert not resolve_model(str(tmp_path)).filters_vocab
    gen.write_text(json.dumps({"temperature": 0, "top_p": 0.9}))  # greedy: nothing filtered
    assert not resolve_model(str(tmp_path)).filters_vocab


@pytest.mark.parametrize(
    ("gen", "named"),
    [
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"top_p": 0}, "top_p=0"),
        ({"top_p": "0.9"}, "top_p='0.9'"),
        ({"top_k": 2.5}, "top_k=2.5"),
        ({"top_k": -2}, "top_k=-2"),
        ({"temperature": -1}, "temperature=-1"),
    ],
)
def test_a_bad_generation_config_names_the_key_and_value(tmp_path, gen, named) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_llama_like()))
    (tmp_path / "generation_config.json").write_text(json.dumps(gen))
    with pytest.raises(CatalogError) as info:
        resolve_model(str(tmp_path))
    assert named in str(info.value)
    assert "generation_config.json" in str(info.value)


def test_bundled_sampling_defaults_follow_the_published_generation_configs() -> None:
    # Qwen2.5-7B-Instruct ships top_k 20 / top_p 0.8; Llama-2-7b-hf top_p 0.9 (its aliases
    # share the spec); a model whose file is not known is costed without filtering.
    qwen = resolve_model("Qwen/Qwen2.5-7B-Instruct")
    assert (qwen.default_top_p, qwen.default_top_k) == (0.8, 20)
    assert resolve_model("meta-llama/Llama-2-7b-hf").default_top_p == 0.9
    assert not resolve_model("mistralai/Mistral-Nemo-Instruct-2407").filters_vocab
