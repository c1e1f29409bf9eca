"""YAML a user (or a generator gone wrong) hands to ``kubenas validate`` / ``kubenas run``:
too deep, too large, alias bombs. Each is refused with one line saying why, never a
RecursionError and its 200 KB traceback, never a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_operator import cli

VALID = """\
apiVersion: kubenas.dev/v1alpha1
kind: NASSearch
metadata:
  name: ok
spec:
  searchSpace:
    type: zoph-le-cnn
"""


@pytest.mark.parametrize(("text", "words"), [
    ("spec: " + "[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep (at line 1)"),
    ("spec:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80)) + "  " * 80 + "v: 1\n",
     "nested more than 64 levels deep"),
    ("a: &x [1, 2, 3]\nb: [" + ", ".join(["*x"] * 101) + "]\n", "more than 100 YAML aliases"),
    (VALID.replace("name: ok", "name: " + "x" * 1_100_000), "1,100,"),
    ("spec: {" + "[" * 30, "not valid YAML"),
])
def test_unreasonable_yaml_is_refused_in_one_line(tmp_path: Path, capsys, text: str, words: str):
    path = tmp_path / "search.yaml"
    path.write_text(text)
    assert cli.main(["validate", str(path)]) != 0
    out = capsys.readouterr()
    printed = out.out + out.err
    assert words in printed, printed[:2000]
    assert "Traceback" not in printed and len(printed) < 3000, printed[:2000]


def test_a_real_search_is_well_within_the_limits(tmp_path: Path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(VALID)
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().out
