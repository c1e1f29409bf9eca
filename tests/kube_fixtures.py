"""pytest fixtures for operator tests against the Kubernetes emulator (see kube_emulator.py).

Import the fixtures into a test module (or into tests/conftest.py) with::

    from kube_fixtures import kube  # noqa: F401
"""

from collections.abc import AsyncIterator

import pytest_asyncio
from kube_emulator import KubeTestBed, start_test_bed


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeTestBed]:
    """A fresh emulator per test (on 127.0.0.1, a random port, its own thread)."""
    async with start_test_bed() as bed:
        yield bed
