"""The loop's own state, typed: what a checkpoint holds besides the ledger and the learner.

Why typed: the restore path reads back exactly what was written, field by field,
and a field added here is one place to change (the checkpoint keys stay those of
earlier versions, so checkpoints written before remain readable).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from nas_operator.api import Condition, ControllerSummary, NASSearchSpec
from nas_operator.loop.timers import Clock

IMMUTABLE = ("searchSpace", "strategy", "objective")
"""What a running search cannot change (``objective.goal`` excepted: it is a stopping rule)."""


def immutable_parts(spec: NASSearchSpec) -> dict[str, Any]:
    parts = {k: getattr(spec, k).model_dump(mode="json") for k in IMMUTABLE}
    parts["objective"].pop("goal", None)
    return parts


def fingerprint(spec: NASSearchSpec) -> str:
    """Short digest of the parts a checkpoint must agree with."""
    parts = immutable_parts(spec)
    if spec.earlyStopping is not None:  # absent otherwise: older checkpoints still match
        parts["earlyStopping"] = spec.earlyStopping.model_dump(mode="json")
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class LoopState:
    """Phase, conditions, stage, times and the controller summary of one search."""

    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    conditions: dict[str, Condition] = field(default_factory=dict)
    stage: str = "search"
    start_time: float | None = None
    completion_time: float | None = None
    clock: Clock = field(default_factory=Clock)
    controller: ControllerSummary = field(default_factory=ControllerSummary)

    @property
    def ended(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def to_json(self, namespace: str, search: str, spec: NASSearchSpec,
                generation: int | None) -> dict[str, Any]:
        return {
            "namespace": namespace, "search": search,
            "fingerprint": fingerprint(spec), "generation": generation,
            "phase": self.phase, "reason": self.reason,
            "message": self.message,
            "conditions": [c.model_dump() for c in self.conditions.values()],
            "stage": self.stage, "start_time": self.start_time,
            "completion_time": self.completion_time,
            "active_seconds": self.clock.active_seconds,
            "running_since": self.clock.running_since,
            "controller": self.controller.model_dump(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        return cls(
            phase=data["phase"], reason=data["reason"], message=data["message"],
            conditions={c["type"]: Condition(**c) for c in data["conditions"]},
            stage=data["stage"], start_time=data["start_time"],
            completion_time=data["completion_time"],
            clock=Clock(data["active_seconds"], data["running_since"]),
            controller=ControllerSummary(**data["controller"]),
        )  # fmt: skip
