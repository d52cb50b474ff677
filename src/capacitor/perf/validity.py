"""Where the model has been checked against measurements, and whether a deployment is inside.

The *validated envelopes* (``perf/data/validated_envelopes.json``, written from the measured
datasets by ``calibration/validated_envelopes.py``) are the configuration classes of the runs
the fidelity tables report on: engine, GPU, architecture (``dense``, ``moe`` or ``mla_moe``),
precision class (``16bit``, ``fp8``, ``fp4``), disaggregated or not, speculative decoding, and
the tp range measured. A deployment is *validated* when one envelope has its engine, GPU,
architecture, precision class, disaggregation and speculative setting and a tp range that
holds its tp; otherwise its numbers are an extrapolation, and :func:`validity` says from
what: the nearest envelope (most of those fields shared) and what differs.

This judges the configuration only, not the load: an envelope's runs span their own
concurrencies and lengths (README, Fidelity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from capacitor.catalog.hardware import get_gpu

_FILE = "data/validated_envelopes.json"
_FIELDS = ("engine", "gpu", "architecture", "precision", "disaggregated", "speculative")


def architecture(spec: Any) -> str:
    """``mla_moe`` (DeepSeek-class), ``moe`` or ``dense`` for a model spec."""
    if spec.is_mla and spec.is_moe:
        return "mla_moe"
    return "moe" if spec.is_moe else "dense"


def precision_class(precision: str | None) -> str:
    """``16bit`` (FP16 and BF16 alike), ``fp8`` or ``fp4`` for a precision name."""
    p = (precision or "").lower()
    return "16bit" if p in ("fp16", "bf16", "float16", "bfloat16", "") else p


@cache
def envelopes() -> tuple[dict[str, Any], ...]:
    """The shipped validated envelopes (see the module docstring)."""
    text = resources.files("capacitor.perf").joinpath(_FILE).read_text(encoding="utf-8")
    return tuple(json.loads(text))


@dataclass(frozen=True)
class Validity:
    """Whether a deployment's configuration lies inside a validated envelope."""

    validated: bool
    basis: str  # the envelope it lies in, or what the nearest one lacks


def _describe(env: dict[str, Any]) -> str:
    tp = (f"tp {env['tp_min']}" if env["tp_min"] == env["tp_max"]
          else f"tp {env['tp_min']}-{env['tp_max']}")
    extra = (", disaggregated" if env["disaggregated"] else "") + (
        f", {env['speculative']}" if env["speculative"] != "none" else "")
    return (f"{env['engine']} on {env['gpu']}, {env['architecture']} {env['precision']}, "
            f"{tp}{extra} ({env['rows']} measured rows: {env['source'].split(':')[0]})")


def validity(spec: Any, *, gpu: str, engine: str, precision: str | None, tp: int,
             disaggregated: bool = False, speculative: str = "none") -> Validity:
    """Is this configuration inside a validated envelope (see the module docstring)?
    ``spec`` is the model's :class:`~capacitor.catalog.models.ModelSpec`; ``precision`` None
    means the checkpoint's own."""
    want = {"engine": engine, "gpu": get_gpu(gpu).name, "architecture": architecture(spec),
            "precision": precision_class(precision or spec.weight_dtype),
            "disaggregated": disaggregated, "speculative": speculative}
    best, best_score = None, -1
    for env in envelopes():
        same = [f for f in _FIELDS if env[f] == want[f]]
        if len(same) == len(_FIELDS) and env["tp_min"] <= tp <= env["tp_max"]:
            return Validity(True, "inside: " + _describe(env))
        score = len(same) + (env["tp_min"] <= tp <= env["tp_max"])
        if score > best_score:
            best, best_score = env, score
    if best is None:
        return Validity(False, "no validated envelopes")
    differs = [f"{f} {want[f]!s} (measured: {best[f]!s})" for f in _FIELDS
               if best[f] != want[f]]
    if not differs:
        differs = [f"tp {tp} (measured: {best['tp_min']}-{best['tp_max']})"]
    return Validity(False, "extrapolated: " + "; ".join(differs) + "; nearest measured: "
                    + _describe(best))


__all__ = ["Validity", "architecture", "envelopes", "precision_class", "validity"]
