"""``/core/api/*`` answers like Home Assistant and records what the add-on did."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from supervisor_sim import SupervisorSim
from tests.sim.helpers import AUTH, assert_shape

STATE = {
    "entity_id": str, "state": str, "attributes": dict, "last_changed": str,
    "last_reported": str, "last_updated": str, "context": dict,
}  # fmt: skip


async def test_api_root_says_running(http: TestClient) -> None:
    resp = await http.get("/core/api/", headers=AUTH)
    assert await resp.json() == {"message": "API running."}


async def test_posting_a_state_creates_then_updates_it(http: TestClient, sim: SupervisorSim) -> None:
    body = {"state": "ok", "attributes": {"friendly_name": "3-2-1 status", "copies": 3}}
    created = await http.post("/core/api/states/sensor.backup_321_status", json=body, headers=AUTH)
    assert created.status == 201
    assert created.headers["Location"] == "/api/states/sensor.backup_321_status"
    state = await created.json()
    assert_shape(state, STATE)
    assert state["attributes"] == body["attributes"]
    updated = await http.post(
        "/core/api/states/sensor.backup_321_status", json={"state": "stale"}, headers=AUTH
    )
    assert updated.status == 200
    fetched = await http.get("/core/api/states/sensor.backup_321_status", headers=AUTH)
    assert (await fetched.json())["state"] == "stale"
    assert sim.core.states["sensor.backup_321_status"]["state"] == "stale"


async def test_bad_states_are_refused_like_home_assistant(http: TestClient) -> None:
    missing = await http.get("/core/api/states/sensor.nothing", headers=AUTH)
    assert (missing.status, await missing.json()) == (404, {"message": "Entity not found."})
    no_state = await http.post("/core/api/states/sensor.x", json={"attributes": {}}, headers=AUTH)
    assert (no_state.status, await no_state.json()) == (400, {"message": "No state specified."})
    bad_id = await http.post("/core/api/states/not-an-entity", json={"state": "1"}, headers=AUTH)
    assert (bad_id.status, await bad_id.json()) == (400, {"message": "Invalid entity ID specified."})


async def test_events_are_fired(http: TestClient) -> None:
    resp = await http.post(
        "/core/api/events/backup_321_backup_completed", json={"slug": "abcd1234"}, headers=AUTH
    )
    assert await resp.json() == {"message": "Event backup_321_backup_completed fired."}


async def test_persistent_notifications_are_created_and_dismissed(
    http: TestClient, sim: SupervisorSim
) -> None:
    create = await http.post(
        "/core/api/services/persistent_notification/create",
        json={"message": "Backup failed", "title": "3-2-1 Backup", "notification_id": "backup_321"},
        headers=AUTH,
    )
    assert await create.json() == []
    assert sim.core.notifications["backup_321"]["message"] == "Backup failed"
    dismiss = await http.post(
        "/core/api/services/persistent_notification/dismiss",
        json={"notification_id": "backup_321"},
        headers=AUTH,
    )
    assert await dismiss.json() == []
    assert sim.core.notifications == {}


async def test_calls_are_recorded_in_order(http: TestClient, sim: SupervisorSim) -> None:
    await http.post("/core/api/events/first", json={"n": 1}, headers=AUTH)
    await http.post("/core/api/states/sensor.second", json={"state": "2"}, headers=AUTH)
    assert [(c.method, c.path, c.body) for c in sim.core_calls] == [
        ("POST", "/core/api/events/first", {"n": 1}),
        ("POST", "/core/api/states/sensor.second", {"state": "2"}),
    ]
    over_http = await (await http.get("/_sim/calls")).json()
    assert [c["path"] for c in over_http] == ["/core/api/events/first", "/core/api/states/sensor.second"]
    assert over_http[0]["body"] == {"n": 1}
    await http.delete("/_sim/calls")
    assert sim.core_calls == []
