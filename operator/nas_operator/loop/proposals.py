"""Where a search's architectures come from: two implementations of one proposal source.

``StrategyProposals``: a multi-trial strategy (REINFORCE, PPO, random,
evolution, ...) proposes one architecture per trial and learns each trial's
reward (``ask_batch``/``tell`` run in a worker thread, so the event loop keeps
serving reports). ``WeightSharing``: one trainer runs the whole ENAS search
(docs/papers.md §4) and reports the architecture it derived; there is nothing to
ask or tell here. The loop talks to either through ``ProposalSource`` only.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controller_policy.contract import DartsSpec, EnasSpec, Report
from controller_policy.spaces.base import InvalidArchitecture, SearchSpace
from controller_policy.strategies import make_strategy
from controller_policy.strategies.base import Strategy, StrategyError
from controller_policy.strategies.registry import DARTS, WEIGHT_SHARING, is_weight_sharing
from nas_operator.api import ControllerSummary, NASSearchSpec
from nas_operator.api.defaults import darts_spec
from nas_operator.ledger import Trial, TrialState


@dataclass(frozen=True)
class NewTrial:
    """What a source hands the ledger for one new search trial."""

    proposal_id: int | None
    space: str | None
    tokens: list[int] | None
    genotype: dict[str, Any] | None = None


class ProposalSource(ABC):
    """Proposes search trials, learns from their results, and persists what it learned."""

    mode: str = "train"
    """The trainer's ``TrialDocument.mode`` for search trials."""

    def __init__(self) -> None:
        self.version = 0
        """Bumped whenever the state to persist changes (checkpoints re-encode only then)."""

    @abstractmethod
    def propose(self, n: int) -> list[NewTrial]:
        """``n`` new trials (runs in a worker thread)."""

    @abstractmethod
    def learn(self, trials: Iterable[Trial]) -> list[str]:
        """Take in the results of ended search trials; returns warnings (worker thread)."""

    def accept_final(self, rec: Trial, report: Report, space: SearchSpace) -> str | None:
        """Check a search trial's final report before it is scored; a problem fails it."""
        return None

    def reject(self, proposal: NewTrial, penalty: float) -> None:  # noqa: B027 - nothing by default
        """``proposal`` breaks a limit and is not trained: learn ``penalty`` as its reward."""

    def enas_spec(self, spec: NASSearchSpec) -> EnasSpec | None:
        """The trainer's ENAS block for search trials (None: plain training)."""
        return None

    def darts_spec(self, spec: NASSearchSpec) -> DartsSpec | None:
        """The trainer's DARTS block for search trials (None: plain training)."""
        return None

    def summary(self, controller: ControllerSummary) -> str | None:
        """Copy the learner's state, in brief, into the status summary; what makes the learner
        unusable (a non-finite loss, entropy or baseline), None if nothing."""
        return None

    def to_bytes(self) -> bytes:
        return b""

    def load_bytes(self, data: bytes) -> None:  # noqa: B027 - nothing to load by default
        """Continue from ``to_bytes`` output."""


class StrategyProposals(ProposalSource):
    """A multi-trial strategy behind the ask/tell interface."""

    def __init__(self, strategy: Strategy) -> None:
        super().__init__()
        self.strategy = strategy

    def propose(self, n: int) -> list[NewTrial]:
        proposals = self.strategy.ask_batch(n)
        self.version += 1
        return [NewTrial(p.id, p.architecture.space, list(p.architecture.tokens),
                         p.architecture.genotype) for p in proposals]

    def reject(self, proposal: NewTrial, penalty: float) -> None:
        self.strategy.tell(proposal.proposal_id, penalty)  # type: ignore[arg-type]
        self.version += 1

    def learn(self, trials: Iterable[Trial]) -> list[str]:
        errors = []
        for rec in trials:
            try:
                if rec.state is TrialState.EARLY_STOPPED and rec.reward is None:
                    self.strategy.withdraw(rec.proposal_id)  # type: ignore[arg-type]
                elif rec.state is TrialState.SUCCEEDED and rec.reward is not None and rec.point:
                    self.strategy.tell_objectives(rec.proposal_id, rec.reward,  # type: ignore[arg-type]
                                                  rec.point)
                elif rec.state in (TrialState.SUCCEEDED, TrialState.EARLY_STOPPED) \
                        and rec.reward is not None:
                    self.strategy.tell(rec.proposal_id, rec.reward)  # type: ignore[arg-type]
                else:
                    self.strategy.tell_failure(rec.proposal_id)  # type: ignore[arg-type]
            except StrategyError as exc:
                errors.append(f"strategy refused the result of {rec.name}: {exc}; learned "
                              "from as a failed trial")
                with contextlib.suppress(StrategyError):  # close it: never left pending
                    self.strategy.tell_failure(rec.proposal_id)  # type: ignore[arg-type]
        self.version += 1
        return errors

    def summary(self, controller: ControllerSummary) -> str | None:
        summary = self.strategy.summary()
        bad = {k: v for k, v in summary.items() if isinstance(v, float) and not math.isfinite(v)}

        def num(key: str) -> float | None:
            v = summary.get(key)
            return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

        updates = summary.get("updates")
        controller.updates = int(updates) if isinstance(updates, int) else controller.updates
        controller.baseline = num("baseline")
        controller.entropy = num("last_mean_entropy")
        if not bad:
            return None
        return (f"the {self.strategy.type_name} controller went non-finite after "
                f"{controller.updates} updates (" + ", ".join(f"{k} {v}" for k, v in bad.items())
                + "): it would propose from a broken policy; check the rewards it was told")

    def to_bytes(self) -> bytes:
        return self.strategy.to_bytes()

    def load_bytes(self, data: bytes) -> None:
        if data:
            self.strategy.load_bytes(data)
            self.version += 1


class WeightSharing(ProposalSource):
    """ENAS (or DARTS): one trial runs the weight-sharing search in one trainer and reports
    the architecture it derived."""

    def __init__(self, mode: str = WEIGHT_SHARING) -> None:
        super().__init__()
        self.mode = mode

    def propose(self, n: int) -> list[NewTrial]:
        return [NewTrial(None, None, None) for _ in range(n)]

    def learn(self, trials: Iterable[Trial]) -> list[str]:
        return []

    def accept_final(self, rec: Trial, report: Report, space: SearchSpace) -> str | None:
        """Adopt the derived architecture as the trial's (it is what retraining trains)."""
        arch = report.architecture
        if arch is None:
            return "the enas final report carries no derived architecture"
        if arch.space != space.type_name:
            return f"derived architecture is of space {arch.space!r}, not the search's"
        try:
            tokens = space.validate_tokens(arch.tokens)
        except InvalidArchitecture as exc:
            return f"derived architecture is invalid: {exc}"
        rec.space, rec.tokens = arch.space, tokens
        return None

    def enas_spec(self, spec: NASSearchSpec) -> EnasSpec | None:
        return spec.enas_spec() if self.mode == WEIGHT_SHARING else None

    def darts_spec(self, spec: NASSearchSpec) -> DartsSpec | None:
        return darts_spec(spec) if self.mode == DARTS else None


def proposal_source(spec: NASSearchSpec, space: SearchSpace,
                    strategy: Strategy | None = None) -> ProposalSource:
    """The source the spec names: weight sharing for ``enas``, else its strategy."""
    if is_weight_sharing(spec.strategy.type):
        return WeightSharing(spec.strategy.type or WEIGHT_SHARING)
    if strategy is None:
        assert spec.strategy.type is not None
        strategy = make_strategy(spec.strategy.type, space, spec.strategy_config())
    return StrategyProposals(strategy)
