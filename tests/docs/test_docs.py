"""The repository explains itself: every citation of a docs file lands inside the repository.

Docstrings, comments, examples and the chart cite ``docs/<name>.md``, often with section
numbers (``docs/papers.md §4, §7``). A citation must name a file under docs/ that exists
and, for each section number, a heading of that number in it (``## §4 ...``). Nothing may
cite the project brief's own files, which live outside the repository (docs/testing.md §6).
The docs in turn name repository paths; those must exist, above all the ones in the
"Module layout" section of docs/design.md, which is the one place that says where code is.

Every failure names ``file:line`` and the target that is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.support import REPO

DOCS = "docs"
SCANNED_DIRS = (
    "operator", "trainer_image", "controller_policy", "tests", "bench", "crds", "helm",
    "examples", ".ci", DOCS,
)
SCANNED_FILES = ("README.md", "Makefile", "pyproject.toml")
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".hypothesis"}
SELF = Path(__file__).resolve()
"""This checker names the docs files as data; its own citations are tested on small trees."""

_SECTIONS = r"(?P<sections>(?:[ \t]*§[ \t]*\d+(?:[ \t]*(?:,|/|and|or|&)[ \t]*§[ \t]*\d+)*)?)"
DOCS_REFERENCE = re.compile(r"(?<![\w.-])docs/(?P<name>[A-Za-z0-9_-]+)\.md" + _SECTIONS)
"""``docs/<name>.md``, optionally with ``§N`` numbers (``§4, §7``, ``§4 and §7``, ``§5/§7``)."""
SIBLING_REFERENCE = re.compile(r"(?<![\w./-])(?P<name>[A-Za-z0-9_-]+)\.md" + _SECTIONS)
"""Inside docs/ a file may cite a sibling by its bare name (``papers.md §5``)."""
SECTION_NUMBER = re.compile(r"§[ \t]*(\d+)")
NUMBERED_HEADING = re.compile(r"^#{1,6}[ \t]+§(\d+)\b", re.MULTILINE)

# The brief's files, spelled at run time so that this file does not cite them itself.
_BRIEF = "|".join(n.upper() for n in ("papers", "testing", "design"))
BRIEF_CITATION = re.compile(rf"\b(?:{_BRIEF})(?:\.md\b|[ \t]*§)|\b{'papers'.upper()}\b")
"""The brief's file names in capitals, with ``.md`` or a section sign (or the first alone)."""
OUTSIDE_CITATION = re.compile(r"(?<![\w/.-])(?P<name>papers|testing|design)\.md\b", re.IGNORECASE)
"""A docs file name without its ``docs/`` folder: outside docs/ it points at the brief."""

LAYOUT_START = "<!-- module-layout:start -->"
LAYOUT_END = "<!-- module-layout:end -->"
BACKTICKED = re.compile(r"`([^`\n]+)`")
PATH_TOKEN = re.compile(r"^[\w.-]+(?:/[\w.-]+)*/?$")
FILE_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".json", ".toml", ".txt", ".sh", ".tpl")
TOP_LEVEL = (*SCANNED_DIRS, *SCANNED_FILES)


def scanned_files(root: Path) -> Iterator[Path]:
    """Every text file of the repository parts that may cite docs (binaries are skipped)."""
    for name in SCANNED_FILES:
        if (root / name).is_file():
            yield root / name
    for top in SCANNED_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.resolve() == SELF or SKIPPED_PARTS & set(path.relative_to(root).parts):
                continue
            if path.is_file():
                yield path


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (it cannot hold a citation)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def headings(doc: Path) -> set[int]:
    """Section numbers of the ``§N`` headings of a docs file."""
    return {int(n) for n in NUMBERED_HEADING.findall(doc.read_text(encoding="utf-8"))}


def texts(root: Path, files: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """(repository-relative path, text) of each text file."""
    for path in files:
        text = read_text(path)
        if text is not None:
            yield path.relative_to(root).as_posix(), text


def in_docs(rel: str) -> bool:
    return rel.startswith(DOCS + "/")


def reference_problems(root: Path, files: Iterable[Path]) -> list[str]:
    """``file:line: what is wrong`` for each citation of a docs file that lands nowhere."""
    problems: list[str] = []
    for rel, text in texts(root, files):
        patterns = [DOCS_REFERENCE, SIBLING_REFERENCE] if in_docs(rel) else [DOCS_REFERENCE]
        for match in (m for pattern in patterns for m in pattern.finditer(text)):
            target = Path(DOCS) / f"{match.group('name')}.md"
            where = f"{rel}:{line_of(text, match.start())}"
            if not (root / target).is_file():
                problems.append(f"{where}: cites {target}, which does not exist")
                continue
            available = headings(root / target)
            for number in SECTION_NUMBER.findall(match.group("sections")):
                if int(number) not in available:
                    problems.append(
                        f"{where}: {match.group(0).strip()!r} cites §{number}, but {target} "
                        f"has no '§{number}' heading (it has §{sorted(available)})"
                    )
    return problems


def brief_citations(root: Path, files: Iterable[Path]) -> list[str]:
    """``file:line`` for each citation of a file outside the repository (the brief's)."""
    problems: list[str] = []
    for rel, text in texts(root, files):
        found = {m.start(): m.group(0) for m in BRIEF_CITATION.finditer(text)}
        if not in_docs(rel):
            for m in OUTSIDE_CITATION.finditer(text):
                found.setdefault(m.start(), m.group(0))
        for offset, cited in sorted(found.items()):
            problems.append(
                f"{rel}:{line_of(text, offset)}: {cited.strip()!r} points outside the repository; "
                f"cite docs/<name>.md (papers, testing or design) instead"
            )
    return problems


def _is_path(token: str) -> bool:
    return bool(PATH_TOKEN.match(token)) and (
        "/" in token or token.endswith(FILE_SUFFIXES) or token in ("Makefile", "Dockerfile")
    )


def named_path_problems(root: Path, doc: Path) -> list[str]:
    """Repository paths a docs file names in backticks (``operator/...``, ``test_x.py``) that
    do not exist. Only names that start at a top-level folder, and bare test modules, count."""
    problems: list[str] = []
    text = doc.read_text(encoding="utf-8")
    rel = doc.relative_to(root).as_posix()
    for match in BACKTICKED.finditer(text):
        token = match.group(1)
        if not _is_path(token):
            continue
        if token.split("/")[0] in TOP_LEVEL:
            candidates = [root / token]
        elif re.fullmatch(r"test_\w+\.py", token):
            candidates = list((root / "tests").glob(f"*/{token}"))  # a layer folder's test
        else:
            continue
        if not any(c.exists() for c in candidates):
            problems.append(f"{rel}:{line_of(text, match.start())}: names `{token}`, "
                            f"which does not exist")
    return problems


def layout_problems(root: Path, doc: Path) -> list[str]:
    """Paths in the "Module layout" section that do not exist: the first path of a bullet is
    relative to the root, the names after it to that folder (or to the root)."""
    text = doc.read_text(encoding="utf-8")
    rel = doc.relative_to(root).as_posix()
    if LAYOUT_START not in text or LAYOUT_END not in text:
        return [f"{rel}: no {LAYOUT_START} ... {LAYOUT_END} section"]
    start = text.index(LAYOUT_START)
    section = text[start:text.index(LAYOUT_END)]
    first_line = line_of(text, start)
    problems: list[str] = []
    bullets = re.split(r"\n(?=- )", section)
    offset = 0
    for bullet in bullets:
        tokens = [(m.start(), m.group(1)) for m in BACKTICKED.finditer(bullet)]
        paths = [(at, t) for at, t in tokens if _is_path(t)]
        base: Path | None = None
        for index, (at, token) in enumerate(paths):
            line = first_line + section.count("\n", 0, offset + at)
            if index == 0:
                if not (root / token).exists():
                    problems.append(f"{rel}:{line}: Module layout names `{token}`, which does "
                                    f"not exist; update the section")
                base = root / token if token.endswith("/") else root
                continue
            assert base is not None
            if not ((base / token).exists() or (root / token).exists()):
                where = base.relative_to(root).as_posix() if base != root else "."
                problems.append(f"{rel}:{line}: Module layout names `{token}` under "
                                f"{where}/, which does not exist; update the section")
        offset += len(bullet) + 1
    return problems


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)


# --- the repository ---------------------------------------------------------------------------

def test_docs_folder_holds_the_cited_files() -> None:
    for name in ("README.md", "papers.md", "testing.md", "design.md"):
        assert (REPO / DOCS / name).is_file(), f"docs/{name} is missing"


def test_papers_keep_the_section_numbers_the_code_cites() -> None:
    """§1..§7 are the topics the docstrings mean; renumbering would send readers astray."""
    text = (REPO / DOCS / "papers.md").read_text(encoding="utf-8")
    topics = {1: "Zoph & Le", 2: "recurrent", 3: "NASNet", 4: "ENAS", 5: "encoding",
              6: "Sizes", 7: "reference code"}
    titles = dict(re.findall(r"^#{1,6}[ \t]+§(\d+)[ \t]+(.+)$", text, re.MULTILINE))
    for number, word in topics.items():
        title = titles.get(str(number), "")
        assert word.lower() in title.lower(), (
            f"docs/papers.md §{number} should be about {word!r}, its heading is {title!r}"
        )


def test_every_docs_citation_names_an_existing_file_and_section() -> None:
    problems = reference_problems(REPO, scanned_files(REPO))
    assert not problems, _report(problems)


def test_nothing_cites_files_outside_the_repository() -> None:
    problems = brief_citations(REPO, scanned_files(REPO))
    assert not problems, _report(problems)


def test_docs_name_only_paths_that_exist() -> None:
    problems = [p for doc in sorted((REPO / DOCS).glob("*.md"))
                for p in named_path_problems(REPO, doc)]
    assert not problems, _report(problems)


def test_module_layout_names_only_paths_that_exist() -> None:
    problems = layout_problems(REPO, REPO / DOCS / "design.md")
    assert not problems, _report(problems)


# --- the checker itself, on a small tree: each check fails where it should --------------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / DOCS).mkdir()
    (tmp_path / DOCS / "papers.md").write_text("# P\n\n## §1 One\n\n## §2 Two\n",
                                               encoding="utf-8")
    (tmp_path / "operator").mkdir()
    (tmp_path / "operator" / "ok.py").write_text(
        '"""Good (docs/papers.md §1, §2) and (docs/papers.md).\n"""\n', encoding="utf-8")
    return tmp_path


def test_a_good_tree_has_no_problems(tree: Path) -> None:
    files = list(scanned_files(tree))
    assert reference_problems(tree, files) == []
    assert brief_citations(tree, files) == []


def test_a_missing_file_is_named_with_its_line(tree: Path) -> None:
    missing = "docs/" + "nothere.md"
    (tree / "operator" / "bad.py").write_text(f'x = 1\n"""See {missing} §1."""\n',
                                              encoding="utf-8")
    problems = reference_problems(tree, scanned_files(tree))
    assert len(problems) == 1
    assert problems[0].startswith("operator/bad.py:2:") and missing in problems[0]


@pytest.mark.parametrize("citation", ["§9", "§1, §9", "§2 and §9", "§1/§9"])
def test_a_missing_section_is_named_with_its_line(tree: Path, citation: str) -> None:
    (tree / "operator" / "bad.py").write_text(f'"""docs/papers.md {citation}."""\n',
                                              encoding="utf-8")
    problems = reference_problems(tree, scanned_files(tree))
    assert len(problems) == 1
    assert problems[0].startswith("operator/bad.py:1:") and "§9" in problems[0]
    assert "has no '§9' heading" in problems[0]


def test_a_sibling_citation_inside_docs_is_checked(tree: Path) -> None:
    sibling = "papers" + ".md §3"
    (tree / DOCS / "design.md").write_text(f"# D\n\nSee {sibling}.\n", encoding="utf-8")
    problems = reference_problems(tree, scanned_files(tree))
    assert problems and problems[0].startswith("docs/design.md:3:")


@pytest.mark.parametrize("citation", [
    "papers" + ".md §4",  # a docs name without docs/, outside docs/
    "testing" + ".md",
    "papers".upper() + " §5",  # the brief's capitals, with a section
    "see the " + "design".upper() + ".md",
    "as " + "papers".upper() + " says",
])
def test_a_citation_of_the_brief_is_refused(tree: Path, citation: str) -> None:
    (tree / "operator" / "bad.py").write_text(f'"""\n{citation}\n"""\n', encoding="utf-8")
    problems = brief_citations(tree, scanned_files(tree))
    assert len(problems) == 1 and problems[0].startswith("operator/bad.py:2:")


def test_a_moved_module_in_the_layout_is_named(tree: Path) -> None:
    (tree / "operator" / "pkg").mkdir()
    (tree / "operator" / "pkg" / "here.py").write_text("", encoding="utf-8")
    doc = tree / DOCS / "design.md"
    doc.write_text(f"# D\n\n{LAYOUT_START}\n- `operator/pkg/` — `here.py`, `gone.py`.\n"
                   f"- `operator/moved/` — `x.py`.\n{LAYOUT_END}\n", encoding="utf-8")
    problems = layout_problems(tree, doc)
    assert len(problems) == 3, problems
    assert problems[0].startswith("docs/design.md:4:") and "`gone.py`" in problems[0]
    assert problems[1].startswith("docs/design.md:5:") and "`operator/moved/`" in problems[1]
    assert named_path_problems(tree, doc) == [
        "docs/design.md:5: names `operator/moved/`, which does not exist"]
