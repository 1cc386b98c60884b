"""The package's internal import graph, its commands and its cycles.

A command is a module run as ``python -m crystalrl.X`` (it has a ``__main__`` block);
commands may import the library but no module may import a command. Imports under
``if TYPE_CHECKING:`` are left out: they never run, so they cannot form a cycle at import time.

    python scripts/import_graph.py            # one line per module: its internal imports
    python scripts/import_graph.py --check    # exit 1 on a cycle or an imported command
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "crystalrl"
SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        # the longest known module that `name` starts with (from a.b import c: a.b.c or a.b)
        while name:
            if name in known:
                return name
            name = name.rpartition(".")[0]
        return None

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            for child in ast.walk(node) if not isinstance(node, ast.If) else [node]:
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        if (target := resolve(alias.name)) is not None:
                            found.add(target)
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = module if is_package else module.rpartition(".")[0]
                        for _ in range(child.level - 1):
                            anchor = anchor.rpartition(".")[0]
                        base = f"{anchor}.{base}" if base else anchor
                    for alias in child.names:
                        target = resolve(f"{base}.{alias.name}") or resolve(base)
                        if target is not None:
                            found.add(target)
            if isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)

    visit(tree.body)
    found.discard(module)
    return found


def import_graph() -> tuple[dict[str, set[str]], set[str]]:
    """Each module's internal imports, and the set of command modules."""
    files = sorted((SRC / PACKAGE).rglob("*.py"))
    known = {_module_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    commands: set[str] = set()
    for f in files:
        name = _module_name(f)
        tree = ast.parse(f.read_text(), filename=str(f))
        graph[name] = _imports(tree, name, f.name == "__init__.py", known)
        if "__main__" in f.read_text() and f.name != "__init__.py":
            commands.add(name)
    # a package's __init__ imports its own children; that is not a dependency of the layer
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".") or t == PACKAGE}
    return graph, commands


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def imported_commands(graph: dict[str, set[str]], commands: set[str]) -> list[tuple[str, str]]:
    """(importer, command) pairs: a command imported by any other module."""
    return sorted((m, t) for m, targets in graph.items() for t in targets if t in commands)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 on a cycle or imported command"
    )
    args = parser.parse_args()
    graph, commands = import_graph()
    if not args.check:
        for name in sorted(graph):
            tag = " [command]" if name in commands else ""
            short = sorted(t.removeprefix(f"{PACKAGE}.") for t in graph[name])
            print(f"{name.removeprefix(f'{PACKAGE}.')}{tag}: {', '.join(short)}")
    bad = False
    for component in cycles(graph):
        print("cycle:", " <-> ".join(component))
        bad = True
    for importer, command in imported_commands(graph, commands):
        print(f"command imported: {importer} -> {command}")
        bad = True
    return 1 if (bad and args.check) else 0


if __name__ == "__main__":
    raise SystemExit(main())
