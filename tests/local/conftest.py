"""Fixtures of the local layer: ``processes``, which starts `kubenas run` and its trainers and
leaves no process behind however a test ends."""

from collections.abc import Iterator

import pytest

from tests.support.local_run import Processes, guarded_processes


@pytest.fixture
def processes() -> Iterator[Processes]:
    yield from guarded_processes()
