"""The sftp kind: host-key pinning, both logins, errors the user can act on, and its options."""

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import time

import asyncssh
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
from backup_addon.locations.sftp import (
    SftpHostKeyChanged,
    SftpHostKeyUnknown,
    SftpLocationOptions,
    build,
)
from tests.locations.kinds.sftp import SftpProvider, free_port

OPTIONS = {"name": "NAS", "kind": "sftp", "host": "nas.local", "username": "backup"}
KEY = asyncssh.generate_private_key("ssh-ed25519")
KEY_TEXT = KEY.export_private_key().decode()
HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


async def chunks_of(data: bytes, size: int = 64 * 1024):
    for offset in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[offset : offset + size]


async def read_all(location, key: str) -> bytes:
    return b"".join([chunk async for chunk in location.open(key)])


async def round_trip(location) -> None:
    data = os.urandom(100_000)
    await location.put("backup_321/r/copy.tar", chunks_of(data))
    assert await read_all(location, "backup_321/r/copy.tar") == data
    assert [o.key for o in await location.list()] == ["backup_321/r/copy.tar"]


def fingerprint_by_ssh_keygen(public_key_file) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(public_key_file)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]


@pytest.fixture(scope="module")
def server(provider_workdir):
    provider = SftpProvider()
    workdir = provider_workdir / "sftp-kind-tests"
    workdir.mkdir()
    provider.start(workdir)
    yield provider
    provider.stop()


@pytest.fixture
def resumed(server):
    yield server
    server.resume_server()


# --- host key pinning ---


async def test_unknown_host_key_fails_showing_the_offered_key_and_its_fingerprint(server):
    location = server.location("no host key", host_key=None)
    with pytest.raises(SftpHostKeyUnknown) as caught:
        await location.put("backup_321/h/x.tar", chunks_of(b"x"))
    error = caught.value
    assert isinstance(error, LocationAuthFailed)
    keys = server.workdir / "keys"
    offered = {server.host_key: keys / "host_ed25519.pub", server.ecdsa_host_key: keys / "host_ecdsa.pub"}
    assert error.offered_key in offered
    assert error.fingerprint == fingerprint_by_ssh_keygen(offered[error.offered_key])
    assert error.offered_key in str(error) and error.fingerprint in str(error)
    assert "no host key" in str(error)
    assert os.listdir(location.folder) == []


async def test_changed_host_key_fails_with_the_identity_changed_warning(server):
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    location = server.location("changed key", host_key=impostor)
    with pytest.raises(SftpHostKeyChanged) as caught:
        await location.put("backup_321/h/x.tar", chunks_of(b"x"))
    message = str(caught.value)
    assert "identity changed" in message and "intercepting" in message
    assert caught.value.offered_key == server.host_key
    assert caught.value.fingerprint in message
    assert os.listdir(location.folder) == []


async def test_pinned_key_of_a_type_the_server_lacks_counts_as_changed(server):
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode()
    with pytest.raises(SftpHostKeyChanged, match="identity changed"):
        await server.location("rsa pinned", host_key=rsa).list()


async def test_any_of_the_servers_host_keys_can_be_pinned(server):
    await round_trip(server.location("ecdsa pinned", host_key=server.ecdsa_host_key))


# --- logging in ---


async def test_password_login_stores_and_reads_back(server):
    await round_trip(server.location("password", private_key=None, password=server.password))


async def test_key_login_stores_and_reads_back(server):
    await round_trip(server.location("key", private_key=server.client_key))


async def test_passphrase_protected_key_logs_in(server):
    locked = asyncssh.import_private_key(server.client_key).export_private_key(
        "pkcs8-pem", passphrase="s3cret"
    )
    await round_trip(server.location("locked key", private_key=locked.decode(), passphrase="s3cret"))


async def test_wrong_password_fails_within_seconds_without_showing_it(server):
    location = server.location("bad password", private_key=None, password="wrong-pass-987")
    started = time.monotonic()
    with pytest.raises(LocationAuthFailed) as caught:
        await location.list()
    assert time.monotonic() - started < 5
    assert "bad password" in str(caught.value)
    assert "wrong-pass-987" not in str(caught.value)
    assert "password" in str(caught.value)


async def test_key_the_server_does_not_know_fails_as_auth_error(server):
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    with pytest.raises(LocationAuthFailed, match="private key"):
        await server.location("unknown key", private_key=stranger).list()


# --- reaching the server ---


async def test_closed_port_is_unreachable_at_once(server):
    location = server.location("closed port", port=free_port())
    started = time.monotonic()
    with pytest.raises(LocationUnreachable, match="refused the connection") as caught:
        await location.list()
    assert not isinstance(caught.value, LocationTimeout)
    assert time.monotonic() - started < 3


async def test_unknown_host_name_is_unreachable(server):
    with pytest.raises(LocationUnreachable, match="closed host"):
        await server.location("closed host", host="no-such-host.invalid", timeout=3).list()


async def test_server_that_never_answers_times_out(server):
    async def silent(reader, writer):
        await asyncio.sleep(30)
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        location = server.location("silent server", port=port, timeout=1)
        started = time.monotonic()
        with pytest.raises(LocationTimeout, match="silent server"):
            await location.list()
        assert time.monotonic() - started < 4
    finally:
        listener.close()


async def test_server_stopped_mid_download_times_out(resumed):
    server = resumed
    location = server.location("stops reading", timeout=2)
    await location.put("backup_321/d/big.tar", chunks_of(os.urandom(24 << 20), 1 << 20))
    started = None
    with pytest.raises(LocationTimeout, match="stops reading"):
        async for _ in location.open("backup_321/d/big.tar"):
            if started is None:
                server.pause_server()
                started = time.monotonic()
    assert time.monotonic() - started < 10


# --- folders and files on the server ---


async def test_relative_folder_is_inside_the_login_folder(server):
    name = f"rel-{secrets.token_hex(4)}"
    location = server.location("relative", folder=f"~/{name}/copies")
    try:
        await location.put("backup_321/a.tar", chunks_of(b"abc"))
        assert (server.home / name / "copies" / "backup_321" / "a.tar").read_bytes() == b"abc"
    finally:
        shutil.rmtree(server.home / name, ignore_errors=True)


async def test_missing_folders_are_created_by_the_first_put(server):
    folder = server.new_folder() / "not" / "there" / "yet"
    location = server.location("deep", folder=str(folder))
    assert await location.list() == []
    assert await location.cleanup_incomplete() == 0
    assert await location.usage() is not None
    await location.put("backup_321/b.tar", chunks_of(b"abc"))
    assert (folder / "backup_321" / "b.tar").read_bytes() == b"abc"


async def test_copies_are_private_to_the_login_user(server):
    location = server.location("private")
    await location.put("backup_321/p.tar", chunks_of(b"secret"))
    assert os.stat(os.path.join(location.folder, "backup_321", "p.tar")).st_mode & 0o077 == 0


async def test_list_skips_partial_and_hidden_files_and_cleanup_removes_partials(server):
    location = server.location("leftovers")
    await location.put("backup_321/i/real.tar", chunks_of(b"real"))
    folder = os.path.join(location.folder, "backup_321", "i")
    for name in (".real.tar.partial-0123abcd", ".hidden"):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"x")
    assert [o.key for o in await location.list()] == ["backup_321/i/real.tar"]
    assert await location.cleanup_incomplete() == 1
    assert sorted(os.listdir(folder)) == [".hidden", "real.tar"]


async def test_folder_the_user_cannot_write_is_read_only(server):
    folder = server.data / f"root-owned-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o755)
    with pytest.raises(LocationReadOnly, match="denied access"):
        await server.location("read only", folder=str(folder)).put("b.tar", chunks_of(b"x"))
    assert os.listdir(folder) == []


async def test_full_disk_is_reported_as_full_and_leaves_nothing(server):
    folder = server.new_folder()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(folder)], check=True)
    try:
        os.chown(folder, *server._uid_gid())
        location = server.location("full disk", folder=str(folder))
        with pytest.raises(LocationFull, match="full disk"):
            await location.put("backup_321/f.tar", chunks_of(os.urandom(8 << 20), 1 << 20))
        assert await location.list() == []
        assert os.listdir(folder / "backup_321") == []
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_usage_is_the_servers_disk(server):
    location = server.location("usage")
    usage = await location.usage()
    local = os.statvfs(location.folder)
    assert usage.total_bytes == local.f_blocks * local.f_frsize
    assert abs(usage.free_bytes - local.f_bavail * local.f_frsize) < 64 << 20


async def test_servers_without_posix_rename_still_replace_copies(server, monkeypatch):
    async def unsupported(self, oldpath, newpath):
        raise asyncssh.SFTPOpUnsupported("posix-rename@openssh.com not supported")

    monkeypatch.setattr(asyncssh.SFTPClient, "posix_rename", unsupported)
    location = server.location("plain rename")
    await location.put("backup_321/o.tar", chunks_of(b"old" * 1000))
    await location.put("backup_321/o.tar", chunks_of(b"new"))
    assert await read_all(location, "backup_321/o.tar") == b"new"
    assert sorted(os.listdir(os.path.join(location.folder, "backup_321"))) == ["o.tar"]


async def test_usage_is_unknown_when_the_server_cannot_tell(server, monkeypatch):
    async def unsupported(self, path):
        raise asyncssh.SFTPOpUnsupported("statvfs@openssh.com not supported")

    monkeypatch.setattr(asyncssh.SFTPClient, "statvfs", unsupported)
    assert await server.location("no statvfs").usage() is None


async def test_abandoned_read_ends_cleanly(server):
    location = server.location("abandoned")
    await location.put("backup_321/a.tar", chunks_of(os.urandom(4 << 20), 1 << 20))
    reader = location.open("backup_321/a.tar")
    assert await anext(reader)
    await reader.aclose()
    assert (await location.stat("backup_321/a.tar")).size == 4 << 20


@pytest.mark.parametrize(
    "key", ["../x.tar", "/etc/x.tar", "a//b.tar", "a/./b.tar", ".x.tar", "a/.b/c.tar", ""]
)
async def test_unsafe_keys_are_refused_before_connecting(key):
    sftp = build(options())  # nas.local does not exist: keys are checked before connecting
    with pytest.raises(ValueError):
        await sftp.put(key, chunks_of(b"x"))
    with pytest.raises(ValueError):
        await sftp.stat(key)


async def test_options_build_a_working_location(server):
    flattened = "".join(server.client_key.splitlines())  # what a one-line form field makes of a pasted key
    options = SftpLocationOptions(
        name="From options",
        kind="sftp",
        host="127.0.0.1",
        port=server.port,
        username=server.user,
        private_key=flattened,
        folder=str(server.new_folder()),
        host_key=server.host_key + " root@server",
    )
    location = build(options)
    assert location.offsite and location.kind == "sftp"
    await round_trip(location)


async def test_missing_object_is_a_location_error(server):
    with pytest.raises(LocationError, match="does not exist"):
        await read_all(server.location("missing"), "backup_321/none.tar")


# --- options ---


def options(**fields):
    return SftpLocationOptions(**(OPTIONS | {"password": "pw"} | fields))


def test_options_defaults_are_port_22_and_the_login_folder():
    parsed = options()
    assert (parsed.port, parsed.folder, parsed.host_key, parsed.private_key) == (22, "", None, None)


def test_options_empty_secret_fields_count_as_unset():
    parsed = SftpLocationOptions(**OPTIONS, password="", private_key=KEY_TEXT, passphrase="", host_key="")
    assert parsed.password is None and parsed.passphrase is None and parsed.host_key is None


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_options_port_must_be_a_port_number(port):
    with pytest.raises(ValidationError, match="from 1 to 65535"):
        options(port=port)


@pytest.mark.parametrize(
    ("host", "complaint"),
    [
        ("sftp://nas.local", "without 'sftp://'"),
        ("nas.local:2222", "put it under port"),
        ("backup@nas.local", "under username"),
        ("nas.local/backups", "under folder"),
        ("my nas", "host name or IP address"),
    ],
)
def test_options_host_must_be_only_a_name_or_address(host, complaint):
    with pytest.raises(ValidationError, match=complaint):
        options(host=host)


@pytest.mark.parametrize("host", ["192.168.1.20", "nas.local", "my-vps.example.com", "fd00::1", "[fd00::1]"])
def test_options_host_accepts_names_and_addresses(host):
    assert options(host=host).host == host.strip("[]")


def test_options_host_key_is_stored_as_type_and_key():
    assert options(host_key=HOST_KEY + " root@nas").host_key == HOST_KEY
    assert options(host_key=f"[nas.local]:2222 {HOST_KEY}").host_key == HOST_KEY


@pytest.mark.parametrize(
    ("host_key", "complaint"),
    [
        ("SHA256:l3+/oH9Q0sEhY/xIu25LbcpCuPBLi3JKx7sUZiFmKx8", "is a fingerprint"),
        ("AAAAC3NzaC1lZDI1NTE5AAAAID", "must be a public host key"),
        ("ssh-ed25519 AAAAnot-a-key", "is not a valid ssh-ed25519 key"),
    ],
)
def test_options_host_key_format_is_checked(host_key, complaint):
    with pytest.raises(ValidationError, match=complaint):
        options(host_key=host_key)


def test_options_need_a_password_or_a_private_key():
    with pytest.raises(ValidationError, match="needs a password or a private_key"):
        SftpLocationOptions(**OPTIONS)


def test_options_refuse_both_password_and_private_key():
    with pytest.raises(ValidationError, match="set only one"):
        options(private_key=KEY_TEXT)


def test_options_refuse_a_passphrase_without_a_private_key():
    with pytest.raises(ValidationError, match="passphrase but no private_key"):
        options(passphrase="x")


def test_options_restore_the_line_breaks_of_a_flattened_private_key():
    parsed = SftpLocationOptions(**OPTIONS, private_key="".join(KEY_TEXT.splitlines()))
    assert asyncssh.import_private_key(parsed.private_key).public_data == KEY.public_data


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"private_key": KEY.export_public_key().decode()}, "is a public key"),
        ({"private_key": "hunter2"}, "whole private key text"),
        (
            {"private_key": KEY.export_private_key("pkcs8-pem", passphrase="right").decode()},
            "enter it under passphrase",
        ),
        (
            {
                "private_key": KEY.export_private_key("pkcs8-pem", passphrase="right").decode(),
                "passphrase": "wrong",
            },
            "passphrase is wrong",
        ),
    ],
)
def test_options_private_key_problems_are_explained(fields, complaint):
    with pytest.raises(ValidationError, match=complaint):
        SftpLocationOptions(**OPTIONS, **fields)


def test_options_openssh_key_with_passphrase_explains_what_to_do(tmp_path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass-123", "-f", str(tmp_path / "k")], check=True
    )
    with pytest.raises(ValidationError, match="ssh-keygen -p"):
        SftpLocationOptions(**OPTIONS, private_key=(tmp_path / "k").read_text(), passphrase="pass-123")


@pytest.mark.parametrize(
    ("folder", "stored"),
    [
        ("", ""),
        ("~", ""),
        ("~/backups", "backups"),
        ("backups/ha/", "backups/ha"),
        ("/volume1/backups", "/volume1/backups"),
    ],
)
def test_options_folder_is_relative_to_the_login_folder_or_absolute(folder, stored):
    assert options(folder=folder).folder == stored


def test_options_folder_must_not_climb_out():
    with pytest.raises(ValidationError, match=re.escape("must not contain '..'")):
        options(folder="backups/../../etc")
