"""Interoperability both ways with the reference `age` CLI (Debian's Go build) and with
`pyrage` (rage). Keys are generated at test time; a missing `age` binary fails the suite."""

import asyncio
import random
import shutil
import subprocess

import pyrage
import pytest

from backup_addon.crypto.age import (
    AgeHeaderError,
    Identity,
    Recipient,
    decrypt_bytes,
    encrypt_bytes,
    parse_identity_file,
)
from tests.crypto.helpers import CHUNK, encrypt_all, run_decrypt

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 300_001]


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("age", "age-keygen")}
    missing = [name for name, path in found.items() if path is None]
    assert not missing, f"{missing} not installed: the interop tests need Debian's age (apt-get install age)"
    return {name: str(path) for name, path in found.items()}


def run(*args: str, data: bytes = b"") -> bytes:
    result = subprocess.run(list(args), input=data, capture_output=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@pytest.fixture
def keygen(tools, tmp_path) -> tuple[str, Recipient]:
    """An identity file made by age-keygen, and its recipient."""
    path = tmp_path / "keygen.txt"
    run(tools["age-keygen"], "-o", str(path))
    public = run(tools["age-keygen"], "-y", str(path)).decode().strip()
    return str(path), Recipient.parse(public)


def data_of(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def test_age_keygen_identity_files_parse(keygen):
    path, recipient = keygen
    with open(path, encoding="ascii") as handle:
        identities = parse_identity_file(handle.read())
    assert [i.recipient() for i in identities] == [recipient]


@pytest.mark.parametrize("size", SIZES)
def test_age_cli_decrypts_ours(tools, keygen, tmp_path, size):
    keygen_path, keygen_recipient = keygen
    ours, other = Identity.generate(), Identity.generate()
    ours_path = tmp_path / "ours.txt"
    ours_path.write_text(f"# test identity\n{ours.to_string()}\n", encoding="ascii")
    plaintext = data_of(size)
    sealed = encrypt_bytes(plaintext, [other.recipient(), keygen_recipient, ours.recipient()])
    assert run(tools["age"], "-d", "-i", keygen_path, data=sealed) == plaintext
    assert run(tools["age"], "-d", "-i", str(ours_path), data=sealed) == plaintext
    single = asyncio.run(encrypt_all(plaintext, [keygen_recipient], [777, 65536, 3]))
    assert run(tools["age"], "-d", "-i", keygen_path, data=single) == plaintext


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_age_cli_files(tools, keygen, size):
    _, keygen_recipient = keygen
    ours = Identity.generate()
    plaintext = data_of(size)
    sealed = run(tools["age"], "-e", "-r", str(keygen_recipient), "-r", str(ours.recipient()), data=plaintext)
    assert decrypt_bytes(sealed, [ours]) == plaintext
    outcome = run_decrypt(sealed, [Identity.generate(), ours], [1, 100, 65553])
    assert outcome.error is None
    assert outcome.released == plaintext


def test_age_cli_rejects_our_file_when_damaged(tools, keygen):
    keygen_path, keygen_recipient = keygen
    sealed = bytearray(encrypt_bytes(data_of(3 * CHUNK), [keygen_recipient]))
    sealed[-5] ^= 1
    result = subprocess.run(
        [tools["age"], "-d", "-i", keygen_path], input=bytes(sealed), capture_output=True, check=False
    )
    assert result.returncode != 0


def test_age_cli_armored_files_are_refused_clearly(tools):
    ours = Identity.generate()
    armored = run(tools["age"], "-e", "-a", "-r", str(ours.recipient()), data=b"hello")
    with pytest.raises(AgeHeaderError, match="ASCII-armored"):
        decrypt_bytes(armored, [ours])


@pytest.mark.parametrize("size", SIZES)
def test_pyrage_decrypts_ours(size):
    theirs = pyrage.x25519.Identity.generate()
    ours = Identity.generate()
    plaintext = data_of(size)
    sealed = encrypt_bytes(plaintext, [ours.recipient(), Recipient.parse(str(theirs.to_public()))])
    assert pyrage.decrypt(sealed, [theirs]) == plaintext
    assert pyrage.decrypt(sealed, [pyrage.x25519.Identity.from_str(ours.to_string())]) == plaintext


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_pyrage_files(size):
    ours = Identity.generate()
    others = [pyrage.x25519.Identity.generate() for _ in range(2)]
    recipients = [
        others[0].to_public(),
        pyrage.x25519.Recipient.from_str(str(ours.recipient())),
        others[1].to_public(),
    ]
    plaintext = data_of(size)
    sealed = pyrage.encrypt(plaintext, recipients)
    assert decrypt_bytes(sealed, [ours]) == plaintext
    outcome = run_decrypt(sealed, [ours], [5, 4096])
    assert outcome.error is None
    assert outcome.released == plaintext


def test_key_strings_agree_with_pyrage():
    theirs = pyrage.x25519.Identity.generate()
    ours = Identity.parse(str(theirs))
    assert str(ours.recipient()) == str(theirs.to_public())
    assert str(pyrage.x25519.Identity.from_str(ours.to_string()).to_public()) == str(ours.recipient())
