"""`python -m backup_addon verify`: a restore drill on a downloaded copy, against Go's `age` too."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backup_addon.__main__ import main
from backup_addon.crypto.age import encrypt_file
from backup_addon.crypto.keys import KeyStore, identity_for
from backup_addon.crypto.kit import render_kit
from backup_addon.verify import COPY_DAMAGED, COPY_WRONG_KEY, WRONG_KEY
from tests.addon.test_verify import OTHER_PASSWORD, PASSWORD, build_archive, flip_byte

ROOT = Path(__file__).resolve().parents[2]


def make_kit(directory: Path, *keys: str) -> Path:
    """The emergency kit of a key store that had `keys` in this order (the last is current)."""
    data = directory / "data"
    for key in keys:
        KeyStore.open(data, configured=key)
    kit = directory / "kit.txt"
    kit.write_text(render_kit(KeyStore.open(data), instance="test", now=datetime(2026, 3, 1, tzinfo=UTC)))
    return kit


def age_tool(*args: str) -> None:
    subprocess.run(["age", *args], check=True, capture_output=True, timeout=60)


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["verify", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(tmp_path_factory.mktemp("cli") / "backup.tar", payload=1 << 20)


def test_a_copy_sealed_by_the_age_tool_is_proven_restorable(backup: Path, tmp_path: Path) -> None:
    kit = make_kit(tmp_path, PASSWORD)
    sealed = tmp_path / "copy.tar.age"
    age_tool("-e", "-r", str(identity_for(PASSWORD).recipient()), "-o", str(sealed), str(backup))
    result = subprocess.run(
        [sys.executable, "-m", "backup_addon", "verify", "--kit", str(kit), str(sealed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "sealed copy (age): opened with the key" in out
    assert "backup: 'Nightly' (slug 9f3a1c2e)" in out
    for part in ("homeassistant.tar.gz", "core_ssh.tar.gz", "share.tar.gz", "addons_local.tar.gz"):
        assert part in out
    assert out.rstrip().endswith("RESTORABLE: every part opened with the key and was read to its end.")
    assert PASSWORD not in out + result.stderr


def test_a_copy_sealed_by_the_addon_opens_with_the_age_tool_and_verifies(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = make_kit(tmp_path, PASSWORD)
    sealed = tmp_path / "copy.tar.age"
    with backup.open("rb") as source, sealed.open("wb") as target:
        encrypt_file(source, target, [identity_for(PASSWORD).recipient()])
    opened = tmp_path / "opened.tar"
    age_tool("-d", "-i", str(kit), "-o", str(opened), str(sealed))
    assert opened.read_bytes() == backup.read_bytes()
    code, out, _ = verify(capsys, "--key", PASSWORD, opened)
    assert code == 0, out
    assert "plain copy (not sealed with age)" in out
    code, out, _ = verify(capsys, "--kit", kit, sealed)
    assert code == 0, out


def test_a_damaged_copy_is_not_restorable(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = tmp_path / "copy.tar.age"
    age_tool("-e", "-r", str(identity_for(PASSWORD).recipient()), "-o", str(sealed), str(backup))
    flip_byte(sealed, sealed.stat().st_size // 2)
    code, out, _ = verify(capsys, "--key", PASSWORD, sealed)
    assert code == 1
    assert f"NOT RESTORABLE:\n  - {COPY_DAMAGED}\n" in out
    assert "Use another copy of this backup, or make a new backup." in out


def test_the_wrong_key_is_named_for_sealed_and_plain_copies(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = tmp_path / "copy.tar.age"
    age_tool("-e", "-r", str(identity_for(PASSWORD).recipient()), "-o", str(sealed), str(backup))
    code, out, _ = verify(capsys, "--key", OTHER_PASSWORD, sealed)
    assert (code, f"  - {COPY_WRONG_KEY}\n" in out) == (1, True)
    code, out, _ = verify(capsys, "--key", OTHER_PASSWORD, backup)
    assert (code, f"  - {WRONG_KEY}\n" in out) == (1, True)
    assert OTHER_PASSWORD not in out


def test_a_missing_addon_archive_makes_the_copy_not_restorable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incomplete = build_archive(tmp_path / "incomplete.tar", skip_addon=True)
    code, out, _ = verify(capsys, "--key", PASSWORD, incomplete)
    assert code == 1
    assert (
        "the add-on Advanced SSH is listed in this backup, but its archive (core_ssh.tar.gz) is missing"
        in out
    )
    assert "core_ssh.tar.gz" in out.split("NOT RESTORABLE")[0]  # in the table, as missing


def test_an_older_key_in_the_kit_opens_older_backups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older = build_archive(tmp_path / "older.tar", password=OTHER_PASSWORD)
    kit = make_kit(tmp_path, OTHER_PASSWORD, PASSWORD)  # PASSWORD is now current
    code, out, _ = verify(capsys, "--kit", kit, older)
    assert code == 0, out
    sealed = tmp_path / "older.tar.age"
    age_tool("-e", "-r", str(identity_for(OTHER_PASSWORD).recipient()), "-o", str(sealed), str(older))
    code, out, _ = verify(capsys, "--kit", kit, sealed)
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", PASSWORD, "missing.tar"], "cannot read missing.tar: no such file"),
        (["--key", "not-a-key", "FILE"], "the encryption key must look like Home Assistant's"),
        (["--kit", "KIT", "FILE"], "cannot be used"),
        (["--kit", "missing-kit.txt", "FILE"], "cannot read the kit"),
    ],
    ids=["no-file", "bad-key", "not-a-kit", "no-kit"],
)
def test_usage_errors_exit_2(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    not_a_kit = tmp_path / "notes.txt"
    not_a_kit.write_text("just some notes\n")
    args = [str(backup) if a == "FILE" else str(not_a_kit) if a == "KIT" else a for a in args]
    code, out, err = verify(capsys, *args)
    assert code == 2
    assert message in err
    assert out == ""


def test_a_key_or_kit_is_required(backup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["verify", str(backup)])
    assert stopped.value.code == 2
    assert "one of the arguments --kit --key is required" in capsys.readouterr().err
