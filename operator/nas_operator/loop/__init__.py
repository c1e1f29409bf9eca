"""The search loop: one NASSearch, from the first proposal to the last reward.

Pure asyncio; no Kubernetes. The operator and ``kubenas run`` both drive it:

* construct ``SearchLoop(search, launcher, key=..., store=..., metrics=...)``, or
  ``await SearchLoop.create(...)`` to build its space and strategy off the event loop
  within ``BUILD_TIMEOUT`` seconds (``build``);
* ``await loop.start()`` (resumes from the store's checkpoint if there is
  one: running attempts are re-adopted through ``Launcher.adopt``, never
  relaunched);
* feed it what happens: ``handle_report`` (the status API), and the launcher's
  ``on_trial_started`` / ``on_trial_exit`` / ``on_trial_lost``;
* ``await loop.update_spec(new_spec, generation)`` for live budget, trial and
  suspend changes;
* read ``status()``, ``trial_view(name)``; ``subscribe`` to ``LoopEvent`` s
  (progress bars, Kubernetes Events, NASTrial writes);
* ``await loop.done`` (the final ``NASSearchStatus``), or ``await loop.stop()``
  (shutdown: trials keep running and are adopted by the next loop), or
  ``await loop.delete()`` (cancel every trial, drop the checkpoint).

Construct it inside a running event loop; the per-search ``key`` signs the trial
tokens, so a driver that restarts must pass the same key again (keep it in a
Secret or the output folder).

Modules, one concern each: ``core`` (the public loop), ``build`` (space and strategy,
off the event loop), ``worker`` (the one task
that tells, proposes, checkpoints and launches), ``intake`` (report checks),
``proposals`` (multi-trial strategies and weight sharing behind one source),
``timers`` (clock, deadline, watchdogs), ``state`` and ``persistence`` (typed
state, write-ahead checkpoints), ``views`` (status, NASTrial, launch requests),
``events`` (the one enum of reasons and the subscriber bus).
"""

from __future__ import annotations

from nas_operator.loop.build import BUILD_TIMEOUT, BuildTimeout
from nas_operator.loop.core import SearchLoop
from nas_operator.loop.events import TRIAL_ENDINGS, EventReason, LoopEvent, Subscriber
from nas_operator.loop.intake import ReportOutcome, ReportResult
from nas_operator.loop.proposals import ProposalSource, StrategyProposals, WeightSharing
from nas_operator.loop.timers import WATCHDOG_GRACE
from nas_operator.loop.views import rfc3339
from nas_operator.loop.worker import trial_seed

__all__ = [
    "BUILD_TIMEOUT", "TRIAL_ENDINGS", "WATCHDOG_GRACE", "BuildTimeout", "EventReason", "LoopEvent", "ProposalSource",
    "ReportOutcome", "ReportResult", "SearchLoop", "StrategyProposals", "Subscriber",
    "WeightSharing", "rfc3339", "trial_seed",
]
