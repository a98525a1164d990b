"""Home Assistant's configuration, its restart, and backups Home Assistant makes by itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from supervisor_sim import SimConfig, SupervisorSim
from supervisor_sim.__main__ import parse_args
from supervisor_sim.core_api import HA_ENCRYPTION_KEY, HA_INSTANCE_ID
from tests.sim.helpers import AUTH, assert_shape

CONFIG = {
    "latitude": float, "longitude": float, "elevation": int, "unit_system": dict,
    "location_name": str, "time_zone": str, "components": list, "config_dir": str,
    "whitelist_external_dirs": list, "allowlist_external_dirs": list,
    "allowlist_external_urls": list, "version": str, "config_source": str,
    "recovery_mode": bool, "state": str, "external_url": (str, type(None)),
    "internal_url": (str, type(None)), "currency": str, "country": str, "language": str,
    "safe_mode": bool,
}  # fmt: skip


async def test_config_has_home_assistants_shape_and_time_zone(http: TestClient, sim: SupervisorSim) -> None:
    resp = await http.get("/core/api/config", headers=AUTH)
    config = await resp.json()
    assert resp.status == 200
    assert_shape(config, CONFIG)
    assert config["time_zone"] == "Europe/Amsterdam"
    assert config["version"] == sim.config.homeassistant_version
    assert sim.core_calls[-1].path == "/core/api/config"


async def test_time_zone_is_configurable(
    make_sim: Callable[..., SupervisorSim], aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> None:
    sim = make_sim(time_zone="America/New_York")
    client = await aiohttp_client(sim.app)
    resp = await client.get("/homeassistant/api/config", headers=AUTH)
    assert (await resp.json())["time_zone"] == "America/New_York"


def test_an_unknown_time_zone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IANA"):
        SimConfig(root=tmp_path, time_zone="Mars/Olympus_Mons")


def test_cli_takes_a_time_zone() -> None:
    args = parse_args(["--port", "1", "--dir", "d", "--token", "t", "--time-zone", "Asia/Tokyo"])
    assert args.time_zone == "Asia/Tokyo"
    assert parse_args(["--port", "1", "--dir", "d", "--token", "t"]).time_zone == "Europe/Amsterdam"


async def test_config_needs_the_token(http: TestClient) -> None:
    resp = await http.get("/core/api/config", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401


async def test_restart_forgets_states_and_notifications_but_keeps_calls(
    http: TestClient, sim: SupervisorSim
) -> None:
    await http.post("/core/api/states/sensor.backup_321_status", json={"state": "met"}, headers=AUTH)
    await http.post(
        "/core/api/services/persistent_notification/create",
        json={"notification_id": "backup_321_stale", "message": "old", "title": "t"},
        headers=AUTH,
    )
    resp = await http.post("/_sim/core/restart")
    assert await resp.json() == {"restarts": 1}
    assert sim.core.states == {}
    assert sim.core.notifications == {}
    assert len(sim.core_calls) == 2
    gone = await http.get("/core/api/states/sensor.backup_321_status", headers=AUTH)
    assert gone.status == 404
    again = await http.post("/core/api/states/sensor.backup_321_status", json={"state": "met"}, headers=AUTH)
    assert again.status == 201


async def _others_backup(http: TestClient, sim: SupervisorSim, body: dict[str, Any]) -> dict[str, Any]:
    resp = await http.post("/_sim/others/backup", json=body)
    answer = await resp.json()
    assert resp.status == 200, answer
    await sim.wait_idle()
    return dict(answer)


def _only_backup(sim: SupervisorSim) -> dict[str, Any]:
    (backup,) = sim.backups.values()
    return backup.info()


async def test_automatic_backup_looks_like_home_assistants(http: TestClient, sim: SupervisorSim) -> None:
    answer = await _others_backup(http, sim, {"kind": "automatic"})
    info = _only_backup(sim)
    extra = info["extra"]
    assert isinstance(extra, dict)
    assert extra["instance_id"] == HA_INSTANCE_ID
    assert extra["with_automatic_settings"] is True
    assert "supervisor.backup_request_date" in extra
    assert "supervisor.addon_update" not in extra
    assert answer["extra"] == extra
    assert info["name"] == f"Automatic backup {sim.config.homeassistant_version}"
    assert info["protected"] is True
    assert info["homeassistant"] == sim.config.homeassistant_version
    assert sorted(info["folders"]) == ["share", "ssl"]
    assert len(info["addons"]) == len(sim.config.installed_addons())
    assert info["location"] is None


async def test_manual_backup_is_not_automatic_and_not_encrypted(http: TestClient, sim: SupervisorSim) -> None:
    await _others_backup(http, sim, {"kind": "manual"})
    info = _only_backup(sim)
    assert info["extra"]["with_automatic_settings"] is False
    assert info["protected"] is False
    assert info["name"] == f"Custom backup {sim.config.homeassistant_version}"


async def test_pre_update_backup_holds_only_the_updated_addon(http: TestClient, sim: SupervisorSim) -> None:
    await _others_backup(http, sim, {"kind": "pre_update", "addon": "core_ssh"})
    info = _only_backup(sim)
    extra = info["extra"]
    assert extra["supervisor.addon_update"] == "core_ssh"
    assert extra["with_automatic_settings"] is False
    assert [a["slug"] for a in info["addons"]] == ["core_ssh"]
    assert info["homeassistant"] is None
    assert info["folders"] == []
    assert info["name"] == "Terminal & SSH 9.16.0"
    assert info["protected"] is True


async def test_pre_update_defaults_to_mosquitto(http: TestClient, sim: SupervisorSim) -> None:
    await _others_backup(http, sim, {"kind": "pre_update"})
    assert _only_backup(sim)["extra"]["supervisor.addon_update"] == "core_mosquitto"


def test_the_encryption_key_looks_like_home_assistants() -> None:
    groups = HA_ENCRYPTION_KEY.split("-")
    assert len(groups) == 7
    assert all(len(g) == 4 and g.isalnum() and g.upper() == g for g in groups)


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "weekly"},
        {},
        {"kind": "pre_update", "addon": "not_installed"},
        {"kind": "manual", "x": 1},
        [],
    ],
)
async def test_bad_others_requests_are_refused(http: TestClient, sim: SupervisorSim, body: object) -> None:
    resp = await http.post("/_sim/others/backup", json=body)
    assert resp.status == 400
    assert "error" in await resp.json()
    assert sim.backups == {}


async def test_others_backup_while_one_runs_is_refused_like_the_supervisor(
    http: TestClient, sim: SupervisorSim
) -> None:
    sim.faults = sim.faults.updated({"stage_delay": 0.2})
    first = await http.post("/_sim/others/backup", json={"kind": "manual"})
    assert first.status == 200
    second = await http.post("/_sim/others/backup", json={"kind": "manual"})
    answer = await second.json()
    await sim.wait_idle()
    assert second.status == 400
    assert "blocked from execution" in answer["error"]
    assert len(sim.backups) == 1
