"""Restore and upload: the simulator restores like the Supervisor and records what it restored."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohasupervisor import SupervisorClient
from aiohasupervisor.exceptions import SupervisorBadRequestError, SupervisorNotFoundError
from aiohasupervisor.models import Folder, FullRestoreOptions, PartialRestoreOptions, UploadBackupOptions
from aiohttp.test_utils import TestClient

from supervisor_sim import SupervisorSim
from supervisor_sim.restore import restores
from tests.sim.helpers import AUTH, assert_shape, make_backup, wait_job_done

PASSWORD = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ01"
RESTORE_RESPONSE = {"job_id": str}
JOB_ERROR = {
    "type": str,
    "message": str,
    "stage": (str, type(None)),
    "error_key": type(None),
    "extra_fields": type(None),
}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def restore(http: TestClient, slug: str, body: dict[str, object], *, full: bool) -> tuple[int, dict]:
    kind = "full" if full else "partial"
    resp = await http.post(f"/backups/{slug}/restore/{kind}", json=body, headers=AUTH)
    return resp.status, await resp.json()


async def test_full_restore_in_the_background_runs_a_restore_job(
    http: TestClient, sim: SupervisorSim
) -> None:
    created = await make_backup(http, {"name": "Full", "password": PASSWORD}, full=True)
    slug = created["slug"]

    status, payload = await restore(http, slug, {"password": PASSWORD, "background": True}, full=True)

    assert status == 200, payload
    assert payload["result"] == "ok"
    assert_shape(payload["data"], RESTORE_RESPONSE)
    job = await wait_job_done(http, payload["data"]["job_id"])
    assert job["name"] == "backup_manager_full_restore"
    assert job["reference"] == slug
    assert job["errors"] == []
    assert job["progress"] == 100
    (record,) = restores(sim).records
    assert record.ok and record.full
    assert record.homeassistant
    assert record.folders == ["share", "addons/local", "ssl", "media"]
    assert record.addons == [a["slug"] for a in sim.backups[slug].data["addons"]]
    assert record.archive_sha256 == sha256_of(sim.archive_path(slug))


async def test_restore_stages_are_the_supervisors(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Full"}, full=True)
    sim.faults = sim.faults.updated({"stage_delay": 0.05})
    _, payload = await restore(http, created["slug"], {"background": True}, full=True)
    job_id = payload["data"]["job_id"]

    seen: list[str] = []
    async with asyncio.timeout(10):
        while True:
            jobs = (await (await http.get("/jobs/info", headers=AUTH)).json())["data"]["jobs"]
            job = next(j for j in jobs if j["uuid"] == job_id)
            if job["stage"] and (not seen or seen[-1] != job["stage"]):
                seen.append(job["stage"])
            if job["done"]:
                break
            await asyncio.sleep(0.005)

    assert seen == [
        "folders", "home_assistant", "remove_delta_addons", "addon_repositories", "addons",
        "await_addon_restarts", "await_home_assistant_restart",
    ]  # fmt: skip


async def test_foreground_restore_answers_when_done(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Full"}, full=True)
    status, payload = await restore(http, created["slug"], {}, full=True)
    assert status == 200, payload
    jobs = (await (await http.get("/jobs/info", headers=AUTH)).json())["data"]["jobs"]
    job = next(j for j in jobs if j["uuid"] == payload["data"]["job_id"])
    assert job["done"] is True


async def test_wrong_password_is_refused_before_anything_is_restored(
    http: TestClient, sim: SupervisorSim
) -> None:
    created = await make_backup(http, {"name": "Locked", "password": PASSWORD}, full=True)
    slug = created["slug"]

    status, payload = await restore(http, slug, {"password": "WRONG", "background": True}, full=True)

    assert status == 400
    assert payload == {"result": "error", "message": f"Invalid password for backup {slug}"}
    jobs = (await (await http.get("/jobs/info", headers=AUTH)).json())["data"]["jobs"]
    job = next(j for j in jobs if j["name"] == "backup_manager_full_restore")
    assert job["done"] is True and job["reference"] == slug
    (error,) = job["errors"]
    assert_shape(error, JOB_ERROR)
    assert (error["type"], error["message"]) == ("BackupInvalidError", f"Invalid password for backup {slug}")
    assert restores(sim).records == []
    assert sim.state == "running"


async def test_missing_password_for_a_protected_backup_is_a_wrong_password(http: TestClient) -> None:
    created = await make_backup(http, {"name": "Locked", "password": PASSWORD}, full=True)
    status, payload = await restore(http, created["slug"], {}, full=True)
    assert status == 400
    assert payload["message"] == f"Invalid password for backup {created['slug']}"


async def test_aiohasupervisor_sees_the_wrong_password_as_home_assistant_does(
    supervisor: SupervisorClient, http: TestClient
) -> None:
    created = await make_backup(http, {"name": "Locked", "password": PASSWORD}, full=True)
    with pytest.raises(SupervisorBadRequestError) as caught:
        await supervisor.backups.full_restore(
            created["slug"], FullRestoreOptions(password="WRONG", background=True)
        )
    # Home Assistant Core recognises this message prefix.
    assert caught.value.args[0].startswith("Invalid password for backup")


async def test_partial_restore_restores_only_the_selection(
    supervisor: SupervisorClient, http: TestClient, sim: SupervisorSim
) -> None:
    created = await make_backup(http, {"name": "Full", "password": PASSWORD}, full=True)
    job = await supervisor.backups.partial_restore(
        created["slug"],
        PartialRestoreOptions(
            password=PASSWORD, background=True, addons={"core_mosquitto"}, folders={Folder.SSL}
        ),
    )
    done = await wait_job_done(http, job.job_id.hex)
    assert done["name"] == "backup_manager_partial_restore"
    assert done["errors"] == []
    (record,) = restores(sim).records
    assert (record.full, record.homeassistant, record.addons, record.folders) == (
        False,
        False,
        ["core_mosquitto"],
        ["ssl"],
    )


async def test_unprotected_backup_restores_without_a_password(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Open", "folders": ["share"], "homeassistant": True})
    status, payload = await restore(
        http, created["slug"], {"homeassistant": True, "folders": ["share"]}, full=False
    )
    assert status == 200, payload
    (record,) = restores(sim).records
    assert record.ok and record.homeassistant and record.folders == ["share"]


async def test_full_restore_of_a_partial_backup_is_refused(http: TestClient) -> None:
    created = await make_backup(http, {"name": "Part", "folders": ["ssl"]})
    status, payload = await restore(http, created["slug"], {}, full=True)
    assert status == 400
    assert payload["message"] == f"{created['slug']} is only a partial backup!"


async def test_home_assistant_missing_from_the_backup_is_refused(http: TestClient) -> None:
    created = await make_backup(http, {"name": "Part", "folders": ["ssl"]})
    status, payload = await restore(http, created["slug"], {"homeassistant": True}, full=False)
    assert status == 400
    assert payload["message"] == "No Home Assistant Core data inside the backup"


async def test_location_without_the_backup_is_refused(http: TestClient) -> None:
    created = await make_backup(http, {"name": "Local", "folders": ["ssl"], "location": ".local"})
    status, payload = await restore(
        http, created["slug"], {"folders": ["ssl"], "location": "NAS"}, full=False
    )
    assert status == 400
    assert payload["message"] == f"Backup {created['slug']} does not exist in NAS"


async def test_restore_from_a_mount(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Both", "folders": ["ssl"], "location": [".local", "NAS"]})
    status, _ = await restore(http, created["slug"], {"folders": ["ssl"], "location": "NAS"}, full=False)
    assert status == 200
    assert restores(sim).records[0].location == "NAS"


async def test_backup_from_a_newer_supervisor_is_refused(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Full"}, full=True)
    sim.backups[created["slug"]].data["supervisor_version"] = "2099.1.0"
    status, payload = await restore(http, created["slug"], {}, full=True)
    assert status == 400
    assert payload["message"] == (
        "Backup was made on supervisor version 2099.1.0, can't restore on 2026.08.0. Must update supervisor first."
    )


async def test_unknown_backup_is_404(supervisor: SupervisorClient) -> None:
    with pytest.raises(SupervisorNotFoundError, match="Backup does not exist"):
        await supervisor.backups.full_restore("deadbeef")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"addons": "ALL"}, "expected list for dictionary value @ data['addons']. Got 'ALL'"),
        ({"name": "x"}, "extra keys not allowed @ data['name']. Got 'x'"),
        ({"folders": ["nope"]}, "value must be one of"),
    ],
)
async def test_invalid_partial_bodies_are_refused(
    http: TestClient, body: dict[str, object], message: str
) -> None:
    created = await make_backup(http, {"name": "Part", "folders": ["ssl"]})
    status, payload = await restore(http, created["slug"], body, full=False)
    assert status == 400
    assert message in payload["message"]


async def test_damaged_archive_fails_the_job(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Full", "password": PASSWORD}, full=True)
    slug = created["slug"]
    path = sim.archive_path(slug)
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        member = tar.getmember("share.tar.gz")
    middle = member.offset_data + member.size // 2
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))

    status, payload = await restore(http, slug, {"password": PASSWORD, "background": True}, full=True)
    assert status == 200
    job = await wait_job_done(http, payload["data"]["job_id"])
    assert [e["message"] for e in job["errors"]] == [f"Restore {slug} error, see supervisor logs"]
    (record,) = restores(sim).records
    assert not record.ok


async def test_a_second_restore_waits_for_the_first(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Full"}, full=True)
    sim.faults = sim.faults.updated({"stage_delay": 0.1})
    _, first = await restore(http, created["slug"], {"background": True}, full=True)
    status, second = await restore(http, created["slug"], {"background": True}, full=True)
    assert status == 400
    assert "blocked from execution, system is not running - freeze" in second["message"]
    await wait_job_done(http, first["data"]["job_id"])


async def test_restores_are_listed_under_sim_control(http: TestClient) -> None:
    created = await make_backup(http, {"name": "Part", "folders": ["ssl"]})
    await restore(http, created["slug"], {"folders": ["ssl"]}, full=False)
    listed = await (await http.get("/_sim/restores")).json()
    assert [(r["slug"], r["type"], r["folders"], r["ok"]) for r in listed] == [
        (created["slug"], "partial", ["ssl"], True)
    ]


# -- upload --------------------------------------------------------------------------------


def big_archive(path: Path, slug: str, payload: int) -> None:
    """A valid backup tar: one large random member, then backup.json."""
    meta = {"slug": slug, "name": "Uploaded", "date": "2026-01-01T00:00:00+00:00", "type": "partial",
            "supervisor_version": "2026.08.0", "folders": [], "homeassistant": None, "addons": [],
            "repositories": [], "compressed": True, "protected": False, "version": 2, "extra": {}}  # fmt: skip
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("share.tar.gz")
        info.size = payload
        tar.addfile(info, io.BytesIO(os.urandom(payload)))
        data = json.dumps(meta).encode()
        info = tarfile.TarInfo("./backup.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


async def file_chunks(path: Path, sizes: tuple[int, ...]) -> AsyncIterator[bytes]:
    """The file in pieces of varying, odd sizes."""
    with path.open("rb") as handle:
        index = 0
        while chunk := handle.read(sizes[index % len(sizes)]):
            index += 1
            yield chunk


async def test_upload_is_byte_identical(
    supervisor: SupervisorClient, sim: SupervisorSim, tmp_path: Path
) -> None:
    source = tmp_path / "upload.tar"
    big_archive(source, "0badcafe", 3 * 1024 * 1024 + 123)
    slug = await supervisor.backups.upload_backup(file_chunks(source, (1, 65_537, 1 << 20, 13, 300_001)))
    assert slug == "0badcafe"
    assert sha256_of(sim.archive_path(slug)) == sha256_of(source)


async def test_upload_to_a_file_name_and_mount(
    supervisor: SupervisorClient, sim: SupervisorSim, tmp_path: Path
) -> None:
    source = tmp_path / "upload.tar"
    big_archive(source, "0badcafe", 1000)
    slug = await supervisor.backups.upload_backup(
        file_chunks(source, (4096,)),
        UploadBackupOptions(location={"NAS"}, filename=Path("restored.tar")),
    )
    assert sim.archive_path(slug, "NAS").name == "restored.tar"
    assert sha256_of(sim.archive_path(slug, "NAS")) == sha256_of(source)


async def test_upload_streams_to_disk_in_constant_memory(
    supervisor: SupervisorClient, sim: SupervisorSim, tmp_path: Path
) -> None:
    size = 24 * 1024 * 1024
    source = tmp_path / "upload.tar"
    big_archive(source, "0badcafe", size)
    tracemalloc.start()
    try:
        slug = await supervisor.backups.upload_backup(file_chunks(source, (256 * 1024,)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sha256_of(sim.archive_path(slug)) == sha256_of(source)
    assert peak < size // 3, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB upload"


async def test_cut_off_upload_leaves_no_backup(
    supervisor: SupervisorClient, sim: SupervisorSim, tmp_path: Path
) -> None:
    source = tmp_path / "upload.tar"
    big_archive(source, "0badcafe", 2 * 1024 * 1024)
    before = set(sim.backups)

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in file_chunks(source, (256 * 1024,)):
            yield chunk
            if chunk:
                raise OSError("the source broke")

    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises, nothing may be imported
        await supervisor.backups.upload_backup(broken())
    await asyncio.sleep(0.1)
    assert set(sim.backups) == before
    assert not any(sim.config.tmp_dir.rglob("*.tar"))
