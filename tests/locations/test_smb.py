"""What only the smb kind does: share and logon errors, encryption, a full share, its options."""

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from backup_addon.errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
)
from backup_addon.locations.smb import SmbLocation, SmbLocationOptions, build, check_key
from tests.locations.kinds.smb import SambaServer, free_port


async def chunks_of(data: bytes, size: int = 64 * 1024):
    for offset in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[offset : offset + size]


async def read_all(location, key: str) -> bytes:
    return b"".join([chunk async for chunk in location.open(key)])


def files_under(path: Path) -> list[str]:
    return sorted(str(Path(d, f).relative_to(path)) for d, _, files in os.walk(path) for f in files)


@pytest.fixture(scope="module")
def samba(tmp_path_factory):
    server = SambaServer(
        shares={
            "small": {},
            "readonly": {"read only": "yes"},
            "sealed": {"server smb encrypt": "required"},
            "private": {"valid users": "nobody"},
            "whole": {},
        }
    )
    server.start(tmp_path_factory.mktemp("smb-kind"))
    small = server.share_path("small")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
        yield server
    finally:
        try:
            server.stop()
        finally:
            subprocess.run(["umount", str(small)], capture_output=True)


@pytest.fixture(scope="module")
def samba_smb2_only(tmp_path_factory):
    server = SambaServer(global_options={"server max protocol": "SMB2_10"})
    server.start(tmp_path_factory.mktemp("smb2-only"))
    yield server
    server.stop()


async def test_wrong_share_name_says_which_share_is_missing(samba):
    location = samba.location("no share", share="nosuchshare")
    with pytest.raises(LocationUnreachable) as caught:
        await location.list()
    message = str(caught.value)
    assert "no share:" in message
    assert "the share nosuchshare does not exist on server 127.0.0.1" in message


async def test_wrong_password_fails_fast_and_is_never_shown(samba):
    location = samba.location("bad password", password="Secret-Wrong-123")
    started = time.monotonic()
    with pytest.raises(LocationAuthFailed) as caught:
        await location.put("backup_321/x.tar", chunks_of(b"x"))
    assert time.monotonic() - started < 3
    assert "Secret-Wrong-123" not in str(caught.value)
    assert samba.password not in str(caught.value)
    assert "check username, password and domain" in str(caught.value)


async def test_a_user_the_share_does_not_allow_is_told_so(samba):
    location = samba.location("private", share="private")
    with pytest.raises(LocationAuthFailed, match="does not let user smbkindtest use the share private"):
        await location.list()


async def test_nothing_listening_is_unreachable_quickly():
    location = SmbLocation(
        name="nobody home",
        server="127.0.0.1",
        port=free_port(),
        share="backups",
        username="u",
        password="p",
        timeout=5,
    )
    started = time.monotonic()
    with pytest.raises(LocationUnreachable, match=r"cannot connect to server 127\.0\.0\.1 on port"):
        await location.list()
    assert time.monotonic() - started < 3


async def test_unknown_server_name_is_unreachable():
    location = SmbLocation(
        name="typo", server="no-such-host.invalid", share="backups", username="u", password="p", timeout=5
    )
    with pytest.raises(LocationUnreachable, match=r"cannot find server no-such-host\.invalid"):
        await location.list()


async def test_encryption_is_used_whenever_the_server_offers_it(samba):
    sealed = samba.location("sealed", folder="enc", require_encryption=True)
    plain = samba.location("plain", folder="enc")
    await sealed.put("backup_321/e.tar", chunks_of(b"secret" * 50_000))
    assert sealed.encryption_in_use() is True
    assert await read_all(plain, "backup_321/e.tar") == b"secret" * 50_000
    # Samba offers SMB3 encryption without demanding it: the location takes it anyway.
    assert plain.encryption_in_use() is True
    await sealed.delete("backup_321/e.tar")


async def test_a_share_that_demands_encryption_gets_it(samba):
    location = samba.location("demanding", share="sealed")
    await location.put("backup_321/s.tar", chunks_of(b"data"))
    assert location.encryption_in_use() is True
    assert await read_all(location, "backup_321/s.tar") == b"data"


async def test_an_smb2_only_server_works_unencrypted_unless_encryption_is_required(samba_smb2_only):
    plain = samba_smb2_only.location("old server plain")
    await plain.put("backup_321/p.tar", chunks_of(b"p"))
    assert plain.encryption_in_use() is False
    required = samba_smb2_only.location("old server", require_encryption=True)
    with pytest.raises(LocationError, match="does not offer SMB3 encryption"):
        await required.list()


async def test_full_share_is_reported_and_leaves_no_partial_file(samba):
    location = samba.location("small", share="small", folder="ha")
    with pytest.raises(LocationFull, match="is full"):
        await location.put("backup_321/big.tar", chunks_of(os.urandom(4 << 20)))
    assert files_under(samba.share_path("small")) == []
    assert await location.list() == []
    # Space is free again: a small copy fits.
    await location.put("backup_321/fits.tar", chunks_of(b"f" * 100_000))
    usage = await location.usage()
    assert usage is not None and usage.total_bytes == 2 << 20
    assert usage.free_bytes < usage.total_bytes


async def test_read_only_share_is_reported(samba):
    location = samba.location("read only", share="readonly")
    with pytest.raises(LocationReadOnly, match="cannot be written"):
        await location.put("backup_321/r.tar", chunks_of(b"r"))


async def test_two_locations_on_one_server_do_not_share_connections(samba):
    good = samba.location("good", folder="shared")
    await good.put("backup_321/a.tar", chunks_of(b"a"))
    # A global connection cache would hand the wrong-password location good's session.
    wrong = samba.location("wrong", folder="shared", password="nope")
    with pytest.raises(LocationAuthFailed):
        await wrong.list()
    other = samba.location("other", folder="shared")
    assert [o.key for o in await other.list()] == ["backup_321/a.tar"]
    await other.close()
    assert other.encryption_in_use() is None
    assert good.encryption_in_use() is True
    assert [o.key for o in await good.list()] == ["backup_321/a.tar"]
    # The closed location connects again on its next call.
    assert [o.key for o in await other.list()] == ["backup_321/a.tar"]


async def test_nested_folder_and_leftovers(samba):
    location = samba.location("nested", folder="/home assistant\\copies/")
    assert location.folder == "home assistant/copies"
    await location.put("backup_321/k/one.tar", chunks_of(b"1"))
    on_disk = samba.share_path("backups") / "home assistant" / "copies" / "backup_321" / "k"
    assert (on_disk / "one.tar").read_bytes() == b"1"
    (on_disk / ".two.tar.partial-abc123").write_bytes(b"half")
    assert [o.key for o in await location.list()] == ["backup_321/k/one.tar"]
    assert await location.cleanup_incomplete() == 1
    assert sorted(p.name for p in on_disk.iterdir()) == ["one.tar"]
    described = await location.stat("backup_321/k/one.tar")
    assert described is not None and described.size == 1


async def test_a_location_can_use_the_whole_share(samba):
    location = samba.location("whole", share="whole")
    await location.put("top.tar", chunks_of(b"t"))
    await location.put("sub/inner.tar", chunks_of(b"i"))
    assert [o.key for o in await location.list()] == ["sub/inner.tar", "top.tar"]
    assert files_under(samba.share_path("whole")) == ["sub/inner.tar", "top.tar"]
    await location.delete("top.tar")
    assert await read_all(location, "sub/inner.tar") == b"i"


async def test_a_paused_server_does_not_block_the_event_loop(samba):
    location = samba.location("paused", folder="paused", timeout=2)
    await location.list()
    ticks = 0

    async def heartbeat():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    samba.pause()
    try:
        started = time.monotonic()
        with pytest.raises(LocationTimeout, match="did not answer within 2 s"):
            await location.stat("backup_321/x.tar")
        assert time.monotonic() - started < 4
    finally:
        samba.resume()
        beat.cancel()
    assert ticks >= 20
    assert await location.stat("backup_321/x.tar") is None


@pytest.mark.parametrize(
    "key",
    [
        "/backup_321/a.tar",
        "backup_321//a.tar",
        "backup_321/../a.tar",
        "backup_321/./a.tar",
        "",
        "backup_321/a:b.tar",
        "backup_321/what?.tar",
        'backup_321/"q".tar',
        "backup_321/a|b.tar",
        "backup_321/a\\b.tar",
        "backup_321/star*.tar",
        "backup_321/<x>.tar",
        "backup_321/tab\there.tar",
        "backup_321/dot.",
        "backup_321/space ",
        "backup_321/.hidden.tar",
        "backup_321/CON.tar",
        "backup_321/lpt1",
    ],
)
def test_keys_an_smb_share_cannot_hold_are_rejected(key):
    with pytest.raises(ValueError, match=r"object key|must"):
        check_key(key)


def test_odd_but_valid_keys_are_accepted():
    for key in ("a/b c/d;e,f+g&h%i#j'k(l)[m]{n}.tar", "ünï/🏠 home.tar", "console.tar", "x/com10"):
        assert check_key(key) == key.split("/")


async def test_invalid_keys_raise_before_any_network_call():
    location = SmbLocation(name="n", server="192.0.2.1", share="s", username="u", password="p")
    with pytest.raises(ValueError):
        await location.stat("../x")


VALID = {
    "name": "NAS",
    "kind": "smb",
    "server": "nas.local",
    "share": "backups",
    "username": "backup",
    "password": "pw",
}


def test_options_minimal_and_defaults():
    options = SmbLocationOptions.model_validate(VALID)
    assert (options.port, options.folder, options.domain, options.require_encryption) == (445, "", "", False)
    assert "pw" not in repr(options)
    location = build(options)
    assert isinstance(location, SmbLocation)
    assert (location.kind, location.offsite, location.name) == ("smb", False, "NAS")
    assert "pw" not in repr(location)


def test_options_full():
    options = SmbLocationOptions.model_validate(
        VALID
        | {
            "server": " 192.168.1.20 ",
            "port": 4445,
            "folder": "\\Home Assistant\\copies\\",
            "domain": "WORKGROUP",
            "require_encryption": True,
            "envelope": False,
        }
    )
    assert options.server == "192.168.1.20"
    assert options.folder == "Home Assistant/copies"
    location = build(options)
    assert (location.port, location.folder, location.require_encryption) == (
        4445,
        "Home Assistant/copies",
        True,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"server": "\\\\nas\\backups"}, "only the server's name or IP address"),
        ({"server": "nas local"}, "host name such as nas.local"),
        ({"share": "backups/ha"}, "only the share's name"),
        ({"share": "back:ups"}, "the share's name"),
        ({"folder": "ha/../etc"}, "folder inside the share"),
        ({"folder": "ha/a*b"}, "characters SMB shares do not allow"),
        ({"port": 0}, "between 1 and 65535"),
        ({"username": " "}, "user name the server knows"),
        ({"password": ""}, "user's password"),
        ({"domain": "bad domain!"}, "workgroup or domain name"),
        ({"domain": "CORP", "username": "CORP\\backup"}, "username already names a domain"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_options_problems_are_explained(change, message):
    with pytest.raises(ValidationError) as caught:
        SmbLocationOptions.model_validate(VALID | change)
    assert message in str(caught.value)


@pytest.mark.parametrize("missing", ["server", "share", "username", "password"])
def test_options_required_fields(missing):
    with pytest.raises(ValidationError, match=missing):
        SmbLocationOptions.model_validate({k: v for k, v in VALID.items() if k != missing})
