"""The README's benchmark headlines are the ``Headline:`` lines of the committed bench/RESULTS.md,
copied by ``python -m bench`` (bench/headlines.py), never typed: a hand edit or a rerun section
whose README was not regenerated fails here."""

from __future__ import annotations

import pytest

from bench.headlines import BEGIN, END, block, collect, headline, splice, update_readme
from tests.support import REPO


def test_readme_block_equals_the_reports_headlines() -> None:
    readme = (REPO / "README.md").read_text()
    lines = collect((REPO / "bench" / "RESULTS.md").read_text())
    assert block(lines) in readme, (
        "README.md's headline block differs from bench/RESULTS.md: run `python -m bench.headlines` "
        "(or any `python -m bench --only NAME --update`) to copy them")


REPORT = """## 1. Search quality

### A

`python -m bench.bench_a`: ok, 3 s wall.

| x | y |
Headline: **A**: 0.75 ± 0.01 against 0.74.

### B

`python -m bench.bench_b`: ok, 2 s wall.

Headline: **B**: 12 ms.
not a Headline: line
"""


def test_collect_keeps_report_order_and_only_line_starts() -> None:
    assert collect(REPORT) == ["**A**: 0.75 ± 0.01 against 0.74.", "**B**: 12 ms."]


def test_splice_replaces_only_the_block(tmp_path) -> None:
    readme = f"# t\n\nbefore\n\n{BEGIN}\n- stale figure\n{END}\n\nafter\n"
    out = splice(readme, collect(REPORT))
    assert out == f"# t\n\nbefore\n\n{BEGIN}\n- **A**: 0.75 ± 0.01 against 0.74.\n- **B**: 12 ms.\n{END}\n\nafter\n"
    results, path = tmp_path / "RESULTS.md", tmp_path / "README.md"
    results.write_text(REPORT)
    path.write_text(readme)
    assert update_readme(results, path) is True
    assert update_readme(results, path) is False  # already equal: untouched
    assert path.read_text() == out


@pytest.mark.parametrize("readme", ["no markers at all\n", f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n"])
def test_splice_refuses_a_readme_without_exactly_one_block(readme: str) -> None:
    with pytest.raises(ValueError, match="exactly one block"):
        splice(readme, ["x"])


def test_a_headline_is_one_line() -> None:
    assert headline("**X**: 1 s.") == "Headline: **X**: 1 s."
    with pytest.raises(ValueError, match="one line"):
        headline("two\nlines")
