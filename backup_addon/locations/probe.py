"""'Test connection': reach, authenticate, write, read back and delete a small probe object."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..errors import LocationError
from .base import Location, Usage

PROBE_PREFIX = "backup_321/probe-"


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What a connection test found; `error` says what to fix when `ok` is False."""

    location: str
    ok: bool
    steps: list[str] = field(default_factory=list)
    usage: Usage | None = None
    error: str | None = None


async def probe(location: Location) -> ProbeReport:
    """Run the checks in order and stop at the first failure."""
    steps: list[str] = []
    usage: Usage | None = None
    key = f"{PROBE_PREFIX}{secrets.token_hex(6)}.txt"
    payload = os.urandom(4096)
    try:
        usage = await location.usage()
        steps.append("connected and signed in")

        async def body() -> AsyncIterator[bytes]:
            yield payload

        await location.put(key, body())
        steps.append("wrote a test file")
        back = b"".join([chunk async for chunk in location.open(key)])
        if back != payload:
            raise LocationError(location.name, "the test file read back differs from what was written")
        steps.append("read it back intact")
        await location.delete(key)
        steps.append("deleted it")
    except LocationError as err:
        return ProbeReport(location.name, False, steps, usage, str(err).removeprefix(f"{err.location}: "))
    except Exception as err:  # the report must come back whatever the kind raised
        return ProbeReport(location.name, False, steps, usage, f"unexpected error: {err!r}")
    return ProbeReport(location.name, True, steps, usage)
