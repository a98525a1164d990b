"""Restore from a copy: stream down, decrypt, prove the key, upload, restore; or refuse cleanly."""

import hashlib
import os
import tracemalloc
from datetime import UTC, datetime

import pytest

from backup_addon.crypto.age import encrypt_stream
from backup_addon.crypto.keys import identity_for
from backup_addon.errors import LocationError
from backup_addon.locations import FolderLocation
from backup_addon.pipeline import ENVELOPE_SUFFIX, object_key
from backup_addon.restore import (
    STAGE_DONE,
    STAGE_STARTING,
    STAGE_UPLOADING,
    RestoreFailed,
    RestoreSelection,
    WrongKey,
    decrypted_stream,
    restore_copy,
    restore_supervisor_backup,
)
from backup_addon.supervisor import SupervisorGateway
from supervisor_sim import Faults, SimConfig, SupervisorSim
from supervisor_sim.restore import restores

TOKEN = "restore-test-token"
KEY = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
OTHER_KEY = "ZZZZ-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
IDENTITY = identity_for(KEY)
RECIPIENT = IDENTITY.recipient()
FULL = {"name": "Nightly", "password": KEY}


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


async def file_chunks(path, size=256 * 1024):
    with path.open("rb") as handle:
        while block := handle.read(size):
            yield block


@pytest.fixture
def sim(tmp_path):
    return SupervisorSim(
        SimConfig(root=tmp_path / "supervisor", token=TOKEN, faults=Faults(stage_delay=0.005))
    )


@pytest.fixture
async def gateway(sim, aiohttp_server):
    server = await aiohttp_server(sim.app)
    gateway = SupervisorGateway(
        str(server.make_url("")).rstrip("/"), TOKEN, poll_interval=0.01, stall_timeout=10
    )
    yield gateway
    await gateway.close()


@pytest.fixture
def usb(tmp_path):
    (tmp_path / "usb").mkdir()
    return FolderLocation("usb", tmp_path / "usb")


async def copy_of(sim, location, body, *, full=True, recipients=(RECIPIENT,), enveloped=True, forget=True):
    """Back up in the simulator, store a copy in `location`; `forget` drops the Supervisor's own."""
    backup = await sim.create_backup(body, full=full)
    assert backup is not None
    path = sim.archive_path(backup.slug)
    sha256 = sha256_file(path)
    key = object_key(
        "0123456789ab", datetime.now(UTC), backup.slug, ".tar" + (ENVELOPE_SUFFIX if enveloped else "")
    )
    chunks = file_chunks(path)
    await location.put(key, encrypt_stream(chunks, list(recipients)) if enveloped else chunks)
    if forget:
        sim.manager.remove(sim.manager.get(backup.slug), None)
    return backup.slug, key, sha256


def restore_jobs(sim):
    return [j for j in sim.jobs.roots if j.name.startswith("backup_manager_") and j.name.endswith("_restore")]


def leftovers(sim):
    return sorted(p.name for p in sim.config.backup_dir.glob("*.tar"))


# --- it works ------------------------------------------------------------------------------


async def test_an_enveloped_copy_restores_byte_identical_into_the_supervisor(sim, gateway, usb):
    slug, key, sha256 = await copy_of(sim, usb, FULL)
    stages = []

    outcome = await restore_copy(
        usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=None,
        on_progress=lambda stage, done: stages.append((stage, done)), expected_sha256=sha256,
    )  # fmt: skip

    assert (outcome.slug, outcome.full, outcome.uploaded, outcome.sha256) == (slug, True, True, sha256)
    assert outcome.name == "Nightly"
    assert sha256_file(sim.archive_path(slug)) == sha256
    (job,) = restore_jobs(sim)
    assert (job.name, job.done, job.errors, job.reference) == ("backup_manager_full_restore", True, [], slug)
    (record,) = restores(sim).records
    assert record.ok and record.full and record.archive_sha256 == sha256
    uploaded = [done for stage, done in stages if stage == STAGE_UPLOADING]
    assert uploaded == sorted(uploaded) and uploaded[-1] == outcome.size
    names = [stage for stage, _ in stages]
    assert names.index(STAGE_STARTING) > names.index(STAGE_UPLOADING)
    assert any(s.startswith("restoring:") for s in names)
    assert names[-1] == STAGE_DONE


async def test_a_plain_copy_restores_too(sim, gateway, usb):
    slug, key, sha256 = await copy_of(sim, usb, FULL, enveloped=False)
    outcome = await restore_copy(
        usb, key, gateway=gateway, identities=[], password=KEY, enveloped=False, selection=None
    )
    assert outcome.slug == slug and sha256_file(sim.archive_path(slug)) == sha256
    assert restores(sim).records[0].ok


async def test_a_partial_restore_brings_back_only_the_selection(sim, gateway, usb):
    _, key, _ = await copy_of(sim, usb, FULL)
    selection = RestoreSelection(addons=["core_mosquitto"], folders=["ssl"])
    outcome = await restore_copy(
        usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=selection
    )
    assert not outcome.full
    (record,) = restores(sim).records
    assert (record.full, record.homeassistant, record.addons, record.folders) == (
        False, False, ["core_mosquitto"], ["ssl"],
    )  # fmt: skip


async def test_a_partial_backup_restores_everything_it_holds(sim, gateway, usb):
    body = {"name": "Some", "password": KEY, "homeassistant": True, "folders": ["ssl", "share"]}
    _, key, _ = await copy_of(sim, usb, body, full=False)
    outcome = await restore_copy(
        usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=None
    )
    assert not outcome.full
    (record,) = restores(sim).records
    assert (record.homeassistant, sorted(record.folders), record.addons) == (True, ["share", "ssl"], [])


async def test_when_the_supervisor_still_has_the_backup_its_own_is_restored_after_the_copy_is_checked(
    sim, gateway, usb
):
    _, key, sha256 = await copy_of(sim, usb, FULL, forget=False)
    before = leftovers(sim)
    outcome = await restore_copy(
        usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=None
    )
    assert not outcome.uploaded and outcome.sha256 == sha256
    assert leftovers(sim) == before
    assert restores(sim).records[0].ok


async def test_restoring_a_backup_the_supervisor_holds(sim, gateway):
    backup = await sim.create_backup({"name": "Local", "password": KEY, "folders": ["ssl"]})
    outcome = await restore_supervisor_backup(
        backup.slug, gateway=gateway, password=KEY, selection=RestoreSelection(folders=["ssl"])
    )
    assert (outcome.slug, outcome.uploaded, outcome.full) == (backup.slug, False, False)
    assert restores(sim).records[0].folders == ["ssl"]


async def test_decrypted_stream_gives_back_the_supervisors_archive(sim, usb):
    _, key, sha256 = await copy_of(sim, usb, FULL, forget=False)
    digest = hashlib.sha256()
    async for chunk in decrypted_stream(usb, key, identities=[IDENTITY], enveloped=True):
        digest.update(chunk)
    assert digest.hexdigest() == sha256


async def test_restore_streams_in_constant_memory(sim, gateway, usb):
    sim.config.payload_bytes = 40 << 20
    slug, key, sha256 = await copy_of(
        sim, usb, {"name": "Big", "password": KEY, "folders": ["share"]}, full=False
    )
    tracemalloc.start()
    try:
        outcome = await restore_copy(
            usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=None
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.size > 40 << 20
    assert sha256_file(sim.archive_path(slug)) == sha256
    assert peak < 24 << 20, f"peak {peak / 2**20:.1f} MiB for a {outcome.size / 2**20:.0f} MiB backup"


# --- it refuses, and leaves nothing behind --------------------------------------------------


async def test_a_copy_sealed_for_another_key_fails_before_anything_reaches_the_supervisor(sim, gateway, usb):
    other = identity_for(OTHER_KEY).recipient()
    _, key, _ = await copy_of(sim, usb, FULL, recipients=(other,))
    backups_before = set(sim.backups)

    with pytest.raises(WrongKey) as caught:
        await restore_copy(
            usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=None
        )

    assert "different backup key" in str(caught.value)
    assert KEY not in str(caught.value)
    assert set(sim.backups) == backups_before
    assert leftovers(sim) == []
    assert restore_jobs(sim) == []


async def test_a_plain_copy_made_with_another_key_is_removed_again_and_nothing_is_restored(sim, gateway, usb):
    slug, key, _ = await copy_of(sim, usb, {"name": "Other", "password": OTHER_KEY}, enveloped=False)

    with pytest.raises(WrongKey) as caught:
        await restore_copy(
            usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=False, selection=None
        )

    assert "made with another key" in str(caught.value)
    assert KEY not in str(caught.value) and OTHER_KEY not in str(caught.value)
    assert slug not in sim.backups
    assert leftovers(sim) == []
    assert restore_jobs(sim) == []


async def test_a_wrong_password_for_a_supervisor_backup_is_caught(sim, gateway):
    backup = await sim.create_backup({"name": "Locked", "password": OTHER_KEY, "folders": ["ssl"]})

    with pytest.raises(WrongKey) as caught:
        await restore_supervisor_backup(backup.slug, gateway=gateway, password=KEY, selection=None)

    assert "'Locked'" in str(caught.value)
    (job,) = restore_jobs(sim)
    assert [e.message for e in job.errors] == [f"Invalid password for backup {backup.slug}"]
    assert restores(sim).records == []
    assert backup.slug in sim.backups  # a refused restore never removes the Supervisor's backup


async def test_a_damaged_copy_fails_and_leaves_nothing(sim, gateway, usb):
    _, key, _ = await copy_of(sim, usb, FULL)
    path = usb.root / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(RestoreFailed, match="damaged"):
        await restore_copy(
            usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=None
        )
    assert leftovers(sim) == [] and restore_jobs(sim) == []


async def test_a_plain_copy_that_differs_from_the_backup_is_refused_and_removed(sim, gateway, usb):
    slug, key, _ = await copy_of(sim, usb, FULL, enveloped=False)
    with pytest.raises(RestoreFailed, match="checksum differs"):
        await restore_copy(
            usb, key, gateway=gateway, identities=[], password=KEY, enveloped=False, selection=None,
            expected_sha256="0" * 64,
        )  # fmt: skip
    assert slug not in sim.backups and leftovers(sim) == [] and restore_jobs(sim) == []


async def test_a_missing_copy_is_a_location_error(sim, gateway, usb):
    with pytest.raises(LocationError):
        await restore_copy(
            usb, "backup_321/0123456789ab/2026-01-01_000000_deadbeef.tar.age", gateway=gateway,
            identities=[IDENTITY], password=KEY, enveloped=True, selection=None,
        )  # fmt: skip
    assert restore_jobs(sim) == []


def test_a_selection_must_choose_something_known():
    with pytest.raises(ValueError, match="at least one"):
        RestoreSelection()
    with pytest.raises(ValueError, match="unknown folder"):
        RestoreSelection(folders=["etc"])


async def test_a_file_that_is_no_backup_stops_the_upload_early(sim, gateway, usb):
    key = object_key("0123456789ab", datetime.now(UTC), "deadbeef", ".tar")
    size = 24 << 20

    async def noise():
        for _ in range(size >> 20):
            yield os.urandom(1 << 20)

    await usb.put(key, noise())
    sent = []

    with pytest.raises(RestoreFailed, match="not a Home Assistant backup"):
        await restore_copy(
            usb, key, gateway=gateway, identities=[], password=KEY, enveloped=False, selection=None,
            on_progress=lambda stage, done: sent.append(done),
        )  # fmt: skip

    assert max(sent) < size // 2  # the upload was abandoned as soon as the walk gave up
    assert sim.backups == {} and leftovers(sim) == []
    assert not [j for j in sim.jobs.roots if j.name == "backup_manager_import_backup"]


async def test_an_upload_the_supervisor_stops_taking_fails_after_the_stall_timeout(sim, aiohttp_server, usb):
    _, key, _ = await copy_of(sim, usb, FULL)
    sim.faults = Faults(stage_delay=0.005, hang="^/backups/new/upload")
    server = await aiohttp_server(sim.app)
    gateway = SupervisorGateway(
        str(server.make_url("")).rstrip("/"), TOKEN, poll_interval=0.01, stall_timeout=0.5
    )
    try:
        with pytest.raises(RestoreFailed, match="stopped taking the uploaded backup"):
            await restore_copy(
                usb, key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=True, selection=None
            )
    finally:
        await gateway.close()
    assert restore_jobs(sim) == []
