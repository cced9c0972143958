"""The package's import graph: no cycles, and no layer imports a layer above it.

Every module of ``statemigrate`` is parsed with :mod:`ast` (nothing is imported). All
import statements count: at module level, inside functions (an import moved into a
function to dodge a cycle is still a cycle) and under ``if TYPE_CHECKING:``. The one
exemption: imports only made for type checking may point to a higher layer (they never
run), but they still count for cycles. Importing a submodule also runs its parent
packages' ``__init__``; those implicit edges are left out, only written imports count.

The layer table is the one ``ARCHITECTURE.md`` draws; a module may import its own layer
and the layers below it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "statemigrate"

# Bottom to top. A module belongs to the layer of the longest prefix that names it or
# one of its packages; the bare package name matches only the package's own modules.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "errors",
        (
            "statemigrate._errors",
            "statemigrate._version",
            "statemigrate._lazy",
            "statemigrate._proc",
        ),
    ),
    ("observe", ("statemigrate._observe",)),
    ("model", ("statemigrate._model",)),
    ("snapshot", ("statemigrate._snapshot",)),
    ("stores", ("statemigrate.stores",)),
    ("runtime", ("statemigrate._runtime",)),
    ("handoff", ("statemigrate.handoff",)),
    ("tools", ("statemigrate.evolution", "statemigrate.testing", "statemigrate.reference")),
    ("front ends", ("statemigrate.cli", "statemigrate.demo", "statemigrate.integrations")),
    (
        "namespace",
        ("statemigrate", "statemigrate.__main__", "statemigrate.metrics", "statemigrate.tracing"),
    ),
)

Kind = Literal["module", "function", "type-checking"]


@dataclass(frozen=True)
class Edge:
    """One written import of a package module by another."""

    source: str
    target: str
    line: int
    kind: Kind

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}, {self.kind} level)"


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    names: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


class _Imports(ast.NodeVisitor):
    """Collects the imports of one module with where they occur."""

    def __init__(self, module: str, is_package: bool, known: Iterable[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = set(known)
        self.edges: list[Edge] = []
        self._functions = 0
        self._type_checking = 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._in_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._in_function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._in_function(node)

    def _in_function(self, node: ast.AST) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.known else base, node.lineno)

    def _add(self, name: str, line: int) -> None:
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        if not name or name == self.module:
            return
        kind: Kind = (
            "type-checking" if self._type_checking else "function" if self._functions else "module"
        )
        edge = Edge(self.module, name, line, kind)
        if edge not in self.edges:  # one edge per statement, however many names it takes
            self.edges.append(edge)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def imports_of(module: str, source: str, known: Iterable[str], *, is_package: bool) -> list[Edge]:
    """The imports of package modules that ``source`` (the text of ``module``) writes."""
    visitor = _Imports(module, is_package, known)
    visitor.visit(ast.parse(source))
    return visitor.edges


def package_graph(package: Path = PACKAGE) -> list[Edge]:
    """Every written import between the modules of the package."""
    names = module_names(package)
    edges: list[Edge] = []
    for module, path in names.items():
        edges += imports_of(
            module, path.read_text(), names, is_package=path.name == "__init__.py"
        )
    return edges


def find_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str, layers: Iterable[tuple[str, Iterable[str]]] = LAYERS) -> int | None:
    """The position of ``module``'s layer, bottom first, or ``None`` when no layer has it."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for position, (_name, prefixes) in enumerate(layers):
        for prefix in prefixes:
            exact_only = "." not in prefix
            if module == prefix or (not exact_only and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), position)
    return None if best is None else best[1]


def upward_imports(edges: Iterable[Edge], layer: Callable[[str], int | None]) -> list[Edge]:
    """The imports (type-checking ones exempt) of a module in a higher layer."""
    upward = []
    for edge in edges:
        source, target = layer(edge.source), layer(edge.target)
        if edge.kind == "type-checking" or source is None or target is None:
            continue
        if target > source:
            upward.append(edge)
    return upward


def _describe(cycles: list[list[str]], edges: Iterable[Edge]) -> str:
    lines = []
    for cycle in cycles:
        members = set(cycle)
        lines.append(" <-> ".join(cycle))
        lines += [f"    {e}" for e in edges if e.source in members and e.target in members]
    return "\n".join(lines)


# --- the package ----------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in module_names() if layer_of(name) is None]
    assert unplaced == [], "add these modules to LAYERS and ARCHITECTURE.md"


@pytest.mark.slow
def test_the_package_has_no_import_cycle() -> None:
    edges = package_graph()
    cycles = find_cycles(edges)
    assert cycles == [], "import cycles:\n" + _describe(cycles, edges)


@pytest.mark.slow
def test_no_module_imports_a_higher_layer() -> None:
    upward = upward_imports(package_graph(), layer_of)
    names = [name for name, _ in LAYERS]
    shown = [
        f"{edge}: {names[layer_of(edge.source) or 0]} imports {names[layer_of(edge.target) or 0]}"
        for edge in upward
    ]
    assert shown == []


@pytest.mark.slow
def test_the_graph_sees_the_package() -> None:
    """The checks above are only as good as the graph: it holds known imports."""
    edges = {(e.source, e.target, e.kind) for e in package_graph()}
    assert ("statemigrate._runtime._service", "statemigrate._runtime._restore", "module") in edges
    assert ("statemigrate.demo", "statemigrate.demo._run", "function") in edges
    assert (
        "statemigrate.handoff._report",
        "statemigrate._runtime._report",
        "type-checking",
    ) in edges


def test_architecture_md_lists_the_same_layers() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    missing = [
        prefix for _name, prefixes in LAYERS for prefix in prefixes if f"`{prefix}`" not in text
    ]
    assert missing == []


# --- negative controls: the checker finds what it must ---------------------------------


def _edges(graph: Mapping[str, Iterable[str]]) -> list[Edge]:
    return [Edge(s, t, 1, "module") for s, targets in graph.items() for t in targets]


def test_a_synthetic_cycle_is_reported() -> None:
    graph = {"p.a": ["p.b"], "p.b": ["p.c"], "p.c": ["p.a"], "p.d": ["p.a"]}
    assert find_cycles(_edges(graph)) == [["p.a", "p.b", "p.c"]]
    assert find_cycles(_edges({"p.a": ["p.b"], "p.d": ["p.a", "p.b"]})) == []


def test_a_synthetic_upward_import_is_reported() -> None:
    layers = (("low", ("p._low",)), ("high", ("p._high",)))

    def layer(name: str) -> int | None:
        return layer_of(name, layers)

    down = Edge("p._high._x", "p._low._y", 3, "module")
    up = Edge("p._low._y", "p._high._x", 7, "function")
    typed = Edge("p._low._y", "p._high._x", 9, "type-checking")
    assert upward_imports([down, up, typed], layer) == [up]


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("from p._high import thing\n", "module"),
        ("import p._high\n", "module"),
        ("def f():\n    from p._high import thing\n", "function"),
        ("class C:\n    def m(self):\n        import p._high\n", "function"),
        ("if TYPE_CHECKING:\n    import p._high\n", "type-checking"),
        ("if typing.TYPE_CHECKING:\n    pass\nelse:\n    import p._high\n", "module"),
        ("from .. import _high\n", "module"),
    ],
)
def test_the_parser_sees_every_kind_of_import(source: str, kind: Kind) -> None:
    known = ["p", "p._low", "p._low._y", "p._high"]
    (edge,) = imports_of("p._low._y", source, known, is_package=False)
    assert (edge.target, edge.kind) == ("p._high", kind)
