"""The demo: a simulated Supervisor, the add-on and two folder locations on this machine.

The simulator lives in `supervisor_sim`, next to this package in the repository; it is not
part of the add-on's image.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import signal
from pathlib import Path

from aiohttp import web

from .crypto.age import decrypt_stream
from .crypto.kit import KIT_FILENAME
from .locations import Location
from .locations.folder import FolderLocationOptions
from .options import load_options
from .pipeline import RunResult
from .service import Addon, Settings, configure_logging
from .web.app import LOOPBACK

DEMO_LOCATIONS = {"USB disk": "usb-disk", "NAS share": "nas-share"}
DEMO_MOUNT = "NAS_backups"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


async def _content_sha256(location: Location, key: str, addon: Addon) -> str:
    """The sha256 of a copy's content, read back through the location (decrypted if sealed)."""
    stream = location.open(key)
    if key.endswith(".age"):
        stream = decrypt_stream(stream, addon.keys.identities())
    digest = hashlib.sha256()
    async for block in stream:
        digest.update(block)
    return digest.hexdigest()


def _write_default_options(data_dir: Path, locations_dir: Path) -> None:
    options_file = data_dir / "options.json"
    if options_file.exists():
        return
    options = {
        "schedules": [{"type": "full", "days": "daily", "time": "04:45"}],
        "supervisor_locations": [DEMO_MOUNT],
        "locations": [
            {"name": name, "kind": "folder", "path": str(locations_dir / folder)}
            for name, folder in DEMO_LOCATIONS.items()
        ],
    }
    options_file.write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")


async def _summary(result: RunResult, archive: Path | None, addon: Addon) -> bool:
    print(f"Run {result.run_id}: {result.state}" + (f" ({result.error})" if result.error else ""))
    if result.slug is None or archive is None:
        return False
    expected = await asyncio.to_thread(_sha256, archive)
    print(f"Backup {result.slug}: {result.size} bytes, sha256 {expected}")
    folders = {loc.name: loc.path for loc in addon.options.locations if isinstance(loc, FolderLocationOptions)}
    all_good = True
    for copy in result.copies:
        if copy.kind == "supervisor":
            print(f"  {copy.location:<12} {'ok' if copy.ok else 'FAILED: ' + str(copy.error)} (stored by the Supervisor)")
            all_good &= copy.ok
            continue
        location = next(loc for loc in addon.locations if loc.name == copy.location)
        if copy.ok and copy.key and await _content_sha256(location, copy.key, addon) == expected:
            sealed = " (encrypted; opened with the kit)" if copy.key.endswith(".age") else ""
            where = Path(folders.get(copy.location, "")) / copy.key
            print(f"  {copy.location:<12} ok, sha256 matches{sealed}: {where}")
        else:
            print(f"  {copy.location:<12} FAILED: {copy.error or 'the copy does not match the archive'}")
            all_good = False
    return all_good


def _save_kit(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def _prepare(directory: Path) -> tuple[Path, Path, Path]:
    directory = directory.resolve()
    data_dir = directory / "data"
    locations_dir = directory / "locations"
    for path in (data_dir, *(locations_dir / f for f in DEMO_LOCATIONS.values())):
        path.mkdir(parents=True, exist_ok=True)
    _write_default_options(data_dir, locations_dir)
    return directory, data_dir, directory / "supervisor"


async def run_demo(directory: Path, *, port: int = 8099, once: bool = False) -> int:
    """Run the demo; with `once`, make one backup and return 0 only if every copy is good."""
    try:
        from supervisor_sim import SimConfig, SupervisorSim
        from supervisor_sim.addon_self import addon_self
    except ImportError:
        print("The demo needs supervisor_sim, which is in the add-on's source repository; run it from there.")
        return 2

    configure_logging()
    directory, data_dir, sim_root = _prepare(directory)

    token = secrets.token_hex(16)
    sim = SupervisorSim(SimConfig(root=sim_root, token=token, mounts=[DEMO_MOUNT]))
    sim_runner = web.AppRunner(sim.app, access_log=None)
    await sim_runner.setup()
    site = web.TCPSite(sim_runner, "127.0.0.1", 0)
    await site.start()
    sim_port = sim_runner.addresses[0][1]

    settings = Settings(
        supervisor_url=f"http://127.0.0.1:{sim_port}",
        token=token,
        data_dir=data_dir,
        backup_dir=sim_root / "backup",
        web_host="127.0.0.1",
        web_port=port,
        allowed_clients=LOOPBACK,
        poll_interval=0.2,
    )
    addon = Addon(settings, load_options(data_dir / "options.json"))
    try:
        if once:
            await addon.start(schedule=False, web_server=False)
            result = await addon.runner.run("demo")
            archive = sim_root / "backup" / "missing"
            if result.slug is not None and result.slug in sim.backups:
                archive = sim.archive_path(result.slug)
            kit_file = directory / KIT_FILENAME
            _save_kit(kit_file, addon.kit())
            ok = await _summary(result, archive, addon)
            print(f"Emergency kit: {kit_file}  (try: age -d -i {kit_file} COPY.tar.age > COPY.tar)")
            return 0 if ok else 1
        await addon.start()
        _save_kit(directory / KIT_FILENAME, addon.kit())
        print(f"Demo running. Open http://127.0.0.1:{port} ; files are in {directory}. Press Ctrl+C to stop.")
        addon.start_backup(trigger="demo")

        async def restart() -> None:
            # What the Supervisor does after the panel saved new options: stop, start with them.
            nonlocal addon
            await addon.stop()
            addon = Addon(settings, load_options(data_dir / "options.json"))
            await addon.start()

        own = addon_self(sim)
        own.options_file = data_dir / "options.json"
        own.on_restart = restart
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await addon.stop()
        with contextlib.suppress(Exception):
            await sim_runner.cleanup()
