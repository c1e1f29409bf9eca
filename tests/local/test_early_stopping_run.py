"""`kubenas run` with successive halving on real trainer processes: weak trials are stopped at
the first rung (their processes gone, never counted failed), the search still ends with
exactly maxTrials trials, and `kubenas show` says how many were stopped and what it saved."""

from __future__ import annotations

from nas_operator import cli
from tests.support.local_run import (
    checkpoint_facts,
    csv_rows,
    image_search,
    live_trainers,
    write_yaml,
)

TRIALS, EPOCHS = 4, 4


def test_successive_halving_stops_weak_trials_and_their_processes(tmp_path, capsys, processes):
    # eta 4, rungs at epoch 1 only: a trial goes on past epoch 1 only while none of those that
    # reached epoch 1 before it did better, so every later trial that is not a new best stops
    doc = image_search("halving", max_trials=TRIALS, parallel=2, epochs=EPOCHS,
                       earlyStopping={"type": "successive-halving", "minEpochs": 1,
                                      "reductionFactor": 4})
    # epochs of about a second, so a stopped trainer has epochs left to lose when stopped
    doc["spec"]["trial"]["dataset"]["maxTrainExamples"] = 1200
    out = tmp_path / "run"
    processes.folders.append(out)
    assert cli.main(["run", str(write_yaml(tmp_path / "s.yaml", doc)), "--out", str(out),
                     "--quiet"]) == 0, capsys.readouterr().out
    printed = capsys.readouterr().out

    rows = csv_rows(out)
    assert [r["trial"] for r in rows] == [f"halving-t{i:04d}" for i in range(TRIALS)]
    stopped = [r for r in rows if r["phase"] == "EarlyStopped"]
    finished = [r for r in rows if r["phase"] == "Succeeded"]
    assert stopped and finished and len(stopped) + len(finished) == TRIALS, rows
    for r in stopped:  # stopped after epoch 1: SIGTERM'd, or its later reports refused
        log = (out / "trials" / r["trial"] / "a0" / "output.log").read_text()
        assert "SIGTERM" in log or "was stopped early" in log, log
        assert not (out / "trials" / r["trial"] / "a1").exists()  # no retry: not a failure
        assert f"{r['trial']} stopped early by successive-halving at epoch 1" in printed
    assert live_trainers(out) == []

    state, ledger, strategy = checkpoint_facts(out)
    assert ledger.created("search") == TRIALS and ledger.counts["search"]["failed"] == 0
    assert ledger.counts["search"]["stopped"] == len(stopped)
    assert (strategy["told"], strategy["failed"]) == (TRIALS, 0)  # partial rewards were told
    assert sorted(state["earlyStopping"]["stopped"]) == sorted(
        str(int(r["trial"][-4:])) for r in stopped)

    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"{TRIALS}/{TRIALS} created: {len(finished)} succeeded, 0 failed" in shown
    assert (f"early stop  {len(stopped)} stopped by successive-halving (partial reward), "
            f"{len(stopped) * (EPOCHS - 1)} training epochs saved") in shown
