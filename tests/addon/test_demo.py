"""The README's demo command does what it promises."""

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from securetar import SecureTarArchive

from .conftest import sha256_file

ROOT = Path(__file__).resolve().parents[2]


def test_demo_once_writes_two_matching_copies_and_exits_zero(tmp_path):
    demo = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "backup_addon", "demo", "--once", "--dir", str(demo)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    archives = list((demo / "supervisor" / "backup").glob("*.tar"))
    assert len(archives) == 1
    expected = sha256_file(archives[0])
    assert expected in result.stdout
    kit = demo / "backup_321_emergency_kit.txt"
    key = re.search(r"#\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){6})\s*$", kit.read_text(), re.MULTILINE).group(1)
    for folder in ("usb-disk", "nas-share"):
        (copy,) = list((demo / "locations" / folder).rglob("*.tar.age"))
        opened = tmp_path / f"{folder}.tar"
        subprocess.run(["age", "-d", "-i", str(kit), "-o", str(opened), str(copy)], check=True, timeout=60)
        assert sha256_file(opened) == expected
        with tarfile.open(opened) as outer:
            assert json.load(outer.extractfile("./backup.json"))["protected"] is True
        with SecureTarArchive(opened, "r", password=key) as secure:
            for member in secure.tar.getmembers():
                if member.name.endswith(".tar.gz"):
                    with secure.extract_tar(member) as inner:
                        assert inner.read(2) == b"\x1f\x8b"


def test_demo_once_exits_non_zero_when_a_copy_fails(tmp_path):
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "backup_addon", "demo", "--once", "--dir", str(demo)],
                   cwd=ROOT, capture_output=True, timeout=120, check=True)
    options_file = demo / "data" / "options.json"
    options = json.loads(options_file.read_text())
    options["locations"][1]["path"] = str(tmp_path / "unplugged")
    options_file.write_text(json.dumps(options))
    result = subprocess.run(
        [sys.executable, "-m", "backup_addon", "demo", "--once", "--dir", str(demo)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1
    assert "NAS share" in result.stdout and "FAILED" in result.stdout
    assert "does not exist" in result.stdout


def test_every_command_has_help():
    for args in (["--help"], ["run", "--help"], ["demo", "--help"]):
        result = subprocess.run([sys.executable, "-m", "backup_addon", *args], cwd=ROOT, capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 0
        assert "usage: python -m backup_addon" in result.stdout
