"""Commands from Home Assistant automations, sent with the ``hassio.addon_stdin`` action.

Home Assistant serialises the action's ``input`` with ``json.dumps`` (a text becomes a JSON
string, a mapping a JSON object) and the Supervisor writes it to the container's stdin followed
by a newline, so each command is one line::

    "backup"
    {"command": "backup", "type": "partial", "folders": ["share"], "name": "Before the upgrade"}
    {"command": "verify", "location": "NAS"}

A bare word without quotes is accepted too, for commands typed by hand.

Under s6-overlay v3 only the container's CMD inherits the container's stdin: PID 1 and every
supervised service read /dev/null. ``read_commands`` therefore reads a path: ``/dev/stdin``
of a process that runs as the CMD, or a FIFO that a CMD relay fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import AddonError

DEFAULT_COMMANDS_PATH = Path("/dev/stdin")
MAX_LINE_BYTES = 64 * 1024
READ_CHUNK = 16 * 1024
EXCERPT_CHARS = 80
MAX_NAME_CHARS = 100
FOLDERS = ("share", "addons/local", "ssl", "media")
RE_ADDON_SLUG = re.compile(r"^[-_.A-Za-z0-9]{1,64}$")
RE_BACKUP_SLUG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Action(StrEnum):
    BACKUP = "backup"
    VERIFY = "verify"
    DRILL = "drill"


class BackupKind(StrEnum):
    FULL = "full"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class Command:
    """One command from an automation.

    For ``backup``: ``type`` None means the backup the options describe; ``homeassistant``,
    ``addons`` and ``folders`` only apply to a partial backup; ``exclude_database`` None keeps
    the configured choice. For ``verify`` and ``drill``: ``location`` and ``slug`` narrow the
    work to one location or one backup (None: all of them, or the newest backup).
    """

    action: Action
    type: BackupKind | None = None
    name: str | None = None
    homeassistant: bool = True
    addons: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    exclude_database: bool | None = None
    location: str | None = None
    slug: str | None = None


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of ``text`` on one line, safe to log."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class InvalidCommand(AddonError):
    """A line from an automation that is not a command the add-on understands."""

    def __init__(self, reason: str, received: str) -> None:
        self.reason = reason
        self.received = excerpt(received)
        super().__init__(
            f"Ignored a command from an automation: {reason}. Received: {self.received!r}. "
            "See the add-on's documentation for the commands hassio.addon_stdin can send."
        )


_ACTIONS = frozenset(a.value for a in Action)
_KINDS = frozenset(k.value for k in BackupKind)
_WORDS = ", ".join(f'"{a}"' for a in Action)
_COMMON_KEYS = frozenset({"command"})
_BACKUP_KEYS = frozenset({"type", "name", "exclude_database"})
_PARTIAL_KEYS = frozenset({"homeassistant", "addons", "folders"})
_CHECK_KEYS = frozenset({"location", "slug"})


def _key_list(keys: set[str]) -> str:
    return ", ".join(f'"{excerpt(k, 30)}"' for k in sorted(keys)[:5]) + (" ..." if len(keys) > 5 else "")


def _action(value: Any, line: str) -> Action:
    if not isinstance(value, str) or value.strip().lower() not in _ACTIONS:
        shown = excerpt(value, 30) if isinstance(value, str) else type(value).__name__
        raise InvalidCommand(f"unknown command '{shown}' (known: {_WORDS})", line)
    return Action(value.strip().lower())


def _text(data: dict[str, Any], key: str, line: str, check: Callable[[str], bool], rule: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not check(value):
        raise InvalidCommand(f'"{key}" must be {rule}', line)
    return value


def _flag(data: dict[str, Any], key: str, line: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidCommand(f'"{key}" must be true or false', line)


def _names(
    data: dict[str, Any], key: str, line: str, valid: Callable[[str], bool], rule: str
) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and valid(v) for v in value):
        raise InvalidCommand(f'"{key}" must be a list of {rule}', line)
    if len(set(value)) != len(value):
        raise InvalidCommand(f'"{key}" names something twice', line)
    return tuple(value)


def _printable_name(value: str) -> bool:
    return 0 < len(value.strip()) <= MAX_NAME_CHARS and value.isprintable()


def _backup(data: dict[str, Any], line: str) -> Command:
    kind_value = data.get("type")
    if kind_value is not None and kind_value not in _KINDS:
        raise InvalidCommand('"type" must be "full" or "partial"', line)
    kind = None if kind_value is None else BackupKind(kind_value)
    partial_keys = set(data) & _PARTIAL_KEYS
    if partial_keys and kind is not BackupKind.PARTIAL:
        raise InvalidCommand(f'{_key_list(partial_keys)} only apply with "type": "partial"', line)
    homeassistant = _flag(data, "homeassistant", line)
    addons = _names(
        data,
        "addons",
        line,
        lambda v: RE_ADDON_SLUG.match(v) is not None,
        "add-on slugs such as core_mosquitto",
    )
    folders = _names(data, "folders", line, FOLDERS.__contains__, f"folders out of {', '.join(FOLDERS)}")
    homeassistant = True if homeassistant is None else homeassistant
    if kind is BackupKind.PARTIAL and not (homeassistant or addons or folders):
        raise InvalidCommand("a partial backup needs Home Assistant, an add-on or a folder to back up", line)
    return Command(
        action=Action.BACKUP,
        type=kind,
        name=_text(data, "name", line, _printable_name, f"a text of 1 to {MAX_NAME_CHARS} characters"),
        homeassistant=homeassistant,
        addons=addons,
        folders=folders,
        exclude_database=_flag(data, "exclude_database", line),
    )


def _check(action: Action, data: dict[str, Any], line: str) -> Command:
    return Command(
        action=action,
        location=_text(data, "location", line, _printable_name, "the name of one of your locations"),
        slug=_text(data, "slug", line, lambda v: RE_BACKUP_SLUG.match(v) is not None, "a backup slug"),
    )


def _from_object(data: dict[str, Any], line: str) -> Command:
    if "command" not in data:
        raise InvalidCommand(f'the object has no "command" (one of {_WORDS})', line)
    action = _action(data["command"], line)
    allowed = _COMMON_KEYS | (_BACKUP_KEYS | _PARTIAL_KEYS if action is Action.BACKUP else _CHECK_KEYS)
    unknown = set(data) - allowed
    if unknown:
        raise InvalidCommand(f'unknown setting {_key_list(unknown)} for "{action}"', line)
    return _backup(data, line) if action is Action.BACKUP else _check(action, data, line)


def parse_command(line: str) -> Command:
    """The command in one line from stdin; raises InvalidCommand with a reason the user can act on."""
    text = line.strip()
    if not text:
        raise InvalidCommand("the line is empty", line)
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        if re.fullmatch(r"[A-Za-z]+", text):
            return Command(action=_action(text, line))
        raise InvalidCommand(f"it is neither JSON nor one of the words {_WORDS}", line) from None
    if isinstance(data, str):
        return Command(action=_action(data, line))
    if isinstance(data, dict):
        return _from_object(data, line)
    raise InvalidCommand(f"expected a command word or an object, got JSON {type(data).__name__}", line)


# --- reading --------------------------------------------------------------------------------


def _parsed(raw: bytes) -> Command | InvalidCommand:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidCommand("the line is not UTF-8 text", raw.decode("utf-8", "replace"))
    try:
        return parse_command(line)
    except InvalidCommand as err:
        return err


def _too_long(start: bytes | bytearray, max_line: int) -> InvalidCommand:
    return InvalidCommand(
        f"the line is longer than {max_line // 1024} KiB", bytes(start[:200]).decode("utf-8", "replace")
    )


async def _wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _pollable(fd: int) -> bool:
    # Pipes, FIFOs, sockets and terminals can be watched by the event loop; regular files and
    # /dev/null cannot, but reading them never waits for long.
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    if not stat.S_ISCHR(mode):
        return False
    loop = asyncio.get_running_loop()
    try:
        loop.add_reader(fd, lambda: None)
    except OSError:
        return False
    loop.remove_reader(fd)
    return True


async def _chunks(fd: int) -> AsyncGenerator[bytes]:
    if _pollable(fd):
        while True:
            # Wait first: a FIFO that never had a writer reads as end of file.
            await _wait_readable(fd)
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                return
            yield chunk
    else:
        while chunk := await asyncio.to_thread(os.read, fd, READ_CHUNK):
            yield chunk


async def read_commands(
    path: Path | str = DEFAULT_COMMANDS_PATH, *, max_line: int = MAX_LINE_BYTES
) -> AsyncIterator[Command | InvalidCommand]:
    """Commands, one per line, from the file, FIFO or pipe at ``path``, until end of file.

    Bad lines come back as InvalidCommand and reading goes on. A line longer than
    ``max_line`` bytes is skipped (reported once) without being held in memory.
    """
    # Non-blocking open: opening a FIFO for reading would otherwise wait for a writer.
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        buffer = bytearray()
        skipping = False
        async with contextlib.aclosing(_chunks(fd)) as chunks:
            async for chunk in chunks:
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if skipping:
                        skipping = False
                    elif len(line) > max_line:
                        yield _too_long(line, max_line)
                    elif line.strip():
                        yield _parsed(line)
                if not skipping and len(buffer) > max_line:
                    yield _too_long(buffer, max_line)
                    skipping = True
                if skipping:
                    # The rest of an overlong line is dropped as it arrives.
                    buffer.clear()
        if buffer.strip() and not skipping:
            yield _parsed(bytes(buffer))
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
