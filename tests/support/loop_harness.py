"""Shared pieces of the search-loop tests (no tests here): a search builder, a strategy
wrapper that counts every tell, and a harness that always tears the loop down."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies import make_strategy
from controller_policy.strategies.base import Proposal, Strategy
from nas_operator.api import NASSearch, parse_search
from nas_operator.checkpoint import CheckpointStore
from nas_operator.loop import LoopEvent, SearchLoop
from nas_operator.metrics import SearchMetrics
from nas_operator.testing import Behaviour, SimulatedLauncher, constant_behaviour


def make_search(name: str = "s", **sections: Any) -> NASSearch:
    """A small random search on the ENAS macro space (cheap to sample), sections overridden."""
    spec: dict[str, Any] = {
        "searchSpace": {"type": "enas-macro", "options": {"layers": 4}},
        "strategy": {"type": "random", "seed": 1},
        "budget": {"maxTrials": 10, "parallelism": 3},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return parse_search({"metadata": {"name": name, "namespace": "ns"}, "spec": spec})


class CountingStrategy(Strategy):
    """Wraps a real strategy and records every ask/tell, failing loudly on a second tell."""

    type_name = "counting"

    def __init__(self, inner: Strategy):
        self.inner = inner
        self.space = inner.space
        self.config = inner.config
        self.asked: list[int] = []
        self.told: Counter[int] = Counter()
        self.rewards: dict[int, float] = {}
        self.failures: list[int] = []
        self.points: dict[int, list[float]] = {}

    def ask(self) -> Proposal:
        p = self.inner.ask()
        self.asked.append(p.id)
        return p

    def tell(self, proposal_id: int, reward: float) -> None:
        self.told[proposal_id] += 1
        assert self.told[proposal_id] == 1, f"proposal {proposal_id} told twice"
        self.rewards[proposal_id] = reward
        self.inner.tell(proposal_id, reward)

    def tell_objectives(self, proposal_id: int, reward: float, point) -> None:
        self.told[proposal_id] += 1
        assert self.told[proposal_id] == 1, f"proposal {proposal_id} told twice"
        self.rewards[proposal_id] = reward
        self.points[proposal_id] = list(point)
        self.inner.tell_objectives(proposal_id, reward, point)

    def tell_failure(self, proposal_id: int) -> None:
        self.told[proposal_id] += 1
        assert self.told[proposal_id] == 1, f"proposal {proposal_id} told twice"
        self.failures.append(proposal_id)
        self.inner.tell_failure(proposal_id)

    @property
    def pending(self) -> list[int]:
        return self.inner.pending

    def summary(self) -> dict[str, Any]:
        return self.inner.summary()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def counting_strategy(search: NASSearch, space: SearchSpace) -> CountingStrategy:
    spec = search.spec
    return CountingStrategy(make_strategy(spec.strategy.type, space, spec.strategy_config()))


class Harness:
    """One loop with a simulated launcher, an event log, and teardown that never leaks tasks."""

    def __init__(
        self,
        search: NASSearch,
        behaviour: Behaviour | None = None,
        store: CheckpointStore | None = None,
        metrics: SearchMetrics | None = None,
        launcher: SimulatedLauncher | None = None,
        key: bytes | None = None,
        watchdog_grace: float = 0.0,
        inner: Strategy | None = None,
    ):
        """``inner``: the strategy to wrap instead of the one the spec names."""
        self.search = search
        self.launcher = launcher or SimulatedLauncher(behaviour or constant_behaviour())
        from nas_operator.api import space_class

        cls = space_class(search.spec.searchSpace.type)
        assert cls is not None
        space = cls(search.spec.searchSpace.options)
        if inner is not None:
            self.strategy = CountingStrategy(inner)
        else:
            self.strategy = None if search.spec.strategy.type == "enas" else counting_strategy(
                search, space)
        self.loop = SearchLoop(search, self.launcher, key=key, store=store, metrics=metrics,
                               strategy=self.strategy, space=space,
                               watchdog_grace=watchdog_grace)
        self.events: list[LoopEvent] = []
        self.loop.subscribe(self.events.append)

    def reasons(self, reason: str) -> list[LoopEvent]:
        return [e for e in self.events if e.reason == reason]

    async def run(self, timeout: float = 20.0):
        await self.loop.start()
        return await asyncio.wait_for(asyncio.shield(self.loop.done), timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.loop.stop()
        await self.launcher.close()


async def wait_until(predicate, timeout: float = 10.0, step: float = 0.005) -> None:
    """Poll ``predicate`` until true (the loop is event-driven; tests observe from outside)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)
