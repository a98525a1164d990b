"""What every handler of the panel shares: the add-on object, JSON in and out, user-facing errors."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from enum import Enum
from functools import partial
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ..service import Addon

ADDON_KEY: web.AppKey[Addon] = web.AppKey("addon")


def addon_of(request: web.Request) -> Addon:
    return request.app[ADDON_KEY]


def as_dict(value: object) -> dict[str, Any]:
    """A dataclass instance's fields, one level deep (the JSON encoder handles what is inside)."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypeError(f"{type(value).__name__} is not a dataclass instance")
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _default(value: object) -> object:
    """Encode what json does not know: times as ISO 8601, enums as their value, dataclasses as dicts."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


dumps = partial(json.dumps, default=_default, separators=(",", ":"))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps, headers={"Cache-Control": "no-store"})


class UserError(Exception):
    """A request the panel cannot carry out; `message` is shown to the user as it is."""

    def __init__(self, message: str, status: int = 400, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.extra = extra


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is an empty object."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise UserError("The request was not understood (its body is not JSON).") from None
    if not isinstance(body, dict):
        raise UserError("The request was not understood (its body is not a JSON object).")
    return body


def text_field(
    body: dict[str, Any], name: str, *, required: bool = True, max_length: int = 200
) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise UserError(f"'{name}' is missing.")
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise UserError(f"'{name}' must be text of at most {max_length} characters.")
    return value


def bool_field(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise UserError(f"'{name}' must be true or false.")
    return value


def int_query(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"'{name}' must be a whole number.") from None
    return max(low, min(high, value))
