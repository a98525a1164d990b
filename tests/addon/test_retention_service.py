"""Retention in the running add-on: a week of nightly backups over two folders and the Supervisor."""

from datetime import UTC, datetime, timedelta

import pytest

from backup_addon.catalog import CopyState, RunState
from backup_addon.options import parse_options
from backup_addon.service import Addon

from .conftest import settings_for

FIRST_NIGHT = datetime(2026, 11, 1, 3, 45, tzinfo=UTC)


@pytest.fixture
async def week_addon(sim, sim_url, tmp_path):
    folders = {"USB": tmp_path / "usb", "NAS": tmp_path / "nas"}
    for path in folders.values():
        path.mkdir()
    settings = settings_for(sim_url, tmp_path)
    options = parse_options(
        {"locations": [{"name": n, "kind": "folder", "path": str(p)} for n, p in folders.items()], "keep_last": 3}
    )
    addon = Addon(settings, options)
    await addon.start(schedule=False, web_server=False, upkeep_loop=False)
    yield addon, folders
    await addon.stop()


async def night(addon, sim, day):
    """Make the backup of the given night, with both clocks moved there."""
    moment = FIRST_NIGHT + timedelta(days=day)
    sim.faults = sim.faults.updated({"clock_offset": (moment - datetime.now(UTC)).total_seconds()})
    addon.clock = lambda: moment + timedelta(minutes=5)
    return await addon.backup("schedule")


def files_in(folder):
    return sorted(p.name for p in folder.rglob("*.tar*") if not p.name.endswith(".meta.age"))


def committed(addon, location):
    return {c.slug for c in addon.catalog.copies() if c.location == location and c.state is CopyState.COMMITTED}


async def test_a_week_of_nightly_backups_keeps_the_last_three_everywhere(week_addon, sim):
    addon, folders = week_addon
    slugs = []
    for day in range(7):
        result = await night(addon, sim, day)
        assert result.state is RunState.SUCCEEDED, result.error
        slugs.append(result.slug)

    newest = set(slugs[-3:])
    for place in (".local", "USB", "NAS"):
        assert committed(addon, place) == newest, place
    assert set(sim.backups) == newest
    for folder in folders.values():
        assert len(files_in(folder)) == 3
        assert all(any(slug in name for slug in newest) for name in files_in(folder))
    pruned = addon.catalog.recent_runs(50, kind="prune")
    assert pruned and all(r.state is RunState.SUCCEEDED for r in pruned)


async def test_a_failed_backup_deletes_nothing(week_addon, sim):
    addon, folders = week_addon
    for day in range(3):
        assert (await night(addon, sim, day)).state is RunState.SUCCEEDED
    before = {place: committed(addon, place) for place in (".local", "USB", "NAS")}

    sim.faults = sim.faults.updated({"fail_job": True})
    moment = FIRST_NIGHT + timedelta(days=30)
    addon.clock = lambda: moment
    result = await addon.backup("schedule")

    assert result.state is RunState.FAILED
    assert {place: committed(addon, place) for place in (".local", "USB", "NAS")} == before
    assert all(len(files_in(folder)) == 3 for folder in folders.values())
    assert addon.retention_dry_run().held is not None


async def test_a_clock_that_jumped_back_deletes_nothing(week_addon, sim):
    addon, _ = week_addon
    for day in range(4):
        assert (await night(addon, sim, day)).state is RunState.SUCCEEDED
    kept = committed(addon, "USB")

    addon.clock = lambda: FIRST_NIGHT - timedelta(days=100)
    plan = await addon.prune(last_run_succeeded=True)

    assert plan.held is not None
    assert committed(addon, "USB") == kept


async def test_pinned_backups_survive_retention(week_addon, sim):
    addon, _ = week_addon
    first = await night(addon, sim, 0)
    addon.set_pinned(first.slug, True)
    for day in range(1, 6):
        assert (await night(addon, sim, day)).state is RunState.SUCCEEDED

    assert first.slug in committed(addon, "USB")
    assert first.slug in committed(addon, ".local")
    assert len(committed(addon, "USB")) == 4
