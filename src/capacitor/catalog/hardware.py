"""GPU catalogue: per-GPU specs from vendor datasheets (see ``catalog/data/gpus.yaml``).

STUB: the dataclass below is the contract; loading and lookup are to be implemented.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    sources: dict[str, str] = field(default_factory=dict)
