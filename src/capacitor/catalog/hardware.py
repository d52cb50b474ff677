"""GPU catalogue: what one GPU can do, per precision, as a serving replica sees it.

The numbers live in ``catalog/data/gpus.yaml`` (package data), one entry per canonical id
(``H100``, ``A100-PCIe-80GB``, ``GB200`` ...), and every number there carries a citation in the
entry's ``sources`` mapping. Where they come from:

* ``dense_tflops``: dense (no 2:4 sparsity) tensor-core peaks per precision (fp16, bf16, fp8,
  fp4). Rows of ``../shared/data/hardware_facts.csv`` (stas00/ml-engineering tables, which cite
  the vendor pages) where they exist, otherwise vendor datasheets; "with sparsity" figures are
  halved. A missing key means no tensor-core support (no FP8 on Ampere, no FP4 before
  Blackwell / CDNA4), and :meth:`GPUSpec.tflops` raises :class:`~capacitor.errors.CatalogError`.
* ``memory_gib``: the capacity the framework reports (PyTorch's "GPU 0 has a total capacity of
  X GiB", i.e. the cudaMemGetInfo / hipMemGetInfo total) taken from public logs, not the
  datasheet's marketing GB: an "80 GB" H100 reports 79.11 GiB. vLLM sizes its KV cache from this
  value times ``gpu_memory_utilization``.
* ``hbm_tb_s``, ``tdp_w``: datasheets (hardware_facts.csv rows first).
* ``interconnect_gb_s``: GPU-to-GPU bandwidth per GPU per direction (NVLink, xGMI, or the PCIe
  rate for PCIe cards); ``pcie_gb_s``: the host link per direction (NVLink-C2C on Grace parts).
* ``nvlink_domain_gpus``, ``scaleout_gb_s``: how many GPUs one NVLink fabric joins (8 on an
  HGX node, 72 in a GB200 / GB300 NVL72 rack: a rack-scale failure's blast radius), and the
  scale-out NIC per GPU (disaggregated KV transfer, :meth:`GPUSpec.kv_link_gb_s`).

A number that cannot be established may be left out of the YAML (or set to null); it is then
stored as NaN and :meth:`GPUSpec.require` (used by the byte properties) raises CatalogError when
asked for it, so nothing is guessed silently.

Lookup (:func:`get_gpu`) is case-insensitive and ignores ``-``, ``_`` and spaces, over canonical
ids, aliases and full names; H100/H200/A100 mean the SXM parts unless the name says PCIe.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from capacitor.errors import CatalogError

PRECISIONS: tuple[str, ...] = ("fp16", "bf16", "fp8", "fp4")
NUMERIC_FIELDS: tuple[str, ...] = (
    "memory_gib",
    "hbm_tb_s",
    "interconnect_gb_s",
    "pcie_gb_s",
    "tdp_w",
    "nvlink_domain_gpus",
    "scaleout_gb_s",
)
_DATA_PACKAGE = "capacitor.catalog"
_DATA_FILE = "data/gpus.yaml"


@dataclass(frozen=True, slots=True)
class GPUSpec:
    """One GPU model as a serving replica sees it.

    Attributes:
        name: canonical id (``H100``, ``A100-PCIe-80GB``, ``GB200`` ...).
        full_name: vendor product name.
        aliases: other names that resolve to this GPU (matched case-insensitively).
        vendor: ``nvidia`` or ``amd``.
        family: architecture family keying the calibrated constants
            (``ampere``, ``ada``, ``hopper``, ``blackwell``, ``cdna3``, ``cdna4``).
        dense_tflops: dense (no sparsity) tensor TFLOPS per precision key
            (``fp16``, ``bf16``, ``fp8``, ``fp4``); a missing key means unsupported.
        memory_gib: device memory in GiB as the driver reports it to the framework.
        hbm_tb_s: peak memory bandwidth, TB/s (1e12 bytes/s).
        interconnect: ``nvlink``, ``xgmi`` or ``pcie`` (GPU-to-GPU path inside a node).
        interconnect_gb_s: GPU-to-GPU bandwidth per GPU per direction, GB/s.
        pcie_gb_s: host link bandwidth per direction, GB/s (CPU KV offload path).
        tdp_w: board power, W.
        nvlink_domain_gpus: GPUs one NVLink fabric joins (8 on an HGX node, 72 in an NVL72
            rack); NaN when not catalogued.
        scaleout_gb_s: scale-out network (InfiniBand / RoCE NIC) per GPU per direction,
            GB/s; NaN when not catalogued.
        sources: citation per number (datasheet URL or hardware_facts.csv row).
    """

    name: str
    full_name: str
    aliases: tuple[str, ...]
    vendor: str
    family: str
    dense_tflops: dict[str, float]
    memory_gib: float
    hbm_tb_s: float
    interconnect: str
    interconnect_gb_s: float
    pcie_gb_s: float
    tdp_w: float
    nvlink_domain_gpus: float = math.nan
    scaleout_gb_s: float = math.nan
    sources: dict[str, str] = field(default_factory=dict)

    def kv_link_gb_s(self, num_gpus: int) -> float:
        """Per-GPU, per-direction bandwidth between the GPUs of a deployment of ``num_gpus``
        (disaggregated KV transfer): NVLink when they all fit one NVLink domain (an NVL72
        rack, an 8-GPU node), else the scale-out NIC. CatalogError when unknown."""
        domain = self.nvlink_domain_gpus
        if self.interconnect == "nvlink" and not math.isnan(domain) and num_gpus <= domain:
            return self.require("interconnect_gb_s")
        return self.require("scaleout_gb_s")

    def tflops(self, precision: str) -> float:
        """Dense tensor TFLOPS at ``precision`` (``FP16``, ``BF16``, ``FP8``, ``FP4``, any case)."""
        key = str(precision).strip().lower()
        supported = ", ".join(p.upper() for p in PRECISIONS if p in self.dense_tflops)
        if key not in PRECISIONS:
            raise CatalogError(
                f"unknown precision {precision!r} for GPU {self.name}; valid: {supported}"
            )
        if key not in self.dense_tflops:
            raise CatalogError(
                f"GPU {self.name} has no {key.upper()} tensor cores; valid: {supported}"
            )
        return self.dense_tflops[key]

    def require(self, field_name: str) -> float:
        """The numeric field ``field_name``, or CatalogError when the catalogue lacks it."""
        if field_name not in NUMERIC_FIELDS:
            raise CatalogError(
                f"unknown GPU field {field_name!r}; valid: {', '.join(NUMERIC_FIELDS)}"
            )
        value = getattr(self, field_name)
        if math.isnan(value):
            raise CatalogError(
                f"GPU {self.name} has no known {field_name} in the catalogue "
                f"(gpus.yaml leaves it out: {self.sources.get(field_name, 'no source found')})"
            )
        return value

    @property
    def memory_bytes(self) -> int:
        """Device memory in bytes as the framework sees it (``memory_gib`` x 2**30)."""
        return round(self.require("memory_gib") * 2**30)

    @property
    def hbm_bytes_per_s(self) -> float:
        """Peak memory bandwidth in bytes/s (``hbm_tb_s`` x 1e12)."""
        return self.require("hbm_tb_s") * 1e12


class _Entry(BaseModel):
    """Schema of one gpus.yaml entry (validated before it becomes a GPUSpec)."""

    model_config = ConfigDict(extra="forbid")

    full_name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    vendor: Literal["nvidia", "amd"]
    family: Literal["ampere", "ada", "hopper", "blackwell", "cdna3", "cdna4"]
    dense_tflops: dict[Literal["fp16", "bf16", "fp8", "fp4"], PositiveFloat] = Field(min_length=1)
    memory_gib: PositiveFloat | None = None
    hbm_tb_s: PositiveFloat | None = None
    interconnect: Literal["nvlink", "xgmi", "pcie"]
    interconnect_gb_s: PositiveFloat | None = None
    pcie_gb_s: PositiveFloat | None = None
    tdp_w: PositiveFloat | None = None
    nvlink_domain_gpus: PositiveInt | None = None
    scaleout_gb_s: PositiveFloat | None = None
    sources: dict[str, str]

    @model_validator(mode="after")
    def _every_number_is_cited(self) -> _Entry:
        cited = {f"dense_tflops.{p}" for p in self.dense_tflops}
        cited |= {f for f in NUMERIC_FIELDS if getattr(self, f) is not None}
        missing = sorted(k for k in cited if not self.sources.get(k, "").strip())
        if missing:
            raise ValueError(f"numbers without a source: {', '.join(missing)}")
        allowed = {f"dense_tflops.{p}" for p in PRECISIONS} | set(NUMERIC_FIELDS)
        allowed |= {"full_name", "family", "interconnect"}
        unknown = sorted(set(self.sources) - allowed)
        if unknown:
            raise ValueError(f"sources for unknown fields: {', '.join(unknown)}")
        return self


def _lookup_key(name: str) -> str:
    """Case-insensitive key that ignores ``-``, ``_`` and whitespace."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def _format_error(gpu_id: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "entry"
        parts.append(f"{loc}: {e['msg']}")
    return f"GPU {gpu_id}: " + "; ".join(parts)


def parse_gpus(data: Any, origin: str = "<data>") -> dict[str, GPUSpec]:
    """Validate a parsed gpus.yaml document and build the specs, keyed by canonical id.

    Raises CatalogError naming the file, GPU and field on any problem, including two GPUs
    that would answer to the same name.
    """
    if not isinstance(data, dict) or not data:
        raise CatalogError(
            f"{origin}: expected a mapping of GPU id -> entry, got {type(data).__name__}"
        )
    specs: dict[str, GPUSpec] = {}
    owner: dict[str, str] = {}
    for gpu_id, raw in data.items():
        if not isinstance(gpu_id, str) or not gpu_id.strip():
            raise CatalogError(f"{origin}: GPU ids must be non-empty strings, got {gpu_id!r}")
        if not isinstance(raw, dict):
            raise CatalogError(
                f"{origin}: GPU {gpu_id}: expected a mapping, got {type(raw).__name__}"
            )
        try:
            entry = _Entry.model_validate(raw)
        except ValidationError as err:
            raise CatalogError(f"{origin}: {_format_error(gpu_id, err)}") from None
        for name in (gpu_id, entry.full_name, *entry.aliases):
            key = _lookup_key(name)
            if not key:
                raise CatalogError(f"{origin}: GPU {gpu_id}: empty alias {name!r}")
            if owner.setdefault(key, gpu_id) != gpu_id:
                raise CatalogError(
                    f"{origin}: name {name!r} of GPU {gpu_id} also names GPU {owner[key]}"
                )
        numbers = {
            f: math.nan if getattr(entry, f) is None else float(getattr(entry, f))
            for f in NUMERIC_FIELDS
        }
        specs[gpu_id] = GPUSpec(
            name=gpu_id,
            full_name=entry.full_name,
            aliases=tuple(entry.aliases),
            vendor=entry.vendor,
            family=entry.family,
            dense_tflops={
                p: float(entry.dense_tflops[p]) for p in PRECISIONS if p in entry.dense_tflops
            },
            interconnect=entry.interconnect,
            sources=dict(entry.sources),
            **numbers,
        )
    return specs


@functools.cache
def _catalog() -> tuple[dict[str, GPUSpec], dict[str, str]]:
    origin = f"{_DATA_PACKAGE.replace('.', '/')}/{_DATA_FILE}"
    try:
        text = resources.files(_DATA_PACKAGE).joinpath(_DATA_FILE).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as err:
        raise CatalogError(f"{origin}: cannot read the GPU catalogue: {err}") from None
    specs = parse_gpus(data, origin)
    index = {}
    for spec in specs.values():
        for name in (spec.name, spec.full_name, *spec.aliases):
            index[_lookup_key(name)] = spec.name
    return specs, index


def load_gpus() -> dict[str, GPUSpec]:
    """All catalogued GPUs keyed by canonical id, in catalogue order (parsed once, cached)."""
    return dict(_catalog()[0])


def list_gpus() -> list[GPUSpec]:
    """All catalogued GPUs in catalogue order."""
    return list(_catalog()[0].values())


def get_gpu(name: str) -> GPUSpec:
    """The GPU for a canonical id, alias or full name (case, ``-``/``_``/space insensitive).

    Raises CatalogError naming the value and listing the valid ids when nothing matches.
    """
    specs, index = _catalog()
    if isinstance(name, str) and (gpu_id := index.get(_lookup_key(name))):
        return specs[gpu_id]
    raise CatalogError(f"unknown GPU {name!r}; valid ids: {', '.join(specs)}")


__all__ = [
    "NUMERIC_FIELDS",
    "PRECISIONS",
    "GPUSpec",
    "get_gpu",
    "list_gpus",
    "load_gpus",
    "parse_gpus",
]
