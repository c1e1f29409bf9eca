"""Faulty trainers under `kubenas run`: crashes, hangs past the deadline (even ignoring SIGTERM),
garbage reports and termination messages, trainers that always fail. Each attempt is retried or
failed per spec.trial.retries, the search still completes, the ledger and the strategy agree.

The faulty trainer is tests/support/fake_trainer.py, given as `--trainer-command` (a
documented knob for custom trainers); $FAKE_TRAINER_PLAN says how each attempt misbehaves.
"""

from __future__ import annotations

import json
import time

import pytest

from nas_operator import cli
from tests.support.local_run import (
    FAKE_TRAINER,
    attempt_pids,
    checkpoint_facts,
    csv_rows,
    fake_search,
    live_trainers,
    write_yaml,
)


def run_cli(*args: str) -> int:
    return cli.main(["run", *args, "--trainer-command", FAKE_TRAINER, "--grace-seconds", "1",
                     "--quiet"])


def test_crashes_hangs_and_garbage_are_retried_and_the_search_completes(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_TRAINER_PLAN", json.dumps({
        "1": ["crash", "ok"],
        "2": ["hang-ignoring-sigterm", "ok"],
        "3": ["garbage", "ok"],
        "4": ["crash", "crash"],
    }))
    search = write_yaml(tmp_path / "s.yaml", fake_search(
        "faults", max_trials=5, parallel=3,
        budget={"maxFailedTrials": 1},
        trial={"retries": 1, "activeDeadlineSeconds": 3},
    ))
    out = tmp_path / "run"
    started = time.monotonic()
    assert run_cli(str(search), "--out", str(out)) == 0
    elapsed = time.monotonic() - started
    printed = capsys.readouterr().out

    rows = {r["trial"]: r for r in csv_rows(out)}
    assert list(rows) == [f"faults-t{i:04d}" for i in range(5)]
    assert [(r["phase"], r["attempt"]) for r in rows.values()] == [
        ("Succeeded", "0"), ("Succeeded", "1"), ("Succeeded", "1"), ("Succeeded", "1"),
        ("Failed", "1")]
    assert "exited with code 1" in rows["faults-t0004"]["failure"]
    for i in range(4):  # the reward of the attempt that succeeded, from its own report
        assert float(rows[f"faults-t{i:04d}"]["reward"]) == pytest.approx((0.30 + 0.05 * i) ** 3)
    # why each first attempt failed, as the user saw it
    assert "exited with code 1" in printed
    assert "ran past spec.trial.activeDeadlineSeconds (3 s)" in printed
    assert "exited without a final report" in printed
    # the hung trainer ignored SIGTERM and was killed; no attempt ran more than once
    started_attempts = sorted(attempt_pids(out))
    assert started_attempts == ["faults-t0000/a0"] + [f"faults-t000{i}/a{a}" for i in range(1, 5)
                                                     for a in (0, 1)]
    assert live_trainers(out) == []
    assert elapsed < 60

    state, ledger, strategy = checkpoint_facts(out)
    assert state["phase"] == "Succeeded"
    counts = ledger.counts["search"]
    assert (counts["succeeded"], counts["failed"], counts["retried"]) == (4, 1, 4)
    assert (strategy["asked"], strategy["told"], strategy["failed"], strategy["pending"]) == (
        5, 4, 1, 0)


def test_too_many_failed_trials_fail_the_search_and_say_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_TRAINER_PLAN", json.dumps({"0": ["fail"], "1": ["fail"]}))
    search = write_yaml(tmp_path / "s.yaml", fake_search(
        "doomed", max_trials=3, parallel=1, budget={"maxFailedTrials": 1}))
    out = tmp_path / "run"
    assert run_cli(str(search), "--out", str(out)) == 1
    printed = capsys.readouterr().out
    assert "TooManyFailedTrials" in printed and "fake trainer: diverged" in printed
    state, ledger, strategy = checkpoint_facts(out)
    assert state["phase"] == "Failed" and state["reason"] == "TooManyFailedTrials"
    assert ledger.counts["search"]["failed"] == 2 and ledger.created("search") == 2
    assert strategy["failed"] == 2 and strategy["pending"] == 0
    assert [r["phase"] for r in csv_rows(out)] == ["Failed", "Failed"]


def test_a_trainer_that_cannot_start_fails_its_attempts_with_the_reason(tmp_path, capsys):
    search = write_yaml(tmp_path / "s.yaml", fake_search(
        "nostart", max_trials=1, parallel=1, budget={"maxFailedTrials": 0}))
    out = tmp_path / "run"
    code = cli.main(["run", str(search), "--out", str(out), "--quiet",
                     "--trainer-command", str(tmp_path / "no-such-trainer")])
    assert code == 1
    printed = capsys.readouterr().out
    assert "cannot start the trainer command" in printed and "no-such-trainer" in printed
    assert csv_rows(out)[0]["phase"] == "Failed"


def test_a_run_folder_whose_checkpoint_does_not_fit_is_refused_and_left_untouched(
        tmp_path, capsys):
    search = write_yaml(tmp_path / "s.yaml", fake_search("kept", max_trials=1, parallel=1))
    out = tmp_path / "run"
    assert run_cli(str(search), "--out", str(out)) == 0
    checkpoint = out / "checkpoint" / "search.ckpt"
    original_yaml, original = (out / "search.yaml").read_text(), checkpoint.read_bytes()
    capsys.readouterr()

    (out / "search.yaml").write_text(original_yaml.replace("seed: 3", "seed: 4"))
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 2
    assert "different searchSpace, strategy, objective or earlyStopping" in capsys.readouterr().out
    assert checkpoint.read_bytes() == original

    (out / "search.yaml").write_text(original_yaml)
    checkpoint.write_bytes(original[:-7])
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 2
    assert "checksum mismatch" in capsys.readouterr().out
    assert cli.main(["show", str(out)]) == 2
    assert checkpoint.read_bytes() == original[:-7]
