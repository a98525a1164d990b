"""Benchmark: the panel's JSON API with a long history, 2,000 backups in 5 locations.

Builds a catalog of ``--backups`` backups, each with a copy in 5 locations (this device, one
network storage and three folder locations: 10,000 copies, a mix of written, checked, verified,
proven restorable, failed and deleted), a backup run each and a proof run for every tenth,
then serves the real panel (``create_app`` over a real ``Addon``, never started: no
Supervisor is needed to read the catalog) on loopback and times ``--repeat`` requests of
each endpoint from an aiohttp client on the same event loop, round trip including JSON.

Each endpoint is timed twice: "cold", with the panel's memo of verdict, health, retention plan
and backup list emptied before every request (as after any write to the catalog), and "warm",
with the memo kept (the catalog unchanged since the last request).

Aim (issue "Ingress panel"): every page's data well under 100 ms at p95.

Example (about 30 s here)::

    .venv/bin/python bench/bench_panel.py --backups 2000 --repeat 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup_addon.catalog import Catalog, ProofLevel, RunState
from backup_addon.options import parse_options
from backup_addon.service import Addon, Settings
from backup_addon.web.app import LOOPBACK, create_app
from backup_addon.web.memo import MEMO_KEY, Memo

FOLDERS = ("USB disk", "Cloud drive", "Office NAS")
MOUNT = "NAS"
ENDPOINTS = {
    "overview": "api/overview",
    "backups, first page": "api/backups",
    "backups, last page": "api/backups?offset={last}",
    "backups, search": "api/backups?q=tuesday",
    "backups, problems": "api/backups?show=problems",
    "backups, unproven": "api/backups?show=unproven",
    "one backup": "api/backups/{slug}",
    "activity": "api/runs?limit=100",
    "locations": "api/locations",
    "retention preview": "api/retention",
}
AIM_MS = 100.0


def seed(catalog: Catalog, backups: int) -> str:
    """Fill the catalog as years of daily backups would; returns the newest slug."""
    catalog._db.execute("PRAGMA synchronous=OFF")  # seeding only: nobody needs these on disk
    start = datetime.now(UTC) - timedelta(days=backups)
    places = (".local", MOUNT, *FOLDERS)
    slug = ""
    for day in range(backups):
        created = start + timedelta(days=day)
        slug = f"{day:08x}"
        run_id = catalog.start_run("schedule")
        catalog.record_backup(
            slug=slug,
            run_id=run_id,
            name=f"3-2-1 Backup {created:%A %Y-%m-%d}",
            type="full",
            created_at=created,
            size_bytes=300_000_000 + day,
            details={"protected": True},
        )
        for n, place in enumerate(places):
            catalog.copy_started(slug, place, "folder", f"backup_321/x/{slug}.tar.age")
            if (day + n) % 97 == 0:
                catalog.copy_failed(slug, place, "folder /media/usb does not exist; connect the disk")
                continue
            catalog.copy_committed(slug, place, 300_000_000, None)
            level = (day + n) % 4
            if level:
                catalog.copy_checked(slug, place, ProofLevel(level))
            if day < backups - 30 and n == 0 and day % 3:
                catalog.copy_deleted(slug, place)
        catalog.set_run_details(run_id, {"durations": {"supervisor_backup": 41.5, "copying": 12.0}})
        catalog.finish_run(run_id, RunState.SUCCEEDED)
        if day % 10 == 0:
            check = catalog.start_run("check", "verify")
            catalog.set_stage(check, "reading", slug=slug)
            catalog.finish_run(check, RunState.SUCCEEDED)
    catalog._db.execute("PRAGMA synchronous=FULL")
    return slug


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(
    url: str, repeat: int, newest: str, backups: int, memo: Memo, *, cold: bool
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession() as session:
        for label, path in ENDPOINTS.items():
            target = url + path.format(last=max(0, backups - 50), slug=newest)
            times: list[float] = []
            size = 0
            for attempt in range(repeat + 3):
                if cold:
                    memo.clear()  # as after any write to the catalog
                began = time.perf_counter()
                async with session.get(target) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise SystemExit(f"{label}: HTTP {response.status}: {body[:200]!r}")
                elapsed = (time.perf_counter() - began) * 1000
                if attempt >= 3:  # the first ones warm SQLite's page cache and the code
                    times.append(elapsed)
                size = len(body)
            results[label] = {
                "p50": statistics.median(times),
                "p95": percentile(times, 0.95),
                "max": max(times),
                "bytes": size,
            }
    return results


async def run(backups: int, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-panel-") as tmp:
        root = Path(tmp)
        for name in FOLDERS:
            (root / name).mkdir()
        options = parse_options(
            {
                "supervisor_locations": [MOUNT],
                "keep_last": 3,
                "locations": [{"name": n, "kind": "folder", "path": str(root / n)} for n in FOLDERS],
            }
        )
        settings = Settings(
            supervisor_url="http://127.0.0.1:9",
            token="bench",
            data_dir=root / "data",
            backup_dir=root,
            allowed_clients=LOOPBACK,
        )
        addon = Addon(settings, options)
        began = time.perf_counter()
        newest = seed(addon.catalog, backups)
        seeded = time.perf_counter() - began
        app = create_app(addon, LOOPBACK)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        try:
            cold = await measure(url, repeat, newest, backups, app[MEMO_KEY], cold=True)
            warm = await measure(url, repeat, newest, backups, app[MEMO_KEY], cold=False)
        finally:
            await runner.cleanup()
            await addon.stop()
    return {
        "backups": backups,
        "copies": backups * 5,
        "repeat": repeat,
        "seed_s": seeded,
        "cold": cold,
        "warm": warm,
    }


def report(data: dict[str, Any]) -> None:
    cold, warm = data["cold"], data["warm"]
    print(
        f"{data['backups']} backups, {data['copies']} copies, {data['repeat']} requests each "
        f"(Python {platform.python_version()}, {platform.machine()}); catalog seeded in {data['seed_s']:.1f} s\n"
    )
    print("| request | p50 cold | p95 cold | p50 warm | p95 warm | response |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, c in cold.items():
        w = warm[label]
        print(
            f"| {label} | {c['p50']:.1f} ms | {c['p95']:.1f} ms | {w['p50']:.1f} ms | {w['p95']:.1f} ms "
            f"| {c['bytes'] / 1000:.1f} kB |"
        )
    for name, results in (("cold", cold), ("warm", warm)):
        label, worst = max(((k, r["p95"]) for k, r in results.items()), key=lambda item: item[1])
        verdict = "well under" if worst < AIM_MS / 2 else "under" if worst < AIM_MS else "OVER"
        print(f"Slowest p95 {name}: {worst:.1f} ms ({label}), {verdict} the {AIM_MS:.0f} ms aim.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backups", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--from-json", type=Path, help="print the report of an earlier run")
    args = parser.parse_args()
    if args.from_json:
        report(json.loads(args.from_json.read_text()))
        return
    data = asyncio.run(run(args.backups, args.repeat))
    report(data)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
