"""The overview (3-2-1 verdict, last and next backup, health, current run) and the activity list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .common import UserError, addon_of, int_query, json_response
from .memo import memo_of
from .wizard import setup_state

if TYPE_CHECKING:
    from ..catalog import BackupRecord, Catalog, Run

RUN_KINDS = frozenset({"backup", "mirror", "verify", "drill", "prune", "restore"})


def run_json(run: Run, catalog: Catalog) -> dict[str, Any]:
    """One run as the page shows it, with the backup's name and how long it took."""
    backup = catalog.backup(run.slug) if run.slug else None
    finished = run.finished_at
    return {
        "id": run.id,
        "kind": run.kind,
        "trigger": run.trigger,
        "state": run.state,
        "stage": run.stage,
        "slug": run.slug,
        "backup_name": backup.name if backup else None,
        "error": run.error,
        "started_at": run.started_at,
        "finished_at": finished,
        "duration_seconds": (finished - run.started_at).total_seconds() if finished else None,
        "details": run.details,
    }


def _summary(backup: BackupRecord | None) -> dict[str, Any] | None:
    if backup is None:
        return None
    return {
        "slug": backup.slug,
        "name": backup.name,
        "created_at": backup.created_at,
        "size_bytes": backup.size_bytes,
    }


async def overview(request: web.Request) -> web.Response:
    addon = addon_of(request)
    catalog = addon.catalog
    memo = memo_of(request)
    verdict = memo.get("verdict", catalog, addon.verdict)
    newest = memo.get("newest", catalog, lambda: next(iter(catalog.backups()), None))
    last_runs = catalog.recent_runs(1, kind="backup")
    return json_response(
        {
            "setup": setup_state(addon),
            "verdict": verdict,
            "last_backup": _summary(newest),
            "last_run": run_json(last_runs[0], catalog) if last_runs else None,
            "next_backup": addon.next_backup,
            "running": addon.runner.running,
            "progress": addon.progress,
            "locations": memo.get("health", catalog, addon.location_health),
        }
    )


async def runs(request: web.Request) -> web.Response:
    addon = addon_of(request)
    kind = request.query.get("kind") or None
    if kind is not None and kind not in RUN_KINDS:
        raise UserError(f"There is no kind of run called {kind!r}.")
    limit = int_query(request, "limit", 50, low=1, high=500)
    catalog = addon.catalog
    return json_response({"runs": [run_json(run, catalog) for run in catalog.recent_runs(limit, kind=kind)]})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/overview", overview), web.get("/api/runs", runs)]
