"""The package's shape: commands only parse, call the library and print, so no module may
import one; layers do not import each other in a circle; no source file outgrows a read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _import_graph_module():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts/import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_imports_a_command_and_there_is_no_import_cycle():
    graph_module = _import_graph_module()
    graph, commands = graph_module.import_graph()
    assert {"crystalrl.evaluate", "crystalrl.train_rl", "crystalrl.hub"} <= commands
    assert graph_module.imported_commands(graph, commands) == []
    assert graph_module.cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above passes on an empty answer, so the finder must be able to say no."""
    cycles = _import_graph_module().cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycles == [["a", "b", "c"]]


def test_no_source_file_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "src").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
