"""The project's import graph: one-way layers (docs/design.md, "Module layout").

Read from the source with ``ast`` (nothing is imported): the operator never
imports the trainer package, the core imports neither, and no two project
modules import each other, directly or round a longer loop. Imports under
``if TYPE_CHECKING:`` are for type checkers only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGES = {
    "controller_policy": REPO / "controller_policy",
    "kubenas_trial": REPO / "controller_policy",
    "nas_trainer": REPO / "trainer_image",
    "nas_operator": REPO / "operator",
}


def _module_name(base: Path, path: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, typing_too: bool = False) -> set[str]:
    """Modules named by the import statements of one file, type-checking blocks left out
    unless ``typing_too``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not typing_too:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def project_graph(typing_too: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package counts as its ``__init__``)."""
    files: dict[str, Path] = {}
    for top, base in PACKAGES.items():
        for path in (base / top).rglob("*.py"):
            files[_module_name(base, path)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        named = _imports(ast.parse(path.read_text(encoding="utf-8")), name,
                         path.name == "__init__.py", typing_too)
        graph[name] = {m for m in named if m in files and m != name}
    return graph


GRAPH = project_graph()


def test_the_graph_covers_the_four_packages() -> None:
    tops = {name.split(".")[0] for name in GRAPH}
    assert tops == set(PACKAGES)
    assert "nas_operator.kube.supervisor" in GRAPH and GRAPH["nas_operator.kube.supervisor"]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("nas_operator", "nas_trainer"),
    ("controller_policy", "nas_trainer"),
    ("controller_policy", "nas_operator"),
    ("nas_trainer", "nas_operator"),
    ("kubenas_trial", "nas_trainer"),
    ("kubenas_trial", "nas_operator"),
    ("controller_policy", "kubenas_trial"),
])
def test_layers_import_one_way(package: str, forbidden: str) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items() if module.split(".")[0] == package
        for target in targets if target.split(".")[0] == forbidden
    )
    assert not wrong, "\n".join(wrong)


def _cycle() -> list[str] | None:
    """One import cycle among project modules, as a path, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycle_among_project_modules() -> None:
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


def test_kube_modules_import_one_way_even_for_type_checkers(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """``kube/`` is layered strictly (e.g. the runtime never names the controller)."""
    kube = {m: {t for t in targets if t.startswith("nas_operator.kube")}
            for m, targets in project_graph(typing_too=True).items()
            if m.startswith("nas_operator.kube")}
    monkeypatch.setitem(globals(), "GRAPH", kube)
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


def test_a_cycle_is_found_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: two modules importing each other are reported."""
    fake = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": set()}
    monkeypatch.setitem(globals(), "GRAPH", fake)
    assert _cycle() == ["a.x", "a.y", "a.z", "a.x"]
