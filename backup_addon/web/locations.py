"""Locations: health, free space, "test connection" and what retention would delete."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .backups import column_order, location_columns
from .common import UserError, addon_of, json_response
from .memo import memo_of

if TYPE_CHECKING:
    from ..catalog import BackupRecord
    from ..locations.base import Usage
    from ..retention import Decision
    from ..service import Addon

_LOGGER = logging.getLogger(__name__)

# A location that is down must not hold the whole page up.
USAGE_TIMEOUT = 5.0
KEPT_LISTED = 5


async def _usage(addon: Addon, name: str) -> Usage | None:
    try:
        async with asyncio.timeout(USAGE_TIMEOUT):
            return await addon.location_usage(name)
    except Exception as err:  # the page shows "unknown" whatever the kind raised
        _LOGGER.debug("Free space of %s unknown: %s", name, err)
        return None


async def list_locations(request: web.Request) -> web.Response:
    """Every location's health; free space comes separately, as a slow location answers late."""
    addon = addon_of(request)
    return json_response({"locations": memo_of(request).get("health", addon.catalog, addon.location_health)})


async def usage(request: web.Request) -> web.Response:
    addon = addon_of(request)
    name = request.match_info["name"]
    if name not in {c["name"] for c in location_columns(addon)}:
        raise UserError(f"No location is named {name!r}.", status=404)
    return json_response({"name": name, "usage": await _usage(addon, name)})


async def test_location(request: web.Request) -> web.Response:
    addon = addon_of(request)
    name = request.match_info["name"]
    if name not in {loc.name for loc in addon.locations}:
        raise UserError(f"No location is named {name!r}.", status=404)
    return json_response(await addon.test_location(name))


async def retention(request: web.Request) -> web.Response:
    """What retention would do now, per location, without deleting anything.

    Every deletion is listed; of the kept copies only the newest few, with the count of the
    rest: after years of daily backups the full list is thousands of lines nobody reads.
    """
    addon = addon_of(request)
    catalog = addon.catalog
    memo = memo_of(request)
    plan = memo.get("retention", catalog, addon.retention_dry_run)
    backups = {b.slug: b for b in memo.get("backups", catalog, catalog.backups)}
    order = column_order(addon)
    by_location: dict[str, list[Decision]] = defaultdict(list)
    for decision in plan.decisions:
        by_location[decision.location].append(decision)
    places = []
    for location in sorted(by_location, key=lambda name: (order.get(name, len(order)), name)):
        decisions = sorted(by_location[location], key=lambda d: _newest_first(backups.get(d.slug)))
        kept = [d for d in decisions if not d.delete]
        deleted = [d for d in decisions if d.delete]
        places.append(
            {
                "location": location,
                "kept": len(kept),
                "deleted": len(deleted),
                "decisions": [_decision(d, backups) for d in (*deleted, *kept[:KEPT_LISTED])],
            }
        )
    return json_response({"held": plan.held, "locations": places})


def _newest_first(backup: BackupRecord | None) -> float:
    return -backup.created_at.timestamp() if backup is not None else 0.0


def _decision(decision: Decision, backups: dict[str, BackupRecord]) -> dict[str, Any]:
    backup = backups.get(decision.slug)
    return {
        "slug": decision.slug,
        "name": backup.name if backup else decision.slug,
        "created_at": backup.created_at if backup else None,
        "delete": decision.delete,
        "reasons": list(decision.reasons),
    }


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/locations", list_locations),
        web.get("/api/locations/{name}/usage", usage),
        web.post("/api/locations/{name}/test", test_location),
        web.get("/api/retention", retention),
    ]
