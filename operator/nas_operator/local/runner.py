"""``kubenas run``: one NAS search on this machine, with the operator's own machinery.

The runner wires the pieces the operator also uses — the ``SearchLoop``, the
status API (on loopback), the checkpoint store — to the ``LocalLauncher``, the
run folder and the progress view, and turns signals into a clean stop:

* Ctrl-C (or SIGTERM): the search is suspended exactly as ``spec.suspend``
  would (running trainers get SIGTERM, checkpoint, and are requeued without a
  failure counted), the loop checkpoints, and ``kubenas run --resume DIR``
  continues; a second Ctrl-C skips the trainers' grace period.
* SIGKILL (nothing runs): the next ``--resume`` restores the checkpoint and
  adopts the trainers that kept running, or takes their termination messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from rich.console import Console

from nas_operator.api import NASSearch, SpecError, load_search_yaml, require_trainer
from nas_operator.checkpoint import CheckpointError, DirectoryCheckpointStore
from nas_operator.local.launcher import GRACE_SECONDS, LocalLauncher
from nas_operator.local.output import CHECKPOINT_KEY, RunFolder, RunFolderError, RunSettings
from nas_operator.local.progress import ProgressView
from nas_operator.local.recorder import TrialRecorder
from nas_operator.local.summary import load_summary, render_summary
from nas_operator.loop import SearchLoop
from nas_operator.metrics import OperatorMetrics
from nas_operator.status_api import SearchRegistry, StatusServer, create_app

EXIT_OK = 0
EXIT_SEARCH_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 130
LOOPBACK = "127.0.0.1"


class RunError(Exception):
    """Input the runner cannot use; each line names the file, field or flag and the fix."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass
class RunOptions:
    """The command line of ``kubenas run``."""

    search_file: Path | None = None
    resume: Path | None = None
    out: Path | None = None
    parallel: int | None = None
    metrics_port: int | None = None
    trainer_command: list[str] | None = None
    quiet: bool = False
    grace_seconds: float = GRACE_SECONDS


@dataclass
class PreparedRun:
    search: NASSearch
    folder: RunFolder
    settings: RunSettings
    resumed: bool


def prepare(options: RunOptions) -> PreparedRun:
    """Validate the search and set up (or reopen) its run folder."""
    if (options.search_file is None) == (options.resume is None):
        raise RunError(["give either SEARCH.yaml or --resume DIR"])
    if options.resume is not None:
        if options.out is not None:
            raise RunError(["--out cannot be combined with --resume (the folder is DIR)"])
        folder = RunFolder(options.resume)
        try:
            folder.require_run()
        except RunFolderError as exc:
            raise RunError([str(exc)]) from None
        settings = folder.load_settings()
        if options.trainer_command is not None:
            settings.trainer_command = absolute_command(options.trainer_command)
        search = _load(folder.search_yaml, settings.trainer_command)
        resumed = True
    else:
        assert options.search_file is not None
        settings = RunSettings(workdir=str(Path.cwd()))
        if options.trainer_command is not None:
            settings.trainer_command = absolute_command(options.trainer_command)
        search = _load(options.search_file, settings.trainer_command)
        folder = RunFolder(options.out or Path("runs") / search.metadata.name)
        resumed = False
    if options.parallel is not None:
        settings.parallel = options.parallel
    if options.metrics_port is not None:
        settings.metrics_port = options.metrics_port
    trial = search.spec.trial
    if trial.runs_own_trainer() and not trial.command and not settings.trainer_command:
        raise RunError(["spec.trial.template: names the container that trains each trial on a "
                        "cluster; kubenas run needs the program to run here: set "
                        "spec.trial.command (e.g. [python, train.py]) or pass "
                        "--trainer-command"])
    if not resumed:
        assert options.search_file is not None
        try:
            folder.create(options.search_file.read_text(), settings)
        except (RunFolderError, OSError) as exc:
            raise RunError([str(exc)]) from None
    else:
        folder.save_settings(settings)
    apply_settings(search, settings)
    return PreparedRun(search, folder, settings, resumed)


def absolute_command(words: list[str], workdir: Path | None = None) -> list[str]:
    """A trainer command as the launcher runs it, the same for ``spec.trial.command`` and
    ``--trainer-command``: a first word ``python`` (or ``python3``) is this interpreter, so
    the script finds the trial SDK kubenas runs with; trainers run in their attempt folders
    (and a resume may start elsewhere), so relative paths from ``workdir`` (where ``kubenas
    run`` started) become absolute — the program if it has a '/', arguments naming files."""
    base = workdir or Path.cwd()
    out = [sys.executable if words[0] in ("python", "python3") else words[0], *words[1:]]
    for i, word in enumerate(out):
        path = Path(word)
        relative = not path.is_absolute() and ("/" in word if i == 0 else (base / path).exists())
        out[i] = str((base / path).resolve()) if relative else word
    return out


def trial_command(search: NASSearch, workdir: Path) -> list[str] | None:
    """``spec.trial.command`` as the launcher runs it (``absolute_command`` from ``workdir``)."""
    words = search.spec.trial.command
    return absolute_command(list(words), workdir) if words else None


def _load(path: Path, trainer_command: list[str] | None = None) -> NASSearch:
    """The validated search; a ``trainer_command`` (``--trainer-command``) is validated as
    ``spec.trial.command`` would be (any metric, any space: the trainer is the user's)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RunError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return require_trainer(load_search_yaml(text, command=trainer_command))
    except SpecError as exc:
        raise RunError([f"{path}: invalid NASSearch:", *(f"  {e}" for e in exc.errors)]) from None


def apply_settings(search: NASSearch, settings: RunSettings) -> None:
    """Local overrides of the spec: ``--parallel``; ``suspend`` has no meaning here."""
    budget = search.spec.budget
    if settings.parallel is not None:
        budget.parallelism = max(1, min(settings.parallel, budget.max_trials()))
    search.spec.suspend = False
    if settings.workdir is not None:
        resolve_dataset_paths(search, Path(settings.workdir))


def resolve_dataset_paths(search: NASSearch, workdir: Path) -> None:
    """Relative dataset paths mean paths from where ``kubenas run`` started (``workdir``),
    never from a trainer's attempt folder."""
    spec = search.spec
    datasets = [spec.trial.dataset, spec.finalTraining and spec.finalTraining.dataset]
    for dataset in datasets:
        if dataset is not None and dataset.path and not Path(dataset.path).is_absolute():
            dataset.path = str(workdir / dataset.path)


def trainer_env(search: NASSearch) -> dict[str, str]:
    """Share the CPU cores between the trainers running at once, unless the spec or the
    user's environment already decides (torch otherwise starts one thread per core each)."""
    if search.spec.trial.training.threads is not None or "OMP_NUM_THREADS" in os.environ:
        return {}
    per_trial = max(1, (os.cpu_count() or 1) // search.spec.budget.parallel())
    return {"OMP_NUM_THREADS": str(per_trial), "MKL_NUM_THREADS": str(per_trial)}


def local_app(registry: SearchRegistry, metrics: OperatorMetrics | None,
              search: NASSearch) -> web.Application:
    """The status API of ``kubenas run``: while its one search loads (a resume restores the
    checkpoint), that search's reports get 503 and trainers retry — never a final 404."""
    expected = (search.metadata.namespace, search.metadata.name)
    return create_app(registry, metrics, starting=lambda ns, name: (ns, name) == expected)


async def _serve(app: object, settings: RunSettings) -> StatusServer:
    """The status API on loopback: --metrics-port, else the previous run's port, else any."""
    if settings.metrics_port is not None:
        server = StatusServer(app, LOOPBACK, settings.metrics_port)  # type: ignore[arg-type]
        try:
            await server.start()
        except OSError as exc:
            await server.stop()
            raise RunError([f"--metrics-port {settings.metrics_port}: cannot listen on "
                            f"{LOOPBACK}:{settings.metrics_port} ({exc.strerror or exc}); "
                            "choose another port"]) from None
        return server
    if settings.status_port:
        server = StatusServer(app, LOOPBACK, settings.status_port)  # type: ignore[arg-type]
        try:
            await server.start()
            return server
        except OSError:
            await server.stop()
    server = StatusServer(app, LOOPBACK, 0)  # type: ignore[arg-type]
    await server.start()
    return server


async def run_search(run: PreparedRun, console: Console, *, quiet: bool = False,
                     grace_seconds: float = GRACE_SECONDS) -> int:
    """Run (or resume) the search of ``run`` to its end or to a stop; returns the exit code."""
    search, folder, settings = run.search, run.folder, run.settings
    metrics = OperatorMetrics() if settings.metrics_port is not None else None
    registry = SearchRegistry()
    server = await _serve(local_app(registry, metrics, search), settings)
    settings.status_port = server.port
    folder.save_settings(settings)
    command = settings.trainer_command or trial_command(
        search, Path(settings.workdir or Path.cwd()))
    launcher = LocalLauncher(folder.trials_dir, command, env=trainer_env(search),
                             grace_seconds=grace_seconds)
    progress: ProgressView | None = None
    loop: SearchLoop | None = None
    started = False
    try:
        try:
            key = folder.key()
            loop = await SearchLoop.create(  # off the event loop: the status API answers 503
                search, launcher, key=key, store=DirectoryCheckpointStore(folder.checkpoint_dir),
                metrics=metrics.for_search(search.metadata.namespace, search.metadata.name)
                if metrics is not None else None,
                status_url=server.url, checkpoint_key=CHECKPOINT_KEY,
            )  # fmt: skip
        except (RunFolderError, SpecError) as exc:
            raise RunError([str(exc)]) from None
        recorder = TrialRecorder(loop, folder)
        loop.subscribe(recorder)
        progress = ProgressView(loop, console, quiet=quiet)
        loop.subscribe(progress)
        _announce(run, server, console)
        stop = asyncio.Event()
        with _signals(stop, launcher, progress):
            try:
                await loop.start()
            except (CheckpointError, SpecError) as exc:
                raise RunError([f"{folder.checkpoint_dir}: cannot resume: {exc}"]) from None
            registry.add(loop)  # served once restored: until now its reports were told 503
            started = True
            progress.start()
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([loop.done, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not loop.done.done():
                await _stop_cleanly(loop, progress)
        progress.stop()
        status = loop.done.result() if loop.done.done() else None
        problems = await asyncio.to_thread(recorder.write_pictures)
        for problem in problems:
            console.print(f"! {problem}", highlight=False, markup=False)
        console.print()
        render_summary(load_summary(folder), console)
        if status is None:
            console.print(f"stopped; resume with: kubenas run --resume {folder.root}",
                          highlight=False)
            return EXIT_STOPPED
        return EXIT_OK if status.phase == "Succeeded" else EXIT_SEARCH_FAILED
    finally:
        if progress is not None:
            progress.stop()
        if started and loop is not None and not loop.done.done():
            with contextlib.suppress(Exception):
                await loop.stop()  # checkpoint; running trainers are adopted on --resume
        elif started:
            await launcher.drain(grace_seconds)
        await launcher.close()
        await server.stop()


async def _stop_cleanly(loop: SearchLoop, progress: ProgressView) -> None:
    """Suspend (trainers stop, checkpoint and are requeued), then checkpoint the loop.

    The suspend requeues before it stops the trainers, so their 'interrupted' answers are
    refused as stale (409) rather than counted as failed attempts.
    """
    progress.print("stopping: running trainers checkpoint and stop (Ctrl-C again to kill them "
                   "now)")
    suspended = loop.spec.model_copy(deep=True)
    suspended.suspend = True
    await loop.update_spec(suspended, loop.generation)
    await loop.stop()


@contextlib.contextmanager
def _signals(stop: asyncio.Event, launcher: LocalLauncher, progress: ProgressView):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            launcher.hurry()
            progress.print("stopping now: trainers are killed without a grace period")
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _announce(run: PreparedRun, server: StatusServer, console: Console) -> None:
    spec = run.search.spec
    verb = "resuming" if run.resumed else "starting"
    console.print(
        f"{verb} search {run.search.metadata.name}: {spec.searchSpace.type}, strategy "
        f"{spec.strategy.type}, maxTrials {spec.budget.max_trials()}, parallelism "
        f"{spec.budget.parallel()}; folder {run.folder.root}", highlight=False)
    extra = "  (/metrics served)" if run.settings.metrics_port is not None else ""
    console.print(f"status API on {server.url}{extra}; Ctrl-C stops cleanly", highlight=False)


def run(options: RunOptions, console: Console | None = None) -> int:
    """Synchronous entry point of ``kubenas run``."""
    console = console or Console()
    try:
        prepared = prepare(options)
        return asyncio.run(run_search(prepared, console, quiet=options.quiet,
                                      grace_seconds=options.grace_seconds))
    except RunError as exc:
        for line in exc.lines:
            console.print(line if line.startswith(" ") else f"error: {line}", highlight=False,
                          markup=False)
        return EXIT_BAD_INPUT

