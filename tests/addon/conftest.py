"""Fixtures for add-on tests: a simulated Supervisor served on loopback, and a runner factory."""

import hashlib
from pathlib import Path

import pytest

from backup_addon.catalog import Catalog
from backup_addon.locations import FolderLocation
from backup_addon.options import parse_options
from backup_addon.pipeline import BackupRunner
from backup_addon.service import Addon, Settings
from backup_addon.supervisor import SupervisorGateway
from supervisor_sim import Faults, SimConfig, SupervisorSim

TOKEN = "test-supervisor-token"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def settings_for(sim_url, tmp_path, backup_dir=None):
    """Settings of an add-on in tmp_path talking to the simulator at sim_url."""
    return Settings(
        supervisor_url=sim_url,
        token=TOKEN,
        data_dir=tmp_path / "data",
        backup_dir=backup_dir or tmp_path / "supervisor" / "backup",
        poll_interval=0.02,
    )


@pytest.fixture
def sim(tmp_path):
    return SupervisorSim(
        SimConfig(root=tmp_path / "supervisor", token=TOKEN, mounts=["NAS"], faults=Faults(stage_delay=0.01))
    )


@pytest.fixture
async def sim_url(sim, aiohttp_server):
    server = await aiohttp_server(sim.app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def make_runner(sim_url, tmp_path):
    """Build a runner over folder locations; `local_file=False` hides /backup like a mount would."""
    made = []

    async def make(folders, *, options=None, local_file=True, token=TOKEN, stall_timeout=5.0, request_timeout=10.0):
        gateway = SupervisorGateway(
            sim_url, token, poll_interval=0.02, stall_timeout=stall_timeout, request_timeout=request_timeout
        )
        catalog = Catalog(tmp_path / "data" / "catalog.sqlite3")
        locations = [FolderLocation(name, path) for name, path in folders.items()]
        backup_dir = tmp_path / "supervisor" / "backup" if local_file else tmp_path / "no-backup-dir"
        runner = BackupRunner(
            gateway=gateway,
            catalog=catalog,
            locations=locations,
            options=parse_options(options or {}),
            backup_dir=backup_dir,
        )
        made.append(runner)
        return runner

    yield make
    for runner in made:
        await runner.gateway.close()
        runner.catalog.close()


@pytest.fixture
async def addon(sim_url, tmp_path):
    """The whole add-on (scheduler on, web server off) over one folder location."""
    usb = tmp_path / "usb"
    usb.mkdir()
    settings = settings_for(sim_url, tmp_path)
    instance = Addon(settings, parse_options({"locations": [{"name": "USB", "kind": "folder", "path": str(usb)}]}))
    await instance.start(web_server=False)
    yield instance
    await instance.stop()
