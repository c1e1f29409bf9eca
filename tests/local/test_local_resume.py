"""Stopping `kubenas run` and resuming it with `kubenas run --resume DIR`.

* SIGKILL of the runner mid-search (real trainers): the trainers that outlived it are adopted
  by pid, none is started twice, no finished trial is lost, the strategy hears each reward once
  and the search ends with exactly maxTrials trials.
* Ctrl-C: running trainers are stopped (SIGTERM, they checkpoint), requeued without a failure
  counted, and the next attempt continues from the trial's checkpoint after --resume.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

from nas_operator import cli
from nas_operator.local.output import RunFolder
from tests.support.local_run import (
    FAKE_TRAINER,
    attempt_pids,
    checkpoint_facts,
    csv_rows,
    fake_search,
    image_search,
    live_trainers,
    wait_for,
    write_yaml,
)


def journal_rows(out) -> list[dict]:
    return [row.__dict__ for row in RunFolder(out).rows()]


def test_sigkill_mid_search_then_resume_loses_nothing_and_runs_nothing_twice(
        tmp_path, processes, capsys):
    search = write_yaml(tmp_path / "s.yaml", image_search("killed", max_trials=3, parallel=2))
    out = tmp_path / "run"
    first = processes.start(["run", str(search), "--out", str(out), "--quiet"], out)
    # kill once a trial has finished and another trainer is still at work
    wait_for(lambda: journal_rows(out) and live_trainers(out), 120, "one finished, one running")
    time.sleep(0.5)
    first.kill()  # SIGKILL: no handler, no last checkpoint, trainers keep running
    first.wait()
    before = {r["trial"]: r for r in journal_rows(out)}
    running_at_kill = live_trainers(out)
    assert before and running_at_kill

    capsys.readouterr()
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0  # in-process: quicker
    output = capsys.readouterr().out
    assert "resuming search killed" in output

    rows = {r["trial"]: r for r in csv_rows(out)}
    assert list(rows) == ["killed-t0000", "killed-t0001", "killed-t0002"]
    assert {r["phase"] for r in rows.values()} == {"Succeeded"}
    after = {r["trial"]: r for r in journal_rows(out)}
    for trial, row in before.items():  # finished before the kill: kept, with the same result
        assert after[trial]["reward"] == row["reward"] and after[trial]["phase"] == "Succeeded"
    started = Counter(key.split("/")[0] for key in attempt_pids(out))
    assert started == {"killed-t0000": 1, "killed-t0001": 1, "killed-t0002": 1}, started
    for key in running_at_kill:  # adopted: the attempt that ran through the kill is the one
        trial, attempt = key.split("/")  # that counted, not a relaunch
        assert rows[trial]["attempt"] == attempt[1:]
    assert live_trainers(out) == []

    state, ledger, strategy = checkpoint_facts(out)
    assert state["phase"] == "Succeeded" and ledger.created("search") == 3
    assert ledger.counts["search"]["succeeded"] == 3 and ledger.counts["search"]["retried"] == 0
    assert (strategy["asked"], strategy["told"], strategy["failed"], strategy["pending"]) == (
        3, 3, 0, 0)
    assert "strategy refused" not in output


def test_ctrl_c_stops_cleanly_and_resume_continues_each_trial_from_its_checkpoint(
        tmp_path, processes, capsys, monkeypatch):
    search = write_yaml(tmp_path / "s.yaml", fake_search(
        "paused", max_trials=3, parallel=2, trial={"training": {"epochs": 4}}))
    out = tmp_path / "run"
    env = {"FAKE_TRAINER_PLAN": json.dumps({str(i): ["slow"] for i in range(3)}),
           "FAKE_EPOCH_SECONDS": "0.6"}
    first = processes.start(["run", str(search), "--out", str(out), "--quiet",
                             "--trainer-command", FAKE_TRAINER, "--grace-seconds", "5"], out, env)

    def progressed() -> bool:
        files = out.glob("trials/*/checkpoint/progress.json")
        done = [json.loads(p.read_text())["epochs"] for p in files]
        return len(done) == 2 and all(done)

    wait_for(progressed, 60, "two trainers one epoch in")
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 130, output
    assert f"resume with: kubenas run --resume {out}" in output
    assert live_trainers(out) == []  # stopped, not orphaned
    state, ledger, _ = checkpoint_facts(out)
    assert state["phase"] == "Suspended"
    assert ledger.counts["search"]["retried"] == 0 and ledger.counts["search"]["failed"] == 0

    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "Stopped: interrupted" in shown and "resume with: kubenas run --resume" in shown

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0
    rows = csv_rows(out)
    assert [(r["trial"], r["phase"]) for r in rows] == [
        ("paused-t0000", "Succeeded"), ("paused-t0001", "Succeeded"), ("paused-t0002", "Succeeded")]
    for trial in ("paused-t0000", "paused-t0001"):  # requeued as attempt 1, resumed mid-way
        assert next(r for r in rows if r["trial"] == trial)["attempt"] == "1"
        log = (out / "trials" / trial / "a1" / "output.log").read_text()
        assert "attempt 1 starts at epoch 0" not in log and "starts at epoch" in log, log
    state, ledger, strategy = checkpoint_facts(out)
    assert state["phase"] == "Succeeded"
    assert ledger.counts["search"]["retried"] == 0 and ledger.counts["search"]["failed"] == 0
    assert (strategy["asked"], strategy["told"], strategy["pending"]) == (3, 3, 0)
