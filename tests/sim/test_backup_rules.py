"""Behaviour rules of the backup endpoints, as the Supervisor applies them."""

from __future__ import annotations

import io
import shutil
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from supervisor_sim import ApiError, Faults, SupervisorSim
from tests.sim.helpers import AUTH, make_backup, wait_job_done

SSL_ONLY = {"name": "Rules", "folders": ["ssl"]}


async def _error(resp: aiohttp.ClientResponse) -> tuple[int, str]:
    body = await resp.json()
    assert body["result"] == "error"
    return resp.status, body["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "colour": "red"}, "extra keys not allowed @ data['colour']. Got 'red'"),
        ({"name": 5}, "expected str for dictionary value @ data['name']. Got 5"),
        (
            {"filename": "a/b.tar"},
            r"does not match regular expression ^[^\\\/]+\.tar$ for dictionary value @ data['filename']. Got 'a/b.tar'",
        ),
        ({"compressed": "maybe"}, "expected boolean for dictionary value @ data['compressed']. Got 'maybe'"),
        (
            {"location": ["NAS", "NAS"]},
            "contains duplicate items: ['NAS'] for dictionary value @ data['location']. Got ['NAS', 'NAS']",
        ),
        ({"extra": []}, "expected dict for dictionary value @ data['extra']. Got []"),
    ],
)
async def test_full_body_is_validated_like_the_real_schema(
    http: TestClient, body: dict[str, object], message: str
) -> None:
    resp = await http.post("/backups/new/full", json=body, headers=AUTH)
    assert await _error(resp) == (400, message)


async def test_partial_only_keys_are_unknown_to_full(http: TestClient) -> None:
    resp = await http.post("/backups/new/full", json={"folders": ["ssl"]}, headers=AUTH)
    assert await _error(resp) == (400, "extra keys not allowed @ data['folders']. Got ['ssl']")


async def test_partial_folders_must_be_known(http: TestClient) -> None:
    resp = await http.post("/backups/new/partial", json={"folders": ["ssl", "etc"]}, headers=AUTH)
    status, message = await _error(resp)
    assert status == 400
    assert message.startswith(
        "value must be one of ['addons/local', 'homeassistant', 'media', 'share', 'ssl']"
    )
    assert "@ data['folders'][1]. Got 'etc'" in message


async def test_several_errors_are_reported_sorted(http: TestClient) -> None:
    resp = await http.post("/backups/new/full", json={"zzz": 1, "aaa": 2}, headers=AUTH)
    _, message = await _error(resp)
    assert message.splitlines() == [
        "extra keys not allowed @ data['aaa']. Got 2",
        "extra keys not allowed @ data['zzz']. Got 1",
    ]


async def test_invalid_json_is_rejected(http: TestClient) -> None:
    resp = await http.post("/backups/new/full", data=b"{nope", headers=AUTH)
    assert await _error(resp) == (400, "Invalid json")


async def test_empty_body_makes_a_full_backup_named_empty(http: TestClient, sim: SupervisorSim) -> None:
    resp = await http.post("/backups/new/full", headers=AUTH)
    slug = (await resp.json())["data"]["slug"]
    assert sim.backups[slug].name == ""


async def test_background_answers_with_the_job_id_while_the_job_runs(
    http: TestClient, sim: SupervisorSim
) -> None:
    sim.faults = Faults(stage_delay=0.1)
    resp = await http.post("/backups/new/partial", json={**SSL_ONLY, "background": True}, headers=AUTH)
    data = (await resp.json())["data"]
    assert set(data) == {"job_id"}
    jobs = (await (await http.get("/jobs/info", headers=AUTH)).json())["data"]["jobs"]
    assert jobs[0]["done"] is False
    assert jobs[0]["reference"] is not None
    job = await wait_job_done(http, data["job_id"])
    assert job["errors"] == []


async def test_second_backup_while_one_runs_is_blocked(http: TestClient, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0.1)
    first = await http.post("/backups/new/partial", json={**SSL_ONLY, "background": True}, headers=AUTH)
    job_id = (await first.json())["data"]["job_id"]
    second = await http.post("/backups/new/full", json={"name": "again"}, headers=AUTH)
    assert await _error(second) == (
        400,
        "'BackupManager.do_backup_full' blocked from execution, system is not running - freeze",
    )
    await wait_job_done(http, job_id)
    assert len(sim.jobs.roots) == 1


async def test_root_jobs_are_listed_newest_first(http: TestClient) -> None:
    first = await make_backup(http, SSL_ONLY)
    second = await make_backup(http, SSL_ONLY)
    jobs = (await (await http.get("/jobs/info", headers=AUTH)).json())["data"]["jobs"]
    assert [j["uuid"] for j in jobs] == [second["job_id"], first["job_id"]]


async def test_cloud_backup_location_is_forbidden_to_addons(http: TestClient) -> None:
    resp = await http.post(
        "/backups/new/partial", json={**SSL_ONLY, "location": ".cloud_backup"}, headers=AUTH
    )
    assert await _error(resp) == (403, "Location .cloud_backup is only available for Home Assistant")


@pytest.mark.parametrize("location", [None, "", ".local", [None], [".local"]])
async def test_local_location_spellings_write_locally(
    http: TestClient, sim: SupervisorSim, location: object
) -> None:
    created = await make_backup(http, {**SSL_ONLY, "location": location})
    assert sim.backups[created["slug"]].locations == [None]


async def test_omitted_location_uses_the_default_backup_mount(
    make_sim: Callable[..., SupervisorSim], aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> None:
    sim = make_sim(mounts=["NAS"], default_backup_mount="NAS")
    client = await aiohttp_client(sim.app)
    created = await make_backup(client, SSL_ONLY)
    assert sim.backups[created["slug"]].locations == ["NAS"]


async def test_delete_with_locations_removes_only_those_copies(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {**SSL_ONLY, "location": [".local", "NAS"]})
    slug = created["slug"]
    nas_copy = sim.archive_path(slug, "NAS")
    resp = await http.delete(f"/backups/{slug}", json={"location": ["NAS"]}, headers=AUTH)
    assert await resp.json() == {"result": "ok", "data": {}}
    assert not nas_copy.exists()
    assert sim.backups[slug].locations == [None]
    await http.delete(f"/backups/{slug}", headers=AUTH)
    assert slug not in sim.backups


async def test_unknown_backup_is_404(http: TestClient) -> None:
    for method, path in (("GET", "/backups/deadbeef/info"), ("DELETE", "/backups/deadbeef"),
                         ("GET", "/backups/deadbeef/download")):  # fmt: skip
        resp = await http.request(method, path, headers=AUTH)
        assert await _error(resp) == (404, "Backup does not exist")


async def test_download_is_a_tar_attachment_named_after_the_backup(
    http: TestClient, sim: SupervisorSim
) -> None:
    created = await make_backup(http, {"name": "My Backup #1", "folders": ["ssl"]})
    resp = await http.get(f"/backups/{created['slug']}/download", headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/tar"
    assert resp.headers["Content-Disposition"] == "attachment; filename=My_Backup_1.tar"
    assert await resp.read() == sim.archive_path(created["slug"]).read_bytes()


async def test_download_keeps_a_custom_filename(http: TestClient) -> None:
    created = await make_backup(http, {**SSL_ONLY, "filename": "custom.tar"})
    resp = await http.get(f"/backups/{created['slug']}/download", headers=AUTH)
    assert resp.headers["Content-Disposition"] == "attachment; filename=custom.tar"
    await resp.read()


async def test_download_from_a_location(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {**SSL_ONLY, "location": [".local", "NAS"]})
    slug = created["slug"]
    resp = await http.get(f"/backups/{slug}/download", params={"location": "NAS"}, headers=AUTH)
    assert await resp.read() == sim.archive_path(slug, "NAS").read_bytes()
    resp = await http.get(f"/backups/{slug}/download", params={"location": ".local"}, headers=AUTH)
    assert resp.status == 200
    await resp.read()
    await http.delete(f"/backups/{slug}", json={"location": ["NAS"]}, headers=AUTH)
    resp = await http.get(f"/backups/{slug}/download", params={"location": "NAS"}, headers=AUTH)
    assert await _error(resp) == (400, f"Backup {slug} is not in location NAS")


async def test_vanished_file_is_a_bare_404_and_drops_the_backup(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, SSL_ONLY)
    sim.archive_path(created["slug"]).unlink()
    resp = await http.get(f"/backups/{created['slug']}/download", headers=AUTH)
    assert resp.status == 404
    assert resp.content_type == "text/plain"
    assert created["slug"] not in sim.backups


def _multipart(data: bytes) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    writer.append(io.BytesIO(data))
    return writer


async def test_upload_round_trip_restores_the_same_slug(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Round trip", "folders": ["ssl"], "password": "secret"})
    slug = created["slug"]
    archive = await (await http.get(f"/backups/{slug}/download", headers=AUTH)).read()
    await http.delete(f"/backups/{slug}", headers=AUTH)
    assert slug not in sim.backups
    resp = await http.post("/backups/new/upload", data=_multipart(archive), headers=AUTH)
    assert await resp.json() == {"result": "ok", "data": {"slug": slug}}
    listed = (await (await http.get("/backups", headers=AUTH)).json())["data"]["backups"]
    assert [b["slug"] for b in listed] == [slug]
    assert listed[0]["protected"] is True
    assert sim.archive_path(slug).read_bytes() == archive
    import_job = sim.jobs.roots[-1]
    assert (import_job.name, import_job.reference, import_job.done) == (
        "backup_manager_import_backup",
        slug,
        True,
    )


async def test_upload_to_a_mount_with_a_filename(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, SSL_ONLY)
    archive = sim.archive_path(created["slug"]).read_bytes()
    await http.delete(f"/backups/{created['slug']}", headers=AUTH)
    resp = await http.post(
        "/backups/new/upload",
        params={"location": "NAS", "filename": "up.tar"},
        data=_multipart(archive),
        headers=AUTH,
    )
    assert resp.status == 200
    assert sim.archive_path(created["slug"], "NAS") == sim.config.root / "mounts" / "NAS" / "up.tar"


async def test_upload_of_something_else_is_an_unknown_error(http: TestClient, sim: SupervisorSim) -> None:
    resp = await http.post("/backups/new/upload", data=_multipart(b"not a tar at all"), headers=AUTH)
    assert await _error(resp) == (400, "Unknown error, see Supervisor logs")
    assert sim.backups == {}
    assert not any(sim.config.tmp_dir.iterdir())


async def test_reload_picks_up_files_copied_into_the_backup_folder(
    http: TestClient, sim: SupervisorSim
) -> None:
    created = await make_backup(http, SSL_ONLY)
    path = sim.archive_path(created["slug"])
    shutil.copy(path, sim.config.mount_dir("NAS"))
    assert sim.backups[created["slug"]].locations == [None]
    assert await (await http.post("/backups/reload", headers=AUTH)).json() == {"result": "ok", "data": {}}
    assert sim.backups[created["slug"]].locations == [None, "NAS"]


async def test_backup_options_set_days_until_stale(http: TestClient) -> None:
    resp = await http.post("/backups/options", json={"days_until_stale": 7}, headers=AUTH)
    assert resp.status == 200
    info = (await (await http.get("/backups/info", headers=AUTH)).json())["data"]
    assert info["days_until_stale"] == 7
    bad = await http.post("/backups/options", json={"days_until_stale": 0}, headers=AUTH)
    assert bad.status == 400


async def test_create_backup_in_python_follows_the_endpoint_rules(sim: SupervisorSim) -> None:
    backup = await sim.create_backup({"name": "py", "folders": ["ssl"], "location": [".local", "NAS"]})
    assert backup is not None
    assert backup.locations == [None, "NAS"]
    with pytest.raises(ApiError) as caught:
        await sim.create_backup({"bogus": 1})
    assert caught.value.status == 400
    sim.faults = Faults(stage_delay=0, fail_job=True)
    assert await sim.create_backup({"folders": ["ssl"]}) is None
