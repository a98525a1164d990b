"""Each fault knob, asserted as the add-on (a client) observes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohasupervisor import SupervisorClient
from aiohasupervisor.exceptions import (
    BackupMountDownError,
    MountNotFoundError,
    SupervisorAuthenticationError,
    SupervisorBadRequestError,
)
from aiohasupervisor.models import Folder, PartialBackupOptions
from aiohttp.test_utils import TestClient, TestServer

from supervisor_sim import Faults, SupervisorSim
from tests.sim.helpers import AUTH, make_backup, wait_job_done

SSL_ONLY = {"name": "Faulty", "folders": ["ssl"]}


async def _start_background(http: TestClient, body: dict[str, Any], kind: str = "partial") -> str:
    resp = await http.post(f"/backups/new/{kind}", json={**body, "background": True}, headers=AUTH)
    payload = await resp.json()
    assert resp.status == 200, payload
    return str(payload["data"]["job_id"])


async def _backup_slugs(http: TestClient) -> list[str]:
    resp = await http.get("/backups", headers=AUTH)
    return [b["slug"] for b in (await resp.json())["data"]["backups"]]


async def test_stage_delay_makes_every_stage_observable(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0.08)
    job_id = await _start_background(
        http, {"name": "Stages", "homeassistant": True, "addons": ["core_ssh"], "folders": ["ssl"],
               "location": [".local", "NAS"]}
    )  # fmt: skip
    seen: list[str] = []
    while True:
        # State first: a job still running afterwards was running when the state was read.
        state = (await (await http.get("/info", headers=AUTH)).json())["data"]["state"]
        jobs = (await (await http.get("/jobs/info", headers=AUTH)).json())["data"]["jobs"]
        job = jobs[0]
        if job["done"]:
            break
        assert state == "freeze"
        assert job["done"] is False
        assert job["progress"] == 0
        if job["stage"] and (not seen or seen[-1] != job["stage"]):
            seen.append(job["stage"])
        await asyncio.sleep(0.005)
    assert job["uuid"] == job_id
    assert job["progress"] == 100
    assert seen == [
        "addon_repositories", "home_assistant", "addons", "folders", "finishing_file",
        "copy_additional_locations", "await_addon_restarts",
    ]  # fmt: skip
    assert [c["name"] for c in job["child_jobs"]] == [
        "backup_store_homeassistant", "backup_store_addons", "backup_store_folders",
        "backup_copy_to_additional_locations",
    ]  # fmt: skip
    assert job["child_jobs"][1]["child_jobs"][0]["name"] == "backup_addon_save"
    assert job["child_jobs"][3]["child_jobs"][0]["reference"] == "NAS"


async def test_fail_job_ends_done_with_an_error_and_no_backup(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0, fail_job=True)
    job = await wait_job_done(http, await _start_background(http, SSL_ONLY))
    assert job["progress"] == 100
    (error,) = job["errors"]
    assert error["type"] == "BackupError"
    assert error["message"] == f"Backup {job['reference']} error, see supervisor logs"
    assert error["stage"] == "folders"
    assert await _backup_slugs(http) == []
    assert not list(sim.config.backup_dir.glob("*.tar"))


async def test_fail_job_in_foreground_answers_400_with_job_id(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0, fail_job=True)
    resp = await http.post("/backups/new/partial", json=SSL_ONLY, headers=AUTH)
    assert resp.status == 400
    body = await resp.json()
    job_id = body["job_id"]
    assert body == {
        "result": "error",
        "message": f"An error occurred while making backup, check job '{job_id}' or supervisor logs for details",
        "job_id": job_id,
    }


async def test_fail_job_raises_bad_request_in_aiohasupervisor(
    supervisor: SupervisorClient, sim: SupervisorSim
) -> None:
    sim.faults = Faults(stage_delay=0, fail_job=True)
    with pytest.raises(SupervisorBadRequestError) as caught:
        await supervisor.backups.partial_backup(PartialBackupOptions(name="x", homeassistant=True))
    assert caught.value.job_id is not None


async def test_child_job_error_keeps_the_backup(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0, child_job_error=True)
    job = await wait_job_done(
        http, await _start_background(http, {"name": "Child", "addons": ["core_ssh", "core_mosquitto"]})
    )
    assert job["errors"] == []
    (store_addons,) = job["child_jobs"]
    failed, saved = store_addons["child_jobs"]
    assert failed["reference"] == "core_ssh"
    assert failed["errors"][0]["message"] == "Can't create backup for core_ssh"
    assert saved["errors"] == []
    assert await _backup_slugs(http) == [job["reference"]]
    content = sim.backups[job["reference"]].list_entry()["content"]
    assert content["addons"] == ["core_mosquitto"]


async def test_http_status_forces_statuses_by_path(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(http_status={"^/backups/new/": 500, "^/backups/info$": 400})
    resp = await http.post("/backups/new/full", json={}, headers=AUTH)
    assert resp.status == 500
    assert resp.content_type == "text/plain"
    assert "500 Internal Server Error" in await resp.text()
    resp = await http.get("/backups/info", headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["result"] == "error"
    assert (await http.get("/backups", headers=AUTH)).status == 200


async def test_http_status_401_reaches_aiohasupervisor(
    supervisor: SupervisorClient, sim: SupervisorSim
) -> None:
    sim.faults = Faults(http_status={"^/backups$": 401})
    with pytest.raises(SupervisorAuthenticationError):
        await supervisor.backups.list()


async def test_hang_never_answers_but_the_server_does(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(hang="^/backups$")
    hanging = asyncio.create_task(
        http.get("/backups", headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.3))
    )
    await asyncio.sleep(0.05)
    assert (await http.get("/info", headers=AUTH)).status == 200
    with pytest.raises(TimeoutError):
        await hanging


async def test_hang_and_stall_do_not_block_shutdown(sim: SupervisorSim) -> None:
    backup = await sim.create_backup(SSL_ONLY)
    assert backup is not None
    slug = backup.slug
    sim.faults = Faults(hang="^/backups$", stall_download_after=10)
    server = TestServer(sim.app)
    await server.start_server()
    async with aiohttp.ClientSession(headers=AUTH) as session:
        hanging = asyncio.create_task(session.get(server.make_url("/backups")))
        stalled = await session.get(server.make_url(f"/backups/{slug}/download"))
        await stalled.content.readexactly(10)
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 2
        with pytest.raises(aiohttp.ClientError):
            await hanging
        with pytest.raises(aiohttp.ClientError):
            await stalled.read()
        stalled.release()


async def test_drop_download_after_cuts_the_connection(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, SSL_ONLY)
    sim.faults = Faults(drop_download_after=1000)
    resp = await http.get(f"/backups/{created['slug']}/download", headers=AUTH)
    assert resp.status == 200
    assert resp.content_length == sim.archive_path(created["slug"]).stat().st_size
    received = 0
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in resp.content.iter_any():
            received += len(chunk)
    assert received == 1000


async def test_stall_download_after_keeps_the_connection_silent(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, SSL_ONLY)
    sim.faults = Faults(stall_download_after=512)
    resp = await http.get(f"/backups/{created['slug']}/download", headers=AUTH)
    assert await resp.content.readexactly(512)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(resp.content.read(1), 0.3)
    # Still connected: the stall is silence, not a cut.
    assert resp.connection is not None
    assert resp.connection.transport is not None
    assert not resp.connection.transport.is_closing()
    resp.close()


async def test_disk_full_fails_the_job_with_enospc(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0, disk_full=True)
    job = await wait_job_done(http, await _start_background(http, {"name": "Full disk"}, kind="full"))
    (error,) = job["errors"]
    assert "[Errno 28] No space left on device" in error["message"]
    assert error["stage"] == "home_assistant"
    assert job["child_jobs"][0]["errors"]
    assert await _backup_slugs(http) == []
    assert not list(sim.config.backup_dir.glob("*.tar"))


async def test_not_ready_state_answers_every_call(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(not_ready_state="setup")
    for path, headers in (("/info", AUTH), ("/backups", AUTH), ("/backups", {})):
        resp = await http.get(path, headers=headers)
        assert resp.status == 400
        assert await resp.json() == {"result": "error", "message": "System is not ready with state: setup"}


async def test_mounts_down_refuses_the_mount(
    supervisor: SupervisorClient, http: TestClient, sim: SupervisorSim
) -> None:
    sim.faults = Faults(mounts_down=["NAS"])
    resp = await http.post("/backups/new/partial", json={**SSL_ONLY, "location": "NAS"}, headers=AUTH)
    assert resp.status == 400
    assert await resp.json() == {
        "result": "error",
        "message": "Backup mount 'NAS' is down",
        "error_key": "backup_mount_down",
        "extra_fields": {"mount": "NAS"},
    }
    with pytest.raises(BackupMountDownError):
        await supervisor.backups.partial_backup(
            PartialBackupOptions(name="x", folders={Folder.SSL}, location="NAS")
        )


async def test_mounts_down_fails_only_the_copy_to_it(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0, mounts_down=["NAS"])
    job = await wait_job_done(
        http, await _start_background(http, {**SSL_ONLY, "location": [".local", "NAS"]})
    )
    assert job["errors"] == []
    copy = job["child_jobs"][-1]["child_jobs"][0]
    assert copy["name"] == "backup_copy_to_location"
    assert "Could not copy backup to NAS" in copy["errors"][0]["message"]
    assert sim.backups[job["reference"]].locations == [None]


async def test_unknown_mount_is_404_mount_not_found(supervisor: SupervisorClient, http: TestClient) -> None:
    resp = await http.post("/backups/new/partial", json={**SSL_ONLY, "location": "Nowhere"}, headers=AUTH)
    assert resp.status == 404
    body = await resp.json()
    assert body["error_key"] == "mount_not_found_error"
    with pytest.raises(MountNotFoundError):
        await supervisor.backups.partial_backup(
            PartialBackupOptions(name="x", folders={Folder.SSL}, location="Nowhere")
        )


async def test_faults_are_set_and_read_over_http(http: TestClient, sim: SupervisorSim) -> None:
    resp = await http.post("/_sim/faults", json={"disk_full": True, "http_status": {"^/os/": 503}})
    assert resp.status == 200
    assert sim.faults.disk_full is True
    assert sim.faults.http_status == {"^/os/": 503}
    current = await (await http.get("/_sim/faults")).json()
    assert current["disk_full"] is True
    assert set(current) == {
        "stage_delay", "fail_job", "child_job_error", "http_status", "hang", "drop_download_after",
        "stall_download_after", "disk_full", "not_ready_state", "mounts_down", "clock_offset",
    }  # fmt: skip
    assert (await http.get("/os/info", headers=AUTH)).status == 503
    bad = await http.post("/_sim/faults", json={"no_such_knob": 1})
    assert bad.status == 400
    assert "no_such_knob" in (await bad.json())["error"]
    assert (await http.post("/_sim/faults", json={"stage_delay": "slow"})).status == 400
    await http.delete("/_sim/faults")
    assert sim.faults == Faults()


async def test_faults_reach_a_backup_started_over_http(
    sim: SupervisorSim, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> None:
    client = await aiohttp_client(sim.app)
    await client.post("/_sim/faults", json={"fail_job": True, "stage_delay": 0})
    job = await wait_job_done(client, await _start_background(client, SSL_ONLY))
    assert job["errors"]
