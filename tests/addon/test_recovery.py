"""Disaster recovery: a fresh install with only the key finds, describes and restores every backup."""

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_addon import __version__
from backup_addon.catalog import Catalog, CopyState, ProofLevel
from backup_addon.crypto.age import encrypt_stream
from backup_addon.crypto.keys import identity_for, key_id
from backup_addon.locations import FolderLocation
from backup_addon.pipeline import ENVELOPE_SUFFIX, Encryption, object_key
from backup_addon.recovery import MetaSource, discover, parse_copy_key, rebuild_catalog
from backup_addon.sidecar import BackupMeta, meta_from_info, sidecar_key, write_sidecar
from backup_addon.supervisor import SupervisorGateway
from supervisor_sim import Faults, SimConfig, SupervisorSim
from supervisor_sim.restore import restores

TOKEN = "recovery-test-token"
KEY = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
OTHER_KEY = "ZZZZ-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
IDENTITY = identity_for(KEY)
RECIPIENT = IDENTITY.recipient()


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def encryption() -> Encryption:
    return Encryption(
        password=KEY, key_id=key_id(KEY), envelope=lambda chunks: encrypt_stream(chunks, [RECIPIENT])
    )


def meta(slug: str, created: datetime, *, enveloped: bool = True, name: str = "Nightly") -> BackupMeta:
    return BackupMeta(
        slug=slug, name=name, type="full", created_at=created, size=1000, sha256="ab" * 32,
        key_id=key_id(KEY), enveloped=enveloped, instance_id="0123456789ab", addon_version="0.2.0",
        homeassistant="2026.8.3", addons=["core_ssh"], folders=["ssl"],
    )  # fmt: skip


async def put(location: FolderLocation, key: str, data: bytes) -> None:
    async def one():
        yield data

    await location.put(key, one())


async def stored_copy(
    location: FolderLocation, slug: str, created: datetime, *, sidecar_key_for=RECIPIENT
) -> str:
    key = object_key("0123456789ab", created, slug, ".tar" + ENVELOPE_SUFFIX)
    await put(location, key, b"x" * 1234)
    if sidecar_key_for is not None:
        await write_sidecar(location, key, meta(slug, created), [sidecar_key_for])
    return key


@pytest.fixture
def usb(tmp_path):
    (tmp_path / "usb").mkdir()
    return FolderLocation("usb", tmp_path / "usb")


WHEN = datetime(2026, 3, 1, 2, 30, 5, tzinfo=UTC)


# --- the whole story -------------------------------------------------------------------------


async def test_a_new_install_with_only_the_key_finds_describes_and_restores_every_backup(
    sim, make_runner, tmp_path, aiohttp_server
):
    folders = {name: tmp_path / "locations" / name for name in ("usb", "nas")}
    for path in folders.values():
        path.mkdir(parents=True)
    runner = await make_runner(folders)
    runner.encryption = encryption()
    runner.plain_locations = frozenset({"nas"})  # one location keeps plain copies
    locations = {loc.name: loc for loc in runner.locations}

    results = [await runner.run("test"), await runner.run("test")]
    for result in results:
        assert result.sha256, result.error
        info = await runner.gateway.backup_info(result.slug)
        for copy in result.copies:
            if copy.key is None:
                continue
            described = meta_from_info(
                info, size=result.size, sha256=result.sha256, key_id=key_id(KEY),
                enveloped=copy.key.endswith(ENVELOPE_SUFFIX), instance_id=runner.catalog.instance_id(),
                addon_version=__version__,
            )  # fmt: skip
            await write_sidecar(locations[copy.location], copy.key, described, [RECIPIENT])
    before = {b.slug: b for b in runner.catalog.backups()}

    # The device died: a new install, an empty catalog, the same locations and the kit's key.
    wiped = Catalog(tmp_path / "new-install" / "catalog.sqlite3")
    fresh = [FolderLocation(name, path) for name, path in folders.items()]
    found = await discover(fresh, [IDENTITY])

    assert {(c.meta.slug, c.location) for c in found} == {(r.slug, n) for r in results for n in folders}
    assert all(c.source is MetaSource.SIDECAR for c in found)
    assert rebuild_catalog(wiped, found) == 2
    for slug, original in before.items():
        rebuilt = wiped.backup(slug)
        assert rebuilt is not None
        assert (rebuilt.name, rebuilt.size_bytes, rebuilt.sha256, rebuilt.type) == (
            original.name, original.size_bytes, original.sha256, original.type,
        )  # fmt: skip
        assert rebuilt.created_at == original.created_at
        copies = {c.location: c for c in wiped.copies(slug)}
        assert set(copies) == set(folders)
        for name, copy in copies.items():
            assert copy.state is CopyState.COMMITTED and copy.level is ProofLevel.WRITTEN
            assert copy.key == runner.catalog.copy(slug, name).key
        assert copies["nas"].sha256 == original.sha256
    wiped.close()

    # ... and the older backup restores into the new install's Supervisor from the USB disk.
    new_sim = SupervisorSim(
        SimConfig(root=tmp_path / "new-supervisor", token=TOKEN, faults=Faults(stage_delay=0.005))
    )
    server = await aiohttp_server(new_sim.app)
    gateway = SupervisorGateway(str(server.make_url("")).rstrip("/"), TOKEN, poll_interval=0.02)
    try:
        from backup_addon.restore import restore_copy

        chosen = next(c for c in found if c.meta.slug == results[0].slug and c.location == "usb")
        outcome = await restore_copy(
            fresh[0], chosen.key, gateway=gateway, identities=[IDENTITY], password=KEY,
            enveloped=chosen.enveloped, selection=None, expected_sha256=chosen.meta.sha256,
        )  # fmt: skip
    finally:
        await gateway.close()
    assert outcome.slug == results[0].slug and outcome.uploaded and outcome.full
    assert sha256_file(new_sim.archive_path(outcome.slug)) == sha256_file(sim.archive_path(outcome.slug))
    (record,) = restores(new_sim).records
    assert record.ok and record.slug == outcome.slug and record.full


# --- discovery -------------------------------------------------------------------------------


async def test_a_copy_without_its_sidecar_is_described_from_its_name(usb):
    key = await stored_copy(usb, "9ecf0028", WHEN, sidecar_key_for=None)
    problems = []
    (found,) = await discover([usb], [IDENTITY], on_problem=lambda loc, msg: problems.append((loc, msg)))
    assert found.source is MetaSource.KEY_NAME
    assert found.note == "no description is stored next to it"
    assert (found.key, found.meta.slug, found.meta.created_at, found.enveloped) == (
        key,
        "9ecf0028",
        WHEN,
        True,
    )
    assert found.meta.size is None  # an age file is larger than the archive it holds
    assert problems and problems[0][0] == "usb"


async def test_a_sidecar_for_another_key_falls_back_to_the_name_and_says_why(usb):
    await stored_copy(usb, "9ecf0028", WHEN, sidecar_key_for=identity_for(OTHER_KEY).recipient())
    (found,) = await discover([usb], [IDENTITY])
    assert found.source is MetaSource.KEY_NAME
    assert "different key" in found.note


async def test_a_plain_copy_without_sidecar_knows_its_size(usb):
    key = object_key("0123456789ab", WHEN, "9ecf0028")
    await put(usb, key, b"y" * 777)
    (found,) = await discover([usb], [IDENTITY])
    assert not found.enveloped and found.meta.size == 777


async def test_other_objects_are_ignored(usb):
    await stored_copy(usb, "9ecf0028", WHEN)
    await put(usb, "notes.txt", b"hello")
    await put(usb, "backup_321/0123456789ab/garbage.bin", b"?")
    await put(usb, sidecar_key(object_key("0123456789ab", WHEN, "deadbeef")), b"orphan description")
    found = await discover([usb], [IDENTITY])
    assert [c.meta.slug for c in found] == ["9ecf0028"]


async def test_an_unreachable_location_does_not_hide_the_others(usb, tmp_path):
    await stored_copy(usb, "9ecf0028", WHEN)
    gone = FolderLocation("unplugged", tmp_path / "unplugged")
    problems = []
    found = await discover([gone, usb], [IDENTITY], on_problem=lambda loc, msg: problems.append(loc))
    assert [c.location for c in found] == ["usb"]
    assert problems == ["unplugged"]


# --- the catalog -----------------------------------------------------------------------------


async def test_rebuilding_twice_changes_nothing_and_keeps_proofs(usb, tmp_path):
    await stored_copy(usb, "9ecf0028", WHEN)
    found = await discover([usb], [IDENTITY])
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    try:
        assert rebuild_catalog(catalog, found) == 1
        catalog.copy_checked("9ecf0028", "usb", ProofLevel.SCRUBBED)
        assert rebuild_catalog(catalog, found) == 0
        assert catalog.copy("9ecf0028", "usb").level is ProofLevel.SCRUBBED
        backup = catalog.backup("9ecf0028")
        assert backup.details["recovered_from"] == "sidecar"
        assert backup.details["addons"] == ["core_ssh"]
        assert (backup.size_bytes, backup.sha256) == (1000, "ab" * 32)
    finally:
        catalog.close()


async def test_a_backup_known_only_by_name_is_recorded_without_a_hash(usb, tmp_path):
    await stored_copy(usb, "9ecf0028", WHEN, sidecar_key_for=None)
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    try:
        assert rebuild_catalog(catalog, await discover([usb], [IDENTITY])) == 1
        backup = catalog.backup("9ecf0028")
        assert backup.sha256 is None and backup.type == "unknown"
        assert backup.details["recovered_from"] == "key_name"
        copy = catalog.copy("9ecf0028", "usb")
        assert copy.state is CopyState.COMMITTED and copy.size_bytes == 1234
    finally:
        catalog.close()


@given(
    instance=st.text(alphabet="0123456789abcdef", min_size=12, max_size=12),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    slug=st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
    sealed=st.booleans(),
)
def test_copy_keys_are_read_back_exactly(instance, when, slug, sealed):
    key = object_key(instance, when, slug, ".tar" + (ENVELOPE_SUFFIX if sealed else ""))
    name = parse_copy_key(key)
    assert name is not None
    assert (name.instance_id, name.slug, name.enveloped) == (instance, slug, sealed)
    assert name.created_at == when.replace(microsecond=0)
    assert parse_copy_key(sidecar_key(key)) is None
