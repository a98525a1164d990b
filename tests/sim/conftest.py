"""Fixtures: a simulator per test, served on a real port, and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohasupervisor import SupervisorClient
from aiohttp.test_utils import TestClient, TestServer

from supervisor_sim import Faults, SimConfig, SupervisorSim
from tests.sim.helpers import TOKEN


@pytest.fixture
def make_sim(tmp_path: Path) -> Callable[..., SupervisorSim]:
    """Build a simulator in tmp_path; keyword arguments go to SimConfig."""

    def factory(**kwargs: Any) -> SupervisorSim:
        kwargs.setdefault("faults", Faults(stage_delay=0.005))
        return SupervisorSim(SimConfig(root=tmp_path / "sim", token=TOKEN, **kwargs))

    return factory


@pytest.fixture
def sim(make_sim: Callable[..., SupervisorSim]) -> SupervisorSim:
    """Default simulator with one backup mount named NAS."""
    return make_sim(mounts=["NAS"])


@pytest.fixture
async def server(sim: SupervisorSim, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """The simulator on a local port."""
    return await aiohttp_server(sim.app)


@pytest.fixture
async def http(server: TestServer, aiohttp_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    """Raw HTTP client (no token unless a test passes headers)."""
    return await aiohttp_client(server)


@pytest.fixture
async def supervisor(server: TestServer) -> AsyncIterator[SupervisorClient]:
    """The real aiohasupervisor client, as the add-on uses it."""
    client = SupervisorClient(str(server.make_url("")), TOKEN)
    yield client
    await client.close()
