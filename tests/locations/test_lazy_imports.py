"""Each kind's client library loads only once a location of that kind needs it.

An add-on with folder locations only must not pay for botocore, asyncssh and smbprotocol, which
together add about 29 MiB to its resident memory. Every check runs in a fresh interpreter, since
the other tests here have imported them all already.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("botocore", "aiobotocore", "asyncssh", "smbclient", "smbprotocol")
# What the service imports to read its options and build its locations.
ADDON_MODULES = ("backup_addon.options", "backup_addon.locations.registry", "backup_addon.pipeline")

SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys, tempfile
    from pathlib import Path

    HEAVY = {heavy!r}

    def loaded():
        return sorted(name for name in HEAVY if name in sys.modules)

    for module in {modules!r}:
        importlib.import_module(module)
    from backup_addon.catalog import Catalog
    from backup_addon.locations.registry import build_location
    from backup_addon.options import parse_options

    seen = {{"imported": loaded()}}
    options = parse_options({{"locations": [json.loads(sys.argv[1])]}})
    seen["parsed"] = loaded()
    with tempfile.TemporaryDirectory() as folder:
        build_location(options.locations[0], Catalog(Path(folder) / "catalog.sqlite3"))
    seen["built"] = loaded()
    print(json.dumps(seen))
    """
)

FOLDER = {"name": "USB disk", "kind": "folder", "path": "/media/usb/backups"}
S3 = {"name": "B2", "kind": "s3", "bucket": "my-backups", "access_key_id": "AKID", "secret_access_key": "s"}
SFTP = {"name": "NAS", "kind": "sftp", "host": "nas.local", "username": "backup", "password": "p"}
SMB = {"name": "Share", "kind": "smb", "server": "nas.local", "share": "b", "username": "u", "password": "p"}
WEBDAV = {"name": "Cloud", "kind": "webdav", "url": "https://cloud.example.com/remote.php/dav/files/alice/b"}
# Any valid ed25519 public key: parsing it needs asyncssh.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd4TsyZ++yQKB0bjIKpi4o4vf17Qfm/tGqusGKyNFNd"


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def loaded_modules(location: dict[str, object]) -> dict[str, list[str]]:
    """In a fresh interpreter: the heavy libraries loaded after importing the add-on, after
    parsing options with `location`, and after building that location."""
    done = run_python(SCRIPT.format(heavy=HEAVY, modules=ADDON_MODULES), json.dumps(location))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_folder_locations_load_no_client_library():
    assert loaded_modules(FOLDER) == {"imported": [], "parsed": [], "built": []}


def test_the_service_loads_no_client_library():
    script = "import sys, backup_addon.service; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = run_python(script.format(heavy=HEAVY))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("location", "built"),
    [
        (S3, ["aiobotocore", "botocore"]),
        (SFTP, ["asyncssh"]),
        (SMB, ["smbclient", "smbprotocol"]),
        (WEBDAV, []),
    ],
    ids=["s3", "sftp", "smb", "webdav"],
)
def test_a_kinds_library_loads_when_its_location_is_built(location, built):
    assert loaded_modules(location) == {"imported": [], "parsed": [], "built": built}


def test_a_pinned_host_key_loads_asyncssh_to_check_it():
    seen = loaded_modules({**SFTP, "host_key": HOST_KEY})
    assert seen == {"imported": [], "parsed": ["asyncssh"], "built": ["asyncssh"]}
