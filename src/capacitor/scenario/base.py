"""Shared pieces of the scenario models: the strict base class, typed values (months,
names) and the defaults and choices the models refer to."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from capacitor.economics.contracts import month_index
from capacitor.fleet.failures import DEFAULT_GPUS_PER_NODE as FLEET_GPUS_PER_NODE
from capacitor.fleet.power import SERVER_OVERHEAD_FACTOR
from capacitor.workload.lengths import Z99  # the standard normal's 99th percentile, 2.3263

#: Server power per GPU as a multiple of the GPU's TDP, when a site does not say: defined
#: (with its source, the DGX H100's 10.2 kW for 8 x 700 W) in :mod:`capacitor.fleet.power`.
DEFAULT_SERVER_OVERHEAD_FACTOR = SERVER_OVERHEAD_FACTOR
#: GPUs per server when ``failures.gpus_per_node`` does not name the GPU (HGX / DGX boards):
#: defined in :mod:`capacitor.fleet.failures`.
DEFAULT_GPUS_PER_NODE = FLEET_GPUS_PER_NODE
MONTH_RE = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
PRECISIONS = ("FP16", "BF16", "FP8", "FP4")
ENGINES = ("vllm", "sglang", "trtllm")
ROUTING_POLICIES = (
    "round_robin",
    "least_outstanding_tokens",
    "power_of_two",
    "session_affinity",
    "prefix_affinity",
)
ADMISSION_POLICIES = ("none", "token_bucket", "queue_length", "predicted_ttft")


class Strict(BaseModel):
    """Base of every scenario model: unknown keys are errors, and so are .inf and .nan in any
    number (an infinite window or rate would never finish; absent means "none")."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---- small typed values ----------------------------------------------------------------------


def _month(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(
            f"expected a month as a quoted 'YYYY-MM' string, got {type(value).__name__}"
        )
    if not re.match(MONTH_RE, value.strip()):
        raise ValueError("expected a month 'YYYY-MM' (e.g. '2026-05')")
    return value.strip()


Month = Annotated[str, BeforeValidator(_month), Field(pattern=MONTH_RE)]
Name = Annotated[str, Field(pattern=NAME_RE, max_length=100)]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _replicas(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "fill":
        return "fill"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected an integer >= 1 or 'fill' (the site's remaining GPUs)")
    return value


__all__ = [
    "ADMISSION_POLICIES",
    "DEFAULT_GPUS_PER_NODE",
    "DEFAULT_SERVER_OVERHEAD_FACTOR",
    "ENGINES",
    "MONTH_RE",
    "Month",
    "NAME_RE",
    "Name",
    "PRECISIONS",
    "ROUTING_POLICIES",
    "Strict",
    "Z99",
    "month_index",
]
