"""Building a search's space and strategy off the event loop, in bounded time.

A spec's sizes decide how long its space and its strategy's controller take to
build; an operator that built them on its event loop would stall every search
it runs behind one absurd spec. ``build_parts`` runs the build on a thread of its own (never the shared
executor: a build that never returns must not take a slot the other searches'
``ask``/``tell`` need) and gives up after ``BUILD_TIMEOUT`` seconds with
``BuildTimeout``, a ``SpecError`` that names the limit. Python cannot stop a
thread: an abandoned build runs on as a daemon thread until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from controller_policy.spaces.base import SearchSpace
from controller_policy.strategies import make_strategy
from controller_policy.strategies.base import Strategy
from controller_policy.strategies.registry import is_weight_sharing
from nas_operator.api import NASSearchSpec, SpecError, space_class

BUILD_TIMEOUT = 20.0
"""Seconds a search's space and strategy may take to build before the search is refused."""


class BuildTimeout(SpecError):
    """The space or strategy did not build within the limit (a ``SpecError``: the spec's sizes
    are what to change)."""

    reason = "BuildTimedOut"


def build_now(spec: NASSearchSpec) -> tuple[SearchSpace, Strategy | None]:
    """The spec's search space and its multi-trial strategy (None for weight sharing)."""
    cls = space_class(spec.searchSpace.type)
    assert cls is not None  # the spec's type was checked against the registry
    space = cls(spec.searchSpace.options)
    if is_weight_sharing(spec.strategy.type):
        return space, None
    assert spec.strategy.type is not None
    return space, make_strategy(spec.strategy.type, space, spec.strategy_config())


async def build_parts(spec: NASSearchSpec, timeout: float | None = None
                      ) -> tuple[SearchSpace, Strategy | None]:
    """``build_now`` on its own daemon thread, bounded by ``timeout`` (``BUILD_TIMEOUT``)."""
    limit = BUILD_TIMEOUT if timeout is None else timeout
    loop = asyncio.get_running_loop()
    result: asyncio.Future[tuple[SearchSpace, Strategy | None]] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if result.done():  # given up on already
            return
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(value)

    def work() -> None:
        try:
            value, error = build_now(spec), None
        except BaseException as exc:  # handed to the waiting coroutine, raised there
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the event loop closed meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name="kubenas-build", daemon=True).start()
    try:
        return await asyncio.wait_for(result, limit)
    except TimeoutError:
        raise BuildTimeout([
            f"spec.searchSpace: building the {spec.searchSpace.type} space and the "
            f"{spec.strategy.type} strategy took longer than {limit:g} s (the limit); "
            "make the space smaller (spec.searchSpace.options) or split the search"
        ]) from None
