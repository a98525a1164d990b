"""Load: a catalog of years of backups, and many runs in a row through one service process."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_addon.catalog import Catalog, RunState

from .harness import Service, Simulator, last_run_id, wait_idle

CATEGORY = "load"
BACKUPS = 2000
LOCATIONS = ["USB", "NAS", "Attic", "Office", "Cloud"]
RUNS_IN_A_ROW = 20
RSS_LIMIT_MIB = 150
SANITY_SECONDS = 1.0


def fill_catalog(path: Path) -> float:
    """2000 backups, each with a run and a copy in each of 5 locations, through Catalog's public methods."""
    started = time.monotonic()
    catalog = Catalog(path)
    first = datetime.now(UTC) - timedelta(days=BACKUPS)
    try:
        for n in range(BACKUPS):
            run_id = catalog.start_run("schedule")
            slug = f"{n:08x}"
            catalog.record_backup(slug=slug, run_id=run_id, name=f"3-2-1 Backup {n}", type="full",
                                  created_at=first + timedelta(days=n), size_bytes=1 << 20)
            catalog.set_backup_hash(slug, 1 << 20, f"{n:064x}")
            for index, location in enumerate(LOCATIONS):
                key = f"backup_321/abc/{slug}.tar.age"
                catalog.copy_started(slug, location, "folder", key)
                if (n + index) % 97 == 0:
                    catalog.copy_failed(slug, location, "the disk was not connected")
                else:
                    catalog.copy_committed(slug, location, 1 << 20, None)
            catalog.finish_run(run_id, RunState.SUCCEEDED)
    finally:
        catalog.close()
    return time.monotonic() - started


@pytest.fixture(scope="module")
def big_installation(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    data = root / "data"
    data.mkdir()
    fill_seconds = fill_catalog(data / "catalog.sqlite3")
    locations = []
    for name in LOCATIONS:
        (root / name).mkdir()
        locations.append({"name": name, "kind": "folder", "path": str(root / name)})
    # Nothing is due: no schedule, proofs and retention far off, so the service only serves the panel.
    options = {"schedules": [], "scrub_days": 0, "drill_days": 0, "keep_last": 0, "locations": locations}
    (data / "options.json").write_text(json.dumps(options))
    return root, data, fill_seconds


@pytest.mark.reliability(
    CATEGORY,
    f"a catalog of {BACKUPS} backups x {len(LOCATIONS)} locations (with runs), filled through Catalog's public "
    "methods; the queries the panel makes, timed directly and through the running service's API",
    f"every query answers well under {SANITY_SECONDS:g} s (sanity bound; the times are reported)",
)
def test_panel_queries_on_a_big_catalog(big_installation, row):
    root, data, fill_seconds = big_installation
    catalog = Catalog(data / "catalog.sqlite3")
    timings: dict[str, float] = {}
    try:
        for label, query in {
            "backups()": catalog.backups,
            "copies() of all": catalog.copies,
            "copies(slug) x 50": lambda: [catalog.copies(b.slug) for b in catalog.backups()[:50]],
            "recent_runs(50)": lambda: catalog.recent_runs(50),
            "integrity_problems()": catalog.integrity_problems,
        }.items():
            started = time.monotonic()
            query()
            timings[label] = time.monotonic() - started
        counts = (len(catalog.backups()), len(catalog.copies()))
    finally:
        catalog.close()
    with Simulator(root / "supervisor", stage_delay=0.01) as sim:
        service = Service(sim.url, data, sim.backup_dir).start().wait_ready()
        try:
            for path in ("/api/overview", "/api/backups", "/api/runs?limit=500", "/api/locations", "/api/retention"):
                for attempt in ("first", "again"):
                    started = time.monotonic()
                    service.get(path)
                    timings[f"GET {path} ({attempt})"] = time.monotonic() - started
        finally:
            service.stop()
    slow = {label: seconds for label, seconds in timings.items() if seconds >= SANITY_SECONDS}
    row.happened = (
        f"{counts[0]} backups, {counts[1]} copies filled in {fill_seconds:.1f} s; "
        + ", ".join(f"{label} {seconds * 1000:.0f} ms" for label, seconds in timings.items())
    )
    row.nothing_lost = None
    assert counts == (BACKUPS, BACKUPS * len(LOCATIONS))
    assert not slow, slow


@pytest.mark.reliability(
    CATEGORY,
    f"{RUNS_IN_A_ROW} backups in a row through one real service process (2 folder locations, 1 MiB payload, "
    "retention keeping 3)",
    f"every run succeeds and the process's peak resident memory (VmHWM) stays under {RSS_LIMIT_MIB} MiB",
)
def test_many_runs_in_a_row_stay_within_memory(tmp_path, row):
    data = tmp_path / "data"
    data.mkdir()
    folders = {name: tmp_path / name for name in ("USB", "NAS")}
    for folder in folders.values():
        folder.mkdir()
    options = {"schedules": [], "locations": [
        {"name": "USB", "kind": "folder", "path": str(folders["USB"]), "envelope": False},
        {"name": "NAS", "kind": "folder", "path": str(folders["NAS"])},
    ]}
    (data / "options.json").write_text(json.dumps(options))
    states: list[str] = []
    rss: list[float] = []
    with Simulator(tmp_path / "supervisor", payload_mib=1, stage_delay=0.01) as sim:
        service = Service(sim.url, data, tmp_path / "not-visible").start().wait_ready()
        try:
            started = time.monotonic()
            for _ in range(RUNS_IN_A_ROW):
                after = last_run_id(data)
                service.backup_now()
                states += [r["state"] for r in wait_idle(data, after, quiet=0.1) if r["kind"] == "backup"]
                rss.append(service.peak_rss_mib())
            elapsed = time.monotonic() - started
            peak = service.peak_rss_mib()
        finally:
            service.stop()
    succeeded = states.count("succeeded")
    row.happened = (
        f"{succeeded} of {len(states)} runs succeeded in {elapsed:.0f} s; peak RSS after run 1: {rss[0]:.0f} MiB, "
        f"after run {RUNS_IN_A_ROW}: {peak:.0f} MiB"
    )
    row.nothing_lost = succeeded == RUNS_IN_A_ROW
    assert states == ["succeeded"] * RUNS_IN_A_ROW, states
    assert peak < RSS_LIMIT_MIB, f"{peak:.0f} MiB"
