"""Before a backup the add-on makes room on /backup, or skips with a clear reason; it never fills the disk."""

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from backup_addon.catalog import CopyState, RunState
from backup_addon.options import parse_options
from backup_addon.reporting import NOTIFY_BACKUP_FAILED
from backup_addon.service import SLOT_KEY, Addon
from supervisor_sim import Faults, SimConfig, SupervisorSim

from .conftest import TOKEN, settings_for

DISK_BYTES = 1024 * 1024


@pytest.fixture
def small_backup_disk(tmp_path):
    """Home Assistant's /backup on a 1 MiB disk of its own (a real tmpfs)."""
    path = tmp_path / "supervisor" / "backup"
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a small disk for this test (run as root): {mounted.stderr}"
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
async def addon_on_small_disk(small_backup_disk, tmp_path, aiohttp_server):
    sim = SupervisorSim(SimConfig(root=tmp_path / "supervisor", token=TOKEN, faults=Faults(stage_delay=0.0)))
    server = await aiohttp_server(sim.app)
    usb = tmp_path / "usb"
    usb.mkdir()
    settings = settings_for(str(server.make_url("")).rstrip("/"), tmp_path, small_backup_disk)
    options = parse_options({"locations": [{"name": "USB", "kind": "folder", "path": str(usb)}], "keep_last": 10})
    addon = Addon(settings, options)
    await addon.start(schedule=False, web_server=False, upkeep_loop=False)
    yield addon, sim, small_backup_disk
    await addon.stop()


def fill(disk, leave):
    """Use up the disk until only `leave` bytes are free."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    (disk / "other-files.bin").write_bytes(b"\0" * max(0, free - leave))


async def test_older_backups_that_are_safe_elsewhere_leave_the_device_to_make_room(addon_on_small_disk):
    addon, sim, disk = addon_on_small_disk
    first = await addon.backup("test")
    second = await addon.backup("test")
    assert first.state is second.state is RunState.SUCCEEDED
    fill(disk, leave=second.size // 2)

    third = await addon.backup("test")

    assert third.state is RunState.SUCCEEDED, third.error
    assert first.slug not in sim.backups  # the oldest left this device...
    assert addon.catalog.copy(first.slug, ".local").state is CopyState.DELETED
    assert addon.catalog.copy(first.slug, "USB").state is CopyState.COMMITTED  # ...and is safe on USB
    assert second.slug in sim.backups


async def test_without_a_safe_copy_elsewhere_the_backup_is_skipped_with_a_reason(addon_on_small_disk):
    addon, sim, disk = addon_on_small_disk
    first = await addon.backup("test")
    assert first.state is RunState.SUCCEEDED
    addon.set_pinned(first.slug, True)  # the only candidate may not go
    fill(disk, leave=first.size // 2)

    addon.catalog.set_meta(SLOT_KEY, (datetime.now(UTC) - timedelta(days=2)).isoformat())
    await addon._schedule_tick()  # the nightly backup is due

    assert list(sim.backups) == [first.slug]
    skipped = addon.catalog.recent_runs(1)[0]
    assert skipped.state is RunState.FAILED
    assert "backup folder has" in skipped.error and "but the last backup needed" in skipped.error
    await addon.publish()
    assert NOTIFY_BACKUP_FAILED in sim.core.notifications
