"""The Home Assistant client against the simulated Supervisor's Core proxy."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from backup_addon.errors import AddonError
from backup_addon.homeassistant import HomeAssistant, HomeAssistantError
from supervisor_sim import Faults, SupervisorSim

from .conftest import TOKEN


@pytest.fixture
async def client(sim_url: str) -> AsyncIterator[HomeAssistant]:
    async with HomeAssistant(sim_url, TOKEN, timeout=5) as ha:
        yield ha


async def test_notify_shows_and_dismiss_removes_a_notification(
    client: HomeAssistant, sim: SupervisorSim
) -> None:
    await client.notify("backup_321_test", "3-2-1 Backup", "Hello")
    assert sim.core.notifications["backup_321_test"]["message"] == "Hello"
    assert sim.core.notifications["backup_321_test"]["title"] == "3-2-1 Backup"
    await client.dismiss("backup_321_test")
    assert "backup_321_test" not in sim.core.notifications


async def test_dismissing_an_unknown_notification_is_fine(client: HomeAssistant) -> None:
    await client.dismiss("backup_321_never_shown")


async def test_fire_event_posts_the_data(client: HomeAssistant, sim: SupervisorSim) -> None:
    await client.fire_event("backup_321_backup_completed", {"slug": "abcd1234", "size_bytes": 12})
    call = sim.core_calls[-1]
    assert (call.method, call.path, call.body) == (
        "POST",
        "/core/api/events/backup_321_backup_completed",
        {"slug": "abcd1234", "size_bytes": 12},
    )


async def test_set_state_tells_whether_the_entity_was_new(client: HomeAssistant, sim: SupervisorSim) -> None:
    assert await client.set_state("sensor.backup_321_status", "met", {"copies": 3}) is True
    assert await client.set_state("sensor.backup_321_status", "not met", {"copies": 1}) is False
    state = await client.get_state("sensor.backup_321_status")
    assert state is not None
    assert (state["state"], state["attributes"]) == ("not met", {"copies": 1})
    assert sim.core.states["sensor.backup_321_status"]["state"] == "not met"


async def test_get_state_of_an_unknown_entity_is_none(client: HomeAssistant) -> None:
    assert await client.get_state("sensor.backup_321_nothing") is None


async def test_config_has_the_time_zone(client: HomeAssistant) -> None:
    config = await client.config()
    assert config["time_zone"] == "Europe/Amsterdam"
    assert config["version"]


async def test_every_method_is_one_request(client: HomeAssistant, sim: SupervisorSim) -> None:
    await client.notify("backup_321_a", "t", "m")
    await client.dismiss("backup_321_a")
    await client.fire_event("backup_321_pruned", {})
    await client.set_state("sensor.backup_321_x", "1", {})
    await client.get_state("sensor.backup_321_x")
    await client.config()
    assert [(c.method, c.path) for c in sim.core_calls] == [
        ("POST", "/core/api/services/persistent_notification/create"),
        ("POST", "/core/api/services/persistent_notification/dismiss"),
        ("POST", "/core/api/events/backup_321_pruned"),
        ("POST", "/core/api/states/sensor.backup_321_x"),
        ("GET", "/core/api/states/sensor.backup_321_x"),
        ("GET", "/core/api/config"),
    ]


async def test_path_characters_in_an_entity_id_stay_in_one_segment(
    client: HomeAssistant, sim: SupervisorSim
) -> None:
    with pytest.raises(HomeAssistantError, match="Invalid entity ID") as caught:
        await client.set_state("sensor.x/../../config", "1", {})
    assert caught.value.status == 400
    assert sim.core_calls[-1].path == "/core/api/states/sensor.x/../../config"
    assert sim.core.states == {}


async def test_a_wrong_token_is_refused_without_showing_it(sim_url: str) -> None:
    secret = "wrong-token-0123456789abcdef"
    async with HomeAssistant(sim_url, secret) as ha:
        with pytest.raises(HomeAssistantError) as caught:
            await ha.notify("backup_321_x", "t", "m")
    assert caught.value.status == 401
    assert "refused the add-on's access" in str(caught.value)
    assert secret not in str(caught.value)
    assert isinstance(caught.value, AddonError)


async def test_home_assistant_down_is_reported(client: HomeAssistant, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0.01, http_status={r"^/core/api/": 502})
    with pytest.raises(HomeAssistantError, match="not available") as caught:
        await client.set_state("sensor.backup_321_status", "met", {})
    assert caught.value.status == 502
    assert TOKEN not in str(caught.value)


async def test_an_unreachable_supervisor_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with HomeAssistant(f"http://127.0.0.1:{port}", TOKEN, timeout=5) as ha:
        with pytest.raises(HomeAssistantError, match="Cannot reach Home Assistant") as caught:
            await ha.config()
    assert caught.value.status is None
    assert TOKEN not in str(caught.value)


async def test_a_request_that_hangs_times_out(sim_url: str, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0.01, hang=r"^/core/api/states")
    async with HomeAssistant(sim_url, TOKEN, timeout=0.3) as ha:
        with pytest.raises(HomeAssistantError, match=r"did not answer within 0\.3 s"):
            await ha.get_state("sensor.backup_321_status")
