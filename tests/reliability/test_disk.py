"""Full and read-only disks, made for real: small tmpfs mounts (these tests run as root).

A folder location that is too small, or fills up while a copy is written, or turns read-only;
the add-on's own /data full; the Supervisor's /backup too small. In each case the one thing that
cannot work fails with a message that says why, the rest of the run goes on, nothing partial is
left, and after the space comes back the next backup succeeds.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
from pathlib import Path

import pytest

from backup_addon.catalog import CopyState, RunState
from backup_addon.locations import FolderLocation

from .faultproxy import FaultProxy
from .harness import (
    Service,
    Simulator,
    last_run_id,
    nothing_lost,
    sha256_file,
    temp_files,
    wait_idle,
)

CATEGORY = "disk and resource faults"
MiB = 1 << 20


def _stored(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "filler.bin")


def _copy_of(folder: Path, archive: Path) -> bool:
    """The folder holds exactly one file, byte for byte the archive."""
    files = [p for p in _stored(folder) if not p.name.endswith(".meta.age")]
    return len(files) == 1 and sha256_file(files[0]) == sha256_file(archive)


@pytest.mark.reliability(
    CATEGORY,
    "a folder location with 1 MiB free for a 4 MiB backup",
    "that copy fails before streaming with a message giving the space needed and free; "
    "the other folder location gets its copy; nothing left on the small disk",
)
async def test_folder_location_too_small_fails_that_copy_only(make_sim, make_runner, disks, tmp_path, row):
    small = disks.make(1024)
    big = tmp_path / "big"
    big.mkdir()
    sim, url = await make_sim(payload_bytes=4 * MiB)
    runner = await make_runner(url, [FolderLocation("Small", small), FolderLocation("Big", big)])

    result = await runner.run("test")

    copies = {c.location: c for c in runner.catalog.copies(result.slug)}
    row.happened = f"run {result.state}; Small: {copies['Small'].state} ({copies['Small'].error}); Big: {copies['Big'].state}"
    row.nothing_lost = _stored(small) == [] and _copy_of(big, sim.archive_path(result.slug))
    assert result.state is RunState.PARTIAL
    assert copies["Small"].state is CopyState.FAILED
    assert "MiB" in copies["Small"].error and "free" in copies["Small"].error
    assert copies["Big"].state is CopyState.COMMITTED
    assert _stored(small) == []
    assert _copy_of(big, sim.archive_path(result.slug))


@pytest.mark.reliability(
    CATEGORY,
    "a folder location that fills up while the copy is being written (another program takes the space)",
    "that copy fails with a message saying the folder is full; its temp file is removed; the other folder "
    "location gets its copy",
)
async def test_folder_location_filling_up_during_the_copy(make_sim, make_runner, disks, tmp_path, row):
    small = disks.make(8 * 1024)
    big = tmp_path / "big"
    big.mkdir()
    sim, url = await make_sim(payload_bytes=4 * MiB)
    async with FaultProxy(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as proxy:
        proxy.set_bandwidth(4 * MiB)  # the download takes about a second
        runner = await make_runner(proxy.url(), [FolderLocation("Small", small), FolderLocation("Big", big)])

        async def fill_when_the_copy_starts() -> bool:
            while not any(p.stat().st_size > 0 for p in temp_files(small)):
                await asyncio.sleep(0.005)
            disks.fill(small)
            return True

        filler = asyncio.create_task(fill_when_the_copy_starts())
        result = await runner.run("test")
        filled = await asyncio.wait_for(filler, 5)

    copies = {c.location: c for c in runner.catalog.copies(result.slug)}
    error = copies["Small"].error or ""
    row.happened = f"filled: {filled}; Small: {copies['Small'].state} ({error}); Big: {copies['Big'].state}"
    row.nothing_lost = _stored(small) == [] and _copy_of(big, sim.archive_path(result.slug))
    assert copies["Small"].state is CopyState.FAILED
    assert "full" in error
    assert _stored(small) == [], "the temp file of the failed copy must be gone"
    assert copies["Big"].state is CopyState.COMMITTED
    assert _copy_of(big, sim.archive_path(result.slug))


@pytest.mark.reliability(
    CATEGORY,
    "a folder location whose disk turns read-only between two runs, then read-write again",
    "the copy fails saying the folder cannot be written; the earlier copy on that disk stays intact; the other "
    "location gets its copy; once writable again the next run succeeds",
)
async def test_folder_location_that_becomes_read_only(make_sim, make_runner, disks, tmp_path, row):
    usb = disks.make(16 * 1024)
    nas = tmp_path / "nas"
    nas.mkdir()
    _, url = await make_sim(payload_bytes=1 * MiB)
    runner = await make_runner(url, [FolderLocation("USB", usb), FolderLocation("NAS", nas)])
    first = await runner.run("test")
    assert first.state is RunState.SUCCEEDED, first.error
    before = {p: sha256_file(p) for p in _stored(usb)}

    disks.remount(usb, read_only=True)
    second = await runner.run("test")
    disks.remount(usb, read_only=False)
    third = await runner.run("test")

    copies = {c.location: c for c in runner.catalog.copies(second.slug)}
    error = copies["USB"].error or ""
    kept = all(p.exists() and sha256_file(p) == h for p, h in before.items())
    row.happened = (
        f"read-only run {second.state}: USB {copies['USB'].state} ({error}), NAS {copies['NAS'].state}; "
        f"earlier copy intact: {kept}; after remount rw: {third.state}"
    )
    row.nothing_lost = kept and temp_files(usb) == []
    assert copies["USB"].state is CopyState.FAILED
    assert "cannot be written" in error or "read-only" in error
    assert copies["NAS"].state is CopyState.COMMITTED
    assert kept
    assert third.state is RunState.SUCCEEDED, third.error
    assert temp_files(usb) == []


@pytest.fixture
def service_on(tmp_path):
    """A real service (and simulator) for the disks of this file; stopped at the end."""
    started: list[Service | Simulator] = []

    def make(*, data: Path, backup_dir: Path, sim: Simulator, locations: list[dict]) -> Service:
        data.mkdir(parents=True, exist_ok=True)
        (data / "options.json").write_text(json.dumps({"schedules": [], "locations": locations}))
        service = Service(sim.url, data, backup_dir)
        started.append(service)
        return service.start().wait_ready()

    yield make
    for thing in reversed(started):
        thing.stop()


@pytest.mark.reliability(
    CATEGORY,
    "the add-on's own /data (catalog, keys) full when 'back up now' is pressed; then space is freed",
    "the backup fails with a message that the add-on's storage is full; the service keeps running; the catalog "
    "passes its integrity check; after freeing space the next backup succeeds",
)
def test_data_disk_full(disks, service_on, tmp_path, row):
    data = disks.make(4 * 1024)
    usb = tmp_path / "usb"
    usb.mkdir()
    with Simulator(tmp_path / "supervisor", payload_mib=1, stage_delay=0.01) as sim:
        service = service_on(data=data, backup_dir=sim.backup_dir, sim=sim,
                             locations=[{"name": "USB", "kind": "folder", "path": str(usb)}])
        after = last_run_id(data)
        service.backup_now()
        assert [r["state"] for r in wait_idle(data, after) if r["kind"] == "backup"] == ["succeeded"]
        known = sim.slugs()

        filler = disks.fill(data)
        after = last_run_id(data)
        answer = ""
        try:
            service.backup_now()
            answer = "202 started"
        except urllib.error.HTTPError as err:
            answer = f"{err.code} {err.read().decode(errors='replace')}"
        # Whatever the add-on does with a full /data, give it the time of a run.
        time.sleep(2.0)
        log = service.output()
        alive = service.alive
        words = ("disk is full", "no space", "storage is full", "is full")
        said = [line for line in (answer + "\n" + log).splitlines() if any(w in line.lower() for w in words)]
        # Said by the add-on itself, to the user: in its answer to the panel, or in a log line of its own
        # (not in asyncio's report of a task that died with an exception).
        said_clearly = [
            line for line in said if line == answer or ("(backup_addon" in line and "Traceback" not in line)
        ]
        tracebacks = log.count("Traceback")

        filler.unlink()
        healthy_after = service.alive
        if not service.alive:
            service.start().wait_ready()
        after = last_run_id(data)
        service.backup_now()
        next_runs = wait_idle(data, after)
        service.stop()
        problems = nothing_lost(data, {"USB": usb}, sim.archives(), sim.slugs(), known)

    row.happened = (
        f"'back up now' answered: {answer[:160]!r}; first message about it: {said[0][:200] if said else None!r}; "
        f"tracebacks in the log: {tracebacks}; "
        "service alive while full: "
        f"{alive}, after: {healthy_after}; next backup after freeing space: "
        f"{', '.join(r['kind'] + ' ' + r['state'] for r in next_runs)}; problems: {problems or 'none'}"
    )
    row.nothing_lost = not problems
    assert said_clearly, f"the add-on does not say /data is full; answer {answer!r}, log:\n{log[-3000:]}"
    assert tracebacks == 0, f"a full /data must not end in a traceback:\n{log[-3000:]}"
    assert alive, "the service must survive a full /data"
    assert not problems
    assert [r["state"] for r in next_runs if r["kind"] == "backup"] == ["succeeded"]


@pytest.mark.reliability(
    CATEGORY,
    "the Supervisor reports its disk full while making the backup (simulator knob disk_full), then recovers",
    "the run fails with the Supervisor's 'No space left on device'; no copy is written anywhere; the next run succeeds",
)
async def test_supervisor_disk_full_knob(make_sim, make_runner, tmp_path, row):
    usb = tmp_path / "usb"
    usb.mkdir()
    sim, url = await make_sim(payload_bytes=1 * MiB)
    runner = await make_runner(url, [FolderLocation("USB", usb)])
    sim.faults = sim.faults.updated({"disk_full": True})
    failed = await runner.run("test")
    sim.faults = sim.faults.updated({"disk_full": False})
    nothing_written = _stored(usb) == []
    recovered = await runner.run("test")

    row.happened = f"run {failed.state}: {failed.error!r}; nothing written: {nothing_written}; next run {recovered.state}"
    row.nothing_lost = nothing_written and _copy_of(usb, sim.archive_path(recovered.slug))
    assert failed.state is RunState.FAILED
    assert "No space left on device" in (failed.error or "")
    assert nothing_written
    assert recovered.state is RunState.SUCCEEDED, recovered.error


@pytest.mark.reliability(
    CATEGORY,
    "the Supervisor's /backup is a real 1 MiB disk, for a 4 MiB backup; then it is grown to 64 MiB",
    "the run fails with a clear message (no 'unexpected error'), nothing is copied, the service keeps running; "
    "after the disk is grown the next backup succeeds",
)
def test_supervisor_backup_folder_too_small(disks, service_on, tmp_path, row):
    root = tmp_path / "supervisor"
    backup = disks.make(1024, where=root / "backup")
    usb = tmp_path / "usb"
    usb.mkdir()
    data = tmp_path / "data"
    with Simulator(root, payload_mib=4, stage_delay=0.01) as sim:
        service = service_on(data=data, backup_dir=backup, sim=sim,
                             locations=[{"name": "USB", "kind": "folder", "path": str(usb)}])
        after = last_run_id(data)
        service.backup_now()
        failed = [r for r in wait_idle(data, after) if r["kind"] == "backup"]
        nothing_copied = _stored(usb) == []
        leftovers = sorted(p.name for p in backup.iterdir())
        subprocess_remount(backup, 64 * 1024)
        after = last_run_id(data)
        service.backup_now()
        next_runs = [r for r in wait_idle(data, after) if r["kind"] == "backup"]
        alive = service.alive

    error = failed[0]["error"] if failed else ""
    row.happened = (
        f"run {failed[0]['state'] if failed else '?'}: {error!r}; copied nothing: {nothing_copied}; files left in "
        f"/backup: {leftovers}; next run after growing the disk: {[r['state'] for r in next_runs]}"
    )
    row.nothing_lost = nothing_copied
    assert failed and failed[0]["state"] == "failed"
    assert error and "unexpected error" not in error
    assert nothing_copied
    assert alive
    assert [r["state"] for r in next_runs] == ["succeeded"]


def subprocess_remount(target: Path, size_kib: int) -> None:
    import subprocess

    subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(target)], check=True)
    assert os.statvfs(target).f_blocks * os.statvfs(target).f_frsize >= size_kib * 1024 // 2
