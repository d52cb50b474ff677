"""The scenario reference in Markdown, generated from the scenario's JSON Schema
(:func:`capacitor.scenario.io.scenario_json_schema`): one section per object, from the top
level down in the order a reader meets them, each key with its type, default and description.

``capacitor scenario reference`` prints it; ``docs/scenario-reference.md`` is its output, and a
test keeps the two equal, so the reference cannot drift from the model that parses scenarios.
"""

from __future__ import annotations

import json
from typing import Any

_REF = "#/$defs/"


def _anchor(name: str) -> str:
    return name.lower()


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """A schema node's type, in words, with links to the objects it names."""
    if "$ref" in node:
        name = node["$ref"].removeprefix(_REF)
        return f"[{name}](#{_anchor(name)})"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            parts = [_type(n, defs) for n in node[key]]
            return " or ".join(dict.fromkeys(parts))
    kind = node.get("type")
    if kind == "array":
        items = node.get("items")
        return f"list of {_type(items, defs)}" if items else "list"
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return f"map of string to {_type(extra, defs)}"
        return "object"
    if kind is None:
        return "any"
    bounds = [f"{sym} {node[key]:g}" for key, sym in (
        ("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"),
        ("maximum", "<=")) if key in node and isinstance(node[key], (int, float))]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop:
        return ""
    return f"`{json.dumps(prop['default'])}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _refs(node: Any) -> list[str]:
    """The object names a node refers to, in order of appearance."""
    if isinstance(node, dict):
        out = [node["$ref"].removeprefix(_REF)] if "$ref" in node else []
        for key, value in node.items():
            if key != "$ref":
                out += _refs(value)
        return out
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def _section(name: str, node: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", ""]
    if node.get("description"):
        lines += [" ".join(node["description"].split()), ""]
    props = node.get("properties", {})
    if not props:
        return lines + [f"Type: {_type(node, defs)}.", ""]
    required = set(node.get("required", ()))
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for key, prop in props.items():
        lines.append(f"| `{key}` | {_cell(_type(prop, defs))} | "
                     f"{_cell(_default(prop, key in required))} | "
                     f"{_cell(prop.get('description', ''))} |")
    return lines + [""]


def scenario_reference(schema: dict[str, Any]) -> str:
    """The Markdown reference of a scenario JSON Schema (see the module docstring)."""
    defs = schema.get("$defs", {})
    lines = ["# Scenario reference", "",
             "Generated from the scenario's JSON Schema by `capacitor scenario reference` "
             "(do not edit by hand). Every key of a scenario YAML file, object by object from "
             "the top level down; `capacitor scenario schema` prints the schema itself.", ""]
    lines += _section("Scenario", schema, defs)
    seen: list[str] = []
    queue = _refs(schema.get("properties", {}))
    while queue:
        name = queue.pop(0)
        if name in seen or name not in defs:
            continue
        seen.append(name)
        lines += _section(name, defs[name], defs)
        queue += _refs(defs[name].get("properties", {})) + _refs(
            {k: v for k, v in defs[name].items() if k != "properties"})
    return "\n".join(lines).rstrip("\n") + "\n"


__all__ = ["scenario_reference"]
