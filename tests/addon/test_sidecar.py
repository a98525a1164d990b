"""The sidecar: a small encrypted description next to each copy, readable with only the key."""

import json
from datetime import UTC, datetime

import pyrage
import pytest
from aiohasupervisor.models import BackupComplete
from hypothesis import given
from hypothesis import strategies as st

from backup_addon.crypto.age import Identity, encrypt_bytes
from backup_addon.crypto.keys import identity_for
from backup_addon.locations import FolderLocation
from backup_addon.locations.base import split_key
from backup_addon.pipeline import ENVELOPE_SUFFIX, object_key
from backup_addon.sidecar import (
    MAX_SIDECAR_BYTES,
    BackupMeta,
    SidecarUnreadable,
    copy_key_of,
    is_sidecar_key,
    load_sidecar,
    meta_from_info,
    read_sidecar,
    render_sidecar,
    sidecar_key,
    write_sidecar,
)

KEY = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
OTHER_KEY = "ZZZZ-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
IDENTITY = identity_for(KEY)
RECIPIENT = IDENTITY.recipient()

META = BackupMeta(
    slug="9ecf0028",
    name="3-2-1 Backup 2026-03-01 03:30",
    type="partial",
    created_at=datetime(2026, 3, 1, 2, 30, 5, 123456, tzinfo=UTC),
    size=123_456_789,
    sha256="ab" * 32,
    key_id=str(RECIPIENT),
    enveloped=True,
    instance_id="0123456789ab",
    addon_version="0.2.0",
    homeassistant="2026.8.3",
    addons=["core_mosquitto"],
    folders=["ssl", "share"],
)


def test_a_sidecar_opens_to_the_same_description():
    assert read_sidecar(render_sidecar(META, [RECIPIENT]), [IDENTITY]) == META


def test_a_sidecar_is_small_and_any_age_tool_opens_it():
    data = render_sidecar(META, [RECIPIENT])
    assert len(data) < 2048
    plain = pyrage.decrypt(data, [pyrage.x25519.Identity.from_str(IDENTITY.to_string())])
    document = json.loads(plain)
    assert document["format"] == "backup_321/sidecar"
    assert document["name"] == META.name
    assert document["created_at"] == "2026-03-01T02:30:05.123456+00:00"


def test_the_description_is_not_readable_without_the_key():
    data = render_sidecar(META, [RECIPIENT])
    assert META.name.encode() not in data
    assert META.slug.encode() not in data


def test_another_key_cannot_open_it_and_the_error_says_so_without_secrets():
    with pytest.raises(SidecarUnreadable) as caught:
        read_sidecar(render_sidecar(META, [RECIPIENT]), [identity_for(OTHER_KEY)])
    message = str(caught.value)
    assert "different key" in message
    assert KEY not in message and OTHER_KEY not in message
    assert "AGE-SECRET-KEY" not in message


def test_a_damaged_sidecar_is_refused():
    data = bytearray(render_sidecar(META, [RECIPIENT]))
    data[-5] ^= 1
    with pytest.raises(SidecarUnreadable, match="cannot be opened"):
        read_sidecar(bytes(data), [IDENTITY])


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"not json", "not valid JSON"),
        (json.dumps({"hello": 1}).encode(), "not a backup description"),
        (
            json.dumps({"format": "backup_321/sidecar", "version": 99}).encode(),
            "version 99; update the add-on",
        ),
        (
            json.dumps(
                {**META.to_dict(), "format": "backup_321/sidecar", "version": 1, "size": True}
            ).encode(),
            "size",
        ),
        (
            json.dumps(
                {**META.to_dict(), "format": "backup_321/sidecar", "version": 1, "created_at": "2026-01-01"}
            ).encode(),
            "time zone",
        ),
        (
            json.dumps({**META.to_dict(), "format": "backup_321/sidecar", "version": 1, "slug": ""}).encode(),
            "slug",
        ),
    ],
)
def test_age_files_that_are_not_descriptions_are_refused(document, reason):
    with pytest.raises(SidecarUnreadable, match=reason):
        read_sidecar(encrypt_bytes(document, [RECIPIENT]), [IDENTITY])


def test_an_oversized_object_is_not_read_as_a_sidecar():
    with pytest.raises(SidecarUnreadable, match="far too large"):
        read_sidecar(b"x" * (MAX_SIDECAR_BYTES + 1), [IDENTITY])


def test_sidecar_keys_sit_next_to_their_copy_and_never_look_like_one():
    copy = object_key("0123456789ab", META.created_at, META.slug, ".tar" + ENVELOPE_SUFFIX)
    key = sidecar_key(copy)
    assert key == copy + ".meta.age"
    assert key.rsplit("/", 1)[0] == copy.rsplit("/", 1)[0]
    assert is_sidecar_key(key) and not is_sidecar_key(copy)
    assert copy_key_of(key) == copy
    split_key(key)  # a valid object key for every location kind
    with pytest.raises(ValueError, match="sidecar"):
        sidecar_key(key)
    with pytest.raises(ValueError, match="not a sidecar"):
        copy_key_of(copy)


@given(
    instance=st.text(alphabet="0123456789abcdef", min_size=12, max_size=12),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    slug=st.text(alphabet="0123456789abcdef", min_size=8, max_size=8),
    suffix=st.sampled_from([".tar", ".tar" + ENVELOPE_SUFFIX]),
)
def test_copy_keys_and_sidecar_keys_never_collide(instance, when, slug, suffix):
    copy = object_key(instance, when, slug, suffix)
    assert not is_sidecar_key(copy)
    assert is_sidecar_key(sidecar_key(copy))
    assert sidecar_key(copy) != copy
    assert copy_key_of(sidecar_key(copy)) == copy


async def test_written_sidecars_are_listed_next_to_the_copy_and_load_back(tmp_path):
    location = FolderLocation("usb", tmp_path)
    copy = object_key("0123456789ab", META.created_at, META.slug, ".tar" + ENVELOPE_SUFFIX)

    async def one():
        yield b"the copy"

    await location.put(copy, one())
    await write_sidecar(location, copy, META, [RECIPIENT])

    assert [o.key for o in await location.list()] == [copy, sidecar_key(copy)]
    assert await load_sidecar(location, copy, [Identity.generate(), IDENTITY]) == META


def test_meta_from_the_supervisors_backup_info():
    info = BackupComplete.from_dict(
        {
            "slug": "9ecf0028", "name": "Nightly", "date": "2026-03-01T02:30:05+00:00", "type": "full",
            "size": 1.0, "size_bytes": 1_000_000, "compressed": True, "protected": True,
            "location_attributes": {".local": {"protected": True, "size_bytes": 1_000_000}},
            "supervisor_version": "2026.08.0", "homeassistant": "2026.8.3", "location": None,
            "locations": [None], "addons": [{"slug": "core_ssh", "name": "SSH", "version": "9", "size": 0.1}],
            "repositories": [], "folders": ["ssl", "media"], "homeassistant_exclude_database": False,
            "extra": {"created_by": "backup_321"},
        }
    )  # fmt: skip
    meta = meta_from_info(
        info, size=1_000_000, sha256="cd" * 32, key_id=str(RECIPIENT), enveloped=False,
        instance_id="0123456789ab", addon_version="0.2.0",
    )  # fmt: skip
    assert (meta.slug, meta.name, meta.type, meta.homeassistant) == (
        "9ecf0028",
        "Nightly",
        "full",
        "2026.8.3",
    )
    assert meta.addons == ["core_ssh"] and meta.folders == ["ssl", "media"]
    assert meta.created_at == datetime(2026, 3, 1, 2, 30, 5, tzinfo=UTC)
    assert read_sidecar(render_sidecar(meta, [RECIPIENT]), [IDENTITY]) == meta
