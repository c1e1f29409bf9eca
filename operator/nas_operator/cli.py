"""``kubenas``: run a NAS search locally, inspect a run, validate a NASSearch, run the operator.

    kubenas run SEARCH.yaml [--out DIR] [--parallel N] [--metrics-port P]
    kubenas run --resume DIR [--parallel N]
    kubenas show DIR
    kubenas export DIR [--trial NAME] [--out DIR] [--untrained]   (needs kubenas[trainer])
    kubenas validate FILE.yaml [FILE.yaml ...]
    kubenas operator [ARGS...]       (the Kubernetes operator; needs kubenas[operator])

Exit codes: 0 success; 1 the search failed or a file is invalid; 2 unusable
input (the message names the file, field or flag); 130 stopped by Ctrl-C
(resumable).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

EXIT_INVALID = 1
EXIT_USAGE = 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is at most 65535, got {value}")
    return value


def _command(text: str) -> list[str]:
    words = shlex.split(text)
    if not words:
        raise argparse.ArgumentTypeError("the trainer command is empty")
    return words


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubenas", description="Neural Architecture Search: locally or as a Kubernetes "
        "operator.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a search on this machine (trials as local processes)",
                         description="Run a NASSearch on this machine: the operator's search "
                         "loop and status API, trials as local 'python -m nas_trainer' processes.")
    run.add_argument("search", nargs="?", type=Path, metavar="SEARCH.yaml",
                     help="the NASSearch to run")
    run.add_argument("--resume", type=Path, metavar="DIR",
                     help="continue the search in run folder DIR where it stopped")
    run.add_argument("--out", type=Path, metavar="DIR",
                     help="run folder (default: runs/<search name>)")
    run.add_argument("--parallel", type=_positive, metavar="N",
                     help="trials at the same time (overrides spec.budget.parallelism)")
    run.add_argument("--metrics-port", type=_port, metavar="P",
                     help="serve the status API and /metrics on 127.0.0.1:P")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar, one line per event (automatic when not a terminal)")
    run.add_argument("--trainer-command", type=_command, metavar="CMD",
                     help="trainer program instead of 'python -m nas_trainer' (a custom trainer "
                     "that follows the trial contract; the tests use it to play faulty ones)")
    run.add_argument("--grace-seconds", type=float, default=None, metavar="S",
                     help="SIGTERM to SIGKILL delay when stopping a trainer (default 10)")

    show = sub.add_parser("show", help="summarize a run folder")
    show.add_argument("folder", type=Path, metavar="DIR")

    validate = sub.add_parser("validate", help="check NASSearch YAML files")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE.yaml")

    from nas_operator.export import add_export_parser

    add_export_parser(sub)

    operator = sub.add_parser("operator", help="run the Kubernetes operator", add_help=False,
                              description="Run the Kubernetes operator (arguments, --help "
                              "included, are passed on to it).")
    operator.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from nas_operator.local.launcher import GRACE_SECONDS
    from nas_operator.local.runner import RunOptions, run

    if args.search is not None and args.resume is not None:
        console.print("error: give either SEARCH.yaml or --resume DIR, not both", highlight=False)
        return EXIT_USAGE
    if args.search is None and args.resume is None:
        console.print("error: give SEARCH.yaml to start a search, or --resume DIR to continue "
                      "one", highlight=False)
        return EXIT_USAGE
    grace = GRACE_SECONDS if args.grace_seconds is None else max(0.0, args.grace_seconds)
    return run(RunOptions(search_file=args.search, resume=args.resume, out=args.out,
                          parallel=args.parallel, metrics_port=args.metrics_port,
                          trainer_command=args.trainer_command, quiet=args.quiet,
                          grace_seconds=grace), console)


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from nas_operator.api import SpecError
    from nas_operator.checkpoint import CheckpointError
    from nas_operator.local.output import RunFolder, RunFolderError
    from nas_operator.local.summary import load_summary, render_summary

    try:
        summary = load_summary(RunFolder(args.folder))
    except (RunFolderError, CheckpointError, SpecError) as exc:
        console.print(f"error: {exc}", highlight=False, markup=False)
        return EXIT_USAGE
    if summary.front is not None:  # the picture of the front, from the journal as it is now
        from nas_operator.local.front_files import front_title, write_front_png

        spec = summary.search.spec
        write_front_png(summary.folder, spec.effective_objective(),
                        front_title(summary.search.metadata.name, spec.strategy.type))
    render_summary(summary, console)
    return 0


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from nas_operator.api import SpecError, load_search_yaml, require_trainer

    worst = 0
    for path in args.files:
        try:
            search = require_trainer(load_search_yaml(path.read_text()))
        except OSError as exc:
            console.print(f"{path}: cannot read: {exc.strerror or exc}", highlight=False,
                          markup=False)
            worst = max(worst, EXIT_USAGE)
            continue
        except SpecError as exc:
            console.print(f"{path}: invalid NASSearch", highlight=False, markup=False)
            for line in exc.errors:
                console.print(f"  {line}", highlight=False, markup=False)
            worst = max(worst, EXIT_INVALID)
            continue
        spec = search.spec
        console.print(f"{path}: ok — {search.metadata.name}: {spec.searchSpace.type}, strategy "
                      f"{spec.strategy.type}, maxTrials {spec.budget.max_trials()}, dataset "
                      f"{spec.trial.dataset.name if spec.trial.dataset else '?'}",
                      highlight=False, markup=False)
    return worst


def cmd_operator(args: argparse.Namespace, console: Console) -> int:
    """Hand over to ``nas_operator.kube.main.main(argv)``, imported only when asked for.

    ``main`` passes everything after ``operator`` untouched (argparse would eat ``--help``)."""
    try:
        module = importlib.import_module("nas_operator.kube.main")
    except ModuleNotFoundError as exc:
        if exc.name in ("nas_operator.kube", "nas_operator.kube.main"):
            console.print("error: the Kubernetes operator is not part of this build "
                          "(nas_operator.kube.main is missing); 'kubenas run' works without it",
                          highlight=False, markup=False)
        else:
            console.print(f"error: the operator needs the Python package {exc.name!r}; install "
                          "it with: pip install 'kubenas[operator]'", highlight=False, markup=False)
        return EXIT_USAGE
    entry = getattr(module, "main", None)
    if not callable(entry):
        console.print("error: nas_operator.kube.main has no main(argv) function",
                      highlight=False, markup=False)
        return EXIT_USAGE
    return int(entry(list(args.args)) or 0)


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from nas_operator.export import cmd_export as export

    return export(args, console)


COMMANDS = {"run": cmd_run, "show": cmd_show, "validate": cmd_validate, "operator": cmd_operator,
            "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    console = Console(soft_wrap=True)
    if words[:1] == ["operator"]:
        return cmd_operator(argparse.Namespace(command="operator", args=words[1:]), console)
    args = build_parser().parse_args(words)
    try:
        return COMMANDS[args.command](args, console)
    except KeyboardInterrupt:  # before the runner installed its own handler
        return 130


if __name__ == "__main__":
    sys.exit(main())
