"""The package's import structure: layers point one way, and no module imports itself back.

The layer order lives in ``pyproject.toml`` (``[tool.importlinter]``); this test runs
import-linter's check of it, and separately looks for any import cycle between modules,
which the layers contract cannot see inside one layer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_layers_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")  # the dev extra's console script
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import cycle among the package's modules, or None (iterative DFS, three colours)."""
    colour: dict[str, int] = {}
    for start in sorted(graph.modules):
        if colour.get(start):
            continue
        stack = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not colour.get(child):
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
    return None


def test_no_import_cycle() -> None:
    graph = grimp.build_graph("capacitor", cache_dir=None)
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("edges, has_cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),
])
def test_cycle_finder_finds_cycles(edges, has_cycle) -> None:
    graph = grimp.ImportGraph()
    for module in edges:
        graph.add_module(module)
    for importer, imported in edges.items():
        for other in imported:
            graph.add_import(importer=importer, imported=other)
    assert (_cycle(graph) is not None) is has_cycle
