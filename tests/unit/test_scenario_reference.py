"""The scenario reference (docs/scenario-reference.md) is generated from the JSON Schema and
kept equal to it."""

from __future__ import annotations

from pathlib import Path

from capacitor.scenario import scenario_json_schema
from capacitor.scenario.reference import scenario_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenario-reference.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    # regenerate with: capacitor scenario reference > docs/scenario-reference.md
    assert DOC.read_text(encoding="utf-8") == scenario_reference(scenario_json_schema())


def test_every_object_of_the_schema_has_a_section() -> None:
    schema = scenario_json_schema()
    text = scenario_reference(schema)
    for name, node in schema["$defs"].items():
        if node.get("properties"):
            assert f"\n## {name}\n" in text, name


def test_a_small_schema_renders_by_hand() -> None:
    schema = {
        "description": "Top.",
        "properties": {
            "a": {"type": "integer", "minimum": 1, "description": "An a | pipe."},
            "b": {"anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}], "default": None,
                  "description": "A b."},
            "c": {"type": "array", "items": {"enum": ["x", "y"]}, "default": ["x"]},
        },
        "required": ["a"],
        "$defs": {"B": {"description": "The B.",
                        "properties": {"m": {"type": "object",
                                             "additionalProperties": {"type": "number"}}}}},
    }
    lines = scenario_reference(schema).splitlines()
    assert "| `a` | integer (>= 1) | required | An a \\| pipe. |" in lines
    assert "| `b` | [B](#b) or null | `null` | A b. |" in lines
    assert '| `c` | list of one of `"x"`, `"y"` | `["x"]` |  |' in lines
    assert lines.index("## B") > lines.index("## Scenario")
    assert "| `m` | map of string to number |  |  |" in lines
