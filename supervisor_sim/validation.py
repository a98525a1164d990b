"""Request body schemas of the backup endpoints, with voluptuous-style error messages."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .envelope import ApiError

ALL_ADDONS = "ALL"
LEGACY_FOLDER_HOMEASSISTANT = "homeassistant"
V1_FOLDERS = ("share", "addons/local", "ssl", "media", LEGACY_FOLDER_HOMEASSISTANT)
RE_BACKUP_FILENAME = re.compile(r"^[^\\\/]+\.tar$")
MAX_ITEM_LENGTH = 500

_TRUE = frozenset({"1", "true", "yes", "on", "enable"})
_FALSE = frozenset({"0", "false", "no", "off", "disable"})


@dataclass(slots=True)
class BackupRequest:
    """A validated ``POST /backups/new/full|partial`` body."""

    full: bool
    name: str = ""
    filename: str | None = None
    password: str | None = None
    compressed: bool = True
    # None: "location" was omitted (default backup mount, else local).
    locations: list[str | None] | None = None
    homeassistant: bool = False
    homeassistant_exclude_database: bool | None = None
    addons: list[str] | None = None
    all_addons: bool = False
    folders: tuple[str, ...] = ()
    background: bool = False
    extra: dict[str, Any] | None = None


class _Invalid(Exception):
    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def parse_json_body(raw: str) -> Any:
    """Body as the Supervisor reads it: empty means ``{}``."""
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ApiError("Invalid json") from err


def _boolean(value: Any, path: tuple[str | int, ...]) -> bool:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _Invalid("expected boolean", path)
    return bool(value)


def _string(value: Any, path: tuple[str | int, ...]) -> str:
    if not isinstance(value, str):
        raise _Invalid("expected str", path)
    return value


def _maybe_string(value: Any, path: tuple[str | int, ...]) -> str | None:
    return None if value is None else _string(value, path)


def _maybe_boolean(value: Any, path: tuple[str | int, ...]) -> bool | None:
    return None if value is None else _boolean(value, path)


def _filename(value: Any, path: tuple[str | int, ...]) -> str:
    if not isinstance(value, str):
        raise _Invalid("expected string or buffer", path)
    if not RE_BACKUP_FILENAME.match(value):
        raise _Invalid(f"does not match regular expression {RE_BACKUP_FILENAME.pattern}", path)
    return value


def _unique(items: list[Any], path: tuple[str | int, ...]) -> None:
    seen: list[Any] = []
    dupes: list[Any] = []
    for item in items:
        if item in seen and item not in dupes:
            dupes.append(item)
        seen.append(item)
    if dupes:
        raise _Invalid(f"contains duplicate items: {dupes}", path)


def _locations(value: Any, path: tuple[str | int, ...]) -> list[str | None]:
    items = value if isinstance(value, list) else [value]
    result = [_maybe_string(item, (*path, i)) for i, item in enumerate(items)]
    _unique(result, path)
    return result


def _dict(value: Any, path: tuple[str | int, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("expected dict", path)
    return value


def _addons(value: Any, path: tuple[str | int, ...]) -> list[str] | str:
    if value == ALL_ADDONS:
        return ALL_ADDONS
    if not isinstance(value, list):
        raise _Invalid("expected list", path)
    result = [_string(item, (*path, i)) for i, item in enumerate(value)]
    _unique(result, path)
    return result


def _folders(value: Any, path: tuple[str | int, ...]) -> list[str]:
    if not isinstance(value, list):
        raise _Invalid("expected list", path)
    for i, item in enumerate(value):
        if item not in V1_FOLDERS:
            raise _Invalid(f"value must be one of {sorted(V1_FOLDERS)}", (*path, i))
    _unique(value, path)
    return list(value)


def _days_until_stale(value: Any, path: tuple[str | int, ...]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("expected int", path)
    if value < 1:
        raise _Invalid("value must be at least 1", path)
    return value


Validator = Callable[[Any, tuple[str | int, ...]], Any]

FULL_SCHEMA: dict[str, Validator] = {
    "name": _string,
    "filename": _filename,
    "password": _maybe_string,
    "compressed": _maybe_boolean,
    "location": _locations,
    "homeassistant_exclude_database": _boolean,
    "background": _boolean,
    "extra": _dict,
}
PARTIAL_SCHEMA: dict[str, Validator] = {
    **FULL_SCHEMA,
    "addons": _addons,
    "folders": _folders,
    "homeassistant": _boolean,
}
REMOVE_SCHEMA: dict[str, Validator] = {"location": _locations}
OPTIONS_SCHEMA: dict[str, Validator] = {"days_until_stale": _days_until_stale}


def _describe(err: _Invalid, data: Any, *, dict_value: bool) -> str:
    where = "data" + "".join(f"[{p!r}]" for p in err.path)
    offending: Any = data
    for part in err.path:
        try:
            offending = offending[part]
        except (KeyError, IndexError, TypeError):
            offending = None
            break
    summary = repr(offending)
    if len(summary) > MAX_ITEM_LENGTH:
        summary = summary[: MAX_ITEM_LENGTH - 3] + "..."
    suffix = " for dictionary value" if dict_value else ""
    path_text = f" @ {where}" if err.path else ""
    return f"{err.message}{suffix}{path_text}. Got {summary}"


def validate(schema: dict[str, Validator], data: Any) -> dict[str, Any]:
    """Check ``data`` against ``schema``; raise ApiError with humanized messages like the real API."""
    if not isinstance(data, dict):
        raise ApiError(_describe(_Invalid("expected a dictionary", ()), data, dict_value=False))
    result: dict[str, Any] = {}
    messages: list[str] = []
    for key, value in data.items():
        validator = schema.get(key)
        if validator is None:
            messages.append(_describe(_Invalid("extra keys not allowed", (key,)), data, dict_value=False))
            continue
        try:
            result[key] = validator(value, (key,))
        except _Invalid as err:
            messages.append(_describe(err, data, dict_value=len(err.path) == 1))
    if messages:
        raise ApiError("\n".join(sorted(messages)))
    return result


def validate_new_backup(data: Any, *, full: bool) -> BackupRequest:
    """Validate a create body and apply the Supervisor's defaults."""
    body = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, data)
    compressed = body.get("compressed", True)
    folders = list(body.get("folders", []))
    homeassistant = bool(body.get("homeassistant", False))
    if LEGACY_FOLDER_HOMEASSISTANT in folders:
        folders.remove(LEGACY_FOLDER_HOMEASSISTANT)
        homeassistant = True
    addons = body.get("addons")
    return BackupRequest(
        full=full,
        name=body.get("name", ""),
        filename=body.get("filename"),
        password=body.get("password") or None,
        # "compressed": null gives an uncompressed backup, as in Backup.new.
        compressed=bool(compressed),
        locations=body.get("location"),
        homeassistant=homeassistant,
        homeassistant_exclude_database=body.get("homeassistant_exclude_database"),
        addons=None if addons == ALL_ADDONS else addons,
        all_addons=addons == ALL_ADDONS,
        folders=tuple(folders),
        background=bool(body.get("background", False)),
        extra=body.get("extra"),
    )
