"""``python -m nas_trainer``: run one trial attempt and report it.

Exit codes (the operator maps them to trial outcomes):
  0   finished; ``final`` report sent and written to the termination message
  1   training failed (e.g. diverged); ``failed`` report with the reason
  2   unusable input (trial document, data, architecture, settings); ``failed`` report
  143 stopped by SIGTERM; checkpoint saved when ``checkpointDir`` is set; ``interrupted`` report
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from controller_policy.contract import (
    DEFAULT_TERMINATION_FILE,
    ENV_TERMINATION_FILE,
    ENV_TRIAL_FILE,
    ENV_TRIAL_JSON,
    Report,
    TrialDocument,
)
from kubenas_trial.assignment import TrialInputError, identity_of, parse_trial, read_trial_text
from nas_trainer.checkpoint import EXIT_INTERRUPTED, StopRequest
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.epochs import Interrupted, TrainingFailed, TrainResult, TrialContext
from nas_trainer.reporter import Reporter, log_to_stderr
from nas_trainer.runtime import ConfigError, setup_runtime

log = logging.getLogger("nas_trainer")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
INTERRUPTED_REPORT_SECONDS = 10.0
"""Retry budget of the ``interrupted`` report: within Kubernetes' default 30 s grace period."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nas_trainer",
        description="Train one NAS child architecture and report its metrics.",
    )
    parser.add_argument(
        "--trial", metavar="FILE",
        help=f"trial document (JSON); default: ${ENV_TRIAL_FILE}, then ${ENV_TRIAL_JSON}",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def run_trial(ctx: TrialContext) -> TrainResult:
    """Dispatch on ``mode``."""
    doc = ctx.doc
    if doc.mode == "enas":
        from nas_trainer.train_enas import run_enas

        return run_enas(ctx)
    if doc.mode == "darts":
        from nas_trainer.darts.workers import run_darts

        return run_darts(ctx)
    from nas_trainer.child import build_child
    from nas_trainer.train_image import train_image
    from nas_trainer.train_language import train_language

    model, data = build_child(doc)
    if data.kind == "image":
        result = train_image(ctx, model, data)
    else:
        result = train_language(ctx, model, data)
    if doc.outputDir:  # final training: keep the model (nas_trainer.model_output)
        from nas_trainer.model_output import save_model

        try:
            saved = save_model(Path(doc.outputDir), doc, model, data, result.metrics, result.history)
        except OSError as exc:
            raise TrainingFailed(f"cannot save the model to outputDir {doc.outputDir}: {exc}") from exc
        log.info("model saved to %s", saved.parent)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_to_stderr(logging.DEBUG if args.verbose else logging.INFO)
    text: str | None = None
    try:
        text, source = read_trial_text(args.trial)
        doc = parse_trial(text, source)
        reporter = Reporter.from_env()
        if os.environ.get("RANK", "0") not in ("", "0"):  # a worker other than rank 0 reports nothing
            reporter = Reporter(None, None, None, echo_stdout=False)
            log.setLevel(logging.WARNING)  # and logs only its problems (nas_trainer.darts.workers)
    except (TrialInputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        trial, attempt = identity_of(text)
        Reporter(None, None, os.environ.get(ENV_TERMINATION_FILE, DEFAULT_TERMINATION_FILE),
                 echo_stdout=False).write_termination_message(
            Report(kind="failed", trial=trial, attempt=attempt, reason=str(exc)[:1024])
        )
        return EXIT_BAD_INPUT

    stop = StopRequest().install()
    try:
        code, report = run_and_summarize(doc, reporter, stop)
        # Still under our SIGTERM handler, so a late signal cannot cut the final report short.
        reporter.finish(report, INTERRUPTED_REPORT_SECONDS if code == EXIT_INTERRUPTED else None)
    finally:
        stop.uninstall()
    return code


def run_and_summarize(doc: TrialDocument, reporter: Reporter, stop: StopRequest) -> tuple[int, Report]:
    """Run the trial; map its outcome to (exit code, terminal report)."""
    base: dict[str, Any] = {"trial": doc.trial, "attempt": doc.attempt}
    try:
        ctx = TrialContext(doc=doc, runtime=setup_runtime(doc.training), reporter=reporter, stop=stop)
        log.info("trial %s/%s attempt %d on %s", doc.search, doc.trial, doc.attempt, ctx.runtime.device)
        result = run_trial(ctx)
    except Interrupted as exc:
        history = exc.progress.history
        return EXIT_INTERRUPTED, Report(
            kind="interrupted", **base, epochs=history,
            metrics=history[-1] if history else {}, reason=exc.reason[:1024],
        )
    except (ConfigError, DatasetError) as exc:
        log.error("%s", exc)
        return EXIT_BAD_INPUT, Report(kind="failed", **base, reason=str(exc)[:1024])
    except TrainingFailed as exc:
        log.error("%s", exc)
        return EXIT_FAILED, Report(kind="failed", **base, reason=str(exc)[:1024])
    except Exception as exc:  # noqa: BLE001 - report any crash instead of dying silently
        log.error("trainer crashed:\n%s", traceback.format_exc())
        return EXIT_FAILED, Report(kind="failed", **base, reason=f"{type(exc).__name__}: {exc}"[:1024])
    return EXIT_OK, Report(
        kind="final", **base, metrics=result.metrics, epochs=result.history,
        architecture=result.architecture, device=result.device,
    )
