"""pytest fixtures for operator tests against the Kubernetes emulator (see kube_emulator.py).

tests/operator/conftest.py imports them, which makes them available to that layer's tests.
"""

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support.kube_emulator import KubeTestBed, start_test_bed


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeTestBed]:
    """A fresh emulator per test (on 127.0.0.1, a random port, its own thread)."""
    async with start_test_bed() as bed:
        yield bed
