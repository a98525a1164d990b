"""The catalog: the add-on's memory of runs, backups and copies, in SQLite under /data.

The Supervisor and the locations are the truth; the catalog records what the add-on did so
that a restart, even after kill -9, knows which runs were interrupted. Every state change is
committed before the next step starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from .errors import AddonError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT,
    slug TEXT,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    kind TEXT NOT NULL DEFAULT 'backup',
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS backups (
    slug TEXT PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    size_bytes INTEGER,
    sha256 TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    pinned INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL DEFAULT 'addon'
);
CREATE TABLE IF NOT EXISTS upload_journal (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS copies (
    slug TEXT NOT NULL,
    location TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT,
    state TEXT NOT NULL,
    size_bytes INTEGER,
    sha256 TEXT,
    error TEXT,
    started_at TEXT NOT NULL,
    committed_at TEXT,
    level INTEGER NOT NULL DEFAULT 0,
    checked_at TEXT,
    verified_at TEXT,
    drilled_at TEXT,
    PRIMARY KEY (slug, location)
);
"""

# Columns added after the first release, for catalogs created by it.
_ADDED_COLUMNS = {
    "runs": {"kind": "TEXT NOT NULL DEFAULT 'backup'", "details": "TEXT NOT NULL DEFAULT '{}'"},
    "backups": {"pinned": "INTEGER NOT NULL DEFAULT 0", "origin": "TEXT NOT NULL DEFAULT 'addon'"},
    "copies": {
        "level": "INTEGER NOT NULL DEFAULT 0",
        "checked_at": "TEXT",
        "verified_at": "TEXT",
        "drilled_at": "TEXT",
    },
}


class CatalogUnavailable(AddonError):
    """The catalog cannot be written (the add-on's storage is full or failing)."""


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # the backup exists, but at least one copy failed
    FAILED = "failed"


class CopyState(StrEnum):
    WRITING = "writing"
    COMMITTED = "committed"
    FAILED = "failed"  # the write did not finish
    BAD = "bad"  # written, but a later check found it damaged or missing
    DELETING = "deleting"  # being removed: no longer counted, finished after a crash
    DELETED = "deleted"  # removed by retention or by the user


class ProofLevel(IntEnum):
    """How strongly a copy is proven: each level includes the ones below."""

    WRITTEN = 0  # the location accepted every byte
    CHECKED = 1  # the size (and checksum, where the server has one) match what was sent
    SCRUBBED = 2  # read back, decrypted and its sha256 matches the archive's
    DRILLED = 3  # scrubbed, and every part of the archive was opened with the key: restorable


class Origin(StrEnum):
    ADDON = "addon"  # made by this add-on
    HOMEASSISTANT = "homeassistant"  # Home Assistant's own automatic or manual backups
    OTHER = "other"  # anything else found in the Supervisor


INTERRUPTED = "interrupted: the add-on stopped before this finished"


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    trigger: str
    state: RunState
    stage: str | None
    slug: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    kind: str = "backup"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Copy:
    slug: str
    location: str
    kind: str
    key: str | None
    state: CopyState
    size_bytes: int | None
    sha256: str | None
    error: str | None
    committed_at: datetime | None
    level: ProofLevel = ProofLevel.WRITTEN
    checked_at: datetime | None = None
    verified_at: datetime | None = None
    drilled_at: datetime | None = None

    @property
    def good(self) -> bool:
        """The copy exists and nothing found it damaged."""
        return self.state is CopyState.COMMITTED


@dataclass(frozen=True, slots=True)
class BackupRecord:
    slug: str
    run_id: int | None
    name: str
    type: str
    created_at: datetime
    size_bytes: int | None
    sha256: str | None
    pinned: bool = False
    origin: Origin = Origin.ADDON
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LocationSummary:
    last_success_at: datetime | None
    last_proven_at: datetime | None  # the last successful check of any level
    last_error: str | None
    last_drilled_at: datetime | None = None  # the last restore test that passed


@dataclass(frozen=True, slots=True)
class RepairReport:
    interrupted_runs: list[int]
    interrupted_copies: list[tuple[str, str]]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Catalog:
    """SQLite-backed record of runs, backups and copies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created private before SQLite opens it; its -wal and -shm files take the same mode.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        path.chmod(0o600)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def close(self) -> None:
        self._db.close()

    def _add_missing_columns(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        if self.get_meta("schema_version") not in (None, str(SCHEMA_VERSION)):
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    @property
    def changes(self) -> int:
        """A number that moves with every row written through this catalog (for caches)."""
        return self._db.total_changes

    def location_summary(self) -> dict[str, LocationSummary]:
        """Per location: the last committed copy, the last proof, and the newest unresolved error."""
        summary: dict[str, LocationSummary] = {}
        rows = self._db.execute(
            "SELECT location, MAX(committed_at) AS last_success, MAX(verified_at) AS last_proven, "
            "MAX(drilled_at) AS last_drilled FROM copies GROUP BY location"
        )
        for row in rows:
            summary[row["location"]] = LocationSummary(
                _dt(row["last_success"]), _dt(row["last_proven"]), None, _dt(row["last_drilled"])
            )
        failures = self._db.execute(
            "SELECT location, error, MAX(COALESCE(checked_at, started_at)) AS at FROM copies "
            "WHERE state IN (?, ?) GROUP BY location",
            (CopyState.FAILED, CopyState.BAD),
        )
        for row in failures:
            known = summary.get(row["location"])
            at = _dt(row["at"])
            if known is None or at is None:
                continue
            if known.last_success_at is None or at >= known.last_success_at:
                summary[row["location"]] = replace(known, last_error=row["error"])
        return summary

    def proof_rows(self) -> list[tuple[str, str, datetime, str, str, int, datetime | None]]:
        """(slug, name, created_at, location, state, level, verified_at) of every copy, newest backup first."""
        rows = self._db.execute(
            "SELECT b.slug, b.name, b.created_at, c.location, c.state, c.level, c.verified_at "
            "FROM backups b LEFT JOIN copies c ON c.slug = b.slug ORDER BY b.created_at DESC, b.slug"
        )
        return [(r[0], r[1], datetime.fromisoformat(r[2]), r[3], r[4], r[5] or 0, _dt(r[6])) for r in rows]

    def slugs_with_problems(self) -> frozenset[str]:
        """Backups with no copy at all, or with a copy that failed or was found damaged."""
        rows = self._db.execute(
            "SELECT b.slug FROM backups b WHERE NOT EXISTS (SELECT 1 FROM copies c WHERE c.slug = b.slug) "
            "OR EXISTS (SELECT 1 FROM copies c WHERE c.slug = b.slug AND c.state IN (?, ?))",
            (CopyState.FAILED, CopyState.BAD),
        )
        return frozenset(r[0] for r in rows)

    def slugs_unproven(self) -> frozenset[str]:
        """Backups without a good copy that was read back (scrubbed) or better."""
        rows = self._db.execute(
            "SELECT b.slug FROM backups b WHERE NOT EXISTS (SELECT 1 FROM copies c WHERE c.slug = b.slug "
            "AND c.state = ? AND c.level >= ?)",
            (CopyState.COMMITTED, int(ProofLevel.SCRUBBED)),
        )
        return frozenset(r[0] for r in rows)

    def good_copy_rows(self) -> list[tuple[str, str, datetime, int, bool, Origin]]:
        """(slug, location, backup created_at, level, pinned, origin) of every committed copy."""
        rows = self._db.execute(
            "SELECT c.slug, c.location, b.created_at, c.level, b.pinned, b.origin "
            "FROM copies c JOIN backups b ON b.slug = c.slug WHERE c.state = ?",
            (CopyState.COMMITTED,),
        )
        return [(r[0], r[1], datetime.fromisoformat(r[2]), r[3], bool(r[4]), Origin(r[5])) for r in rows]

    def integrity_problems(self) -> list[str]:
        """SQLite's own integrity check; empty when the file is sound."""
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return [str(r[0]) for r in rows if str(r[0]) != "ok"]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One atomic change; a full or failing disk becomes CatalogUnavailable, never a half write."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as err:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise CatalogUnavailable(
                f"The add-on cannot write its catalog in its own storage (/data): {err}. Free some space "
                "on the device (Settings > System > Repairs shows what is full); the add-on carries on "
                "by itself once it can write again."
            ) from err

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._transaction():
            return self._db.execute(sql, params)

    # --- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def instance_id(self) -> str:
        """A stable random id that keeps this installation's copies apart from others'."""
        value = self.get_meta("instance_id")
        if value is None:
            value = uuid.uuid4().hex[:12]
            self.set_meta("instance_id", value)
        return value

    # --- repair -----------------------------------------------------------------------------

    def repair(self) -> RepairReport:
        """Mark whatever was in flight when the add-on stopped as failed."""
        runs = [r["id"] for r in self._db.execute("SELECT id FROM runs WHERE state = ?", (RunState.RUNNING,))]
        copies = [
            (r["slug"], r["location"])
            for r in self._db.execute(
                "SELECT slug, location FROM copies WHERE state = ?", (CopyState.WRITING,)
            )
        ]
        now = _now()
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET state = ?, error = COALESCE(error, ?), finished_at = ? WHERE state = ?",
                (RunState.FAILED, INTERRUPTED, now, RunState.RUNNING),
            )
        self.fail_unfinished_copies(INTERRUPTED)
        return RepairReport(interrupted_runs=runs, interrupted_copies=copies)

    def fail_unfinished_copies(self, reason: str) -> None:
        self._write(
            "UPDATE copies SET state = ?, error = ? WHERE state = ?",
            (CopyState.FAILED, reason, CopyState.WRITING),
        )

    # --- runs -------------------------------------------------------------------------------

    def start_run(self, trigger: str, kind: str = "backup") -> int:
        cursor = self._write(
            "INSERT INTO runs (trigger, state, started_at, kind) VALUES (?, ?, ?, ?)",
            (trigger, RunState.RUNNING, _now(), kind),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def set_stage(self, run_id: int, stage: str, *, slug: str | None = None) -> None:
        self._write("UPDATE runs SET stage = ?, slug = COALESCE(?, slug) WHERE id = ?", (stage, slug, run_id))

    def finish_run(self, run_id: int, state: RunState, error: str | None = None) -> None:
        self._write(
            "UPDATE runs SET state = ?, error = ?, finished_at = ? WHERE id = ?",
            (state, error, _now(), run_id),
        )

    def set_run_details(self, run_id: int, details: dict[str, Any]) -> None:
        self._write("UPDATE runs SET details = ? WHERE id = ?", (json.dumps(details, default=str), run_id))

    def run(self, run_id: int) -> Run:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        return _run(row)

    def recent_runs(self, limit: int = 20, kind: str | None = None) -> list[Run]:
        if kind is None:
            rows = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit)
            )
        return [_run(r) for r in rows]

    # --- backups and copies -----------------------------------------------------------------

    def record_backup(
        self,
        *,
        slug: str,
        run_id: int | None,
        name: str,
        type: str,
        created_at: datetime,
        size_bytes: int | None,
        details: dict[str, Any] | None = None,
        origin: Origin = Origin.ADDON,
    ) -> None:
        self._write(
            "INSERT INTO backups (slug, run_id, name, type, created_at, size_bytes, details, origin) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(slug) DO UPDATE SET "
            "name = excluded.name, size_bytes = excluded.size_bytes, details = excluded.details",
            (slug, run_id, name, type, created_at.isoformat(), size_bytes, json.dumps(details or {}), origin),
        )

    def set_pinned(self, slug: str, pinned: bool) -> None:
        self._write("UPDATE backups SET pinned = ? WHERE slug = ?", (int(pinned), slug))

    def set_backup_hash(self, slug: str, size_bytes: int, sha256: str) -> None:
        self._write(
            "UPDATE backups SET size_bytes = ?, sha256 = ? WHERE slug = ?", (size_bytes, sha256, slug)
        )

    def backup(self, slug: str) -> BackupRecord | None:
        row = self._db.execute("SELECT * FROM backups WHERE slug = ?", (slug,)).fetchone()
        return None if row is None else _backup(row)

    def backups(self) -> list[BackupRecord]:
        return [_backup(r) for r in self._db.execute("SELECT * FROM backups ORDER BY created_at DESC")]

    def copy_started(self, slug: str, location: str, kind: str, key: str | None) -> None:
        self._write(
            "INSERT INTO copies (slug, location, kind, key, state, started_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(slug, location) DO UPDATE SET kind = excluded.kind, key = excluded.key, "
            "state = excluded.state, started_at = excluded.started_at, error = NULL, committed_at = NULL, "
            "level = 0, checked_at = NULL, verified_at = NULL, drilled_at = NULL",
            (slug, location, kind, key, CopyState.WRITING, _now()),
        )

    def copy_committed(self, slug: str, location: str, size_bytes: int | None, sha256: str | None) -> None:
        self._write(
            "UPDATE copies SET state = ?, size_bytes = ?, sha256 = ?, committed_at = ?, error = NULL "
            "WHERE slug = ? AND location = ?",
            (CopyState.COMMITTED, size_bytes, sha256, _now(), slug, location),
        )

    def copy_failed(self, slug: str, location: str, error: str) -> None:
        self._write(
            "UPDATE copies SET state = ?, error = ? WHERE slug = ? AND location = ?",
            (CopyState.FAILED, error, slug, location),
        )

    def copy_checked(self, slug: str, location: str, level: ProofLevel) -> None:
        """Record a successful proof; the copy keeps the strongest level it has reached."""
        now = _now()
        drilled = now if level >= ProofLevel.DRILLED else None
        self._write(
            "UPDATE copies SET level = MAX(level, ?), checked_at = ?, verified_at = ?, "
            "drilled_at = COALESCE(?, drilled_at), error = NULL WHERE slug = ? AND location = ? AND state = ?",
            (int(level), now, now, drilled, slug, location, CopyState.COMMITTED),
        )

    def copy_bad(self, slug: str, location: str, error: str) -> None:
        """A check found the copy damaged or missing: it no longer counts anywhere."""
        self._write(
            "UPDATE copies SET state = ?, error = ?, checked_at = ? WHERE slug = ? AND location = ?",
            (CopyState.BAD, error, _now(), slug, location),
        )

    def forget_open_uploads(self) -> int:
        """Drop the journal of uploads a stopped process left open; their locations then abort them."""
        return self._write("DELETE FROM upload_journal").rowcount

    def copy_deleting(self, slug: str, location: str) -> None:
        """Recorded before a copy is removed, so a crash in between cannot leave it counted as good."""
        self._write(
            "UPDATE copies SET state = ?, checked_at = ? WHERE slug = ? AND location = ?",
            (CopyState.DELETING, _now(), slug, location),
        )

    def unfinished_deletions(self) -> list[Copy]:
        rows = self._db.execute("SELECT * FROM copies WHERE state = ?", (CopyState.DELETING,))
        return [_copy(r) for r in rows]

    def copy_deleted(self, slug: str, location: str) -> None:
        self._write(
            "UPDATE copies SET state = ?, checked_at = ? WHERE slug = ? AND location = ?",
            (CopyState.DELETED, _now(), slug, location),
        )

    def copy(self, slug: str, location: str) -> Copy | None:
        row = self._db.execute(
            "SELECT * FROM copies WHERE slug = ? AND location = ?", (slug, location)
        ).fetchone()
        return None if row is None else _copy(row)

    def copies(self, slug: str | None = None) -> list[Copy]:
        if slug is None:
            rows = self._db.execute("SELECT * FROM copies ORDER BY started_at, location")
        else:
            rows = self._db.execute("SELECT * FROM copies WHERE slug = ? ORDER BY location", (slug,))
        return [_copy(r) for r in rows]


def _run(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        trigger=row["trigger"],
        state=RunState(row["state"]),
        stage=row["stage"],
        slug=row["slug"],
        error=row["error"],
        started_at=datetime.fromisoformat(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        kind=row["kind"],
        details=dict(json.loads(row["details"] or "{}")),
    )


def _copy(row: sqlite3.Row) -> Copy:
    return Copy(
        slug=row["slug"],
        location=row["location"],
        kind=row["kind"],
        key=row["key"],
        state=CopyState(row["state"]),
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        error=row["error"],
        committed_at=_dt(row["committed_at"]),
        level=ProofLevel(row["level"]),
        checked_at=_dt(row["checked_at"]),
        verified_at=_dt(row["verified_at"]),
        drilled_at=_dt(row["drilled_at"]),
    )


def _backup(row: sqlite3.Row) -> BackupRecord:
    return BackupRecord(
        slug=row["slug"],
        run_id=row["run_id"],
        name=row["name"],
        type=row["type"],
        created_at=datetime.fromisoformat(row["created_at"]),
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        pinned=bool(row["pinned"]),
        origin=Origin(row["origin"]),
        details=dict(json.loads(row["details"] or "{}")),
    )


class CatalogJournal:
    """Open uploads of one location, kept in the catalog so they resume after a restart."""

    def __init__(self, catalog: Catalog, scope: str) -> None:
        self._catalog = catalog
        self._scope = scope

    async def load(self, key: str) -> dict[str, Any] | None:
        row = self._catalog._db.execute(
            "SELECT state FROM upload_journal WHERE scope = ? AND key = ?", (self._scope, key)
        ).fetchone()
        return None if row is None else dict(json.loads(row["state"]))

    async def save(self, key: str, state: dict[str, Any]) -> None:
        self._catalog._write(
            "INSERT INTO upload_journal (scope, key, state) VALUES (?, ?, ?) "
            "ON CONFLICT(scope, key) DO UPDATE SET state = excluded.state",
            (self._scope, key, json.dumps(state)),
        )

    async def drop(self, key: str) -> None:
        self._catalog._write("DELETE FROM upload_journal WHERE scope = ? AND key = ?", (self._scope, key))
