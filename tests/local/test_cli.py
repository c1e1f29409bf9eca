"""The `kubenas` command line: validate names the broken field, run refuses bad input before it
touches anything, run folders are never overwritten, show and operator say what is wrong."""

from __future__ import annotations

import socket
import sys
import types

import pytest
import yaml

from nas_operator import cli
from nas_operator.local.output import RunFolder
from tests.support.local_run import REPO, image_search, write_yaml

DEMO = REPO / "examples" / "local-demo.yaml"


def broken(tmp_path, edit) -> str:
    doc = yaml.safe_load(DEMO.read_text())
    edit(doc)
    return str(write_yaml(tmp_path / "broken.yaml", doc))


@pytest.mark.parametrize("edit, field, hint", [
    (lambda d: d["spec"]["budget"].update(parallelism=0), "spec.budget.parallelism",
     "greater than or equal to 1"),
    (lambda d: d["spec"]["budget"].update(maxTrial=3), "spec.budget.maxTrial",
     "unknown field"),
    (lambda d: d["spec"]["trial"]["dataset"].update(name="ptb"), "spec.trial.dataset.name",
     "digits"),
    (lambda d: d["spec"]["searchSpace"].update(type="resnet"), "spec.searchSpace.type",
     "zoph-le-cnn"),
    (lambda d: d["spec"]["strategy"].update(type="darts"), "spec.strategy.type",
     "set spec.searchSpace.type: enas-micro"),
    (lambda d: d["spec"]["budget"].update(deadline="soon"), "spec.budget.deadline", "2h30m"),
    (lambda d: d["metadata"].update(name="Demo_1"), "metadata.name", "lower-case"),
], ids=["parallelism", "typo", "dataset", "space", "strategy", "deadline", "name"])
def test_validate_names_the_field_and_the_fix(tmp_path, capsys, edit, field, hint):
    path = broken(tmp_path, edit)
    assert cli.main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert f"{path}: invalid NASSearch" in out
    line = next((ln for ln in out.splitlines() if field in ln), None)
    assert line is not None and hint in line, out


def test_validate_reports_every_file_and_fails_if_one_is_bad(tmp_path, capsys):
    bad = broken(tmp_path, lambda d: d["spec"]["budget"].update(maxTrials=-1))
    assert cli.main(["validate", str(DEMO), bad]) == 1
    out = capsys.readouterr().out
    assert f"{DEMO}: ok" in out and "spec.budget.maxTrials" in out


def test_validate_on_yaml_that_does_not_parse_or_a_missing_file(tmp_path, capsys):
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("spec: [unclosed\n")
    assert cli.main(["validate", str(garbled)]) == 1
    assert "not valid YAML" in capsys.readouterr().out
    assert cli.main(["validate", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().out


def test_run_refuses_an_invalid_search_before_creating_anything(tmp_path, capsys):
    path = broken(tmp_path, lambda d: d["spec"]["trial"].update(retries=-1))
    out = tmp_path / "run"
    assert cli.main(["run", path, "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "spec.trial.retries" in printed and not out.exists()


def test_run_never_overwrites_a_run_folder_and_resume_needs_one(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "search.yaml").write_text("kept")
    (out / "checkpoint" / "search.ckpt").write_bytes(b"kept")
    search = write_yaml(tmp_path / "s.yaml", image_search("x", max_trials=1, parallel=1))
    assert cli.main(["run", str(search), "--out", str(out)]) == 2
    assert f"kubenas run --resume {out}" in capsys.readouterr().out
    assert (out / "search.yaml").read_text() == "kept"
    assert cli.main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a kubenas run folder" in capsys.readouterr().out
    assert cli.main(["show", str(tmp_path / "nothing")]) == 2
    assert "not a kubenas run folder" in capsys.readouterr().out


def test_run_needs_exactly_one_of_a_search_and_resume(tmp_path, capsys):
    assert cli.main(["run"]) == 2
    assert "--resume DIR" in capsys.readouterr().out
    assert cli.main(["run", str(DEMO), "--resume", str(tmp_path)]) == 2


@pytest.mark.parametrize("args, message", [
    (["--parallel", "0"], "--parallel: must be at least 1"),
    (["--metrics-port", "70000"], "at most 65535"),
    (["--trainer-command", ""], "trainer command is empty"),
])
def test_bad_flags_are_refused_by_name(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", str(DEMO), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_operator_hands_every_argument_to_the_kube_entry_point(monkeypatch):
    seen = []
    fake = types.ModuleType("nas_operator.kube.main")
    fake.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nas_operator.kube.main", fake)
    assert cli.main(["operator", "--namespace", "nas", "--help"]) == 7
    assert seen == [["--namespace", "nas", "--help"]]


def test_operator_without_the_kube_module_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nas_operator.kube.main", None)
    assert cli.main(["operator"]) == 2
    assert "nas_operator.kube.main is missing" in capsys.readouterr().out


def test_relative_paths_in_the_trainer_command_become_absolute(tmp_path, monkeypatch):
    from nas_operator.local.runner import absolute_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "trainer.py").write_text("")
    assert absolute_command(["./venv/bin/python", "trainer.py", "-v", "python3"]) == [
        str(tmp_path / "venv/bin/python"), str(tmp_path / "trainer.py"), "-v", "python3"]
    # like spec.trial.command: a first word python is the interpreter running kubenas
    assert absolute_command(["python3", "-m", "nas_trainer"]) == [sys.executable, "-m",
                                                                  "nas_trainer"]


def test_a_busy_metrics_port_is_named_and_the_folder_stays_usable(tmp_path, capsys):
    search = write_yaml(tmp_path / "s.yaml", image_search("busy", max_trials=1, parallel=1))
    out = tmp_path / "run"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["run", str(search), "--out", str(out), "--metrics-port",
                         str(port)]) == 2
    assert f"--metrics-port {port}: cannot listen" in capsys.readouterr().out
    assert not RunFolder(out).started()  # nothing ran: the same command may simply be rerun
