"""Encrypted by default: the key, the kit, enveloped copies that Debian's age opens, no leaks."""

import io
import json
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from securetar import SecureTarArchive

from backup_addon.catalog import RunState
from backup_addon.crypto.age import Recipient, encrypt_stream
from backup_addon.crypto.keys import KEY_PATTERN, InvalidKey, KeyStore, check_key, generate_key, identity_for
from backup_addon.crypto.kit import identities_from_kit
from backup_addon.options import parse_options
from backup_addon.pipeline import Encryption
from backup_addon.service import Addon, Settings

from .conftest import TOKEN, sha256_file

ROOT = Path(__file__).resolve().parents[2]
KEY = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"


def age_decrypt(kit: Path, source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["age", "-d", "-i", str(kit), "-o", str(out), str(source)], capture_output=True,
                          text=True, timeout=120, check=False)


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "backup_addon", *args], cwd=ROOT, capture_output=True,
                          timeout=120, check=False, input=stdin)


# --- the key -------------------------------------------------------------------------------

def test_generated_keys_have_home_assistants_format_and_differ():
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(KEY_PATTERN.match(k) for k in keys)


def test_malformed_key_is_refused_without_repeating_it():
    secret = "abcd-efgh-ijkl-mnop-qrst-uvwx-yz12"
    with pytest.raises(InvalidKey) as caught:
        check_key(secret)
    assert secret not in str(caught.value)
    assert "7 groups of 4 capital letters" in str(caught.value)


def test_malformed_key_in_options_is_a_clear_option_error():
    from backup_addon.errors import InvalidOptions

    with pytest.raises(InvalidOptions) as caught:
        parse_options({"encryption_key": "1234"})
    assert caught.value.problems[0].startswith("encryption_key: must look like Home Assistant's")
    assert "1234" not in caught.value.problems[0]


def test_first_start_makes_a_key_and_stores_it_private(tmp_path):
    store = KeyStore.open(tmp_path)
    assert KEY_PATTERN.match(store.current)
    mode = stat.S_IMODE((tmp_path / "keys.json").stat().st_mode)
    assert mode == 0o600
    assert KeyStore.open(tmp_path).current == store.current


def test_identity_is_derived_from_the_key_and_stable():
    assert identity_for(KEY).to_string() == identity_for(KEY).to_string()
    assert identity_for(KEY).to_string() != identity_for(generate_key()).to_string()
    assert str(identity_for(KEY).recipient()).startswith("age1")


def test_changing_the_key_keeps_the_old_one_and_asks_for_a_new_kit(tmp_path):
    store = KeyStore.open(tmp_path)
    first = store.current
    store.confirm_kit()
    assert store.kit_confirmed
    changed = KeyStore.open(tmp_path, KEY)
    assert changed.current == KEY
    assert [k.key for k in changed.keys] == [KEY, first]
    assert not changed.kit_confirmed
    assert len(changed.identities()) == 2


# --- the kit -------------------------------------------------------------------------------

def test_kit_is_instructions_and_an_age_identity_file_that_opens_copies(tmp_path):
    store = KeyStore.open(tmp_path, KEY)
    kit_text = cli("kit", "--data", str(tmp_path)).stdout.decode()
    assert KEY in kit_text
    assert "age -d -i" in kit_text
    kit = tmp_path / "kit.txt"
    kit.write_text(kit_text)
    assert [i.to_string() for i in identities_from_kit(kit_text)] == [identity_for(KEY).to_string()]

    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"hello backup" * 10000)
    sealed = tmp_path / "plain.bin.age"
    subprocess.run(["age", "-e", "-r", str(store.recipient()), "-o", str(sealed), str(plain)], check=True)
    out = tmp_path / "back.bin"
    result = age_decrypt(kit, sealed, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == plain.read_bytes()


def test_kit_after_a_key_change_opens_old_and_new_copies(tmp_path):
    old = KeyStore.open(tmp_path)
    old_recipient = old.recipient()
    KeyStore.open(tmp_path, KEY)
    kit = tmp_path / "kit.txt"
    kit.write_bytes(cli("kit", "--data", str(tmp_path)).stdout)
    assert old.current in kit.read_text()
    (tmp_path / "p").write_bytes(b"x" * 1000)
    for n, recipient in enumerate((old_recipient, identity_for(KEY).recipient())):
        subprocess.run(["age", "-e", "-r", str(recipient), "-o", str(tmp_path / f"c{n}"), str(tmp_path / "p")], check=True)
        assert age_decrypt(kit, tmp_path / f"c{n}", tmp_path / f"o{n}").returncode == 0
        assert (tmp_path / f"o{n}").read_bytes() == b"x" * 1000


def test_encrypt_and_decrypt_commands_stream_and_round_trip(tmp_path):
    KeyStore.open(tmp_path, KEY)
    kit = tmp_path / "kit.txt"
    kit.write_bytes(cli("kit", "--data", str(tmp_path)).stdout)
    data = bytes(range(256)) * 5000
    (tmp_path / "in").write_bytes(data)
    assert cli("encrypt", "--kit", str(kit), str(tmp_path / "in"), str(tmp_path / "in.age")).returncode == 0
    assert age_decrypt(kit, tmp_path / "in.age", tmp_path / "by-age").returncode == 0
    assert (tmp_path / "by-age").read_bytes() == data
    result = cli("decrypt", "--kit", str(kit), "-", "-", stdin=(tmp_path / "in.age").read_bytes())
    assert result.returncode == 0
    assert result.stdout == data
    assert cli("decrypt", "--key", KEY, str(tmp_path / "in.age"), str(tmp_path / "k")).returncode == 0
    assert (tmp_path / "k").read_bytes() == data


def test_decrypt_with_the_wrong_kit_says_so_and_writes_nothing(tmp_path):
    KeyStore.open(tmp_path, KEY)
    kit = tmp_path / "kit.txt"
    kit.write_bytes(cli("kit", "--data", str(tmp_path)).stdout)
    (tmp_path / "in").write_bytes(b"secret stuff")
    cli("encrypt", "--kit", str(kit), str(tmp_path / "in"), str(tmp_path / "in.age"))
    other = generate_key()
    result = cli("decrypt", "--key", other, str(tmp_path / "in.age"), str(tmp_path / "out"))
    assert result.returncode == 1
    assert b"different key" in result.stderr
    assert other.encode() not in result.stderr
    assert not (tmp_path / "out").exists()


def test_decrypt_of_a_damaged_copy_fails_clearly_and_writes_nothing(tmp_path):
    KeyStore.open(tmp_path, KEY)
    (tmp_path / "in").write_bytes(b"y" * 300_000)
    cli("encrypt", "--key", KEY, str(tmp_path / "in"), str(tmp_path / "in.age"))
    damaged = (tmp_path / "in.age").read_bytes()[:-1000]
    (tmp_path / "cut.age").write_bytes(damaged)
    result = cli("decrypt", "--key", KEY, str(tmp_path / "cut.age"), str(tmp_path / "out"))
    assert result.returncode == 1
    assert b"error:" in result.stderr
    assert not (tmp_path / "out").exists()


# --- the pipeline --------------------------------------------------------------------------

def encryption_for(store, extra=()):
    recipients = [store.recipient(), *extra]
    return Encryption(password=store.current, key_id=store.current_id,
                      envelope=lambda chunks: encrypt_stream(chunks, recipients))


async def test_copies_are_enveloped_and_open_with_age_into_a_protected_supervisor_archive(
    sim, make_runner, tmp_path
):
    store = KeyStore.open(tmp_path / "keys", KEY)
    usb, plain = tmp_path / "usb", tmp_path / "plain"
    usb.mkdir()
    plain.mkdir()
    runner = await make_runner(
        {"usb": usb, "plain": plain},
        options={"locations": [{"name": "usb", "kind": "folder", "path": str(usb)},
                               {"name": "plain", "kind": "folder", "path": str(plain), "envelope": False}]},
    )
    runner.encryption = encryption_for(store)
    result = await runner.run("test")
    assert result.state is RunState.SUCCEEDED, result.error

    archive = sim.archive_path(result.slug)
    (sealed,) = [p for p in usb.rglob("*") if p.is_file()]
    assert sealed.name.endswith(".tar.age")
    kit = tmp_path / "kit.txt"
    kit.write_bytes(cli("kit", "--data", str(tmp_path / "keys")).stdout)
    opened = tmp_path / "opened.tar"
    decrypted = age_decrypt(kit, sealed, opened)
    assert decrypted.returncode == 0, decrypted.stderr
    assert sha256_file(opened) == sha256_file(archive) == result.sha256

    with tarfile.open(opened) as outer:
        meta = json.load(outer.extractfile("./backup.json"))
        parts = [m for m in outer.getnames() if m.endswith(".tar.gz")]
    assert meta["protected"] is True
    assert parts
    with SecureTarArchive(opened, "r", password=KEY) as secure:
        info = secure.tar.getmember("homeassistant.tar.gz")
        with secure.extract_tar(info) as inner:
            data = b"".join(iter(lambda: inner.read(1 << 20), b""))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as ha:
        assert any(name.endswith("configuration.yaml") for name in ha.getnames())

    (plain_copy,) = [p for p in plain.rglob("*") if p.is_file()]
    assert plain_copy.name.endswith(".tar")
    assert sha256_file(plain_copy) == sha256_file(archive)
    copies = {c.location: c for c in runner.catalog.copies(result.slug)}
    assert copies["usb"].sha256 is None  # an enveloped copy is proven by its plaintext's hash
    assert runner.catalog.backup(result.slug).sha256 == result.sha256
    assert copies["plain"].sha256 == result.sha256


async def test_extra_age_recipient_opens_the_copies_without_the_key(sim, make_runner, tmp_path):
    keygen = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
    own_identity = tmp_path / "mine.txt"
    own_identity.write_text(keygen)
    recipient = Recipient.parse(re.search(r"age1[0-9a-z]+", keygen).group(0))
    usb = tmp_path / "usb"
    usb.mkdir()
    runner = await make_runner({"usb": usb})
    runner.encryption = encryption_for(KeyStore.open(tmp_path / "keys"), [recipient])
    result = await runner.run("test")
    (sealed,) = [p for p in usb.rglob("*") if p.is_file()]
    assert age_decrypt(own_identity, sealed, tmp_path / "o.tar").returncode == 0
    assert sha256_file(tmp_path / "o.tar") == result.sha256


async def test_no_secret_reaches_logs_catalog_status_or_errors(sim_url, tmp_path, caplog, aiohttp_client):
    import logging

    from backup_addon.web.app import LOOPBACK, create_app

    caplog.set_level(logging.DEBUG)
    usb = tmp_path / "usb"
    usb.mkdir()
    settings = Settings(supervisor_url=sim_url, token=TOKEN, data_dir=tmp_path / "data",
                        backup_dir=tmp_path / "supervisor" / "backup", poll_interval=0.02)
    options = parse_options({"encryption_key": KEY, "locations": [
        {"name": "usb", "kind": "folder", "path": str(usb)},
        {"name": "gone", "kind": "folder", "path": str(tmp_path / "gone")}]})
    addon = Addon(settings, options)
    await addon.start(web_server=False, schedule=False)
    try:
        result = await addon.runner.run("test")
        client = await aiohttp_client(create_app(addon, LOOPBACK))
        status = await (await client.get("/api/status")).text()
    finally:
        await addon.stop()
    assert result.state is RunState.PARTIAL
    secrets = [KEY, TOKEN, identity_for(KEY).to_string()]
    haystacks = {
        "log": caplog.text,
        "status": status,
        "errors": json.dumps([c.error for c in result.copies]),
    }
    for path in (tmp_path / "data").glob("catalog.sqlite3*"):
        haystacks[path.name] = path.read_bytes().decode("latin-1")
    for name, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {name}"
