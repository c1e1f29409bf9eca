"""The search's Pareto front: every succeeded search trial no other one dominates.

Why a module of its own: the ledger keeps it beside the top-k (checkpointed with
it, so a restarted loop has the same front, member for member), the status shows
a bounded part of it, and Prometheus its size and hypervolume; all read it here.

The archive holds the whole non-dominated set up to ``ARCHIVE_LIMIT`` members
(past that, the most crowded member goes, as NSGA-II truncates a front); the
status shows at most ``FRONT_LIMIT`` of them, chosen the same way, so the two ends
of the front are always shown. Points are oriented larger-is-better
(``controller_policy.pareto``); the metric values are kept as reported.
Pure bookkeeping: no asyncio, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller_policy.pareto import bounded_front, dominates, hypervolume

ARCHIVE_LIMIT = 500
"""Non-dominated trials kept (a front this large is rare with 2-3 objectives)."""


@dataclass(slots=True)
class FrontMember:
    """A succeeded search trial on the front: what the status shows of it."""

    name: str
    index: int
    reward: float
    point: list[float]
    """Objective values oriented larger-is-better (minimized metrics negated)."""
    metrics: dict[str, float]
    space: str | None
    tokens: list[int]
    device: str | None = None
    """Where its latency_ms was timed (the final report's device)."""

    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "reward": self.reward,
                "point": list(self.point), "metrics": dict(self.metrics), "space": self.space,
                "tokens": list(self.tokens),
                **({"device": self.device} if self.device is not None else {})}  # fmt: skip


class ParetoArchive:
    """The non-dominated members so far, in the order they joined."""

    def __init__(self, members: list[FrontMember] | None = None) -> None:
        self.members: list[FrontMember] = list(members or [])
        self._hv: tuple[tuple[float, ...], float] | None = None

    def __len__(self) -> int:
        return len(self.members)

    def add(self, member: FrontMember) -> bool:
        """Take ``member`` in unless a member dominates it; drop those it dominates. Returns
        whether the front changed. A duplicate point joins (equal points do not dominate)."""
        if any(dominates(m.point, member.point) for m in self.members):
            return False
        self.members = [m for m in self.members if not dominates(member.point, m.point)]
        self.members.append(member)
        if len(self.members) > ARCHIVE_LIMIT:
            keep = bounded_front([m.point for m in self.members], ARCHIVE_LIMIT)
            self.members = [self.members[i] for i in keep]
        self._hv = None
        return True

    def shown(self, limit: int) -> list[FrontMember]:
        """At most ``limit`` members, spread along the front, ordered by the first objective
        (best first), then trial index."""
        keep = bounded_front([m.point for m in self.members], limit) if self.members else []
        chosen = [self.members[i] for i in keep]
        return sorted(chosen, key=lambda m: (-m.point[0], m.index))

    def hypervolume(self, reference: list[float]) -> float:
        """The volume the front dominates beyond ``reference`` (oriented), cached."""
        key = tuple(reference)
        if self._hv is None or self._hv[0] != key:
            self._hv = (key, hypervolume([m.point for m in self.members], reference))
        return self._hv[1]

    def to_state(self) -> list[dict[str, Any]]:
        return [m.to_state() for m in self.members]

    @classmethod
    def from_state(cls, data: list[dict[str, Any]] | None) -> ParetoArchive:
        return cls([FrontMember(**m) for m in data or []])
