"""The multi-objective form of ``spec.objective``: metrics with directions, a scalarization.

Why apart from ``objective.py``: the single-objective form (one metric, the papers'
reward transforms) keeps working unchanged; this module holds the models of the
list form and what a search computes from them, per trial:

- the objective *values* (one per listed metric: the best of the last k epochs
  when the metric is reported per epoch, else the trial's final metric, which is
  where ``params``, ``flops`` and ``latency_ms`` come);
- the *point*: the values oriented so that larger is better everywhere (what the
  Pareto front, evolution's selection and the hypervolume read, ``pareto``);
- the scalar *reward* for the RL controllers and for ``best``: MnasNet's soft
  (``mnasnet``) or hard (``mnasnet-hard``) constraint, or a weighted sum
  (``scalarize``);
- the *reference point* of the hypervolume: 0 for a maximized metric, twice the
  target for a minimized one, unless ``referencePoint`` names a value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from controller_policy.pareto import Direction, orient
from controller_policy.scalarize import (
    MNASNET_HARD,
    MNASNET_W,
    ScalarizeError,
    mnasnet_reward,
    weighted_sum,
)
from controller_policy.strict import Strict

BUILTIN_METRICS = (
    "val_accuracy", "val_loss", "val_perplexity", "train_accuracy", "train_loss",
    "train_perplexity", "params", "flops", "latency_ms",
)
"""Metrics the built-in trainer reports (per epoch, or once at the end: params, flops and
latency_ms); a user's own trainer may report and optimise any other name."""
MAX_OBJECTIVES = 4
"""More than a few objectives make the front most of the population and the hypervolume
costly (its exact computation is exponential in the number of objectives)."""
METRIC_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"

MetricName = Annotated[str, StringConstraints(pattern=METRIC_PATTERN, max_length=128)]
ScalarizationType = Literal["mnasnet", "mnasnet-hard", "weighted-sum"]


class ObjectiveTerm(Strict):
    """One objective: a reported metric, whether larger or smaller is better, its target."""

    metric: MetricName = Field(
        description="A metric every trial reports: one of the built-in trainer's "
        f"({', '.join(BUILTIN_METRICS)}) or, with your own trainer, any name it reports.",
    )
    direction: Direction = Field(description="maximize or minimize.")
    target: float | None = Field(
        default=None, gt=0, le=1e18,
        description="The value aimed at (MnasNet's T, e.g. latency_ms 5): scales the "
        "scalarization and gives the hypervolume's reference point (twice the target).",
    )


class Scalarization(Strict):
    """How the objectives become the one reward the RL controllers learn from."""

    type: ScalarizationType = Field(
        default="mnasnet",
        description="mnasnet: acc x prod (m/target)^w, w = 'w' on both sides of the target "
        "(MnasNet's soft constraint); mnasnet-hard: w = 0 at or under the target, -1 over it; "
        "weighted-sum: sum of weight x value/target (minimized values counted negatively).",
    )
    w: float = Field(
        default=MNASNET_W, ge=-10, le=0,
        description="MnasNet's exponent (the paper's soft constraint: -0.07).",
    )
    weights: dict[MetricName, Annotated[float, Field(ge=-1e6, le=1e6)]] | None = Field(
        default=None, max_length=MAX_OBJECTIVES,
        description="weighted-sum only: weight per metric (default 1 each).",
    )


def form_problems(terms: Sequence[ObjectiveTerm], scalarization: Scalarization | None,
                  reference: Mapping[str, float] | None, given: set[str]) -> list[str]:
    """Why a multi-objective ``spec.objective`` cannot run, one ``spec.objective.x: ...`` line
    each (``given``: the fields set to other than their defaults, to refuse the single-objective
    ones beside)."""
    where = "spec.objective"
    errors = [f"{where}.{f}: the multi-objective form scores by objective.objectives; "
              f"remove {f}" for f in ("metric", "reward", "constant") if f in given]
    names = [t.metric for t in terms]
    for i, name in enumerate(names):
        if name in names[:i]:
            errors.append(f"{where}.objectives[{i}].metric: {name!r} is listed twice")
    sc = scalarization or Scalarization()
    if sc.type in ("mnasnet", "mnasnet-hard"):
        first = terms[0]
        if first.direction != "maximize" or first.target is not None:
            errors.append(f"{where}.objectives[0]: scalarization {sc.type!r} multiplies the first "
                          "objective (maximize, no target, e.g. val_accuracy) by the others' "
                          "factors; list the quality first, or use scalarization weighted-sum")
        for i, t in enumerate(terms[1:], start=1):
            if t.direction != "minimize" or t.target is None:
                errors.append(f"{where}.objectives[{i}]: scalarization {sc.type!r} needs "
                              f"direction minimize and a target (MnasNet's T) for {t.metric!r}, "
                              "e.g. target: 5 for latency_ms")
    if sc.weights is not None:
        if sc.type != "weighted-sum":
            errors.append(f"{where}.scalarization.weights: only for type weighted-sum")
        for name in sc.weights:
            if name not in names:
                errors.append(f"{where}.scalarization.weights.{name}: not one of the objectives "
                              f"({', '.join(names)})")
    if sc.w != MNASNET_W and sc.type != "mnasnet":
        errors.append(f"{where}.scalarization.w: only for type mnasnet (mnasnet-hard uses the "
                      "paper's 0 and -1)")
    for name in reference or {}:
        if name not in names:
            errors.append(f"{where}.referencePoint.{name}: not one of the objectives "
                          f"({', '.join(names)})")
    for i, t in enumerate(terms):
        if t.direction == "minimize" and t.target is None and t.metric not in (reference or {}):
            errors.append(f"{where}.objectives[{i}].target: the hypervolume needs a reference "
                          f"for {t.metric!r}: set a target (the reference is twice it) or "
                          f"objective.referencePoint.{t.metric}")
    return errors


def unknown_metric_problems(terms: Sequence[ObjectiveTerm]) -> list[str]:
    """Metrics the built-in trainer never reports (a search on it could score no trial)."""
    return [f"spec.objective.objectives[{i}].metric: {t.metric!r} is not reported by the "
            f"built-in trainer ({', '.join(BUILTIN_METRICS)}); name one of those, or run your "
            "own trainer (spec.trial.image) that reports it"
            for i, t in enumerate(terms) if t.metric not in BUILTIN_METRICS]


class ObjectiveValueError(ValueError):
    """A trial's metrics give no value for an objective (missing, non-finite, not positive)."""


def objective_values(terms: Sequence[ObjectiveTerm], epochs: Sequence[Mapping[str, float]],
                     final: Mapping[str, float] | None, last_epochs: int) -> list[float]:
    """One value per objective: the best (by direction) of the last ``last_epochs`` epochs
    that report the metric, else the final metric."""
    values = []
    for t in terms:
        series = [e[t.metric] for e in epochs if t.metric in e][-last_epochs:]
        if series:
            value = max(series) if t.direction == "maximize" else min(series)
        elif final is not None and t.metric in final:
            value = final[t.metric]
        else:
            raise ObjectiveValueError(f"the trial reported no metric {t.metric!r} (an objective)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ObjectiveValueError(f"objective {t.metric!r} has a non-finite value {value!r}")
        values.append(float(value))
    return values


def point_of(terms: Sequence[ObjectiveTerm], values: Sequence[float]) -> list[float]:
    """``values`` oriented for the Pareto geometry (minimized metrics negated)."""
    return list(orient(values, [t.direction for t in terms]))


def values_of(terms: Sequence[ObjectiveTerm], point: Sequence[float]) -> list[float]:
    """The metric values back from an oriented point (negation is its own inverse)."""
    return point_of(terms, point)


def reference_point(terms: Sequence[ObjectiveTerm], reference: Mapping[str, float] | None
                    ) -> list[float]:
    """The hypervolume's reference, oriented: ``referencePoint`` where it names the metric,
    else 0 for a maximized metric and twice the target for a minimized one."""
    raw = []
    for t in terms:
        if reference and t.metric in reference:
            raw.append(float(reference[t.metric]))
        elif t.direction == "maximize":
            raw.append(0.0)
        else:
            assert t.target is not None  # form_problems refused a minimize term without either
            raw.append(2.0 * t.target)
    return point_of(terms, raw)


def scalar_reward(terms: Sequence[ObjectiveTerm], scalarization: Scalarization | None,
                  values: Sequence[float]) -> float:
    """The one reward of a trial's objective values (``ObjectiveValueError`` if none)."""
    sc = scalarization or Scalarization()
    try:
        if sc.type == "weighted-sum":
            weights = sc.weights or {}
            return weighted_sum(values, [t.direction for t in terms],
                                [float(weights.get(t.metric, 1.0)) for t in terms],
                                [t.target for t in terms])
        measures = [(v, t.target) for v, t in zip(values[1:], terms[1:], strict=True)]
        alpha, beta = (sc.w, sc.w) if sc.type == "mnasnet" else MNASNET_HARD
        return mnasnet_reward(values[0], measures, alpha, beta)  # type: ignore[arg-type]
    except ScalarizeError as exc:
        raise ObjectiveValueError(str(exc)) from None
