"""The built-in trainer's reporting: one user of the trial SDK's delivery (``kubenas_trial``).

Why a module here at all: the trainer's modules name ``Reporter`` from their own
package, and its log lines go to stderr in the trainer's format; the POSTs, retries,
backoff and termination message live once, in ``kubenas_trial.delivery``.
"""

from __future__ import annotations

import logging
import sys

from kubenas_trial.delivery import (
    DEFAULT_RETRY_SECONDS,
    ENV_REPORT_RETRY_SECONDS,
    TERMINAL_KINDS,
    Reporter,
    RetryPolicy,
    fit_termination_message,
    retry_policy_from_env,
)

__all__ = [
    "DEFAULT_RETRY_SECONDS", "ENV_REPORT_RETRY_SECONDS", "TERMINAL_KINDS", "Reporter",
    "RetryPolicy", "fit_termination_message", "log_to_stderr", "retry_policy_from_env",
]


def log_to_stderr(level: int = logging.INFO) -> None:
    """Log lines to stderr so stdout stays free for report JSON lines (the trainer's and the
    delivery's loggers alike)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("nas_trainer", "kubenas_trial"):
        root = logging.getLogger(name)
        root.handlers[:] = [handler]
        root.setLevel(level)
        root.propagate = False
