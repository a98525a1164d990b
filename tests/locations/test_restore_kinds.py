"""Restore from a copy on every location kind, each on its real server, into the simulated Supervisor."""

import hashlib
from datetime import UTC, datetime

import pytest

from backup_addon.crypto.age import encrypt_stream
from backup_addon.crypto.keys import identity_for
from backup_addon.pipeline import ENVELOPE_SUFFIX, object_key
from backup_addon.recovery import discover
from backup_addon.restore import WrongKey, restore_copy
from backup_addon.sidecar import meta_from_info, write_sidecar
from backup_addon.supervisor import SupervisorGateway
from supervisor_sim import Faults, SimConfig, SupervisorSim
from supervisor_sim.restore import restores

TOKEN = "restore-kinds-token"
KEY = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
IDENTITY = identity_for(KEY)


def sha256_file(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def file_chunks(path, size=128 * 1024):
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
        str(server.make_url("")).rstrip("/"), TOKEN, poll_interval=0.01, stall_timeout=20
    )
    yield gateway
    await gateway.close()


async def stored_copy(sim, location, *, key_text=KEY):
    """A protected backup, sealed for `key_text` into `location` with its sidecar; then lost locally."""
    backup = await sim.create_backup({"name": "Nightly", "password": key_text, "folders": ["ssl", "share"]})
    assert backup is not None
    path = sim.archive_path(backup.slug)
    sha256 = sha256_file(path)
    recipient = identity_for(key_text).recipient()
    key = object_key("0123456789ab", datetime.now(UTC), backup.slug, ".tar" + ENVELOPE_SUFFIX)
    await location.put(key, encrypt_stream(file_chunks(path), [recipient]))
    return backup, key, sha256


async def test_a_copy_restores_byte_identical_and_the_restore_job_ends_done(sim, gateway, location):
    backup, key, sha256 = await stored_copy(sim, location)
    info = await gateway.backup_info(backup.slug)
    described = meta_from_info(
        info, size=sim.archive_path(backup.slug).stat().st_size, sha256=sha256, key_id=None, enveloped=True,
        instance_id="0123456789ab", addon_version="test",
    )  # fmt: skip
    await write_sidecar(location, key, described, [IDENTITY.recipient()])
    sim.manager.remove(sim.manager.get(backup.slug), None)  # the device died: only the copy is left

    (found,) = await discover([location], [IDENTITY])
    outcome = await restore_copy(
        location, found.key, gateway=gateway, identities=[IDENTITY], password=KEY, enveloped=found.enveloped,
        selection=None, expected_sha256=found.meta.sha256,
    )  # fmt: skip

    assert outcome.slug == backup.slug and outcome.uploaded
    assert sha256_file(sim.archive_path(backup.slug)) == sha256
    (job,) = [j for j in sim.jobs.roots if j.name == "backup_manager_partial_restore"]
    assert job.done and job.errors == [] and job.reference == backup.slug
    (record,) = restores(sim).records
    assert record.ok and sorted(record.folders) == ["share", "ssl"]


async def test_a_copy_for_another_key_leaves_nothing_in_the_supervisor(sim, gateway, location):
    backup, key, _ = await stored_copy(sim, location, key_text="ZZZZ-EFGH-IJKL-MNOP-QRST-UVWX-YZ12")
    sim.manager.remove(sim.manager.get(backup.slug), None)

    with pytest.raises(WrongKey):
        await restore_copy(
            location,
            key,
            gateway=gateway,
            identities=[IDENTITY],
            password=KEY,
            enveloped=True,
            selection=None,
        )

    assert backup.slug not in sim.backups
    assert not any(j.name.endswith("_restore") for j in sim.jobs.roots)
