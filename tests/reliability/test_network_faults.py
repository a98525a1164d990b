"""Remote locations on their real servers, reached through a proxy that resets, stalls and drops.

Each run copies one backup to a remote location through the fault proxy and to a folder
location next to it. Whatever the network does, the remote copy either fails cleanly or is
retried and succeeds, nothing appears under the final key unless it is complete, and the folder
copy of the same run is unaffected.

The kinds' idle timeouts (60 s) are not options: these tests set them through the constructors.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backup_addon.catalog import Catalog, CopyState, RunState
from backup_addon.locations import FolderLocation, Location
from backup_addon.locations.wrappers import LimitedLocation, RetryingLocation
from backup_addon.options import parse_options
from backup_addon.pipeline import BackupRunner
from backup_addon.supervisor import SupervisorGateway

from .conftest import SIM_TOKEN
from .faultproxy import FaultProxy

CATEGORY = "network faults"
MiB = 1 << 20
PAYLOAD = 6 * MiB
IDLE_TIMEOUT = 2.0


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Remote:
    """A location on a real server through the proxy, and a look at the server's own storage."""

    location: Location
    finals: Callable[[], list[str]]  # complete objects, as the server stores them
    temps: Callable[[], list[str]]  # leftovers of unfinished uploads
    raw: Any = None  # the kind's own object, unwrapped


def _disk_lister(folder: Path) -> tuple[Callable[[], list[str]], Callable[[], list[str]]]:
    def finals() -> list[str]:
        return sorted(
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and ".partial-" not in p.name and not p.name.startswith(".")
        )

    def temps() -> list[str]:
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p not in [
            folder / f for f in finals()
        ])

    return finals, temps


def sftp_remote(servers, port: int, name: str) -> Remote:
    provider = servers.sftp
    folder = provider.new_folder()
    location = provider.location(name, port=port, folder=str(folder), timeout=IDLE_TIMEOUT)
    return Remote(location, *_disk_lister(folder), raw=location)


def webdav_remote(servers, port: int, name: str) -> Remote:
    from backup_addon.locations.webdav import WebdavLocation
    from tests.locations.kinds.webdav import USER

    provider = servers.webdav
    url, folder = provider._collection()
    path = url.split(f":{provider.port}", 1)[1]
    location = WebdavLocation(
        name=name, url=f"http://127.0.0.1:{port}{path}", username=USER, password=provider.password, timeout=IDLE_TIMEOUT
    )
    return Remote(location, *_disk_lister(folder), raw=location)


def s3_remote(servers, port: int, name: str, catalog: Catalog) -> Remote:
    from backup_addon.catalog import CatalogJournal

    provider = servers.s3
    bucket = provider.make_bucket()
    location = provider.location(
        name, bucket=bucket, endpoint=f"http://127.0.0.1:{port}", connect_timeout=IDLE_TIMEOUT,
        read_timeout=IDLE_TIMEOUT, min_send_rate=4 * MiB, journal=CatalogJournal(catalog, name),
    )
    admin = provider.admin()

    def finals() -> list[str]:
        return sorted(o["Key"] for o in admin.list_objects_v2(Bucket=bucket).get("Contents", []))

    def temps() -> list[str]:
        return sorted(u["Key"] for u in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    return Remote(location, finals, temps, raw=location)


def smb_remote(servers, port: int, name: str) -> Remote:
    from backup_addon.locations.smb import SmbLocation
    from tests.locations.kinds.smb import USER

    provider = servers.smb
    folder = f"rel-{name.replace(' ', '-')}-{time.monotonic_ns()}"
    location = SmbLocation(
        name=name, server="127.0.0.1", port=port, share="backups", folder=folder, username=USER,
        password=provider.server.password, timeout=IDLE_TIMEOUT,
    )
    disk = provider.server.share_path("backups") / folder
    disk.mkdir(parents=True, exist_ok=True)
    return Remote(location, *_disk_lister(disk), raw=location)


KINDS = {
    "sftp": lambda servers, port, name, catalog: sftp_remote(servers, port, name),
    "webdav": lambda servers, port, name, catalog: webdav_remote(servers, port, name),
    "s3": s3_remote,
    "smb": lambda servers, port, name, catalog: smb_remote(servers, port, name),
}
SERVER_PORT = {
    "sftp": lambda servers: servers.sftp.port,
    "webdav": lambda servers: servers.webdav.port,
    "s3": lambda servers: servers.s3.port,
    "smb": lambda servers: servers.smb.server.port,
}


@dataclass
class Setup:
    runner: BackupRunner
    remote: Remote
    folder: Path
    proxy: FaultProxy
    sim: Any


@pytest.fixture
async def setup(request, servers, make_sim, tmp_path):
    """A runner over [remote kind through the proxy, folder], the simulator serving an archive."""
    kind = request.param
    sim, url = await make_sim(payload_bytes=PAYLOAD)
    async with FaultProxy(("127.0.0.1", SERVER_PORT[kind](servers))) as proxy:
        catalog = Catalog(tmp_path / "data" / "catalog.sqlite3")
        remote = KINDS[kind](servers, proxy.port, f"Remote {kind}", catalog)
        folder = tmp_path / "usb"
        folder.mkdir()
        wrapped = RetryingLocation(LimitedLocation(remote.location, limit=2), base_delay=0.05, max_delay=0.2)
        gateway = SupervisorGateway(url, SIM_TOKEN, poll_interval=0.02)
        runner = BackupRunner(
            gateway=gateway,
            catalog=catalog,
            locations=[wrapped, FolderLocation("USB", folder)],
            options=parse_options({}),
            backup_dir=tmp_path / f"supervisor{0}" / "backup",
        )
        try:
            yield Setup(runner, remote, folder, proxy, sim)
        finally:
            proxy.heal()
            await gateway.close()
            catalog.close()


def _copies(setup: Setup, slug: str) -> dict[str, Any]:
    return {c.location: c for c in setup.runner.catalog.copies(slug)}


def _folder_ok(setup: Setup, slug: str) -> bool:
    files = [p for p in setup.folder.rglob("*") if p.is_file()]
    archive = setup.sim.archive_path(slug)
    return len(files) == 1 and sha256_file(files[0]) == sha256_file(archive)


ALL_KINDS = ["sftp", "webdav", "s3", "smb"]


async def _read_back_matches(setup: Setup, key: str, slug: str) -> bool:
    if key not in setup.remote.finals():
        return False
    stored = b"".join([chunk async for chunk in setup.remote.location.open(key)])
    return hashlib.sha256(stored).hexdigest() == sha256_file(setup.sim.archive_path(slug))


@pytest.mark.reliability(
    CATEGORY,
    "connection reset by the network after 2 MiB of an upload",
    "that copy fails with a clear error, or is retried and committed complete; never anything partial under "
    "the final key; the folder copy of the same run committed; after healing, cleanup leaves no temp object",
)
@pytest.mark.parametrize("setup", ALL_KINDS, indirect=True)
async def test_reset_mid_upload_fails_or_retries_that_copy_only(setup, row):
    remote = setup.remote
    setup.proxy.reset_after(2 * MiB, "up")
    result = await asyncio.wait_for(setup.runner.run("test"), 120)

    copies = _copies(setup, result.slug)
    remote_copy = copies[remote.location.name]
    key = next(c.key for c in result.copies if c.location == remote.location.name)
    leftover_before = remote.temps()
    setup.proxy.heal()
    removed = await remote.location.cleanup_incomplete()
    committed = remote_copy.state is CopyState.COMMITTED
    intact = await _read_back_matches(setup, key, result.slug) if committed else key not in remote.finals()
    how = "retried and committed" if committed else f"failed: {remote_copy.error}"
    row.happened = (
        f"{remote.location.kind}: {how}; run {result.state}; folder copy {copies['USB'].state}; "
        f"temp objects after the reset: {len(leftover_before)}, removed by cleanup: {removed}, "
        f"left: {len(remote.temps())}"
    )
    row.nothing_lost = intact and _folder_ok(setup, result.slug)
    assert setup.proxy.resets == 1
    assert remote_copy.state in (CopyState.COMMITTED, CopyState.FAILED)
    assert intact, "a committed copy must read back complete; a failed one must leave nothing under its key"
    if not committed:
        assert result.state is RunState.PARTIAL
        assert "unexpected error" not in (remote_copy.error or "")
    assert copies["USB"].state is CopyState.COMMITTED
    assert _folder_ok(setup, result.slug)
    assert remote.temps() == []


@pytest.mark.reliability(
    CATEGORY,
    "the first connection to the server dropped on accept",
    "the retry wrapper tries again and the copy is committed, complete",
)
@pytest.mark.parametrize("setup", ALL_KINDS, indirect=True)
async def test_dropped_first_connection_is_retried_and_succeeds(setup, row):
    remote = setup.remote
    setup.proxy.drop_connection(1)
    result = await asyncio.wait_for(setup.runner.run("test"), 120)

    copies = _copies(setup, result.slug)
    remote_copy = copies[remote.location.name]
    key = next(c.key for c in result.copies if c.location == remote.location.name)
    matches = await _read_back_matches(setup, key, result.slug)
    row.happened = (
        f"{remote.location.kind}: {setup.proxy.dropped} connection dropped, {setup.proxy.accepted} accepted; "
        f"run {result.state}, copy {remote_copy.state}"
        + (f" ({remote_copy.error})" if remote_copy.error else "")
        + f"; read back {'matches' if matches else 'DIFFERS'}"
    )
    row.nothing_lost = _folder_ok(setup, result.slug) and (remote_copy.state is not CopyState.COMMITTED or matches)
    assert setup.proxy.dropped == 1
    assert result.state is RunState.SUCCEEDED, result.error
    assert remote_copy.state is CopyState.COMMITTED
    assert matches


@pytest.mark.reliability(
    CATEGORY,
    f"the server stalls (no byte either way) after 1 MiB of an upload, idle timeout {IDLE_TIMEOUT:g} s",
    "the copy fails with a time-out message within a bounded time instead of hanging; "
    "nothing under the final key; the folder copy committed",
)
@pytest.mark.parametrize("setup", ALL_KINDS, indirect=True)
async def test_stalled_server_times_out_with_a_clear_error(setup, row):
    remote = setup.remote
    setup.proxy.stall_after(1 * MiB, "both")
    started = time.monotonic()
    result = await asyncio.wait_for(setup.runner.run("test"), 90)
    elapsed = time.monotonic() - started

    copies = _copies(setup, result.slug)
    remote_copy = copies[remote.location.name]
    key = next(c.key for c in result.copies if c.location == remote.location.name)
    setup.proxy.heal()
    error = (remote_copy.error or "").lower()
    clear = any(word in error for word in ("time", "did not answer", "not answer", "stalled", "no answer"))
    row.happened = (
        f"{remote.location.kind}: failed after {elapsed:.1f} s: {remote_copy.error!r}; folder copy {copies['USB'].state}"
    )
    row.nothing_lost = key not in remote.finals() and _folder_ok(setup, result.slug)
    assert setup.proxy.stalls == 1
    assert remote_copy.state is CopyState.FAILED
    assert clear, remote_copy.error
    assert elapsed < 60
    assert copies["USB"].state is CopyState.COMMITTED
    assert key not in remote.finals()
