"""The objective of a search and the reward functions of the papers.

One shared place: the operator and the local runner compute rewards here from
the metrics a trainer reported; a reward is never taken from the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from controller_policy.multi_objective import (
    MAX_OBJECTIVES,
    MetricName,
    ObjectiveTerm,
    ObjectiveValueError,
    Scalarization,
    form_problems,
    objective_values,
    point_of,
    scalar_reward,
)
from controller_policy.strict import FieldErrors, Strict

METRIC_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"
"""A reported metric's name: what ``kubenas-report name=value`` and ``report_epoch`` accept."""
Metric = Annotated[str, Field(pattern=METRIC_NAME, max_length=128)]
RewardTransform = Literal["cube", "inverse-square", "identity"]
Direction = Literal["maximize", "minimize"]
LOWER_IS_BETTER = ("perplexity", "loss", "error", "latency", "seconds")
"""Name endings whose metrics are minimized unless ``objective.direction`` says otherwise."""


MAX_LIMIT = 1e15
"""Above any parameter or multiply-add count a child network has."""


class Constraints(Strict):
    """``spec.objective.constraints``: hard limits checked before a proposal is launched.

    An architecture over a limit is never trained: the strategy is told ``penalty`` as its
    reward, the ledger records it as ``Infeasible`` with its figures, and another proposal
    takes its slot.
    """

    maxParams: int | None = Field(
        default=None, gt=0, le=int(MAX_LIMIT),
        description="Largest trainable parameter count (auxiliary head not counted).",
    )
    maxFlops: int | None = Field(
        default=None, gt=0, le=int(MAX_LIMIT),
        description="Largest multiply-add count of one forward pass at the trial's input size "
        "(one image; one token for a language model).",
    )
    penalty: float | None = Field(
        default=None, ge=-MAX_LIMIT, le=MAX_LIMIT,
        description="Reward told to the strategy for an infeasible architecture. Default 0, "
        "the worst reward of cube, inverse-square and identity on val_accuracy; required "
        "for identity on val_perplexity, whose rewards are negative.",
    )
    maxConsecutiveInfeasible: int = Field(
        default=1000, ge=1, le=1_000_000,
        description="The search fails after this many infeasible proposals in a row (a "
        "space where almost nothing fits the limits).",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Constraints:
        if self.maxParams is None and self.maxFlops is None:
            raise ValueError("objective.constraints: set maxParams or maxFlops (or remove it)")
        return self

    def broken(self, params: int, flops: int) -> list[str]:
        """The fields ``params``/``flops`` break (``maxParams``, ``maxFlops``); a limit is
        inclusive."""
        out = []
        if self.maxParams is not None and params > self.maxParams:
            out.append("maxParams")
        if self.maxFlops is not None and flops > self.maxFlops:
            out.append("maxFlops")
        return out

    def over(self, params: int, flops: int) -> str | None:
        """Which limit ``params``/``flops`` break, in words; None when within both."""
        words = {"maxParams": f"params {params:,} > maxParams {self.maxParams or 0:,}",
                 "maxFlops": f"flops {flops:,} > maxFlops {self.maxFlops or 0:,}"}
        return "; ".join(words[f] for f in self.broken(params, flops)) or None


class Objective(Strict):
    """``spec.objective`` of a NASSearch."""

    metric: Metric = Field(
        default="val_accuracy",
        description="Per-epoch metric the reward is computed from: val_accuracy or "
        "val_perplexity with the built-in trainer; any metric your own trainer reports "
        "(spec.trial.command or spec.trial.template).",
    )
    direction: Direction | None = Field(
        default=None,
        description="maximize or minimize the metric. Default: minimize when its name ends "
        "in perplexity, loss, error, latency or seconds, else maximize.",
    )
    reward: RewardTransform = Field(
        default="cube",
        description="cube: (max of the last k epochs' val_accuracy)^3 (Zoph & Le); "
        "inverse-square: c / val_perplexity^2 (Zoph & Le PTB, c=80); identity: the last "
        "k epochs' best metric as is (a minimized metric is negated).",
    )
    lastEpochs: int = Field(default=5, ge=1, le=1000, description="k of max-of-last-k.")
    constant: float = Field(default=80.0, gt=0, description="c of c / ppl^2.")
    goal: float | None = Field(
        default=None, description="Stop the search early once a reward reaches this value."
    )
    constraints: Constraints | None = Field(
        default=None, description="Limits on params and flops, checked before launch."
    )
    objectives: list[ObjectiveTerm] | None = Field(
        default=None, min_length=2, max_length=MAX_OBJECTIVES,
        description="Multi-objective form (instead of metric and reward): the metrics to "
        "optimise, each with a direction, e.g. [{metric: val_accuracy, direction: maximize}, "
        "{metric: latency_ms, direction: minimize, target: 5}]; the search keeps their Pareto "
        "front (docs/multi-objective.md).",
    )
    scalarization: Scalarization | None = Field(
        default=None,
        description="Multi-objective form: the one reward the RL controllers and 'best' use "
        "(default mnasnet, w -0.07); evolution selects on the Pareto front instead.",
    )
    referencePoint: dict[MetricName, float] | None = Field(
        default=None, max_length=MAX_OBJECTIVES,
        description="Multi-objective form: the hypervolume's reference value per metric "
        "(default 0 for a maximized metric, twice the target for a minimized one).",
    )

    @property
    def multi(self) -> bool:
        """Whether this is the multi-objective (list) form."""
        return self.objectives is not None

    @model_validator(mode="after")
    def _metric_fits_transform(self) -> Objective:
        if self.objectives is not None:
            fields = type(self).model_fields  # a dumped document repeats the defaults: fine
            given = {f for f in self.model_fields_set if getattr(self, f) != fields[f].default}
            errors = form_problems(self.objectives, self.scalarization, self.referencePoint,
                                   given)
            if errors:
                raise FieldErrors(errors, "invalid objective")
            return self
        for extra in ("scalarization", "referencePoint"):
            if getattr(self, extra) is not None:
                raise ValueError(f"spec.objective.{extra}: only with objective.objectives "
                                 "(the multi-objective form)")
        if self.reward == "cube" and self.minimize:
            raise ValueError(f"objective.reward 'cube' needs objective.metric to be an accuracy "
                             f"to maximize (e.g. val_accuracy), not {self.metric!r} minimized; "
                             "use reward identity")
        if self.reward == "inverse-square" and not self.minimize:
            raise ValueError(f"objective.reward 'inverse-square' needs objective.metric to be a "
                             f"perplexity to minimize (e.g. val_perplexity), not {self.metric!r} "
                             "maximized; use reward identity")
        if (self.constraints is not None and self.constraints.penalty is None
                and self.reward == "identity" and self.minimize):
            raise ValueError(
                "objective.constraints.penalty: required with reward 'identity' on a minimized "
                f"metric ({self.metric!r}: its rewards are negative); set it below the worst "
                "reward you expect, e.g. -10000"
            )
        return self

    @property
    def minimize(self) -> bool:
        """Whether lower values of the metric are better (``direction``, else its name)."""
        if self.direction is not None:
            return self.direction == "minimize"
        return self.metric.lower().endswith(LOWER_IS_BETTER)

    def penalty(self) -> float:
        """The reward of an infeasible architecture (``constraints.penalty``, default 0)."""
        c = self.constraints
        return 0.0 if c is None or c.penalty is None else float(c.penalty)


KIND_OBJECTIVE: dict[str, dict[str, object]] = {
    "image": {},
    "language": {"metric": "val_perplexity", "reward": "inverse-square", "constant": 80.0},
}
"""The papers' objective per kind of space: accuracy cubed (image), 80 / perplexity^2 (language)."""


def default_objective(kind: str) -> Objective:
    """The papers' objective for a space of ``kind``."""
    return Objective.model_validate(KIND_OBJECTIVE[kind])


class RewardError(ValueError):
    """Metrics from which no reward can be computed (missing, non-finite)."""


def metric_series(epochs: Sequence[Mapping[str, float]], metric: str) -> list[float]:
    values = [e[metric] for e in epochs if metric in e]
    if not values:
        raise RewardError(f"no epoch reported metric {metric!r}")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise RewardError(f"metric {metric!r} has a non-finite value {v!r}")
    return [float(v) for v in values]


def compute_reward(objective: Objective, epochs: Sequence[Mapping[str, float]],
                   final: Mapping[str, float] | None = None) -> float:
    """Reward from per-epoch metrics (oldest first), per ``objective``; never inf or NaN
    (a strategy must not learn from one). ``final``: the trial's final metrics, where the
    multi-objective form finds the ones reported once (params, flops, latency_ms)."""
    if objective.objectives is not None:
        return _multi_reward(objective, epochs, final)
    try:
        reward = _reward(objective, metric_series(epochs, objective.metric)[-objective.lastEpochs :])
    except OverflowError:
        raise RewardError(f"the reward of metric {objective.metric!r} overflows") from None
    if not math.isfinite(reward):
        raise RewardError(f"the reward of metric {objective.metric!r} is not finite ({reward})")
    return reward


def _reward(objective: Objective, values: list[float]) -> float:
    if objective.reward == "cube":
        return max(values) ** 3
    if objective.reward == "inverse-square":
        best = min(values)
        if best <= 0:
            raise RewardError(f"val_perplexity must be positive, got {best}")
        return objective.constant / best**2
    if objective.minimize:
        return -min(values)
    return max(values)


def objective_point(objective: Objective, epochs: Sequence[Mapping[str, float]],
                    final: Mapping[str, float] | None) -> list[float] | None:
    """The trial's objective values oriented larger-is-better (None: single-objective form)."""
    if objective.objectives is None:
        return None
    try:
        values = objective_values(objective.objectives, epochs, final, objective.lastEpochs)
    except ObjectiveValueError as exc:
        raise RewardError(str(exc)) from None
    return point_of(objective.objectives, values)


def _multi_reward(objective: Objective, epochs: Sequence[Mapping[str, float]],
                  final: Mapping[str, float] | None) -> float:
    assert objective.objectives is not None
    try:
        values = objective_values(objective.objectives, epochs, final, objective.lastEpochs)
        reward = scalar_reward(objective.objectives, objective.scalarization, values)
    except ObjectiveValueError as exc:
        raise RewardError(str(exc)) from None
    except OverflowError:
        raise RewardError("the multi-objective reward overflows") from None
    if not math.isfinite(reward):
        raise RewardError(f"the multi-objective reward is not finite ({reward})")
    return reward
