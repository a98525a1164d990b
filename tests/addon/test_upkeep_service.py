"""The running add-on between backups: proofs, Home Assistant reporting, commands, other backups."""

import asyncio
import os
from datetime import datetime, timedelta

import aiohttp
import pytest

from backup_addon import upkeep
from backup_addon.catalog import CopyState, Origin, ProofLevel, RunState
from backup_addon.options import parse_options
from backup_addon.reporting import (
    ENTITY_LAST_BACKUP,
    ENTITY_STATUS,
    NOTIFY_BACKUP_FAILED,
    NOTIFY_COPY_CORRUPT,
    NOTIFY_KIT_NOT_SAVED,
    NOTIFY_OTHER_BACKUP_FAILED,
)
from backup_addon.service import Addon
from supervisor_sim.restore import restores

from .conftest import settings_for


@pytest.fixture
async def make_addon(sim_url, tmp_path):
    made = []

    async def make(nas_offsite=False, nas_window=None, **extra):
        folders = {"USB": tmp_path / "usb", "NAS": tmp_path / "nas"}
        for path in folders.values():
            path.mkdir(exist_ok=True)
        settings = settings_for(sim_url, tmp_path)
        locations = [{"name": n, "kind": "folder", "path": str(p)} for n, p in folders.items()]
        locations[1]["offsite"] = nas_offsite
        if nas_window:
            locations[1]["upload_window"] = nas_window
        raw = {"locations": locations, **extra}
        addon = Addon(settings, parse_options(raw))
        await addon.start(schedule=False, web_server=False, upkeep_loop=False)
        made.append(addon)
        return addon, folders

    yield make
    for addon in made:
        await addon.stop()


def copy_file(addon, slug, location, folder):
    copy = addon.catalog.copy(slug, location)
    return folder / copy.key


def flip_byte(path, offset):
    with path.open("r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([value ^ 0x01]))


def events(sim, event_type):
    return [c.body for c in sim.core_calls if c.path == f"/core/api/events/{event_type}"]


async def test_a_backup_is_checked_after_writing_and_proven_by_a_drill(make_addon, sim):
    addon, _ = await make_addon()
    result = await addon.backup("test")
    assert result.state is RunState.SUCCEEDED, result.error
    assert {c.location: c.level for c in addon.catalog.copies(result.slug)} == {
        ".local": ProofLevel.CHECKED,
        "USB": ProofLevel.CHECKED,
        "NAS": ProofLevel.CHECKED,
    }

    checked = await addon.check_copies(limit=10)

    assert checked == 3  # a restore test of the newest copy in each readable place
    levels = {c.location: (c.level, c.drilled_at is not None) for c in addon.catalog.copies(result.slug)}
    assert levels == dict.fromkeys((".local", "USB", "NAS"), (ProofLevel.DRILLED, True))
    assert sorted(e["location"] for e in events(sim, "backup_321_copy_verified")) == [".local", "NAS", "USB"]
    health = {h.name: h for h in addon.location_health()}
    assert all(health[name].last_restorable_at is not None for name in (".local", "USB", "NAS"))
    await addon.publish()
    assert sim.core.states["sensor.backup_321_usb_last_proven"]["state"] != "unknown"
    verdict = addon.verdict()
    assert (verdict.copies, verdict.offsite) == (3, 0)
    assert not verdict.met
    assert any("off-site" in line for line in verdict.missing)


async def test_a_flipped_byte_is_found_and_the_copy_no_longer_counts(make_addon, sim):
    addon, folders = await make_addon()
    result = await addon.backup("test")
    path = copy_file(addon, result.slug, "USB", folders["USB"])
    flip_byte(path, path.stat().st_size // 2)

    outcome = await addon.verify_copy(result.slug, "USB")

    assert outcome["ok"] is False
    assert "damaged" in outcome["error"] or "differs" in outcome["error"]
    assert addon.catalog.copy(result.slug, "USB").state is CopyState.BAD
    assert addon.verdict().copies == 2
    facts = upkeep.copy_facts(addon.catalog, addon.places)
    assert ("USB", result.slug) not in {(f.location, f.slug) for f in facts}  # retention can't lean on it
    [failed] = events(sim, "backup_321_copy_failed")
    assert failed["location"] == "USB"
    await addon.publish()
    assert NOTIFY_COPY_CORRUPT in sim.core.notifications
    assert "USB" in sim.core.notifications[NOTIFY_COPY_CORRUPT]["message"]


async def test_a_truncated_copy_is_found(make_addon):
    addon, folders = await make_addon()
    result = await addon.backup("test")
    path = copy_file(addon, result.slug, "NAS", folders["NAS"])
    os.truncate(path, path.stat().st_size - 1000)

    outcome = await addon.verify_copy(result.slug, "NAS", drill=True)

    assert outcome["ok"] is False
    assert addon.catalog.copy(result.slug, "NAS").state is CopyState.BAD


async def test_a_failed_backup_is_notified_and_the_notice_goes_when_a_backup_works(make_addon, sim):
    addon, _ = await make_addon()
    sim.faults = sim.faults.updated({"fail_job": True})
    failed = await addon.backup("schedule")
    assert failed.state is RunState.FAILED
    assert NOTIFY_BACKUP_FAILED in sim.core.notifications
    assert NOTIFY_KIT_NOT_SAVED in sim.core.notifications
    [event] = events(sim, "backup_321_backup_failed")
    assert event["run_id"] == failed.run_id and event["error"]

    sim.faults = sim.faults.updated({"fail_job": False})
    addon.confirm_kit()
    worked = await addon.backup("schedule")

    assert worked.state is RunState.SUCCEEDED
    assert NOTIFY_BACKUP_FAILED not in sim.core.notifications
    assert NOTIFY_KIT_NOT_SAVED not in sim.core.notifications
    [completed] = events(sim, "backup_321_backup_completed")
    assert completed["slug"] == worked.slug
    assert sorted(completed["locations"]) == [".local", "NAS", "USB"]
    assert sim.core.states[ENTITY_LAST_BACKUP]["state"] != "unknown"


async def test_sensors_come_back_after_home_assistant_restarts(make_addon, sim):
    addon, _ = await make_addon()
    await addon.backup("test")
    assert ENTITY_STATUS in sim.core.states

    sim.core.restart()
    assert sim.core.states == {}
    await addon.publish()

    assert ENTITY_STATUS in sim.core.states
    assert sim.core.states[ENTITY_STATUS]["attributes"]["copies"] == 3


async def test_commands_from_automations_start_backups_and_bad_lines_are_skipped(make_addon, tmp_path, sim):
    addon, _ = await make_addon()
    fifo = tmp_path / "commands"
    addon.start_commands(fifo)
    await asyncio.sleep(0.1)
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"not json at all\n")
        os.write(fd, b'{"command": "explode"}\n')
        os.write(fd, b'{"command": "backup", "type": "partial", "homeassistant": true, "name": "From automation"}\n')
    finally:
        os.close(fd)
    for _ in range(400):
        backups = addon.catalog.backups()
        runs = addon.catalog.recent_runs(5, kind="backup")
        if backups and runs and runs[0].state is not RunState.RUNNING:
            break
        await asyncio.sleep(0.05)
    [backup] = addon.catalog.backups()
    assert backup.name == "From automation"
    assert backup.type == "partial"
    assert addon.catalog.recent_runs(1)[0].trigger == "automation"


async def test_home_assistants_own_backups_are_mirrored_when_asked(make_addon, sim, sim_url, aiohttp_client):
    addon, folders = await make_addon(other_backups="mirror")

    async with aiohttp.ClientSession() as session:
        answer = await session.post(f"{sim_url}/_sim/others/backup", json={"kind": "automatic"})
        assert answer.status == 200, await answer.text()
    for _ in range(200):
        if any(b.data.get("extra", {}).get("with_automatic_settings") for b in sim.backups.values()):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)

    mirrored = await addon.sync_other_backups()

    assert mirrored == 1
    [backup] = addon.catalog.backups()
    assert backup.origin is Origin.HOMEASSISTANT
    states = {c.location: c.state for c in addon.catalog.copies(backup.slug)}
    assert states["USB"] is CopyState.COMMITTED and states["NAS"] is CopyState.COMMITTED
    assert list(folders["USB"].rglob(f"*{backup.slug}.tar.age"))
    assert await addon.sync_other_backups() == 0  # seen once, copied once


async def test_home_assistants_backup_leaves_the_device_once_an_offsite_copy_is_proven(make_addon, sim, sim_url):
    # Only an off-site copy may stand in for the one on the device.
    addon, folders = await make_addon(other_backups="mirror_and_remove_local", nas_offsite=True)
    async with aiohttp.ClientSession() as session:
        answer = await session.post(f"{sim_url}/_sim/others/backup", json={"kind": "manual"})
        assert answer.status == 200, await answer.text()
    for _ in range(200):
        if sim.backups and not addon.runner.running:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    [slug] = list(sim.backups)

    await addon.sync_other_backups()

    assert slug not in sim.backups  # gone from the device
    copies = {c.location: c for c in addon.catalog.copies(slug)}
    assert copies[".local"].state is CopyState.DELETED
    assert copies["NAS"].state is CopyState.COMMITTED and copies["NAS"].level >= ProofLevel.SCRUBBED
    assert list(folders["NAS"].rglob(f"*{slug}.tar.age"))


async def start_home_assistant_backup(sim_url, kind="automatic"):
    async with aiohttp.ClientSession() as session:
        answer = await session.post(f"{sim_url}/_sim/others/backup", json={"kind": kind})
        assert answer.status == 200, await answer.text()
        return (await answer.json())["job_id"]


async def wait_job_done(sim, job_id):
    for _ in range(200):
        job = sim.jobs.get(job_id)
        if job is not None and job.done:
            return
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


async def test_a_failed_home_assistant_backup_is_notified_until_one_works(make_addon, sim, sim_url):
    addon, _ = await make_addon()
    sim.faults = sim.faults.updated({"fail_job": True})
    await wait_job_done(sim, await start_home_assistant_backup(sim_url))

    await addon.sync_other_backups()
    await addon.publish()

    assert NOTIFY_OTHER_BACKUP_FAILED in sim.core.notifications
    assert "Home Assistant started itself" in sim.core.notifications[NOTIFY_OTHER_BACKUP_FAILED]["message"]
    assert addon.catalog.recent_runs() == []  # not one of ours

    sim.faults = sim.faults.updated({"fail_job": False})
    await wait_job_done(sim, await start_home_assistant_backup(sim_url))
    await addon.sync_other_backups()
    await addon.publish()

    assert NOTIFY_OTHER_BACKUP_FAILED not in sim.core.notifications


async def test_a_restore_from_a_location_reports_its_stages_and_reaches_the_supervisor(make_addon, sim):
    addon, _ = await make_addon()
    made = await addon.backup("test")
    events_seen = []
    listener = addon.subscribe()
    collector = asyncio.create_task(_collect(listener, events_seen))
    await addon.gateway.remove_backup(made.slug)  # Home Assistant lost it: only the USB copy is left

    outcome = await addon.restore(made.slug, "USB", {"homeassistant": True})

    await asyncio.sleep(0.05)  # let the listener take what is queued
    collector.cancel()
    assert outcome["ok"] and outcome["uploaded"] and not outcome["full"]
    [record] = restores(sim).records
    assert record.ok and record.homeassistant and record.slug == outcome["slug"]
    run = addon.catalog.recent_runs(1, kind="restore")[0]
    assert run.state is RunState.SUCCEEDED
    stages = [e["stage"] for e in events_seen if e["type"] == "restore"]
    assert "uploading" in stages and stages[-1] == "done"


async def _collect(stream, into):
    async for event in stream:
        into.append(event)


async def test_a_location_that_missed_the_backup_gets_its_copy_when_it_is_back(make_addon, sim, tmp_path):
    addon, folders = await make_addon()
    folders["NAS"].rmdir()  # the NAS share is not mounted tonight
    made = await addon.backup("schedule")
    assert made.state is RunState.PARTIAL
    assert addon.catalog.copy(made.slug, "NAS").state is CopyState.FAILED

    assert await addon.complete_copies() == ["NAS"]  # still down: tried, fails again
    assert addon.catalog.copy(made.slug, "NAS").state is CopyState.FAILED
    assert await addon.complete_copies() == []  # not again within the hour

    folders["NAS"].mkdir()
    addon._completion_tries.clear()  # an hour later
    assert await addon.complete_copies() == ["NAS"]

    copy = addon.catalog.copy(made.slug, "NAS")
    assert copy.state is CopyState.COMMITTED and copy.level >= ProofLevel.CHECKED
    assert list(folders["NAS"].rglob(f"*{made.slug}.tar.age"))
    assert addon.catalog.copy(made.slug, "USB").state is CopyState.COMMITTED  # untouched
    assert addon.catalog.backup(made.slug).details.get("key_id")  # the backup's record kept its key id


async def test_a_location_outside_its_upload_hours_waits_for_them(make_addon, sim):
    now = datetime.now().astimezone()
    closed = f"{(now + timedelta(hours=2)):%H}:00-{(now + timedelta(hours=3)):%H}:00"
    addon, folders = await make_addon(nas_window=closed)
    made = await addon.backup("schedule")
    assert "upload window" in addon.catalog.copy(made.slug, "NAS").error

    assert await addon.complete_copies() == []
    assert not list(folders["NAS"].rglob("*.tar*"))


async def test_a_restore_that_restarted_the_add_on_is_recorded_as_it_ended(make_addon, sim):
    addon, _ = await make_addon()
    made = await addon.backup("test")
    run_id = addon.catalog.start_run("panel", "restore")
    addon.catalog.set_stage(run_id, "restoring:home_assistant", slug=made.slug)
    job_id = await addon.gateway.restore(made.slug, password=addon.keys.current)
    for _ in range(200):
        job = await addon.gateway.find_job(job_id)
        if job is not None and job.done:
            break
        await asyncio.sleep(0.05)
    await addon.stop()  # the Supervisor restarted the add-on in the middle of the restore

    again, _ = await make_addon()
    for _ in range(100):
        if again.catalog.run(run_id).state is not RunState.FAILED:
            break
        await asyncio.sleep(0.05)

    assert again.catalog.run(run_id).state is RunState.SUCCEEDED


async def test_sensors_of_a_removed_location_leave_home_assistant(make_addon, sim, sim_url, tmp_path):
    addon, _ = await make_addon()
    await addon.backup("test")
    assert "sensor.backup_321_nas_last_copy" in sim.core.states
    await addon.stop()

    settings = settings_for(sim_url, tmp_path)
    only_usb = parse_options({"locations": [{"name": "USB", "kind": "folder", "path": str(tmp_path / "usb")}]})
    again = Addon(settings, only_usb)
    await again.start(schedule=False, web_server=False, upkeep_loop=False)
    try:
        await again.publish()
    finally:
        await again.stop()

    assert "sensor.backup_321_nas_last_copy" not in sim.core.states
    assert "sensor.backup_321_nas_last_proven" not in sim.core.states
    assert "sensor.backup_321_usb_last_copy" in sim.core.states
    assert "sensor.backup_321_status" in sim.core.states


async def test_a_new_install_with_the_key_and_the_same_location_finds_every_backup(make_addon, sim, sim_url, tmp_path):
    old, _ = await make_addon()
    made = [await old.backup("test") for _ in range(2)]
    key, instance = old.keys.current, old.catalog.instance_id()
    await old.stop()

    fresh = tmp_path / "new-device"
    settings = settings_for(sim_url, fresh)
    options = parse_options(
        {"encryption_key": key, "locations": [{"name": "USB", "kind": "folder", "path": str(tmp_path / "usb")}]}
    )
    new = Addon(settings, options)
    await new.start(schedule=False, web_server=False, upkeep_loop=False)
    try:
        for _ in range(100):
            if len(new.catalog.backups()) >= 2:
                break
            await asyncio.sleep(0.05)
        found = {b.slug: b for b in new.catalog.backups()}
        assert set(found) >= {r.slug for r in made}
        for result in made:
            assert found[result.slug].sha256 == result.sha256
            assert new.catalog.copy(result.slug, "USB").state is CopyState.COMMITTED
        assert new.catalog.instance_id() == instance  # keeps writing where the old install did
        proof = await new.verify_copy(made[0].slug, "USB", drill=True)
        assert proof["ok"], proof
    finally:
        await new.stop()
