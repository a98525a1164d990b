"""Archives are real Supervisor backups: outer PAX tar, inner tars, backup.json last."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from securetar import InvalidPasswordError, SecureTarArchive

from supervisor_sim import SupervisorSim
from tests.sim.helpers import AUTH, NONE, assert_shape, make_backup, wait_job_done

PASSWORD = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ01"
BACKUP_JSON = {
    "slug": str, "version": int, "name": str, "date": str, "type": str,
    "supervisor_version": str, "extra": dict, "folders": list, "homeassistant": (dict, NONE),
    "compressed": bool, "addons": list, "repositories": list, "protected": bool,
}  # fmt: skip


def outer_members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:") as tar:
        return tar.getmembers()


def backup_json(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:") as tar:
        fileobj = tar.extractfile("./backup.json")
        assert fileobj is not None
        return json.loads(fileobj.read())


def inner_names(path: Path, member: str, *, gzip: bool = True) -> list[str]:
    """Member names of an unencrypted inner tar."""
    with tarfile.open(path, "r:") as outer:
        fileobj = outer.extractfile(member)
        assert fileobj is not None
        raw = fileobj.read()
    assert raw[:2] == b"\x1f\x8b" if gzip else raw[:2] != b"\x1f\x8b"
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz" if gzip else "r:") as inner:
        return inner.getnames()


def decrypted_names(path: Path, member: str, password: str) -> list[str]:
    """Member names of a SecureTar inner tar, decrypted with securetar."""
    with SecureTarArchive(path, "r", password=password) as archive:
        info = archive.tar.getmember(member)
        with archive.extract_tar(info) as plaintext:
            data = b"".join(iter(lambda: plaintext.read(1 << 20), b""))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as inner:
        return inner.getnames()


async def test_full_backup_has_every_part_and_backup_json_last(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Full"}, full=True)
    path = sim.archive_path(created["slug"])
    names = [m.name for m in outer_members(path)]
    assert names == [
        "homeassistant.tar.gz", "local_backup_321.tar.gz", "core_mosquitto.tar.gz",
        "core_ssh.tar.gz", "share.tar.gz", "addons_local.tar.gz", "ssl.tar.gz",
        "media.tar.gz", "supervisor.tar.gz", "./backup.json",
    ]  # fmt: skip
    # securetar writes every inner tar with a PAX header.
    assert all("mtime" in m.pax_headers for m in outer_members(path)[:-1])


async def test_backup_json_has_the_supervisor_fields(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Meta", "extra": {"created_by": "backup_321"}}, full=True)
    data = backup_json(sim.archive_path(created["slug"]))
    assert_shape(data, BACKUP_JSON)
    assert data["version"] == 2
    assert data["slug"] == created["slug"]
    assert data["type"] == "full"
    assert data["protected"] is False
    assert data["compressed"] is True
    assert data["extra"] == {"created_by": "backup_321"}
    assert data["folders"] == ["share", "addons/local", "ssl", "media"]
    assert data["homeassistant"] == {"version": "2026.8.3", "exclude_database": False, "size": 0.0}
    assert [a["slug"] for a in data["addons"]] == ["local_backup_321", "core_mosquitto", "core_ssh"]
    assert set(data["addons"][0]) == {"slug", "name", "version", "size"}


async def test_slug_is_derived_from_date_and_name(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Slug Check", "folders": ["ssl"]})
    data = backup_json(sim.archive_path(created["slug"]))
    expected = hashlib.sha1(f"{data['date']} - Slug Check".lower().encode(), usedforsecurity=False)
    assert created["slug"] == expected.hexdigest()[:8]


async def test_inner_tars_hold_realistic_files(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Inner"}, full=True)
    path = sim.archive_path(created["slug"])
    homeassistant = inner_names(path, "homeassistant.tar.gz")
    assert "./homeassistant.json" in homeassistant
    assert "data/configuration.yaml" in homeassistant
    assert "data/home-assistant_v2.db" in homeassistant
    assert "data/home-assistant.log" not in homeassistant
    assert "data/tts/cache.mp3" not in homeassistant
    addon = inner_names(path, "core_mosquitto.tar.gz")
    assert {"./addon.json", "data/options.json"} <= set(addon)
    assert "fullchain.pem" in inner_names(path, "ssl.tar.gz")
    assert "my_addon/config.yaml" in inner_names(path, "addons_local.tar.gz")
    assert set(inner_names(path, "supervisor.tar.gz")) == {"mounts.json", "docker.json"}


async def test_password_gives_securetar_v3_inner_tars(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(
        http, {"name": "Secret", "password": PASSWORD, "homeassistant": True, "folders": ["ssl"]}
    )
    path = sim.archive_path(created["slug"])
    data = backup_json(path)
    assert data["protected"] is True
    with tarfile.open(path, "r:") as tar:
        for name in ("homeassistant.tar.gz", "ssl.tar.gz"):
            fileobj = tar.extractfile(name)
            assert fileobj is not None
            header = fileobj.read(16)
            assert header == b"SecureTar" + b"\x03" + b"\x00" * 6
    assert "data/configuration.yaml" in decrypted_names(path, "homeassistant.tar.gz", PASSWORD)
    assert "privkey.pem" in decrypted_names(path, "ssl.tar.gz", PASSWORD)


async def test_wrong_password_is_detected_by_securetar(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Secret", "password": PASSWORD, "folders": ["ssl"]})
    with pytest.raises(InvalidPasswordError):
        decrypted_names(sim.archive_path(created["slug"]), "ssl.tar.gz", "wrong")


@pytest.mark.parametrize("compressed", [False, None])
async def test_uncompressed_backup_has_plain_tar_parts(
    http: TestClient, sim: SupervisorSim, compressed: bool | None
) -> None:
    created = await make_backup(http, {"name": "Plain", "compressed": compressed, "folders": ["ssl"]})
    path = sim.archive_path(created["slug"])
    assert [m.name for m in outer_members(path)] == ["ssl.tar", "./backup.json"]
    assert "fullchain.pem" in inner_names(path, "ssl.tar", gzip=False)
    assert backup_json(path)["compressed"] is False


async def test_partial_backup_holds_exactly_the_chosen_parts(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(
        http, {"name": "Some", "addons": ["core_ssh", "not_installed"], "folders": ["ssl", "share"]}
    )
    path = sim.archive_path(created["slug"])
    assert [m.name for m in outer_members(path)] == [
        "core_ssh.tar.gz", "ssl.tar.gz", "share.tar.gz", "./backup.json",
    ]  # fmt: skip
    data = backup_json(path)
    assert data["type"] == "partial"
    assert data["homeassistant"] is None
    assert [a["slug"] for a in data["addons"]] == ["core_ssh"]
    assert data["folders"] == ["ssl", "share"]


async def test_legacy_homeassistant_folder_means_homeassistant(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Legacy", "folders": ["homeassistant"]})
    path = sim.archive_path(created["slug"])
    assert [m.name for m in outer_members(path)] == ["homeassistant.tar.gz", "./backup.json"]


async def test_exclude_database_drops_the_database(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(
        http, {"name": "NoDB", "homeassistant": True, "homeassistant_exclude_database": True}
    )
    path = sim.archive_path(created["slug"])
    names = inner_names(path, "homeassistant.tar.gz")
    assert "data/configuration.yaml" in names
    assert "data/home-assistant_v2.db" not in names
    assert backup_json(path)["homeassistant"]["exclude_database"] is True


async def test_filename_option_names_the_archive(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Named", "folders": ["ssl"], "filename": "my_backup.tar"})
    path = sim.archive_path(created["slug"])
    assert path == sim.config.backup_dir / "my_backup.tar"


async def test_existing_filename_fails_the_job(http: TestClient, sim: SupervisorSim) -> None:
    (sim.config.backup_dir / "taken.tar").write_bytes(b"occupied")
    resp = await http.post(
        "/backups/new/partial",
        json={"name": "Clash", "folders": ["ssl"], "filename": "taken.tar", "background": True},
        headers=AUTH,
    )
    job = await wait_job_done(http, (await resp.json())["data"]["job_id"])
    (error,) = job["errors"]
    assert error["message"].endswith("taken.tar, file already exists!")
    assert (sim.config.backup_dir / "taken.tar").read_bytes() == b"occupied"
    assert sim.backups == {}


async def test_additional_location_gets_an_identical_copy(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Two", "folders": ["ssl"], "location": [".local", "NAS"]})
    local = sim.archive_path(created["slug"])
    copy = sim.archive_path(created["slug"], "NAS")
    assert local == sim.config.backup_dir / f"{created['slug']}.tar"
    assert copy == sim.config.root / "mounts" / "NAS" / f"{created['slug']}.tar"
    assert copy.read_bytes() == local.read_bytes()


async def test_backup_to_a_mount_only_lives_there(http: TestClient, sim: SupervisorSim) -> None:
    created = await make_backup(http, {"name": "Remote", "folders": ["ssl"], "location": "NAS"})
    backup = sim.backups[created["slug"]]
    assert backup.locations == ["NAS"]
    assert not list(sim.config.backup_dir.glob("*.tar"))


async def test_backups_on_disk_are_listed_after_restart(
    http: TestClient, sim: SupervisorSim, make_sim: Callable[..., SupervisorSim]
) -> None:
    created = await make_backup(http, {"name": "Persist", "folders": ["ssl"], "location": [None, "NAS"]})
    restarted = make_sim(mounts=["NAS"])
    assert restarted.backups[created["slug"]].locations == [None, "NAS"]
