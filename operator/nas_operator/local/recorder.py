"""Keeps the run folder in step with the search loop, from the loop's own events.

Why events: the loop compacts a finished trial once the strategy has heard of
it (its architecture is gone from memory), so the row of the trial table is
taken at the moment the loop announces the outcome, while the record is whole.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from controller_policy.multi_objective import values_of
from nas_operator.ledger import Trial, TrialState
from nas_operator.local.front_files import front_document, front_title, write_front_png
from nas_operator.local.genotype_graph import UnknownGenotype, genotype_summary
from nas_operator.local.output import RunFolder, TrialRow
from nas_operator.loop import TRIAL_ENDINGS, EventReason, LoopEvent, SearchLoop, rfc3339
from nas_operator.retrained import retrained_entries, scored_by

log = logging.getLogger(__name__)

ROW_EVENTS = TRIAL_ENDINGS


class TrialRecorder:
    """Subscriber of one loop: a row per finished trial, best.json on every new best."""

    def __init__(self, loop: SearchLoop, folder: RunFolder) -> None:
        self.loop = loop
        self.folder = folder

    def __call__(self, event: LoopEvent) -> None:
        if event.reason in ROW_EVENTS and event.trial:
            row = self.row(event.trial)
            if row is not None:
                self.folder.record(row)
            if event.reason == EventReason.TRIAL_SUCCEEDED and row is not None and row.stage == "final":
                self.write_best()  # best.json carries the retrained score beside the search's
            if event.reason == EventReason.TRIAL_SUCCEEDED and row is not None and row.objectives:
                self.write_front()
        elif event.reason == EventReason.NEW_BEST:
            self.write_best()

    def row(self, name: str) -> TrialRow | None:
        """The trial's row, from its (not yet compacted) ledger record."""
        rec = self.loop.ledger.get(name)
        if not isinstance(rec, Trial):
            return None
        genotype = self.loop.space.to_genotype(list(rec.tokens)) if rec.tokens else None
        seconds = None
        if rec.start_time is not None and rec.completion_time is not None:
            seconds = max(0.0, rec.completion_time - rec.start_time)
        return TrialRow(
            trial=rec.name, stage=rec.stage, index=rec.index, attempt=rec.attempt,
            phase=rec.state.value, reward=rec.reward, metrics=dict(rec.metrics), seconds=seconds,
            genotype=genotype,
            failure=rec.failure_reason if rec.reward is None or rec.state in (
                TrialState.INFEASIBLE, TrialState.EARLY_STOPPED) else None,
            tokens=list(rec.tokens) if rec.tokens else None,
            objectives=self._objectives(rec), device=rec.device,
        )  # fmt: skip

    def _objectives(self, rec: Trial) -> dict[str, float] | None:
        terms = self.loop.spec.effective_objective().objectives
        if terms is None or rec.point is None or rec.reward is None:
            return None
        return dict(zip([t.metric for t in terms], values_of(terms, rec.point), strict=True))

    def write_front(self) -> dict[str, Any] | None:
        """front.json, beside best.json (multi-objective form only)."""
        document = front_document(self.loop)
        if document is not None:
            self.folder.write_front(document)
        return document

    def best_document(self) -> dict[str, Any] | None:
        """best.json: the best trial's architecture (exportable as is), reward and metrics;
        ``scoredBy`` says whether the reward came from standalone training or the supernet,
        ``retrained`` holds the final-training runs of the top architectures."""
        status = self.loop.status()
        best = status.best
        if best is None:
            return None
        genotype = best.genotype or {}
        return {
            "search": self.loop.name,
            "namespace": self.loop.namespace,
            "trial": best.trial,
            "reward": best.reward,
            "scoredBy": scored_by(self.loop.spec.strategy.type),
            "retrained": retrained_entries(status.topK, status.finalTraining),
            "objective": self.loop.spec.effective_objective().model_dump(),
            "metrics": best.metrics,
            "device": best.device,
            "architecture": {"space": self.loop.spec.searchSpace.type, "tokens": best.tokens,
                             "genotype": genotype},
            "spaceOptions": dict(self.loop.spec.searchSpace.options),
            "summary": genotype_summary(genotype),
            "updated": rfc3339(time.time()),
        }

    def write_best(self) -> dict[str, Any] | None:
        document = self.best_document()
        if document is not None:
            self.folder.write_best(document)
        return document

    def write_pictures(self) -> list[str]:
        """best.png and rewards.png from what the folder holds now; returns problems, if any."""
        from nas_operator.local.plots import RewardPoint, draw_architecture, draw_rewards

        problems = []  # matplotlib is imported here, when drawing: not on every runner start
        best = self.write_best() or self.folder.read_best()
        if best is not None:
            title = (f"{best['search']}: best trial {best['trial']}, reward {best['reward']:.4g}")
            try:
                draw_architecture(best["architecture"]["genotype"], self.folder.best_png, title)
            except (UnknownGenotype, KeyError, TypeError) as exc:
                problems.append(f"best.png not drawn: {exc}")
        rows = [r for r in self.folder.rows() if r.stage == "search"]
        if rows:
            points = [RewardPoint(r.index, r.reward) for r in rows  # partial rewards: not drawn
                      if r.phase not in ("Cancelled", "EarlyStopped")]
            draw_rewards(points, self.folder.rewards_png,
                         f"{self.loop.name}: reward per trial ({self.loop.spec.searchSpace.type}, "
                         f"{self.loop.spec.strategy.type})")
        if self.write_front() is not None:
            write_front_png(self.folder, self.loop.spec.effective_objective(),
                            front_title(self.loop.name, self.loop.spec.strategy.type))
        return problems
