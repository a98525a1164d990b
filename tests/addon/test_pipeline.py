"""A backup run end to end against the simulated Supervisor, including its faults."""

import json

import pytest

from backup_addon.catalog import CopyState, RunState
from backup_addon.options import BackupType
from backup_addon.pipeline import RunInProgress
from supervisor_sim import Faults

from .conftest import sha256_file


def folders(tmp_path, *names):
    result = {}
    for name in names:
        path = tmp_path / "locations" / name
        path.mkdir(parents=True)
        result[name] = path
    return result


def stored_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("local_file", [True, False], ids=["from-backup-folder", "from-download"])
async def test_full_backup_lands_in_every_folder_identical_to_the_supervisors_archive(
    sim, make_runner, tmp_path, local_file
):
    locs = folders(tmp_path, "usb", "nas")
    runner = await make_runner(locs, local_file=local_file)
    result = await runner.run("test")

    assert result.state is RunState.SUCCEEDED, result.error
    archive = sim.archive_path(result.slug)
    expected = sha256_file(archive)
    assert result.sha256 == expected
    for path in locs.values():
        (copy,) = stored_files(path)
        assert sha256_file(copy) == expected
        assert copy.name.endswith(f"_{result.slug}.tar")
        assert copy.parent.parent.name == "backup_321"
    copies = {c.location: c for c in runner.catalog.copies(result.slug)}
    assert {name: c.state for name, c in copies.items()} == {
        ".local": CopyState.COMMITTED,
        "usb": CopyState.COMMITTED,
        "nas": CopyState.COMMITTED,
    }
    assert copies["usb"].sha256 == expected


async def test_the_supervisor_is_asked_for_what_the_options_say(sim, make_runner, tmp_path):
    runner = await make_runner(
        {},
        options={
            "include_homeassistant": False,
            "include_addons": ["core_mosquitto"],
            "include_folders": ["ssl"],
            "supervisor_locations": ["NAS"],
        },
    )
    result = await runner.run("test", runner.default_backup(BackupType.PARTIAL))

    assert result.state is RunState.SUCCEEDED, result.error
    backup = sim.backups[result.slug]
    assert backup.data["type"] == "partial"
    assert backup.data["homeassistant"] is None
    assert [a["slug"] for a in backup.data["addons"]] == ["core_mosquitto"]
    assert backup.data["folders"] == ["ssl"]
    assert backup.data["extra"]["created_by"] == "backup_321"
    assert sorted(backup.locations, key=str) == sorted([None, "NAS"], key=str)
    assert {c.location: c.state for c in runner.catalog.copies(result.slug)} == {
        ".local": CopyState.COMMITTED,
        "NAS": CopyState.COMMITTED,
    }


async def test_one_missing_folder_does_not_stop_the_other(sim, make_runner, tmp_path):
    locs = folders(tmp_path, "good")
    locs["unplugged"] = tmp_path / "locations" / "unplugged"
    runner = await make_runner(locs)
    result = await runner.run("test")

    assert result.state is RunState.PARTIAL
    by_name = {c.location: c for c in result.copies}
    assert by_name["good"].ok
    assert not by_name["unplugged"].ok
    assert "does not exist" in by_name["unplugged"].error
    assert len(stored_files(locs["good"])) == 1
    assert not locs["unplugged"].exists()
    assert runner.catalog.run(result.run_id).state is RunState.PARTIAL


async def test_full_folder_fails_alone_and_leaves_no_partial_file(sim, make_runner, tmp_path, tmpfs):
    sim.config.payload_bytes = 3 << 20
    locs = folders(tmp_path, "good")
    locs["tiny"] = tmpfs(size_mib=2)
    runner = await make_runner(locs)
    result = await runner.run("test")

    by_name = {c.location: c for c in result.copies}
    assert by_name["good"].ok
    assert not by_name["tiny"].ok
    assert "MiB are free" in by_name["tiny"].error
    assert stored_files(locs["tiny"]) == []


async def test_read_only_folder_fails_alone(sim, make_runner, tmp_path, tmpfs):
    locs = folders(tmp_path, "good")
    locs["ro"] = tmpfs(size_mib=64, read_only=True)
    runner = await make_runner(locs)
    result = await runner.run("test")

    by_name = {c.location: c for c in result.copies}
    assert by_name["good"].ok
    assert "cannot be written" in by_name["ro"].error


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "rejected the add-on's token"),
        (403, "denied the add-on access"),
        (500, "The Supervisor failed while starting the backup"),
    ],
)
async def test_supervisor_refusing_the_backup_fails_the_run_clearly(sim, make_runner, tmp_path, status, expected):
    locs = folders(tmp_path, "usb")
    sim.faults = Faults(stage_delay=0.01, http_status={"^/backups/new/": status})
    runner = await make_runner(locs)
    result = await runner.run("test")

    assert result.state is RunState.FAILED
    assert expected in result.error
    assert stored_files(locs["usb"]) == []
    assert runner.catalog.run(result.run_id).error == result.error


async def test_wrong_token_is_reported(sim, make_runner, tmp_path):
    runner = await make_runner({}, token="wrong")
    result = await runner.run("test")
    assert result.state is RunState.FAILED
    assert "did not accept the add-on's token" in result.error


async def test_supervisor_that_does_not_answer_times_out(sim, make_runner):
    sim.faults = Faults(stage_delay=0.01, hang="^/backups/new/")
    runner = await make_runner({}, request_timeout=0.3)
    result = await runner.run("test")
    assert result.state is RunState.FAILED
    assert "did not answer in time while starting the backup" in result.error


async def test_failed_job_fails_the_run_with_the_supervisors_reason(sim, make_runner, tmp_path):
    locs = folders(tmp_path, "usb")
    sim.faults = Faults(stage_delay=0.01, disk_full=True)
    runner = await make_runner(locs)
    result = await runner.run("test")

    assert result.state is RunState.FAILED
    assert "No space left on device" in result.error
    assert stored_files(locs["usb"]) == []


async def test_job_failure_without_details(sim, make_runner):
    sim.faults = Faults(stage_delay=0.01, fail_job=True)
    runner = await make_runner({})
    result = await runner.run("test")
    assert result.state is RunState.FAILED
    assert result.error.startswith("The Supervisor could not make the backup")


async def test_child_job_errors_are_kept_as_warnings(sim, make_runner, tmp_path):
    locs = folders(tmp_path, "usb")
    sim.faults = Faults(stage_delay=0.01, child_job_error=True)
    runner = await make_runner(locs)
    result = await runner.run("test")

    assert result.state is RunState.SUCCEEDED
    assert result.warnings
    assert len(stored_files(locs["usb"])) == 1
    details = json.loads(runner.catalog._db.execute("SELECT details FROM backups").fetchone()[0])
    assert details["warnings"] == result.warnings


async def test_download_cut_off_half_way_commits_nothing(sim, make_runner, tmp_path):
    locs = folders(tmp_path, "usb", "nas")
    sim.faults = Faults(stage_delay=0.01, drop_download_after=20_000)
    runner = await make_runner(locs, local_file=False)
    result = await runner.run("test")

    assert result.state is RunState.PARTIAL  # the Supervisor's own copy exists
    for name in ("usb", "nas"):
        copy = next(c for c in result.copies if c.location == name)
        assert not copy.ok
        assert "cut off" in copy.error or "incomplete" in copy.error
        assert stored_files(locs[name]) == []


async def test_stalled_download_is_abandoned(sim, make_runner, tmp_path):
    locs = folders(tmp_path, "usb")
    sim.faults = Faults(stage_delay=0.01, stall_download_after=20_000)
    runner = await make_runner(locs, local_file=False, stall_timeout=0.5)
    result = await runner.run("test")

    copy = next(c for c in result.copies if c.location == "usb")
    assert "stalled" in copy.error
    assert stored_files(locs["usb"]) == []


async def test_unknown_network_storage_fails_alone(sim, make_runner, tmp_path):
    locs = folders(tmp_path, "usb")
    runner = await make_runner(locs, options={"supervisor_locations": ["Nope"]})
    result = await runner.run("test")

    assert result.state is RunState.PARTIAL
    by_name = {c.location: c for c in result.copies}
    assert by_name[".local"].ok and by_name["usb"].ok
    assert not by_name["Nope"].ok
    assert "network storage 'Nope' cannot take backups now" in by_name["Nope"].error
    assert "Settings > System > Storage" in by_name["Nope"].error


async def test_network_storage_that_is_down_fails_alone(sim, make_runner):
    sim.faults = Faults(stage_delay=0.01, mounts_down=["NAS"])
    runner = await make_runner({}, options={"supervisor_locations": ["NAS"]})
    result = await runner.run("test")

    assert result.state is RunState.PARTIAL
    assert sim.backups[result.slug].locations == [None]
    nas = next(c for c in result.copies if c.location == "NAS")
    assert "is down" in nas.error
    assert {c.location: c.state for c in runner.catalog.copies(result.slug)}["NAS"] == "failed"


async def test_second_run_while_one_is_running_is_refused(sim, make_runner):
    import asyncio

    sim.faults = Faults(stage_delay=0.2)
    runner = await make_runner({})
    first = asyncio.create_task(runner.run("test"))
    await asyncio.sleep(0.05)
    with pytest.raises(RunInProgress):
        await runner.run("test")
    assert (await first).state is RunState.SUCCEEDED


async def test_next_run_succeeds_after_a_failed_one(sim, make_runner, tmp_path):
    locs = folders(tmp_path, "usb")
    sim.faults = Faults(stage_delay=0.01, drop_download_after=10_000)
    runner = await make_runner(locs, local_file=False)
    assert (await runner.run("test")).state is RunState.PARTIAL
    sim.faults = Faults(stage_delay=0.01)
    result = await runner.run("test")
    assert result.state is RunState.SUCCEEDED
    assert len(stored_files(locs["usb"])) == 1


async def test_a_run_records_how_long_each_stage_took_and_how_fast_each_copy_went(sim, make_runner, tmp_path):
    runner = await make_runner(folders(tmp_path, "usb", "nas"))
    result = await runner.run("test")

    details = runner.catalog.run(result.run_id).details
    assert {"requesting", "supervisor backup", "copying", "checking"} <= set(details["durations"])
    assert all(seconds >= 0 for seconds in details["durations"].values())
    assert details["size_bytes"] == result.size
    assert set(details["throughput"]) == {"usb", "nas"}
    assert all(speed > 0 for speed in details["throughput"].values())
