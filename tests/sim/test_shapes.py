"""The simulator's answers have the keys and value types of the recorded real responses."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from aiohasupervisor import SupervisorClient
from aiohasupervisor.models import (
    AddonSet,
    Folder,
    FullBackupOptions,
    PartialBackupOptions,
    RemoveBackupOptions,
    UploadBackupOptions,
)
from aiohttp.test_utils import TestClient

from supervisor_sim import SupervisorSim
from tests.sim.helpers import AUTH, NONE, assert_shape, make_backup, wait_job_done

NUMBER = (int, float)
STR_OR_NONE = (str, NONE)

ROOT_INFO = {
    "supervisor": str, "homeassistant": STR_OR_NONE, "hassos": STR_OR_NONE, "docker": str,
    "hostname": STR_OR_NONE, "operating_system": STR_OR_NONE, "features": list,
    "machine": STR_OR_NONE, "machine_id": STR_OR_NONE, "arch": str, "state": str,
    "supported_arch": list, "supported": bool, "channel": str, "logging": str, "timezone": str,
}  # fmt: skip
SUPERVISOR_INFO = {
    "version": str, "version_latest": str, "update_available": bool, "channel": str,
    "arch": str, "supported": bool, "healthy": bool, "ip_address": str, "timezone": str,
    "logging": str, "debug": bool, "debug_block": bool, "diagnostics": bool,
    "auto_update": bool, "country": STR_OR_NONE, "wait_boot": int, "detect_blocking_io": bool,
    "feature_flags": dict, "addons": list, "addons_repositories": list,
}  # fmt: skip
SUPERVISOR_ADDON = {
    "name": str, "slug": str, "version": str, "version_latest": str,
    "update_available": bool, "state": str, "repository": str, "icon": bool,
}  # fmt: skip
CORE_INFO = {
    "version": str, "version_latest": str, "update_available": bool, "machine": str,
    "ip_address": str, "arch": str, "image": str, "boot": bool, "port": int, "ssl": bool,
    "watchdog": bool, "audio_input": STR_OR_NONE, "audio_output": STR_OR_NONE,
    "backups_exclude_database": bool, "duplicate_log_file": bool,
}  # fmt: skip
ADDON_INFO_KEYS = {
    "name", "slug", "hostname", "dns", "description", "long_description", "advanced", "stage",
    "repository", "version_latest", "protected", "rating", "boot", "boot_config", "options",
    "schema", "arch", "machine", "homeassistant", "url", "detached", "available", "build",
    "network", "network_description", "host_network", "host_pid", "host_ipc", "host_uts",
    "host_dbus", "privileged", "full_access", "apparmor", "icon", "logo", "changelog",
    "documentation", "stdin", "hassio_api", "hassio_role", "auth_api", "homeassistant_api",
    "gpio", "usb", "uart", "kernel_modules", "devicetree", "udev", "docker_api", "video",
    "audio", "startup", "services", "discovery", "translations", "ingress", "signed", "state",
    "webui", "ingress_entry", "ingress_url", "ingress_port", "ingress_panel", "audio_input",
    "audio_output", "auto_update", "ip_address", "version", "update_available", "watchdog",
    "devices", "system_managed", "system_managed_config_entry",
    # Newer than the recording; aiohasupervisor 0.11 requires it.
    "log_format",
}  # fmt: skip
LOCATION_ATTRIBUTES = {"protected": bool, "size_bytes": int}
CONTENT = {"homeassistant": bool, "addons": list, "folders": list}
BACKUP = {
    "slug": str, "name": str, "date": str, "type": str, "size": NUMBER, "size_bytes": int,
    "location": STR_OR_NONE, "locations": list, "protected": bool,
    "location_attributes": dict, "compressed": bool, "content": dict,
}  # fmt: skip
BACKUP_DETAILS = {
    "slug": str, "type": str, "name": str, "date": str, "size": NUMBER, "size_bytes": int,
    "compressed": bool, "protected": bool, "location_attributes": dict,
    "supervisor_version": str, "homeassistant": STR_OR_NONE, "location": STR_OR_NONE,
    "locations": list, "addons": list, "repositories": list, "folders": list,
    "homeassistant_exclude_database": (bool, NONE), "extra": (dict, NONE),
}  # fmt: skip
BACKUP_ADDON = {"slug": str, "name": str, "version": str, "size": NUMBER}
JOB = {
    "name": str, "reference": STR_OR_NONE, "uuid": str, "progress": NUMBER,
    "stage": STR_OR_NONE, "done": (bool, NONE), "errors": list, "created": str,
    "extra": (dict, NONE), "child_jobs": list,
}  # fmt: skip
JOB_ERROR = {
    "type": str, "message": str, "stage": STR_OR_NONE,
    "error_key": STR_OR_NONE, "extra_fields": (dict, NONE),
}  # fmt: skip


async def _data(http: TestClient, path: str) -> Any:
    resp = await http.get(path, headers=AUTH)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"result", "data"}
    assert body["result"] == "ok"
    return body["data"]


def _assert_job_tree(job: dict[str, Any]) -> None:
    assert_shape(job, JOB)
    assert re.fullmatch(r"[0-9a-f]{32}", job["uuid"])
    for error in job["errors"]:
        assert_shape(error, JOB_ERROR)
    for child in job["child_jobs"]:
        _assert_job_tree(child)


async def test_info_endpoints_have_recorded_shapes(http: TestClient) -> None:
    assert_shape(await _data(http, "/info"), ROOT_INFO)
    supervisor = await _data(http, "/supervisor/info")
    assert_shape(supervisor, SUPERVISOR_INFO)
    for addon in supervisor["addons"]:
        assert_shape(addon, SUPERVISOR_ADDON)
    assert_shape(await _data(http, "/core/info"), CORE_INFO)
    for path in ("/addons/self/info", "/addons/local_backup_321/info", "/addons/core_ssh/info"):
        assert set(await _data(http, path)) == ADDON_INFO_KEYS


async def test_own_addon_info_reports_backup_role(http: TestClient) -> None:
    data = await _data(http, "/addons/self/info")
    assert data["slug"] == "local_backup_321"
    assert data["hassio_role"] == "backup"
    assert data["hassio_api"] is True
    assert data["homeassistant_api"] is True


async def test_backup_list_and_details_have_recorded_shapes(http: TestClient) -> None:
    created = await make_backup(
        http, {"name": "Shapes", "folders": ["ssl"], "location": [".local", "NAS"], "extra": {"a": 1}}
    )
    for path in ("/backups", "/backups/info"):
        data = await _data(http, path)
        expected = {"backups"} if path == "/backups" else {"backups", "days_until_stale"}
        assert set(data) == expected
        (entry,) = data["backups"]
        assert_shape(entry, BACKUP)
        assert_shape(entry["content"], CONTENT)
        for attributes in entry["location_attributes"].values():
            assert_shape(attributes, LOCATION_ATTRIBUTES)
    details = await _data(http, f"/backups/{created['slug']}/info")
    assert_shape(details, BACKUP_DETAILS)
    assert details["locations"] == [None, "NAS"]
    assert set(details["location_attributes"]) == {".local", "NAS"}
    assert details["extra"] == {"a": 1}


async def test_backup_details_of_a_full_backup_list_addons_with_size(http: TestClient) -> None:
    created = await make_backup(http, {"name": "Full"}, full=True)
    details = await _data(http, f"/backups/{created['slug']}/info")
    assert details["homeassistant"] == "2026.8.3"
    assert details["homeassistant_exclude_database"] is False
    for addon in details["addons"]:
        assert_shape(addon, BACKUP_ADDON)
        assert addon["size"] == 0.0


async def test_jobs_info_has_recorded_shape(http: TestClient) -> None:
    created = await make_backup(http, {"name": "Jobs", "addons": ["core_ssh"], "folders": ["ssl"]})
    data = await _data(http, "/jobs/info")
    assert set(data) == {"ignore_conditions", "jobs"}
    assert isinstance(data["ignore_conditions"], list)
    (job,) = data["jobs"]
    _assert_job_tree(job)
    assert job["name"] == "backup_manager_partial_backup"
    assert job["reference"] == created["slug"]
    assert job["uuid"] == created["job_id"]


async def test_new_backup_responses_have_recorded_shapes(http: TestClient) -> None:
    resp = await http.post(
        "/backups/new/partial", json={"name": "bg", "folders": ["ssl"], "background": True}, headers=AUTH
    )
    background = (await resp.json())["data"]
    assert set(background) == {"job_id"}
    await wait_job_done(http, background["job_id"])
    foreground = await make_backup(http, {"name": "fg", "folders": ["ssl"]})
    assert set(foreground) == {"job_id", "slug"}
    assert re.fullmatch(r"[0-9a-f]{32}", foreground["job_id"])
    assert re.fullmatch(r"[0-9a-f]{8}", foreground["slug"])


async def test_info_answers_parse_with_aiohasupervisor(supervisor: SupervisorClient) -> None:
    root = await supervisor.info()
    assert root.state == "running"
    assert (await supervisor.supervisor.info()).version == "2026.08.0"
    assert (await supervisor.homeassistant.info()).backups_exclude_database is False
    own = await supervisor.addons.addon_info("self")
    assert own.slug == "local_backup_321"
    assert own.supervisor_role == "backup"
    assert (await supervisor.addons.addon_info("core_mosquitto")).name == "Mosquitto broker"
    assert (await supervisor.os.info()).version


async def test_backup_flow_parses_with_aiohasupervisor(
    supervisor: SupervisorClient, http: TestClient, sim: SupervisorSim
) -> None:
    started = await supervisor.backups.full_backup(
        FullBackupOptions(
            name="Nightly", password="ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ01",
            location=[".local", "NAS"], compressed=True, background=True,
            extra={"created_by": "backup_321"},
        )
    )  # fmt: skip
    assert started.slug is None
    job = await wait_job_done(http, started.job_id.hex)
    jobs = await supervisor.jobs.info()
    parsed = next(j for j in jobs.jobs if j.uuid == started.job_id)
    assert parsed.done is True
    assert parsed.progress == 100
    assert parsed.reference == job["reference"]

    slug = job["reference"]
    listed = await supervisor.backups.list()
    assert [b.slug for b in listed] == [slug]
    assert set(listed[0].location_attributes) == {".local", "NAS"}
    assert (await supervisor.backups.info()).days_until_stale == 30
    details = await supervisor.backups.backup_info(slug)
    assert details.extra == {"created_by": "backup_321"}
    assert details.location_attributes[".local"].protected is True

    partial = await supervisor.backups.partial_backup(
        PartialBackupOptions(name="Partial", addons=AddonSet.ALL, folders={Folder.SSL}, background=False)
    )
    assert partial.slug is not None
    assert {b.slug for b in await supervisor.backups.list()} == {slug, partial.slug}

    stream = await supervisor.backups.download_backup(slug)
    downloaded = b"".join([chunk async for chunk in stream])
    assert downloaded == sim.archive_path(slug).read_bytes()

    await supervisor.backups.remove_backup(slug)
    assert slug not in {b.slug for b in await supervisor.backups.list()}

    async def chunks() -> Any:
        yield downloaded

    uploaded = await supervisor.backups.upload_backup(
        chunks(), UploadBackupOptions(location={".local"}, filename=PurePath("restored.tar"))
    )
    assert uploaded == slug
    await supervisor.backups.remove_backup(slug, RemoveBackupOptions(location={".local"}))
    assert slug not in {b.slug for b in await supervisor.backups.list()}
