"""The ``status.front`` of a multi-objective search, read from the ledger's Pareto archive.

Why apart from ``views``: it needs the objective's terms (names, directions, the
reference point) to turn the archive's oriented points back into metric values,
and a genotype per shown member (derived once per member, cached on the loop).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller_policy.multi_objective import reference_point, values_of
from nas_operator.api import FRONT_LIMIT, FrontEntry, ParetoFront

if TYPE_CHECKING:
    from nas_operator.loop.core import SearchLoop


def publish_front(loop: SearchLoop) -> None:
    """Front size and hypervolume to Prometheus (multi-objective form, metrics on)."""
    objective = loop.spec.effective_objective()
    if loop.metrics is None or objective.objectives is None:
        return
    reference = reference_point(objective.objectives, objective.referencePoint)
    loop.metrics.set_front(len(loop.ledger.front), loop.ledger.front.hypervolume(reference))


def front_status(loop: SearchLoop) -> ParetoFront | None:
    """The bounded front for the status (None: the single-objective form)."""
    objective = loop.spec.effective_objective()
    terms = objective.objectives
    if terms is None:
        return None
    archive = loop.ledger.front
    reference = reference_point(terms, objective.referencePoint)
    names = [t.metric for t in terms]
    shown = archive.shown(FRONT_LIMIT)
    cache: dict[str, dict[str, Any] | None] = loop.front_genotypes
    for gone in set(cache) - {m.name for m in shown}:
        del cache[gone]
    members = []
    for m in shown:
        if m.name not in cache:
            cache[m.name] = loop.genotype(m.tokens)
        members.append(FrontEntry(
            trial=m.name, reward=m.reward, metrics=dict(m.metrics), tokens=list(m.tokens),
            genotype=cache[m.name], device=m.device, objectives=dict(zip(names, values_of(terms, m.point),
                                                        strict=True)),
        ))  # fmt: skip
    return ParetoFront(
        objectives=[f"{t.direction} {t.metric}" for t in terms],
        referencePoint=dict(zip(names, values_of(terms, reference), strict=True)),
        hypervolume=archive.hypervolume(reference), size=len(archive), members=members,
    )  # fmt: skip
