"""A faulty trainer for the local-mode fault tests (tests/local/test_local_faults.py).

Run as a script this file *is* the faulty trainer (`--trainer-command`, a documented knob for
custom trainers): a stdlib-only program that follows the trial contract (trial file, report
URL and token, termination file, exit codes) and misbehaves as $FAKE_TRAINER_PLAN says:
``{"<trial index>": ["crash", "ok"], ...}`` gives the behaviour per attempt (default "ok").
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request


def _post(url: str | None, token: str, body: bytes) -> int | None:
    if not url:
        return None
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def fake_trainer() -> int:
    doc = json.loads(open(os.environ["KUBENAS_TRIAL_FILE"]).read())
    url, token = os.environ.get("KUBENAS_REPORT_URL"), os.environ["KUBENAS_REPORT_TOKEN"]
    termination = os.environ["KUBENAS_TERMINATION_FILE"]
    trial, attempt = doc["trial"], doc["attempt"]
    index = int(trial[-4:])
    plan = json.loads(os.environ.get("FAKE_TRAINER_PLAN", "{}")).get(str(index), [])
    behaviour = plan[min(attempt, len(plan) - 1)] if plan else "ok"
    base = {"trial": trial, "attempt": attempt}

    def finish(report: dict[str, object], code: int) -> int:
        text = json.dumps(report)
        open(termination, "w").write(text)
        _post(url, token, text.encode())
        return code

    if behaviour == "crash":
        raise SystemExit("fake trainer: crashed on purpose")  # exit 1, no termination message
    if behaviour in ("hang", "hang-ignoring-sigterm"):
        if behaviour == "hang-ignoring-sigterm":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    if behaviour == "garbage":
        _post(url, token, b"{not json")
        _post(url, "not-the-token", json.dumps({"kind": "final", **base}).encode())
        _post(url, token, json.dumps({"kind": "final", **base, "metrics": {"": 1}}).encode())
        open(termination, "w").write("\x00garbage, not a report\xff")
        return 0
    if behaviour == "fail":
        return finish({"kind": "failed", **base, "reason": "fake trainer: diverged"}, 1)
    # "ok" and "slow": epochs (slow ones sleep, checkpoint and honour SIGTERM like the real one)
    epochs = int(doc["training"]["epochs"])
    progress_file = os.path.join(doc["checkpointDir"], "progress.json")
    done = json.loads(open(progress_file).read())["epochs"] if os.path.exists(progress_file) else []
    print(f"fake trainer: {trial} attempt {attempt} starts at epoch {len(done)}", flush=True)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while len(done) < epochs:
        if behaviour == "slow":
            time.sleep(float(os.environ.get("FAKE_EPOCH_SECONDS", "1")))
        if stop:
            return finish({"kind": "interrupted", **base, "epochs": done,
                           "reason": f"SIGTERM after {len(done)} epochs; checkpoint saved"}, 143)
        metrics = {"val_accuracy": round(0.30 + 0.05 * index + 0.01 * len(done), 4),
                   "val_loss": 1.0, "params": 1000.0 + index}
        done.append(metrics)
        partial = progress_file + ".partial"  # atomic, as the real trainer's checkpoint: a
        open(partial, "w").write(json.dumps({"epochs": done}))  # reader never sees half a file
        os.replace(partial, progress_file)
        _post(url, token, json.dumps({"kind": "epoch", **base, "epoch": len(done) - 1,
                                      "metrics": metrics}).encode())
    return finish({"kind": "final", **base, "metrics": done[-1], "epochs": done}, 0)


if __name__ == "__main__":
    sys.exit(fake_trainer())
