"""The trial SDK as a training script meets it: light to import, strict about what it sends.

``kubenas_trial`` is imported by every user's script and by each ``kubenas-report`` call, so
it must not pull in torch (or numpy); a metric that is not a finite number is refused with
its name before anything is sent; the assignment reads as plain Python values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubenas_trial import Reporter, ReportError, Trial, load_trial


def test_importing_the_sdk_loads_neither_torch_nor_numpy() -> None:
    code = ("import sys, kubenas_trial, kubenas_trial.report; "
            "print(sorted(m for m in ('torch', 'numpy', 'nas_trainer', 'nas_operator') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


def make_trial(tmp_path: Path) -> Trial:
    doc = {"search": "s", "trial": "s-t0003", "attempt": 2, "seed": 11,
           "architecture": {"space": "custom", "tokens": [1, 0],
                            "genotype": {"stem": 24, "stage": [{"kernel": 3}]}},
           "training": {"epochs": 5, "learningRate": 0.02},
           "dataset": {"name": "digits", "validationSize": 100},
           "objective": {"metric": "val_loss", "reward": "identity"},
           "checkpointDir": str(tmp_path / "ckpt")}
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(doc))
    return Trial(load_trial(str(path)), Reporter(None, None, tmp_path / "term",
                                                 echo_stdout=False))


def test_the_assignment_reads_as_plain_values(tmp_path: Path) -> None:
    trial = make_trial(tmp_path)
    assert (trial.name, trial.search, trial.attempt, trial.seed) == ("s-t0003", "s", 2, 11)
    assert trial.genotype == {"stem": 24, "stage": [{"kernel": 3}]} and trial.tokens == [1, 0]
    assert trial.space == "custom" and trial.stage == "search" and trial.output_dir() is None
    assert trial.training.epochs == 5 and trial.hyperparameters["learningRate"] == 0.02
    assert trial.dataset.validationSize == 100 and trial.objective.minimize  # val_loss
    assert trial.checkpoint_dir() == tmp_path / "ckpt" and trial.checkpoint_dir().is_dir()


@pytest.mark.parametrize(("metrics", "words"), [
    ({"val_loss": "0.3"}, "metric val_loss: '0.3' is not a number"),
    ({"val_loss": True}, "metric val_loss: True is not a number"),
    ({"val_loss": float("nan")}, "not finite; report a diverged run"),
    ({"val_accuracy": 3.0}, "an accuracy must lie in [0, 1]"),
])
def test_a_metric_that_is_not_a_finite_number_is_refused_by_name(tmp_path: Path, metrics,
                                                                 words) -> None:
    trial = make_trial(tmp_path)
    with pytest.raises(ReportError, match=None) as caught:
        trial.report_epoch(0, **metrics)
    assert words in str(caught.value)
    assert trial.history == []  # nothing recorded, nothing sent


def test_epochs_survive_the_process_and_a_crash_becomes_a_failed_report(tmp_path: Path) -> None:
    trial = make_trial(tmp_path)
    trial.report_epoch(0, val_loss=0.9, steps=10)
    trial.report_epoch(1, val_loss=0.7)
    again = make_trial(tmp_path)  # the next attempt (or kubenas-report call) of the trial
    assert again.next_epoch == 2 and again.history == [{"val_loss": 0.9, "steps": 10.0},
                                                       {"val_loss": 0.7}]
    with pytest.raises(RuntimeError), again:
        raise RuntimeError("CUDA out of memory")
    written = json.loads((tmp_path / "term").read_text())
    assert written["kind"] == "failed" and "RuntimeError: CUDA out of memory" in written["reason"]
    with pytest.raises(ReportError, match="attempt 2 of trial s-t0003 already ended"):
        again.report_epoch(2, val_loss=0.5)


def test_a_second_ending_of_an_attempt_is_refused_across_kubenas_report_calls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """kubenas-report runs once per call: the first --final stands; a later --failed of the same
    attempt must not overwrite the termination message that holds the reward."""
    from kubenas_trial.report import EXIT_OK, EXIT_USAGE, main

    make_trial(tmp_path)  # writes trial.json
    monkeypatch.setenv("KUBENAS_TRIAL_FILE", str(tmp_path / "trial.json"))
    monkeypatch.setenv("KUBENAS_TERMINATION_FILE", str(tmp_path / "term"))
    for name in ("KUBENAS_REPORT_URL", "KUBENAS_REPORT_TOKEN", "KUBENAS_TRIAL_JSON"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--final", "val_loss=0.25"]) == EXIT_OK
    assert main(["--failed", "cleanup crashed"]) == EXIT_USAGE
    assert "attempt 2 of trial s-t0003 already ended (a final report" in capsys.readouterr().err
    written = json.loads((tmp_path / "term").read_text())
    assert written["kind"] == "final" and written["metrics"] == {"val_loss": 0.25}
    doc = json.loads((tmp_path / "trial.json").read_text())
    (tmp_path / "trial.json").write_text(json.dumps({**doc, "attempt": 3}))  # the retry: its own ending
    assert main(["--failed", "node lost"]) == EXIT_OK
    assert json.loads((tmp_path / "term").read_text())["kind"] == "failed"


def test_an_interrupted_attempt_can_be_run_again_as_itself(tmp_path: Path) -> None:
    trial = make_trial(tmp_path)
    trial.report_epoch(0, val_loss=0.9)
    trial.report_interrupted()
    again = make_trial(tmp_path)  # the same attempt relaunched after a Ctrl-C of kubenas run
    again.report_final(val_loss=0.4)
    assert json.loads((tmp_path / "term").read_text())["kind"] == "final"
