"""The suite's own layout (docs/design.md §9): tests live in per-layer folders and share helpers
only through tests/support/, so a test module never imports another test module and nothing
sits at the top of tests/ but the suite-wide conftest.py and the package marker."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO

TESTS = REPO / "tests"
TOP_LEVEL_FILES = {"__init__.py", "conftest.py"}
SELF = Path(__file__).resolve()
"""This checker spells forbidden imports as data; its own rules are tested on small trees."""


def _imports(tree: ast.AST, first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """(line, names it may bind a module from) for each import statement; scripts handed to a
    child interpreter as string constants are parsed too."""
    for node in ast.walk(tree):
        line = first_line + getattr(node, "lineno", 1) - 1
        if isinstance(node, ast.Import):
            yield line, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield line, [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            try:
                script = ast.parse(node.value)
            except SyntaxError:
                continue
            yield from _imports(script, line)


def _is_test_module(name: str) -> bool:
    """A suite module named test_*: bare (the old flat layout) or under the tests package."""
    parts = name.split(".")
    return parts[0].startswith("test_") or (
        parts[0] == "tests" and any(part.startswith("test_") for part in parts[1:]))


def import_problems(tests: Path) -> list[str]:
    """``file:line: imports X`` for each import of a test module by any file of the suite."""
    problems = []
    for path in sorted(tests.rglob("*.py")):
        if path.resolve() == SELF:
            continue
        rel = path.relative_to(tests.parent).as_posix()
        for line, names in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            bad = next((name for name in names if _is_test_module(name)), None)
            if bad is not None:
                problems.append(f"{rel}:{line}: imports {bad}; move what it needs to "
                                f"tests/support/ and import it from there")
    return sorted(problems)


def placement_problems(tests: Path) -> list[str]:
    """Files at the top of tests/ that belong in a layer folder or tests/support/."""
    return [f"tests/{p.name} sits at the top of tests/; put it in a layer folder or tests/support/"
            for p in sorted(tests.glob("*.py")) if p.name not in TOP_LEVEL_FILES]


def test_no_test_module_imports_another() -> None:
    problems = import_problems(TESTS)
    assert not problems, "\n".join(problems)


def test_no_test_file_sits_at_the_top_of_tests() -> None:
    problems = placement_problems(TESTS)
    assert not problems, "\n".join(problems)


def test_every_layer_folder_is_a_package() -> None:
    """pytest's default import mode needs ``__init__.py`` for unique names (tests.<layer>.test_x)."""
    missing = [d.name for d in sorted(TESTS.iterdir())
               if d.is_dir() and any(d.glob("test_*.py")) and not (d / "__init__.py").is_file()]
    assert not missing, f"layer folders without __init__.py: {missing}"


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    """On a small tree: a cross-import (also in a child script) and a top-level test are named."""
    tests = tmp_path / "tests"
    (tests / "core").mkdir(parents=True)
    (tests / "conftest.py").write_text("")
    (tests / "test_stray.py").write_text("def test_x():\n    pass\n")
    (tests / "core" / "test_a.py").write_text("from tests.core.test_b import helper\n")
    (tests / "core" / "test_b.py").write_text(
        'CHILD = """\nimport sys\nfrom test_a import thing\n"""\nimport test_c\n')
    (tests / "core" / "test_ok.py").write_text("from tests.support.helm import helm_bin\n")
    imports = import_problems(tests)
    assert [p.split(": imports ")[0] for p in imports] == [
        "tests/core/test_a.py:1", "tests/core/test_b.py:3", "tests/core/test_b.py:5"], imports
    assert placement_problems(tests) == [
        "tests/test_stray.py sits at the top of tests/; put it in a layer folder or tests/support/"]
