"""The run folder of ``kubenas run``: everything needed to read a search and to resume it.

::

    search.yaml      the NASSearch as the user wrote it (resume reads it back)
    run.json         runner settings (parallel, trainer command, ports) for resume
    search.key       the per-search token key (mode 0600)
    checkpoint/      the loop checkpoint (ledger + strategy), crash-safe
    trials/          one folder per trial: attempts, logs, trainer checkpoints
    trials.jsonl     journal of finished trials, appended (fsynced) as they end
    trials.csv       the same, one row per trial, rewritten from the journal
    best.json        the best architecture (space, tokens, readable genotype), reward, metrics
    best.png         a picture of the best cell or network
    front.json       multi-objective search: the Pareto front (members with architectures)
    front.png        multi-objective search: every trial's objectives, the front highlighted
    rewards.png      reward per trial with the running best

The journal is written when a trial ends, before the loop's next checkpoint,
so a finished trial is never missing from it; a runner killed in between may
see the same trial end again after resume, so rows are keyed by trial and the
last one wins.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from controller_policy.files import atomic_write
from nas_operator import tokens
from nas_operator.api import NASSearch, load_search_yaml
from nas_operator.local.genotype_graph import genotype_summary

CHECKPOINT_KEY = "search"
KEY_METRICS = ("val_accuracy", "val_perplexity", "val_loss", "params", "flops", "latency_ms")
"""Columns of trials.csv besides the reward (those a trainer reported)."""


class RunFolderError(ValueError):
    """A folder that is not (or not yet, or no longer) a usable run folder; says what to do."""


@dataclass
class RunSettings:
    """How the runner was started; ``--resume`` reuses them unless flags override them."""

    parallel: int | None = None
    trainer_command: list[str] | None = None
    metrics_port: int | None = None
    status_port: int | None = None
    """Last port of the status API: a resumed runner takes it again when it is free, so
    trainers that outlived the previous runner still reach it."""
    workdir: str | None = None
    """The directory ``kubenas run`` was started from: relative paths in the search (dataset
    paths) mean paths from there, also when a resume starts elsewhere."""


@dataclass
class TrialRow:
    """One trial as the table shows it (its last attempt)."""

    trial: str
    stage: str
    index: int
    attempt: int
    phase: str
    reward: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    genotype: dict[str, Any] | None = None
    failure: str | None = None
    tokens: list[int] | None = None
    objectives: dict[str, float] | None = None
    """Multi-objective form: the trial's value of each objective (as scored)."""
    device: str | None = None
    """The device the trainer measured latency_ms on (a succeeded trial's final report)."""


class RunFolder:
    """Paths and files of one run folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # Absolute once, against the user's directory: trainers run with their attempt folder
        # as working directory, so a relative path handed to them would point nowhere.
        self.root = Path(root).absolute()
        self.search_yaml = self.root / "search.yaml"
        self.run_json = self.root / "run.json"
        self.key_file = self.root / "search.key"
        self.checkpoint_dir = self.root / "checkpoint"
        self.trials_dir = self.root / "trials"
        self.journal = self.root / "trials.jsonl"
        self.trials_csv = self.root / "trials.csv"
        self.best_json = self.root / "best.json"
        self.best_png = self.root / "best.png"
        self.rewards_png = self.root / "rewards.png"
        self.front_json = self.root / "front.json"
        self.front_png = self.root / "front.png"

    @property
    def checkpoint_file(self) -> Path:
        return self.checkpoint_dir / f"{CHECKPOINT_KEY}.ckpt"

    def is_run(self) -> bool:
        return self.search_yaml.is_file()

    # --- creation and settings ---------------------------------------------------------------
    def started(self) -> bool:
        """Whether a search ever ran here (a folder whose runner failed to start did not)."""
        return self.checkpoint_file.exists() or self.journal.exists()

    def create(self, search_text: str, settings: RunSettings) -> None:
        """Start a new run folder; refuses one where a search has run."""
        if self.started():
            raise RunFolderError(
                f"{self.root} already holds a search; continue it with "
                f"'kubenas run --resume {self.root}', or choose another --out"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.trials_dir.mkdir(exist_ok=True)
        self.save_settings(settings)
        self._key(create=True)
        atomic_write(self.search_yaml, search_text)

    def require_run(self) -> None:
        if not self.is_run():
            raise RunFolderError(
                f"{self.root} is not a kubenas run folder (no search.yaml); start one with "
                f"'kubenas run SEARCH.yaml --out {self.root}'"
            )

    def save_settings(self, settings: RunSettings) -> None:
        atomic_write(self.run_json, json.dumps(asdict(settings), indent=2))

    def load_settings(self) -> RunSettings:
        try:
            data = json.loads(self.run_json.read_text())
            return RunSettings(**{k: v for k, v in data.items() if k in RunSettings.__annotations__})
        except (OSError, ValueError, TypeError):
            return RunSettings()

    def load_search(self) -> NASSearch:
        """search.yaml as the run judged it: the run's ``--trainer-command`` stands in for
        spec.trial.command (so a metric only that trainer reports still validates)."""
        return load_search_yaml(self.search_yaml.read_text(),
                                command=self.load_settings().trainer_command)

    def key(self) -> bytes:
        return self._key(create=False)

    def _key(self, create: bool) -> bytes:
        if self.key_file.exists():
            try:
                return tokens.decode_key(self.key_file.read_text())
            except ValueError as exc:
                raise RunFolderError(f"{self.key_file}: {exc}") from None
        if not create and self.checkpoint_file.exists():
            raise RunFolderError(
                f"{self.key_file} is missing: trainers still running could not be authenticated; "
                "restore the file or start the search again in a new folder"
            )
        key = tokens.generate_key()
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(tokens.encode_key(key))
        return key

    # --- trials ------------------------------------------------------------------------------
    def record(self, row: TrialRow) -> None:
        """Append a finished trial to the journal (fsynced), then refresh trials.csv."""
        line = json.dumps(asdict(row), separators=(",", ":")) + "\n"
        with open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.write_csv()

    def rows(self) -> list[TrialRow]:
        """Finished trials, one per trial (the latest entry), search trials first in order."""
        latest: dict[str, TrialRow] = {}
        try:
            lines = self.journal.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                row = TrialRow(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line torn by a crash mid-append
            latest[row.trial] = row
        return sorted(latest.values(), key=lambda r: (r.stage != "search", r.index))

    def write_csv(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["trial", "stage", "attempt", "phase", "reward", *KEY_METRICS,
                         "device", "seconds", "genotype", "failure"])
        for r in self.rows():
            writer.writerow([
                r.trial, r.stage, r.attempt, r.phase, _num(r.reward),
                *(_num(r.metrics.get(m)) for m in KEY_METRICS), r.device or "",
                "" if r.seconds is None else f"{r.seconds:.1f}", genotype_summary(r.genotype),
                r.failure or "",
            ])  # fmt: skip
        atomic_write(self.trials_csv, buffer.getvalue())

    def write_best(self, best: dict[str, Any]) -> None:
        atomic_write(self.best_json, json.dumps(best, indent=2) + "\n")

    def read_best(self) -> dict[str, Any] | None:
        return _read_json(self.best_json)

    def write_front(self, front: dict[str, Any]) -> None:
        atomic_write(self.front_json, json.dumps(front, indent=2) + "\n")

    def read_front(self) -> dict[str, Any] | None:
        return _read_json(self.front_json)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.6g}"


