"""``POST /addons/self/options`` and ``POST /addons/self/restart``: the add-on changing its own settings.

Options are checked the way the Supervisor checks them against the add-on's ``schema`` (read
from the repository's ``config.yaml``): unknown options are dropped with a warning, required
ones must be present, every value must match its type. Stored options are written to the
add-on's options file when the simulator knows it. A restart is recorded and, when a hook is
set (the demo sets one), carried out after the answer has gone out, as the Supervisor restarts
the container after the add-on asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .envelope import ApiError, api_ok
from .validation import parse_json_body

if TYPE_CHECKING:
    from .app import SupervisorSim

_LOGGER = logging.getLogger(__name__)

CONFIG_YAML = Path(__file__).resolve().parents[1] / "config.yaml"
# Keys of the endpoint's body besides "options" (supervisor/api/apps.py SCHEMA_OPTIONS).
OTHER_BODY_KEYS = frozenset(
    {
        "boot",
        "network",
        "auto_update",
        "audio_output",
        "audio_input",
        "ingress_panel",
        "watchdog",
        "system_managed",
        "system_managed_config_entry",
    }
)
SCHEMA_ELEMENT = re.compile(
    r"^(?:|bool|email|url|port|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d.]+)?,(?P<f_max>[\d.]+)?\))?"
    r"|match\((?P<match>.*)\)|list\((?P<list>.+)\))\??$"
)
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "enable"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "disable"})
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^\s/]+", re.IGNORECASE)
RESTART_DELAY = 0.05

type RestartHook = Callable[[], Awaitable[None] | None]


class _Invalid(Exception):
    pass


def load_schema(path: Path = CONFIG_YAML) -> tuple[str, dict[str, Any] | None]:
    """The add-on's name and options schema from its config.yaml; no schema when it cannot be read."""
    try:
        # Imported here: PyYAML comes with the repository's test tools, not with the add-on.
        import yaml  # type: ignore[import-untyped]

        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception as err:  # no PyYAML, no file or broken YAML: the options go unchecked
        _LOGGER.info("Add-on options are stored unchecked: %s", err)
        return "3-2-1 Backup", None
    schema = config.get("schema")
    return str(config.get("name", "3-2-1 Backup")), schema if isinstance(schema, dict) else None


class OptionsValidator:
    """The Supervisor's check of add-on options against a config.yaml schema, written afresh."""

    def __init__(self, schema: dict[str, Any], name: str, slug: str) -> None:
        """Check options against ``schema`` for the add-on ``name`` (``slug``)."""
        self.schema = schema
        self.where = f"{name} ({slug})"

    def __call__(self, options: dict[str, Any]) -> dict[str, Any]:
        """The accepted options; raises ApiError with the Supervisor's sentence."""
        try:
            return self._dict(self.schema, options, "root")
        except _Invalid as err:
            raise ApiError(str(err)) from None

    def _dict(self, schema: dict[str, Any], value: dict[str, Any], root: str) -> dict[str, Any]:
        accepted: dict[str, Any] = {}
        for key, item in value.items():
            if key not in schema:
                _LOGGER.warning("Option '%s' does not exist in the schema for %s", key, self.where)
                continue
            accepted[key] = self._element(schema[key], item, key)
        for key, typ in schema.items():
            if key in accepted:
                continue
            inner = typ[0] if isinstance(typ, list) and typ else typ
            if isinstance(inner, str) and inner.endswith("?"):
                continue
            raise _Invalid(f"Missing option '{key}' in {root} in {self.where}")
        return accepted

    def _element(self, typ: Any, value: Any, key: str) -> Any:
        if isinstance(typ, list):
            if not isinstance(value, list):
                raise _Invalid(f"Invalid list for option '{key}' in {self.where}")
            return [self._element(typ[0], item, key) for item in value]
        if isinstance(typ, dict):
            if not isinstance(value, dict):
                raise _Invalid(f"Invalid dict for option '{key}' in {self.where}")
            return self._dict(typ, value, key)
        return self._single(str(typ), value, key)

    def _single(self, typ: str, value: Any, key: str) -> Any:
        if value is None:
            raise _Invalid(f"Missing required option '{key}' in {self.where}")
        found = SCHEMA_ELEMENT.match(typ)
        if found is None:
            raise _Invalid(f"Unknown type '{typ}' in {self.where}")
        base = typ.rstrip("?").split("(", 1)[0]
        try:
            return self._typed(base, found, value)
        except (TypeError, ValueError) as err:
            raise _Invalid(f"{err} for option '{key}' in {self.where}") from None

    @staticmethod
    def _typed(base: str, found: re.Match[str], value: Any) -> Any:
        def bounds(prefix: str) -> tuple[float, float]:
            low, high = found.group(f"{prefix}_min"), found.group(f"{prefix}_max")
            return float(low) if low else -math.inf, float(high) if high else math.inf

        if isinstance(value, dict | list):
            raise TypeError(f"expected a single value for {base}")
        if base in ("str", "password"):
            text = str(value)
            low, high = bounds("s" if base == "str" else "p")
            if not low <= len(text) <= high:
                raise ValueError("length of value out of range")
            return text
        if base in ("int", "float", "port"):
            if isinstance(value, bool):
                raise TypeError(f"expected {base}")
            try:
                number: float = float(value) if base == "float" else int(value)
            except (TypeError, ValueError):
                raise ValueError(f"expected {'float' if base == 'float' else 'int'}") from None
            low, high = (1.0, 65535.0) if base == "port" else bounds("i" if base == "int" else "f")
            if not low <= number <= high:
                raise ValueError("value must be in range" if base != "port" else "expected port")
            return number
        if base == "bool":
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower()
            if word in TRUE_WORDS or word in FALSE_WORDS:
                return word in TRUE_WORDS
            raise ValueError("expected boolean")
        if base == "email" and not EMAIL.match(str(value)):
            raise ValueError("expected an email address")
        if base == "url" and not URL.match(str(value)):
            raise ValueError("expected a URL")
        if base == "match" and not re.match(found.group("match"), str(value)):
            raise ValueError("does not match regular expression")
        if base == "list" and str(value) not in found.group("list").split("|"):
            raise ValueError("value must be one of " + ", ".join(found.group("list").split("|")))
        return str(value) if base in ("match", "list", "email", "url", "device") else value


@dataclass(slots=True)
class AddonSelf:
    """What the simulated Supervisor holds about the calling add-on, and the restart hook."""

    sim: SupervisorSim
    options: dict[str, Any] | None = None
    options_file: Path | None = None
    on_restart: RestartHook | None = None
    restarts: list[datetime] = field(default_factory=list)
    _validator: OptionsValidator | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def validator(self) -> OptionsValidator | None:
        if self._validator is None:
            name, schema = load_schema()
            if schema is None:
                return None
            self._validator = OptionsValidator(schema, name, self.sim.config.addon_slug)
        return self._validator

    async def set_options(self, request: web.Request) -> web.Response:
        """``POST /addons/self/options``: ``{"options": {...}}``; ``null`` goes back to the defaults."""
        body = parse_json_body(await request.text())
        if not isinstance(body, dict):
            raise ApiError("expected a dictionary")
        extra = sorted(set(body) - OTHER_BODY_KEYS - {"options"})
        if extra:
            raise ApiError(f"extra keys not allowed @ data['{extra[0]}']")
        if "options" not in body:
            return api_ok()
        options = body["options"]
        if options is not None:
            if not isinstance(options, dict):
                raise ApiError("expected a dictionary for dictionary value @ data['options']")
            validator = self.validator()
            options = validator(options) if validator is not None else dict(options)
        self.options = options
        if self.options_file is not None:
            await asyncio.to_thread(self._write, options or {})
        return api_ok()

    def _write(self, options: dict[str, Any]) -> None:
        assert self.options_file is not None
        self.options_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.options_file.with_name(f".{self.options_file.name}.tmp")
        temp.write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")
        temp.replace(self.options_file)

    async def restart(self, _request: web.Request) -> web.Response:
        """``POST /addons/self/restart``: recorded, then carried out by the hook if there is one."""
        self.restarts.append(datetime.now(UTC))
        if self.on_restart is not None:
            task = asyncio.create_task(self._restart_later(self.on_restart), name="add-on restart")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return api_ok()

    @staticmethod
    async def _restart_later(hook: RestartHook) -> None:
        # After the answer: the add-on's request must complete before it is stopped.
        await asyncio.sleep(RESTART_DELAY)
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception:
            _LOGGER.exception("Restarting the add-on failed")

    async def state(self, _request: web.Request) -> web.Response:
        """``GET /_sim/addon_self``: the stored options and the restarts, for tests and the demo."""
        return web.json_response(
            {"options": self.options, "restarts": [t.isoformat() for t in self.restarts]}
        )

    async def on_cleanup(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


ADDON_SELF_KEY = web.AppKey("supervisor_sim_addon_self", AddonSelf)


def install(app: web.Application, sim: SupervisorSim) -> None:
    """Serve the two endpoints (and ``GET /_sim/addon_self``) and keep their state on ``app``."""
    own = AddonSelf(sim)
    app[ADDON_SELF_KEY] = own
    app.add_routes(
        [
            web.post("/addons/self/options", own.set_options),
            web.post("/addons/self/restart", own.restart),
            web.get("/_sim/addon_self", own.state),
        ]
    )
    app.on_cleanup.append(own.on_cleanup)


def addon_self(sim: SupervisorSim) -> AddonSelf:
    """The calling add-on's state in ``sim``: set ``options_file`` and ``on_restart`` here."""
    return sim.app[ADDON_SELF_KEY]
