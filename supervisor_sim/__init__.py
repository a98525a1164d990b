"""Simulated Home Assistant Supervisor: the add-on's test double and the engine of the demo.

It serves the v1 API subset the add-on uses with the real envelopes, status codes, token
check and ``hassio_role: backup`` rules, and writes real-format backup archives (outer PAX
tar, inner ``.tar.gz`` per part, SecureTar v3 with a password, ``./backup.json`` last).

Python API::

    from supervisor_sim import ApiError, Faults, SimConfig, SupervisorSim, create_app

    sim = SupervisorSim(SimConfig(root=Path(d), token="t", mounts=["NAS"]))
    sim.app                      # aiohttp.web.Application (aiohttp_server / aiohttp_client / run_app)
    sim.faults = Faults(stage_delay=0, fail_job=True)   # any time; or sim.faults.updated({...})
    backup = await sim.create_backup({"name": "x", "folders": ["ssl"]}, full=False)
                                 # like POST /backups/new/*: SimBackup, None if the job failed,
                                 # ApiError for what the endpoint would answer 4xx
    sim.backups                  # dict[slug, SimBackup] (snapshot): .data (backup.json dict),
                                 # .files {None | mount: Path}, .locations, .name, .protected
    sim.archive_path(slug)       # Path of the local copy; archive_path(slug, "NAS") for a mount
    sim.core_calls               # list[CoreCall(method, path, query, body, at)], oldest first
    sim.core.states              # entity_id -> state object posted to /core/api/states/...
    sim.core.notifications       # notification_id -> persistent notification
    sim.jobs.roots               # list[SimJob] oldest first (GET /jobs/info shows newest first)
    sim.state                    # "running" | "freeze" (while a backup job runs)
    await sim.wait_idle()        # until no backup job runs
    sim.reload()                 # rescan backup folders, like POST /backups/reload
    create_app(config)           # -> web.Application; the simulator is app[SIM_KEY]

``SimConfig(root, token="sim-supervisor-token", payload_bytes=0, mounts=[],
default_backup_mount=None, addon_slug="local_backup_321", supervisor_version="2026.08.0",
homeassistant_version="2026.8.3", backups_exclude_database=False, days_until_stale=30,
faults=Faults())``.

``Faults`` knobs (JSON names identical, ``POST /_sim/faults`` merges, ``DELETE`` resets):
``stage_delay`` s per job stage, ``fail_job``, ``child_job_error``, ``http_status``
{path regex: status}, ``hang`` path regex, ``drop_download_after`` bytes,
``stall_download_after`` bytes, ``disk_full``, ``not_ready_state`` (e.g. "setup"),
``mounts_down`` [mount names].

Files under ``root``: ``backup/`` (local backups), ``mounts/<name>/`` (backup mounts),
``tmp/`` (uploads), ``homeassistant/`` (HA config), ``addons/data/<slug>/`` (add-on data),
``share/``, ``ssl/``, ``media/``, ``addons/local/`` (backup folders).

Control endpoints for tests and the demo live under ``/_sim/`` and are NOT part of the
Supervisor API: ``GET|POST|DELETE /_sim/faults``, ``GET|DELETE /_sim/calls``, ``GET /_sim/state``.

CLI: ``python -m supervisor_sim --port P --dir D --token T [--host H] [--payload-mib N]
[--mount NAME ...] [--stage-delay S] [--log-level L]``; prints
``supervisor_sim listening on http://H:P`` when ready, exits 0 on SIGINT/SIGTERM.
"""

from .app import SIM_KEY, SupervisorSim, create_app
from .backup_run import BackupRun
from .backups import SimBackup
from .config import SimConfig
from .core_api import CoreCall, CoreState
from .envelope import ApiError
from .faults import Faults
from .jobs import JobError, SimJob

__all__ = [
    "SIM_KEY",
    "ApiError",
    "BackupRun",
    "CoreCall",
    "CoreState",
    "Faults",
    "JobError",
    "SimBackup",
    "SimConfig",
    "SimJob",
    "SupervisorSim",
    "create_app",
]
