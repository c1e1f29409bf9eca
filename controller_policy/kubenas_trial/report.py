"""``kubenas-report``: the trial SDK for trainers that are not Python (shell, C++, Julia...).

    kubenas-report --epoch 3 val_accuracy=0.91 loss=0.3
    kubenas-report --final val_accuracy=0.93
    kubenas-report --failed "out of memory"
    kubenas-report --show architecture.genotype      # print part of the assignment as JSON

It reads the same environment as ``kubenas_trial.Trial`` and goes through the same
delivery (retries, backoff, termination message). Each call is its own process, so the
epochs reported so far are kept in the trial's checkpoint folder and the final report
carries them all. Exit codes: 0 done (also when the status API could not be reached:
a warning says so, the final report carries every epoch and the termination message
holds it); 1 the status API refused the report (the message says why, e.g. the trial
was stopped); 2 unusable input (a metric that is not ``name=number``, no trial document).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from kubenas_trial.assignment import TrialInputError
from kubenas_trial.trial import ReportError, Trial

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def parse_metric(word: str) -> tuple[str, float]:
    """``name=number`` -> (name, value); anything else names the word and the fix."""
    name, sep, text = word.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ReportError(f"{word!r}: write a metric as name=number, e.g. val_accuracy=0.91")
    try:
        value = float(text)
    except ValueError:
        raise ReportError(f"{word!r}: {text!r} is not a number (e.g. {name}=0.91)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ReportError(f"{word!r}: {text!r} is not finite; report a diverged run with "
                          "--failed REASON")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubenas-report", description="Report this kubenas trial's metrics to its search "
        "(the environment of a trial: KUBENAS_TRIAL_FILE or KUBENAS_TRIAL_JSON, "
        "KUBENAS_REPORT_URL, KUBENAS_REPORT_TOKEN).")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--epoch", type=int, metavar="N",
                      help="one epoch's metrics; N is 0-based (the first epoch is 0)")
    what.add_argument("--final", action="store_true",
                      help="the trial's final metrics (default: the last epoch's); ends it")
    what.add_argument("--failed", metavar="REASON", help="the attempt failed; ends it")
    what.add_argument("--show", nargs="?", const="", metavar="FIELD",
                      help="print the trial document, or one dotted FIELD of it (e.g. "
                      "architecture.genotype, training.epochs, seed), as JSON")
    parser.add_argument("metrics", nargs="*", metavar="NAME=VALUE",
                        help="metrics, e.g. val_accuracy=0.91 loss=0.3")
    return parser


def show(trial: Trial, field: str) -> Any:
    """The document, or its ``field`` (dotted), as plain data."""
    value: Any = trial.document.model_dump(mode="json", exclude_none=True)
    for part in filter(None, field.split(".")):
        if not isinstance(value, dict) or part not in value:
            raise ReportError(f"--show {field}: the trial document has no {part!r} there")
        value = value[part]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        metrics = dict(parse_metric(w) for w in args.metrics)
        if args.epoch is not None and args.epoch < 0:
            raise ReportError(f"--epoch {args.epoch}: epochs count from 0")
        if args.epoch is not None and not metrics:
            raise ReportError("--epoch needs at least one metric, e.g. val_accuracy=0.91")
        if (args.failed is not None or args.show is not None) and metrics:
            raise ReportError("metrics go with --epoch or --final, not --failed or --show")
        trial = Trial.from_env()
        if args.show is not None:
            print(json.dumps(show(trial, args.show)))
            return EXIT_OK
        if args.epoch is not None:
            trial.report_epoch(args.epoch, **metrics)
            trial.reporter.close()
        elif args.final:
            if not metrics and not trial.history:
                raise ReportError("--final without metrics needs earlier --epoch reports")
            trial.report_final(**metrics)
        else:
            trial.report_failed(args.failed)
    except (ReportError, TrialInputError, ValueError) as exc:
        print(f"kubenas-report: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reporter = trial.reporter
    if reporter.refused:
        print(f"kubenas-report: the status API refused the report: {reporter.refused[-1][1]}",
              file=sys.stderr)
        return EXIT_REFUSED
    if reporter.url is not None and not reporter.delivered:
        kept = ("the final report carries this epoch" if args.epoch is not None
                else "it is in the termination message, where kubenas reads it")
        print(f"kubenas-report: warning: the report did not reach the status API "
              f"({reporter.last_problem or 'no answer'}); {kept}", file=sys.stderr)
    return EXIT_OK

if __name__ == "__main__":
    sys.exit(main())
