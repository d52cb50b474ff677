"""Scenario validation errors in the user's terms: each pydantic problem becomes one line
naming the YAML path (``deployments[1].tp``), the value found and what would be valid, with
the unit when the key has one."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from capacitor.scenario.base import NAME_RE
from capacitor.scenario.models import Scenario

_UNITS = {
    "_mw": "MW", "_ms": "milliseconds", "_s": "seconds", "_rps": "requests/s",
    "_hours": "hours", "_pct": "percent (0-100)", "_usd_per_month": "USD per month",
    "_usd_per_mwh": "USD per MWh", "_per_min": "per minute", "_tokens": "tokens",
    "_days": "days", "_len": "tokens",
}


# ---- loading ---------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _walk(loc: tuple[Any, ...], data: Any) -> tuple[str, Any]:
    """YAML path of a pydantic ``loc`` (dropping discriminated-union tags and union member
    labels) and the input value at its end (None when absent)."""
    parts: list[str] = []
    node: Any = data
    present = True
    for el in loc:
        if isinstance(el, int):
            parts.append(f"[{el}]")
            node = node[el] if present and isinstance(node, list) and el < len(node) else None
            present = node is not None
        elif present and isinstance(node, dict) and el not in node and node.get("kind") == el:
            continue  # a discriminated-union tag, not a key
        elif present and isinstance(node, dict):
            parts.append(f".{el}")
            present = el in node
            node = node.get(el)
        elif present and node is not None and not isinstance(node, list):
            continue  # a union member's label under a scalar
        else:
            parts.append(f".{el}")
            node, present = None, False
    return "".join(parts).lstrip("."), node


def _model_at(loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The pydantic model class validating the mapping at ``loc`` (for valid-key lists)."""
    cls: Any = Scenario
    node: Any = data
    for el in loc:
        if isinstance(el, int):
            node = node[el] if isinstance(node, list) and el < len(node) else None
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        if el not in cls.model_fields:
            continue
        ann = cls.model_fields[el].annotation
        node = node.get(el) if isinstance(node, dict) else None
        cls = _unwrap(ann, node)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _unwrap(ann: Any, node: Any) -> Any:
    while True:
        origin = typing.get_origin(ann)
        args = typing.get_args(ann)
        if origin is typing.Annotated:
            ann = args[0]
        elif origin in (list, dict):
            ann = args[-1]
            return _unwrap(ann, None) if node is None else ann
        elif args:  # a union: the model whose kind matches, else the first model
            models = [m for a in args for m in _union_models(a)]
            kind = node.get("kind") if isinstance(node, dict) else None
            for m in models:
                field = m.model_fields.get("kind")
                if field is not None and kind in typing.get_args(field.annotation):
                    return m
            return models[0] if models else None
        else:
            return ann


def _kinds_at(loc: tuple[Any, ...], data: Any) -> str:
    """The valid ``kind`` values of the discriminated union at ``loc`` (for messages)."""
    parent = _model_at(loc[:-1], data)
    field = parent.model_fields.get(str(loc[-1])) if parent else None
    if field is None:
        return ""
    kinds = [typing.get_args(m.model_fields["kind"].annotation)[0]
             for m in _union_models(field.annotation) if "kind" in m.model_fields]
    return ", ".join(repr(k) for k in kinds)


def _union_models(ann: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a (possibly Annotated, possibly nested) union member."""
    if isinstance(ann, type):
        return [ann] if issubclass(ann, BaseModel) else []
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return _union_models(args[0])
    return [m for a in args for m in _union_models(a)]


def _unit_hint(path: str) -> str:
    leaf = path.rsplit(".", 1)[-1]
    for suffix, unit in _UNITS.items():
        if leaf.endswith(suffix):
            return f" (in {unit})"
    return ""


def pydantic_problems(err: ValidationError, data: Any) -> list[str]:
    """One ``path = value: message`` line per pydantic error (duplicates dropped)."""
    lines: list[str] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path, value = _walk(loc, data)
        kind = e["type"]
        msg = str(e["msg"]).removeprefix("Value error, ")
        if kind == "missing":
            line = f"{path}: missing (required)"
        elif kind == "extra_forbidden":
            model = _model_at(loc[:-1], data)
            valid = ", ".join(model.model_fields) if model else ""
            line = f"{path} = {_show(e.get('input'))}: unknown key" + (
                f"; valid keys here: {valid}" if valid else "")
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            ctx = e.get("ctx", {})
            tags = ctx.get("expected_tags") or _kinds_at(loc, data)
            got = ctx.get("tag")
            line = (f"{path}.kind = {_show(got)}: unknown kind; valid: {tags}" if got is not None
                    else f"{path}.kind: missing (required); valid: {tags}")
        elif kind == "string_pattern_mismatch" and e.get("ctx", {}).get("pattern") == NAME_RE:
            line = (f"{path} = {_show(e.get('input'))}: a name is letters, digits, '_', '.', "
                    "'-', starting with a letter or digit")
        else:
            hint = _unit_hint(path) if kind.endswith(("_type", "_parsing")) else ""
            shown = value if value is not None else e.get("input")
            line = f"{path} = {_show(shown)}: {msg[:1].lower() + msg[1:]}{hint}"
        if line not in lines:
            lines.append(line)
    return lines


# ---- checks after parsing ----------------------------------------------------------------------


__all__ = ["pydantic_problems"]
