"""First-run setup: the emergency kit (saved, then proven by typing part of the key) and the settings.

The key itself reaches the browser only inside the kit download; the check of what the user
typed happens here, and repeated wrong guesses are slowed down.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..crypto.kit import KIT_FILENAME
from ..errors import InvalidOptions
from ..locations.probe import probe
from ..locations.registry import build_location
from ..options import parse_options
from .common import UserError, addon_of, json_body, json_response

if TYPE_CHECKING:
    from ..service import Addon

_LOGGER = logging.getLogger(__name__)

SETUP_DONE_META = "panel_setup_done"
KIT_CHUNK = 16 * 1024
MAX_WRONG_GUESSES = 5
LOCKOUT_SECONDS = 60.0


@dataclass(slots=True)
class Guesses:
    """Wrong answers to the key check, so the last group of the key cannot be found by trying."""

    wrong: list[float] = field(default_factory=list)

    def locked_for(self, now: float) -> float:
        self.wrong = [t for t in self.wrong if now - t < LOCKOUT_SECONDS]
        if len(self.wrong) < MAX_WRONG_GUESSES:
            return 0.0
        return LOCKOUT_SECONDS - (now - self.wrong[0])


GUESSES_KEY: web.AppKey[Guesses] = web.AppKey("kit_guesses", Guesses)


def setup_state(addon: Addon) -> dict[str, Any]:
    kit_confirmed = addon.keys.kit_confirmed
    saved = addon.catalog.get_meta(SETUP_DONE_META) == "1"
    return {"kit_confirmed": kit_confirmed, "done": kit_confirmed and saved, "key_id": addon.keys.current_id}


async def setup(request: web.Request) -> web.Response:
    addon = addon_of(request)
    options = addon.options
    return json_response(
        {
            **setup_state(addon),
            "locations": [
                {"name": loc.name, "kind": loc.kind, "offsite": loc.offsite} for loc in addon.locations
            ],
            "supervisor_locations": list(options.supervisor_locations),
        }
    )


async def kit(request: web.Request) -> web.StreamResponse:
    text = addon_of(request).kit().encode("utf-8")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{KIT_FILENAME}"',
            "Cache-Control": "no-store",
        }
    )
    response.content_length = len(text)
    await response.prepare(request)
    for start in range(0, len(text), KIT_CHUNK):
        await response.write(text[start : start + KIT_CHUNK])
    await response.write_eof()
    return response


def _normalised(fragment: str) -> str:
    return "".join(ch for ch in fragment.upper() if ch.isalnum())


async def confirm_kit(request: web.Request) -> web.Response:
    """The user proves they hold the kit by typing the key's last group of four characters."""
    addon = addon_of(request)
    guesses = request.app[GUESSES_KEY]
    now = time.monotonic()
    wait = guesses.locked_for(now)
    if wait > 0:
        raise UserError(f"Too many wrong tries. Wait {int(wait) + 1} seconds, then try again.", status=429)
    fragment = (await json_body(request)).get("fragment")
    if not isinstance(fragment, str) or not fragment.strip():
        raise UserError("Type the last 4 characters of the key from your emergency kit.")
    expected = addon.keys.current.rsplit("-", 1)[-1]
    if not hmac.compare_digest(_normalised(fragment).encode(), expected.encode()):
        guesses.wrong.append(now)
        raise UserError(
            "That does not match. Open the emergency kit you saved and type the last 4 characters "
            "of the key (after the last dash).",
            ok=False,
        )
    guesses.wrong.clear()
    addon.confirm_kit()
    return json_response({"ok": True, **setup_state(addon)})


def _location_options(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UserError("Fill in the location's details.")
    return {k: v for k, v in raw.items() if v not in (None, "")}


async def test_new_location(request: web.Request) -> web.Response:
    """'Test connection' for a location that is not saved yet."""
    addon = addon_of(request)
    raw = _location_options((await json_body(request)).get("location"))
    try:
        parsed = parse_options({"locations": [raw]})
    except InvalidOptions as err:
        problems = [p.removeprefix("locations.0.").removeprefix("locations.0") for p in err.problems]
        raise UserError("Check the location's details.", problems=problems) from None
    location = build_location(parsed.locations[0], addon.catalog, retry=False)
    return json_response(await probe(location))


def _apply(current: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The options to save: the current ones, the recommended settings if chosen, new locations added."""
    options = dict(current)
    if body.get("recommended", True):
        schedules = options.get("schedules") or [{}]
        first = {k: v for k, v in dict(schedules[0]).items() if k == "time"}
        options["schedules"] = [{"type": "full", "days": "daily", **first}]
        options["keep_last"] = 3
        options["locations"] = [{**loc, "envelope": True} for loc in options.get("locations", [])]
    added = body.get("add_locations", [])
    if not isinstance(added, list):
        raise UserError("The new locations are not valid.")
    options["locations"] = [*options.get("locations", []), *(_location_options(loc) for loc in added)]
    return options


async def save(request: web.Request) -> web.Response:
    """Save the settings through the Supervisor, which then restarts the add-on with them."""
    addon = addon_of(request)
    if not addon.keys.kit_confirmed:
        raise UserError("Save the emergency kit and confirm it first.", status=409)
    options = _apply(addon.options.model_dump(mode="json", exclude_none=True), await json_body(request))
    # Recorded first: the restart that follows a successful save may stop this process at once.
    addon.catalog.set_meta(SETUP_DONE_META, "1")
    try:
        await addon.save_options(options)
    except InvalidOptions:
        addon.catalog.set_meta(SETUP_DONE_META, "0")
        raise
    except Exception:
        addon.catalog.set_meta(SETUP_DONE_META, "0")
        _LOGGER.exception("Saving the settings from the setup failed")
        raise UserError(
            "The settings could not be saved; the add-on's log (Log tab) has the details."
        ) from None
    return json_response({"saved": True, "restarting": True})


async def skip(request: web.Request) -> web.Response:
    """Keep the settings as they are (set in the Configuration tab, for example)."""
    addon = addon_of(request)
    if not addon.keys.kit_confirmed:
        raise UserError("Save the emergency kit and confirm it first.", status=409)
    addon.catalog.set_meta(SETUP_DONE_META, "1")
    return json_response(setup_state(addon))


def install(app: web.Application) -> None:
    app[GUESSES_KEY] = Guesses()


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/setup", setup),
        web.get("/api/kit", kit),
        web.post("/api/kit/confirm", confirm_kit),
        web.post("/api/setup/test-location", test_new_location),
        web.post("/api/setup/save", save),
        web.post("/api/setup/skip", skip),
    ]
