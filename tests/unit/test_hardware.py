"""GPU catalogue: lookup, precisions, units, citations, and agreement with hardware_facts.csv."""

from __future__ import annotations

import copy
import csv
import math

import pytest

from capacitor.catalog.hardware import GPUSpec, get_gpu, list_gpus, load_gpus, parse_gpus
from capacitor.errors import CatalogError
from tests.conftest import require_data

CANONICAL_IDS = [
    "H100",
    "H200",
    "A100-80GB",
    "A100-PCIe-80GB",
    "L40S",
    "GH200",
    "B200",
    "B300",
    "GB200",
    "GB300",
    "RTX-PRO-6000",
    "MI300X",
    "MI325X",
    "MI355X",
]

FAMILIES = {
    "H100": "hopper",
    "H200": "hopper",
    "A100-80GB": "ampere",
    "A100-PCIe-80GB": "ampere",
    "L40S": "ada",
    "GH200": "hopper",
    "B200": "blackwell",
    "B300": "blackwell",
    "GB200": "blackwell",
    "GB300": "blackwell",
    "RTX-PRO-6000": "blackwell",
    "MI300X": "cdna3",
    "MI325X": "cdna3",
    "MI355X": "cdna4",
}

NUMERIC_FIELDS = ("memory_gib", "hbm_tb_s", "interconnect_gb_s", "pcie_gb_s", "tdp_w")




# --------------------------------------------------------------------------- lookup


def test_catalogue_holds_exactly_the_canonical_ids() -> None:
    assert sorted(load_gpus()) == sorted(CANONICAL_IDS)
    assert [g.name for g in list_gpus()] == list(load_gpus())


@pytest.mark.parametrize("gpu_id", CANONICAL_IDS)
def test_every_canonical_id_resolves_to_itself(gpu_id: str) -> None:
    spec = get_gpu(gpu_id)
    assert isinstance(spec, GPUSpec)
    assert spec.name == gpu_id


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("H100-SXM-80GB", "H100"),
        ("H100-SXM", "H100"),
        ("H100 SXM 80GB", "H100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("H200-SXM-141GB", "H200"),
        ("A100", "A100-80GB"),
        ("A100-SXM-80GB", "A100-80GB"),
        ("A100-SXM4-80GB", "A100-80GB"),
        ("A100 80GB PCIe", "A100-PCIe-80GB"),
        ("L40S-48GB", "L40S"),
        ("RTX PRO 6000", "RTX-PRO-6000"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA B300 SXM6 AC", "B300"),
        ("AMD Instinct MI300X", "MI300X"),
    ],
)
def test_aliases_resolve(alias: str, expected: str) -> None:
    assert get_gpu(alias).name == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("h100", "H100"),
        ("h100-sxm-80gb", "H100"),
        ("a100-pcie-80gb", "A100-PCIe-80GB"),
        ("A100_PCIe_80GB", "A100-PCIe-80GB"),
        ("rtx pro 6000", "RTX-PRO-6000"),
        ("Rtx_Pro_6000", "RTX-PRO-6000"),
        ("mi355x", "MI355X"),
        ("  gb200  ", "GB200"),
    ],
)
def test_lookup_ignores_case_and_separators(name: str, expected: str) -> None:
    assert get_gpu(name).name == expected


def test_sxm_is_the_default_and_pcie_must_be_named() -> None:
    assert get_gpu("A100").interconnect == "nvlink"
    assert get_gpu("A100 PCIe 80GB").interconnect == "pcie"
    assert get_gpu("H100").interconnect == "nvlink"


@pytest.mark.parametrize("name", ["H100-PCIe", "TPU-v5e", "B100", "", "GH200-144GB"])
def test_unknown_gpu_raises_with_name_and_valid_ids(name: str) -> None:
    with pytest.raises(CatalogError) as info:
        get_gpu(name)
    message = str(info.value)
    assert repr(name) in message
    assert "H100" in message and "MI355X" in message and "valid" in message


def test_non_string_name_raises_catalog_error() -> None:
    with pytest.raises(CatalogError):
        get_gpu(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- precisions


def test_a100_has_no_fp8() -> None:
    a100 = get_gpu("A100")
    assert "fp8" not in a100.dense_tflops
    with pytest.raises(CatalogError, match="A100-80GB has no FP8 tensor cores; valid: FP16, BF16"):
        a100.tflops("FP8")


def test_b200_has_fp4() -> None:
    b200 = get_gpu("B200")
    assert b200.tflops("FP4") == 9000
    assert b200.tflops("fp4") > b200.tflops("fp8") > b200.tflops("bf16")


def test_precision_names_are_case_insensitive() -> None:
    h100 = get_gpu("H100")
    assert h100.tflops("BF16") == h100.tflops("bf16") == h100.tflops(" Bf16 ") == 989
    assert h100.tflops("FP8") == 1979


def test_unsupported_fp4_message_names_gpu_and_valid_precisions() -> None:
    with pytest.raises(CatalogError) as info:
        get_gpu("H100").tflops("FP4")
    assert str(info.value) == "GPU H100 has no FP4 tensor cores; valid: FP16, BF16, FP8"


def test_unknown_precision_raises() -> None:
    with pytest.raises(CatalogError, match="int8"):
        get_gpu("H100").tflops("int8")


@pytest.mark.parametrize("gpu_id", CANONICAL_IDS)
def test_fp4_only_from_blackwell_and_cdna4(gpu_id: str) -> None:
    spec = get_gpu(gpu_id)
    assert spec.family == FAMILIES[gpu_id]
    has_fp4 = spec.family in ("blackwell", "cdna4")
    assert ("fp4" in spec.dense_tflops) is has_fp4
    assert ("fp8" in spec.dense_tflops) is (spec.family != "ampere")


@pytest.mark.parametrize("gpu_id", CANONICAL_IDS)
def test_tflops_are_ordered_and_fp16_matches_bf16(gpu_id: str) -> None:
    t = get_gpu(gpu_id).dense_tflops
    assert set(t) >= {"fp16", "bf16"}
    assert abs(t["fp16"] - t["bf16"]) / t["bf16"] < 0.01
    if "fp8" in t:
        assert t["fp8"] > t["bf16"]
    if "fp4" in t:
        assert t["fp4"] > t["fp8"]


# --------------------------------------------------------------------------- units and links


def test_memory_bytes_and_bandwidth_units() -> None:
    spec = GPUSpec(
        name="X",
        full_name="test",
        aliases=(),
        vendor="nvidia",
        family="hopper",
        dense_tflops={"bf16": 1.0},
        memory_gib=80.0,
        hbm_tb_s=3.35,
        interconnect="nvlink",
        interconnect_gb_s=450,
        pcie_gb_s=64,
        tdp_w=700,
    )
    assert spec.memory_bytes == 85_899_345_920
    assert spec.hbm_bytes_per_s == pytest.approx(3.35e12)
    h100 = get_gpu("H100")
    # the framework sees ~79.1 GiB on an "80 GB" H100, not 80e9 bytes and not 80 GiB
    assert 84_900_000_000 < h100.memory_bytes < 85_000_000_000
    assert h100.hbm_bytes_per_s == pytest.approx(3.35e12)


def test_per_direction_link_bandwidths_from_the_brief() -> None:
    assert get_gpu("H100").interconnect_gb_s == 450
    assert get_gpu("A100").interconnect_gb_s == 300
    assert get_gpu("B200").interconnect_gb_s == 900
    for pcie_card, rate in (("L40S", 32), ("A100-PCIe-80GB", 32), ("RTX-PRO-6000", 64)):
        spec = get_gpu(pcie_card)
        assert spec.interconnect == "pcie"
        assert spec.interconnect_gb_s == rate


@pytest.mark.parametrize("gpu_id", CANONICAL_IDS)
def test_every_number_present_positive_and_cited(gpu_id: str) -> None:
    spec = get_gpu(gpu_id)
    cited = [f"dense_tflops.{p}" for p in spec.dense_tflops] + list(NUMERIC_FIELDS)
    for field_name in NUMERIC_FIELDS:
        value = getattr(spec, field_name)
        assert not math.isnan(value) and value > 0, field_name
    for value in spec.dense_tflops.values():
        assert value > 0
    for key in cited:
        assert spec.sources.get(key, "").strip(), f"{gpu_id}: no source for {key}"
    assert spec.vendor in ("nvidia", "amd")
    assert spec.interconnect in ("nvlink", "xgmi", "pcie")
    # reported capacity is below the nominal marketing figure, never above it
    assert spec.memory_gib < 300


def test_csv_backed_numbers_cite_the_csv() -> None:
    h100 = get_gpu("H100")
    for key in ("dense_tflops.bf16", "dense_tflops.fp8", "hbm_tb_s", "tdp_w"):
        assert h100.sources[key].startswith("hardware_facts.csv: ")


# --------------------------------------------------------------------------- hardware_facts.csv

CSV_HARDWARE = {
    "H100 SXM 80GB": "H100",
    "H200 SXM 141GB": "H200",
    "A100 SXM 80GB": "A100-80GB",
    "B200 SXM": "B200",
    "GB200 (per GPU)": "GB200",
    "GB200 (per B200 GPU in NVL72)": "GB200",
    "MI300X": "MI300X",
}


def _csv_facts() -> list[dict[str, str]]:
    with open(require_data("hardware_facts.csv"), newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["scenario"] == "hardware spec"]


def _csv_values(rows: list[dict[str, str]], hardware: str, metric: str) -> list[tuple[float, str]]:
    return [
        (float(r["value"]), r["unit"])
        for r in rows
        if r["hardware"] == hardware and r["metric"] == metric
    ]


def test_h100_matches_hardware_facts_csv() -> None:
    rows = _csv_facts()
    h100 = get_gpu("H100")
    ((bf16, _),) = _csv_values(rows, "H100 SXM 80GB", "bf16_dense_tflops")
    ((fp8, _),) = _csv_values(rows, "H100 SXM 80GB", "fp8_dense_tflops")
    ((hbm, hbm_unit),) = _csv_values(rows, "H100 SXM 80GB", "hbm_bandwidth")
    ((tdp, _),) = _csv_values(rows, "H100 SXM 80GB", "tdp")
    ((duplex, _),) = _csv_values(rows, "H100 SXM 80GB", "nvlink_bw_duplex")
    ((capacity_gb, _),) = _csv_values(rows, "H100 SXM 80GB", "hbm_capacity")
    assert h100.tflops("BF16") == bf16
    assert h100.tflops("FP8") == fp8
    assert hbm_unit == "TB/s" and h100.hbm_tb_s == hbm
    assert h100.tdp_w == tdp
    assert h100.interconnect_gb_s * 2 == duplex
    # the reported capacity is a little under the datasheet's "80 GB" read as GiB
    assert 0.97 * capacity_gb < h100.memory_gib < capacity_gb


_METRIC_TO_FIELD = {
    "bf16_dense_tflops": lambda s: s.tflops("bf16"),
    "fp16_dense_tflops": lambda s: s.tflops("fp16"),
    "fp8_dense_tflops": lambda s: s.tflops("fp8"),
    "fp4_dense_tflops": lambda s: s.tflops("fp4"),
    "tdp": lambda s: s.tdp_w,
    "hbm_bandwidth": lambda s: s.hbm_tb_s,
    "nvlink_bw_unidir": lambda s: s.interconnect_gb_s,
    "xgmi_bw_unidir_all2all": lambda s: s.interconnect_gb_s,
}


@pytest.mark.parametrize("csv_name", sorted(CSV_HARDWARE))
def test_catalogue_agrees_with_every_csv_spec_row(csv_name: str) -> None:
    rows = _csv_facts()
    spec = get_gpu(CSV_HARDWARE[csv_name])
    checked = 0
    for metric, accessor in _METRIC_TO_FIELD.items():
        values = _csv_values(rows, csv_name, metric)
        if not values:
            continue
        # the CSV may quote one metric from two sources (e.g. A100 HBM 2.00 and 2039 GB/s)
        in_catalogue_units = [
            v / 1000 if unit == "GB/s" and metric == "hbm_bandwidth" else v for v, unit in values
        ]
        assert any(accessor(spec) == pytest.approx(v) for v in in_catalogue_units), metric
        checked += 1
    assert checked >= 1


# --------------------------------------------------------------------------- YAML validation


def _raw_entry() -> dict:
    return {
        "full_name": "Test GPU",
        "aliases": ["TGPU"],
        "vendor": "nvidia",
        "family": "hopper",
        "dense_tflops": {"bf16": 100, "fp8": 200},
        "memory_gib": 10.0,
        "hbm_tb_s": 1.0,
        "interconnect": "nvlink",
        "interconnect_gb_s": 100,
        "pcie_gb_s": 32,
        "tdp_w": 300,
        "sources": {
            "dense_tflops.bf16": "a",
            "dense_tflops.fp8": "b",
            "memory_gib": "c",
            "hbm_tb_s": "d",
            "interconnect_gb_s": "e",
            "pcie_gb_s": "f",
            "tdp_w": "g",
        },
    }


def test_parse_accepts_a_valid_entry() -> None:
    specs = parse_gpus({"T1": _raw_entry()})
    assert specs["T1"].tflops("fp8") == 200
    assert specs["T1"].aliases == ("TGPU",)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e.pop("vendor"), "vendor"),
        (lambda e: e.__setitem__("vendor", "intel"), "vendor"),
        (lambda e: e.__setitem__("family", "volta"), "family"),
        (lambda e: e["dense_tflops"].__setitem__("FP4", 1), "dense_tflops"),
        (lambda e: e.__setitem__("tdp_w", -5), "tdp_w"),
        (lambda e: e["sources"].pop("hbm_tb_s"), "hbm_tb_s"),
        (lambda e: e["sources"].__setitem__("tdp_watts", "x"), "tdp_watts"),
        (lambda e: e.__setitem__("colour", "green"), "colour"),
    ],
)
def test_parse_rejects_bad_entries_naming_gpu_and_field(mutate, fragment: str) -> None:
    entry = _raw_entry()
    mutate(entry)
    with pytest.raises(CatalogError) as info:
        parse_gpus({"T1": entry}, origin="gpus.yaml")
    message = str(info.value)
    assert "gpus.yaml" in message and "T1" in message and fragment in message


def test_parse_rejects_names_shared_by_two_gpus() -> None:
    other = copy.deepcopy(_raw_entry())
    other["full_name"] = "Other GPU"
    other["aliases"] = ["t-gpu"]  # same lookup key as T1's alias "TGPU"
    with pytest.raises(CatalogError, match="also names GPU T1"):
        parse_gpus({"T1": _raw_entry(), "T2": other})


@pytest.mark.parametrize("document", [None, [], "H100", {}])
def test_parse_rejects_non_mapping_documents(document) -> None:
    with pytest.raises(CatalogError):
        parse_gpus(document)


def test_unknown_number_raises_when_asked_for() -> None:
    entry = _raw_entry()
    del entry["tdp_w"], entry["sources"]["tdp_w"]
    del entry["memory_gib"], entry["sources"]["memory_gib"]
    spec = parse_gpus({"T1": entry})["T1"]
    with pytest.raises(CatalogError, match="T1 has no known tdp_w"):
        spec.require("tdp_w")
    with pytest.raises(CatalogError, match="memory_gib"):
        _ = spec.memory_bytes
    assert spec.require("hbm_tb_s") == 1.0
    with pytest.raises(CatalogError, match="unknown GPU field"):
        spec.require("bogus")
