"""Answers the panel reuses until the catalog changes: the verdict and health read every copy.

With years of daily backups in several locations that is tens of thousands of rows per call,
and the overview asks on every open and after every event. Any write to the catalog moves
its change counter and so drops every entry; entries also expire, because what they say
depends on the time too (a backup becomes stale without any write).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from aiohttp import web

if TYPE_CHECKING:
    from ..catalog import Catalog

MAX_AGE = 30.0


def catalog_version(catalog: Catalog) -> int:
    """A number that changes with every row the catalog writes (SQLite counts them per connection)."""
    return catalog.changes


@dataclass(slots=True)
class Memo:
    """Named results with the catalog version and time they were computed at."""

    max_age: float = MAX_AGE
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[int, float, object]] = field(default_factory=dict)

    def get[T](self, name: str, catalog: Catalog, compute: Callable[[], T]) -> T:
        version = catalog_version(catalog)
        now = self.clock()
        entry = self._entries.get(name)
        if entry is not None and entry[0] == version and now - entry[1] < self.max_age:
            return cast("T", entry[2])
        value = compute()
        # Stored under the version read before computing: a write meanwhile drops it next time.
        self._entries[name] = (version, now, value)
        return value

    def clear(self) -> None:
        self._entries.clear()


MEMO_KEY: web.AppKey[Memo] = web.AppKey("memo", Memo)


def memo_of(request: web.Request) -> Memo:
    return request.app[MEMO_KEY]


def install(app: web.Application) -> None:
    app[MEMO_KEY] = Memo()
