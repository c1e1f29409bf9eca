"""``kubenas export RUN_DIR``: the found model of a local run as files that run without kubenas.

Final training saves each retrained network under ``trials/<trial>/model/``
(``nas_trainer.model_output``). This command picks one, the best final-stage
trial by reward unless ``--trial`` names another, and has the trainer package
write the export folder (``python -m nas_trainer.export``, a separate process
as every trainer is, so the operator package never imports the trainer's).
With ``--untrained`` the architecture alone is exported: from a saved model
when there is one, else from the trial document of the best search trial.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from nas_operator.local.launcher import LocalLauncher
from nas_operator.local.output import RunFolder, RunFolderError, TrialRow

TRAINER_EXPORT = (sys.executable, "-m", "nas_trainer.export")
EXIT_INVALID = 1
EXIT_USAGE = 2


class ExportError(ValueError):
    """Nothing to export, or a trial that is not there; says what to do instead."""


@dataclass(frozen=True)
class ExportSource:
    trial: str
    args: list[str]
    """Arguments of ``python -m nas_trainer.export`` naming the source."""


def model_folder(run: RunFolder, trial: str) -> Path:
    return LocalLauncher(run.trials_dir).model_folder(trial)


def latest_document(run: RunFolder, trial: str) -> Path | None:
    """The trial document of the trial's latest attempt (``a<N>/trial.json``)."""
    attempts = sorted(
        (p for p in (run.trials_dir / trial).glob("a*/trial.json") if p.parent.name[1:].isdigit()),
        key=lambda p: int(p.parent.name[1:]),
    )
    return attempts[-1] if attempts else None


def _best(rows: list[TrialRow], stage: str) -> TrialRow | None:
    scored = [r for r in rows if r.stage == stage and r.reward is not None]
    return max(scored, key=lambda r: r.reward or 0.0) if scored else None


def choose_source(run: RunFolder, trial: str | None, untrained: bool) -> ExportSource:
    """Which saved model (or, untrained, which trial document) to export."""
    rows = run.rows()
    if trial is None:
        best_final = _best(rows, "final")
        if best_final is not None and (model_folder(run, best_final.trial) / "model.json").is_file():
            trial = best_final.trial
        elif untrained:
            best = run.read_best() or {}
            best_search = _best(rows, "search")
            trial = best.get("trial") or (best_search.trial if best_search else None)
        if trial is None:
            raise ExportError(
                f"{run.root} holds no trained model: final training did not run or did not "
                "finish (add spec.finalTraining to the search, or export the best architecture "
                "alone with --untrained)"
            )
    folder = model_folder(run, trial)
    if (folder / "model.json").is_file():
        return ExportSource(trial, ["--model", str(folder)] + (["--untrained"] if untrained else []))
    if not untrained:
        raise ExportError(
            f"trial {trial} has no saved model ({folder} is missing; only final-training trials "
            "save one); choose a final trial with --trial, or add --untrained"
        )
    document = latest_document(run, trial)
    if document is None:
        raise ExportError(f"trial {trial} is not in {run.trials_dir}; see 'kubenas show {run.root}'")
    return ExportSource(trial, ["--trial", str(document), "--untrained"])


def export_run(run_dir: Path, out: Path | None, trial: str | None, untrained: bool,
               command: tuple[str, ...] = TRAINER_EXPORT, onnx: bool = True) -> int:
    """Run the trainer's exporter for the chosen trial; returns its exit code."""
    run = RunFolder(run_dir)
    try:
        run.require_run()
    except RunFolderError as exc:
        raise ExportError(str(exc)) from None
    source = choose_source(run, trial, untrained)
    if command == TRAINER_EXPORT and importlib.util.find_spec("nas_trainer") is None:
        raise ExportError("kubenas export needs the trainer package (torch and the child models): "
                          "pip install 'kubenas[trainer]'")
    target = (out or run.root / "export" / source.trial).absolute()
    print(f"exporting {source.trial} ({'architecture only' if untrained else 'trained'}) to {target}")
    try:
        args = [*command, *source.args, "--out", str(target), *([] if onnx else ["--no-onnx"])]
        done = subprocess.run(args, check=False)
    except OSError as exc:
        raise ExportError(f"cannot run {' '.join(command)}: {exc}") from exc
    return done.returncode


def add_export_parser(sub: Any) -> None:
    """``kubenas export``'s arguments (registered by ``nas_operator.cli``)."""
    export = sub.add_parser(
        "export", help="write the found model as files that run without kubenas",
        description="Export a run's final-trained model: a torch.export program (model.pt2), "
        "a plain-torch module file (model.py) with its weights, and ONNX where the onnx "
        "package is installed. Needs the trainer package (kubenas[trainer]).")
    export.add_argument("folder", type=Path, nargs="?", metavar="RUN_DIR",
                        help="the run folder of a local search")
    export.add_argument("--search", metavar="NAME",
                        help="a NASSearch on the cluster instead (kubeconfig): exports its best "
                        "final model on finalTraining.output's claim, as a Job")
    export.add_argument("-n", "--namespace", default="default", metavar="NS",
                        help="namespace of --search (default: default)")
    export.add_argument("--trial", metavar="NAME",
                        help="the trial to export (default: the best final-training trial)")
    export.add_argument("--out", type=Path, metavar="DIR",
                        help="export folder (default: RUN_DIR/export/<trial>)")
    weights = export.add_mutually_exclusive_group()
    weights.add_argument("--trained-weights", dest="untrained", action="store_false",
                         help="with the trained weights (the default)")
    weights.add_argument("--untrained", action="store_true",
                         help="the architecture only, freshly initialized; works without "
                         "final training (the best search trial)")
    export.set_defaults(untrained=False)
    export.add_argument("--no-onnx", dest="onnx", action="store_false",
                        help="no model.onnx even where the onnx package is installed")


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    if (args.folder is None) == (args.search is None):
        console.print("error: give either RUN_DIR (a local run) or --search NAME (a cluster "
                      "search), not both", highlight=False, markup=False)
        return EXIT_USAGE
    if args.search is not None:
        if args.untrained or args.out is not None:
            console.print("error: --untrained and --out are for a local RUN_DIR; a cluster "
                          "export writes <trial>/export/ next to the model on its claim",
                          highlight=False, markup=False)
            return EXIT_USAGE
        return _cluster_export(args, console)
    try:
        return export_run(args.folder, args.out, args.trial, args.untrained, onnx=args.onnx)
    except ExportError as exc:
        console.print(f"error: {exc}", highlight=False, markup=False)
        return EXIT_USAGE


def _cluster_export(args: argparse.Namespace, console: Console) -> int:
    """Log in as kubectl would (kubeconfig) and run the export Job (``kube.export_job``)."""
    from nas_operator.kube.api import KubeApi
    from nas_operator.kube.export_job import ClusterExportError, export_search
    from nas_operator.kube.main import login

    async def run() -> str:
        api = KubeApi.from_connection_info(await asyncio.to_thread(login))
        try:
            return await export_search(api, args.namespace, args.search, args.trial,
                                       onnx=args.onnx)
        finally:
            await api.close()

    try:
        where = asyncio.run(run())
    except ClusterExportError as exc:
        console.print(f"error: {exc}", highlight=False, markup=False)
        return EXIT_INVALID
    except Exception as exc:  # noqa: BLE001 - no cluster, no credentials: say so, no traceback
        console.print(f"error: cannot reach the cluster: {exc}", highlight=False, markup=False)
        return EXIT_USAGE
    console.print(f"exported to {where}", highlight=False, markup=False)
    return 0
