"""The house rules of DESIGN.md's Layout, checked on the package's own source: its modules import one way (no
cycle, counting imports inside functions too), what modules share is public (no `_name` imported from another
module), and no file is over 400 lines.

The import graph is computed here with `ast`, with no import run: `import a.b`, `from a import b` (a module b
or a name in a), relative imports, at module level or inside a function. Importing a submodule also runs its
package's __init__, but that is no edge: a package that re-exports its submodules is not a cycle.
"""
from __future__ import annotations

import ast
import textwrap
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import deploytool

PACKAGE = Path(deploytool.__file__).resolve().parent
MAX_LINES = 400  # DESIGN.md: a file past ~400 lines is probably two ideas


@dataclass
class Graph:
    files: dict[str, Path]  # module name -> file
    edges: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # module -> imported module -> ["file:line"]
    private: list[str] = field(default_factory=list)  # "importer <- module._name (file:line)"


def modules_of(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name: `pkg/a/b.py` -> pkg.a.b, `pkg/a/__init__.py` -> pkg.a."""
    files = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def import_graph(package: Path) -> Graph:
    """The package's imports between its own modules, and its imports of private names across modules."""
    graph = Graph(modules_of(package))
    root = package.name
    for name, path in graph.files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == root:
                        _add(graph, name, _nearest_module(graph, alias.name), where)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the importer's package, one level up per extra dot
                    base = name.split(".")[:len(name.split(".")) - node.level + (1 if is_package else 0)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != root:
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    dest = submodule if submodule in graph.files else _nearest_module(graph, target)
                    _add(graph, name, dest, where)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and dest != name:
                        graph.private.append(f"{name} <- {target}.{alias.name} ({where})")
    return graph


def _nearest_module(graph: Graph, dotted: str) -> str | None:
    while dotted and dotted not in graph.files:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _add(graph: Graph, importer: str, dest: str | None, where: str) -> None:
    if dest and dest != importer:
        graph.edges.setdefault(importer, {}).setdefault(dest, []).append(where)


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for module in graph.files:
        if module not in index:
            visit(module)
    return found


def one_loop(graph: Graph, component: list[str]) -> list[str]:
    """A shortest import loop through the component's first module, each step with where it is imported."""
    start, inside = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in graph.edges.get(v, {}):
            if w not in inside:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                path.reverse()
                steps = zip(path, [*path[1:], start])
                return [f"{a} -> {b} ({graph.edges[a][b][0]})" for a, b in steps]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    return []


def long_files(package: Path) -> list[str]:
    return [f"{path.relative_to(package.parent)}: {n} lines" for path in sorted(package.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > MAX_LINES]


# --- the checker itself, on a package made for it -------------------------------------------------------


def _write(folder: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checker_sees_relative_function_level_and_from_package_imports(tmp_path):
    _write(tmp_path, {
        "toy/__init__.py": "from toy.low import helper  # re-export: not a cycle with toy.low\n",
        "toy/low.py": "def helper():\n    from . import high  # function-level, relative, a module by name\n",
        "toy/high.py": "from .sub.leaf import _secret\nimport toy.sub\n",
        "toy/sub/__init__.py": "",
        "toy/sub/leaf.py": "from ..low import helper\n_secret = 1\n",
    })
    graph = import_graph(tmp_path / "toy")
    assert set(graph.edges["toy.low"]) == {"toy.high"}
    assert set(graph.edges["toy.high"]) == {"toy.sub.leaf", "toy.sub"}
    assert set(graph.edges["toy.sub.leaf"]) == {"toy.low"}
    assert cycles(graph) == [["toy.high", "toy.low", "toy.sub.leaf"]]
    assert graph.private == ["toy.high <- toy.sub.leaf._secret (toy/high.py:1)"]
    assert [step.split(" (")[0] for step in one_loop(graph, cycles(graph)[0])] == [
        "toy.high -> toy.sub.leaf", "toy.sub.leaf -> toy.low", "toy.low -> toy.high"]


def test_the_checker_sees_this_package_import_its_layers():
    graph = import_graph(PACKAGE)
    assert len(graph.files) > 50
    assert "deploytool.errors" in graph.edges["deploytool.cli"]  # module level
    assert "deploytool.gate" in graph.edges["deploytool.cli.check"]  # `from deploytool import gate`, in a function


# --- the rules ---------------------------------------------------------------------------------------------


def test_no_import_cycle_between_modules():
    graph = import_graph(PACKAGE)
    found = cycles(graph)
    report = "\n".join(f"{len(c)} modules: {', '.join(c)}\n  e.g. " + "\n       ".join(one_loop(graph, c))
                       for c in found)
    assert not found, f"Import cycles (lower layers must not import higher ones):\n{report}"


def test_no_private_name_is_imported_across_modules():
    private = import_graph(PACKAGE).private
    assert not private, ("Private names imported from another module; make what modules share public, named and "
                         "documented:\n" + "\n".join(private))


def test_no_file_is_over_400_lines():
    found = long_files(PACKAGE)
    assert not found, "Files over 400 lines (probably two ideas each):\n" + "\n".join(found)
