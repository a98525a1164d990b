"""Backups: the backup x location matrix, the actions on one copy, and "back up now"."""

from __future__ import annotations

import asyncio
import logging
import re
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..catalog import BackupRecord, Catalog, Copy, CopyState
from ..options import BackupType, Folder
from ..pipeline import ManualBackup
from .common import UserError, addon_of, bool_field, int_query, json_body, json_response, text_field
from .memo import memo_of

if TYPE_CHECKING:
    from ..service import Addon

_LOGGER = logging.getLogger(__name__)

LOCAL = ".local"
SHOWS = frozenset({"all", "problems", "unproven", "pinned"})
ORIGINS = frozenset({"addon", "homeassistant", "other"})
ADDON_SLUG = re.compile(r"^[A-Za-z0-9_.-]+$")
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]+")
FOLDER_LABELS = {
    Folder.SHARE: "Shared folder (/share)",
    Folder.ADDONS_LOCAL: "Local add-ons",
    Folder.SSL: "Certificates (/ssl)",
    Folder.MEDIA: "Media (/media)",
}


def location_columns(addon: Addon) -> list[dict[str, Any]]:
    """Every place a copy can be, in the order the matrix shows them: the Supervisor's first."""
    columns: list[dict[str, Any]] = [
        {"name": LOCAL, "kind": "supervisor", "offsite": False, "supervisor": True}
    ]
    columns += [
        {"name": name, "kind": "network storage", "offsite": False, "supervisor": True}
        for name in addon.options.supervisor_locations
    ]
    columns += [
        {"name": loc.name, "kind": loc.kind, "offsite": loc.offsite, "supervisor": False}
        for loc in addon.locations
    ]
    return columns


def copy_json(copy: Copy) -> dict[str, Any]:
    return {
        "kind": copy.kind,
        "state": copy.state,
        "level": int(copy.level),
        "error": copy.error,
        "size_bytes": copy.size_bytes,
        "committed_at": copy.committed_at,
        "checked_at": copy.checked_at,
        "verified_at": copy.verified_at,
        "drilled_at": copy.drilled_at,
    }


def backup_json(backup: BackupRecord, copies: list[Copy]) -> dict[str, Any]:
    return {
        "slug": backup.slug,
        "name": backup.name,
        "type": backup.type,
        "created_at": backup.created_at,
        "size_bytes": backup.size_bytes,
        "pinned": backup.pinned,
        "origin": backup.origin,
        "details": backup.details,
        "copies": {c.location: copy_json(c) for c in copies},
    }


def _slugs_where(catalog: Catalog, show: str) -> frozenset[str]:
    """Backups with a problem, or with no copy proven beyond its size."""
    return catalog.slugs_with_problems() if show == "problems" else catalog.slugs_unproven()


async def list_backups(request: web.Request) -> web.Response:
    """One page of backups, newest first, with their copies; filters apply before paging."""
    addon = addon_of(request)
    catalog = addon.catalog
    limit = int_query(request, "limit", 50, low=1, high=500)
    offset = int_query(request, "offset", 0, low=0, high=1_000_000)
    show = request.query.get("show") or "all"
    origin = request.query.get("origin") or None
    words = (request.query.get("q") or "").casefold().split()
    if show not in SHOWS:
        raise UserError(f"There is no filter called {show!r}.")
    if origin is not None and origin not in ORIGINS:
        raise UserError(f"There is no origin called {origin!r}.")

    memo = memo_of(request)
    selected = [
        b
        for b in memo.get("backups", catalog, catalog.backups)
        if (origin is None or b.origin == origin)
        and (show != "pinned" or b.pinned)
        and all(w in b.name.casefold() or w in b.slug for w in words)
    ]
    if show in ("problems", "unproven"):
        wanted = memo.get(show, catalog, partial(_slugs_where, catalog, show))
        selected = [b for b in selected if b.slug in wanted]
    page = selected[offset : offset + limit]
    rows = [backup_json(b, catalog.copies(b.slug)) for b in page]

    columns = location_columns(addon)
    known = {c["name"] for c in columns}
    # Copies in places no longer configured stay visible, so they can still be restored or deleted.
    for row in rows:
        for name in row["copies"]:
            if name not in known:
                known.add(name)
                columns.append({"name": name, "kind": "removed", "offsite": False, "supervisor": False})
    return json_response(
        {"total": len(selected), "offset": offset, "limit": limit, "locations": columns, "backups": rows}
    )


def _backup(addon: Addon, slug: str) -> BackupRecord:
    backup = addon.catalog.backup(slug)
    if backup is None:
        raise UserError("This backup is not known (any more); reload the page.", status=404)
    return backup


def _copy(addon: Addon, slug: str, location: str) -> Copy:
    copy = addon.catalog.copy(slug, location)
    if copy is None or copy.state is CopyState.DELETED:
        raise UserError(f"This backup has no copy in {_place(location)}.", status=404)
    return copy


def _place(location: str) -> str:
    return "this device" if location == LOCAL else f"'{location}'"


def column_order(addon: Addon) -> dict[str, int]:
    """Each location's position in the matrix, to list copies in the same order everywhere."""
    return {c["name"]: i for i, c in enumerate(location_columns(addon))}


async def get_backup(request: web.Request) -> web.Response:
    addon = addon_of(request)
    backup = _backup(addon, request.match_info["slug"])
    order = column_order(addon)
    copies = sorted(
        addon.catalog.copies(backup.slug), key=lambda c: (order.get(c.location, len(order)), c.location)
    )
    return json_response(backup_json(backup, copies))


async def set_pinned(request: web.Request) -> web.Response:
    addon = addon_of(request)
    backup = _backup(addon, request.match_info["slug"])
    pinned = bool_field(await json_body(request), "pinned", True)
    addon.set_pinned(backup.slug, pinned)
    return json_response({"slug": backup.slug, "pinned": pinned})


async def verify(request: web.Request) -> web.Response:
    """Check one copy now: read back and decrypt it, or with `drill` also open every part."""
    addon = addon_of(request)
    body = await json_body(request)
    backup = _backup(addon, request.match_info["slug"])
    location = text_field(body, "location") or ""
    _copy(addon, backup.slug, location)
    drill = bool_field(body, "drill", False)
    # Shielded: closing the page must not abandon a check half-way.
    summary = await asyncio.shield(addon.verify_copy(backup.slug, location, drill=drill))
    return json_response(summary)


async def restore(request: web.Request) -> web.Response:
    addon = addon_of(request)
    body = await json_body(request)
    backup = _backup(addon, request.match_info["slug"])
    location = text_field(body, "location") or ""
    _copy(addon, backup.slug, location)
    selection = body.get("selection")
    if selection is not None and not isinstance(selection, dict):
        raise UserError("'selection' must say what to restore.")
    result = await asyncio.shield(addon.restore(backup.slug, location, selection))
    return json_response(result)


async def delete_copy(request: web.Request) -> web.Response:
    addon = addon_of(request)
    backup = _backup(addon, request.match_info["slug"])
    location = request.match_info["location"]
    _copy(addon, backup.slug, location)
    await asyncio.shield(addon.delete_copy(backup.slug, location))
    return json_response({"slug": backup.slug, "location": location, "deleted": True})


def download_filename(name: str, slug: str) -> str:
    """A file name every system accepts, from the backup's name (which the user may have typed)."""
    cleaned = " ".join(UNSAFE_FILENAME.sub("_", name).split()).strip(" .")[:100]
    return f"{cleaned or slug}.tar"


async def download(request: web.Request) -> web.StreamResponse:
    """Stream a copy decrypted, as Home Assistant's own archive, without holding it in memory."""
    addon = addon_of(request)
    backup = _backup(addon, request.match_info["slug"])
    location = request.query.get("location") or ""
    _copy(addon, backup.slug, location)
    stream = addon.decrypted_download(backup.slug, location)
    # The first block comes before the headers, so a copy that cannot be opened gets a clear error.
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = b""
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-tar",
            "Content-Disposition": f'attachment; filename="{download_filename(backup.name, backup.slug)}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    try:
        await response.write(first)
        async for chunk in stream:
            await response.write(chunk)
    except ConnectionResetError:
        return response  # the user cancelled the download
    except Exception:
        # Too late for an error page: cutting the connection makes the browser mark it failed.
        _LOGGER.exception("The download of %s from %s failed", backup.name, location)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def _manual_backup(body: dict[str, Any]) -> ManualBackup:
    kind = body.get("type", "full")
    if kind not in ("full", "partial"):
        raise UserError("Choose a full or a partial backup.")
    name = text_field(body, "name", required=False, max_length=100)
    if kind == "full":
        return ManualBackup(
            type=BackupType.FULL, name=name, exclude_database=bool_field(body, "exclude_database", False)
        )
    addons = body.get("addons", [])
    folders = body.get("folders", [])
    if not isinstance(addons, list) or not all(isinstance(a, str) and ADDON_SLUG.match(a) for a in addons):
        raise UserError("The list of add-ons is not valid.")
    allowed = {str(f) for f in Folder}
    if not isinstance(folders, list) or not all(isinstance(f, str) and f in allowed for f in folders):
        raise UserError("The list of folders is not valid.")
    homeassistant = bool_field(body, "homeassistant", True)
    if not (homeassistant or addons or folders):
        raise UserError("Choose at least one thing to back up.")
    return ManualBackup(
        type=BackupType.PARTIAL,
        name=name,
        homeassistant=homeassistant,
        addons=sorted(set(addons)),
        folders=sorted(set(folders)),
        exclude_database=bool_field(body, "exclude_database", False),
    )


async def back_up_now(request: web.Request) -> web.Response:
    addon = addon_of(request)
    what = _manual_backup(await json_body(request))
    addon.start_backup(what, trigger="panel")
    await asyncio.sleep(0)  # let the run register, so the next overview already shows it
    return json_response({"started": True}, status=202)


async def choices(request: web.Request) -> web.Response:
    """What a partial backup can hold (every installed add-on), with the options' choices ticked."""
    addon = addon_of(request)
    options = addon.options
    installed = dict(await addon.installed_addons())
    addons = [{"slug": slug, "name": name} for slug, name in sorted(installed.items(), key=lambda i: i[1].casefold())]
    addons += [{"slug": slug, "name": slug} for slug in options.include_addons if slug not in installed]
    return json_response(
        {
            "folders": [{"id": str(f), "label": FOLDER_LABELS[f]} for f in Folder],
            "addons": addons,
            "defaults": {
                "homeassistant": options.include_homeassistant,
                "addons": list(options.include_addons),
                "folders": [str(f) for f in options.include_folders],
                "exclude_database": options.exclude_database,
            },
        }
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/backups", list_backups),
        web.get("/api/backups/{slug}", get_backup),
        web.post("/api/backups/{slug}/pin", set_pinned),
        web.post("/api/backups/{slug}/verify", verify),
        web.post("/api/backups/{slug}/restore", restore),
        web.delete("/api/backups/{slug}/copies/{location}", delete_copy),
        web.get("/api/backups/{slug}/download", download),
        web.post("/api/backup", back_up_now),
        web.get("/api/backup/choices", choices),
    ]
