"""`python -m backup_addon run`, as the Supervisor starts it, with two switches for tests.

Run as ``python -m tests.reliability.launcher`` with the same environment as the service, plus:

- ``BACKUP_321_TEST_ALLOW_LOOPBACK=1``: the panel API also answers 127.0.0.1, so a test can press
  "back up now" and read ``/api/status`` (in production only the Supervisor's address may).
- ``BACKUP_321_TEST_ALLOW_CLIENTS=A,B``: instead, the panel answers these addresses (and the
  Supervisor's), to test the address check with real sockets.
- ``BACKUP_321_TEST_KILL_FILE=PATH``: a JSON kill point, read again at every catalog commit; when
  it matches, the process sends itself SIGKILL, exactly like ``kill -9`` from outside. Kinds:

  ``{"stage": "copying"}``: right after the commit that made a running run's ``runs.stage``
  equal to it (``"prefix": true`` for startswith; ``"kind": "verify"`` to pick a run kind);
  ``{"copy": "NAME", "state": "committed", "phase": "before"}``: at the commit that gives the
  copy at location NAME of a running run's backup (a backup, or the one a prune run is deleting)
  that state, before (``"before"``) or after it is durable;
  ``{"commit": N, "phase": "before"}``: at the N-th commit since the file was written;
  ``{"journal": "NAME", "parts": N}``: at the commit that records the N-th stored part of an
  open multipart upload of a running run's backup to location NAME (its upload journal).

- ``BACKUP_321_TEST_STAGE_LOG=PATH``: every (run kind, stage) the catalog enters is appended to
  PATH (``stage<TAB>kind<TAB>stage``), and every commit (``commit<TAB>n<TAB>kind:stage,...`` of the
  running runs, n counted since the kill file last changed): what a run goes through.
- ``BACKUP_321_TEST_POLL_INTERVAL=S``: follow Supervisor jobs every S seconds instead of every
  second, so a test's runs take less time.
- ``BACKUP_321_TEST_OTHER_BACKUPS_POLL=S``: look for backups made by others (Home Assistant's
  own) every S seconds instead of every 5 minutes; the upkeep round that does it (every minute
  otherwise) then comes at least that often.

Only the process is changed: the service code, the servers and the catalog are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

_connect = sqlite3.connect


class _Watch:
    def __init__(self) -> None:
        self.kill_file = os.environ.get("BACKUP_321_TEST_KILL_FILE")
        self.stage_log = os.environ.get("BACKUP_321_TEST_STAGE_LOG")
        self.spec: dict[str, Any] | None = None
        self.spec_text = ""
        self.commits = 0
        self.seen: set[tuple[int, str]] = set()

    def reload(self) -> None:
        if not self.kill_file:
            return
        try:
            text = Path(self.kill_file).read_text()
        except OSError:
            text = ""
        if text != self.spec_text:
            self.spec_text = text
            self.spec = json.loads(text) if text.strip() else None
            self.commits = 0

    def before(self, db: sqlite3.Connection) -> None:
        self.reload()
        self.commits += 1
        if self.spec is not None and self.spec.get("phase", "after") == "before" and self._matches(db):
            _die()

    def after(self, db: sqlite3.Connection) -> None:
        self._log_stage(db)
        if self.spec is not None and self.spec.get("phase", "after") == "after" and self._matches(db):
            _die()

    def _running(self, db: sqlite3.Connection) -> list[sqlite3.Row]:
        try:
            cursor = sqlite3.Connection.execute(db, "SELECT * FROM runs WHERE state = 'running' ORDER BY id")
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()
        except sqlite3.Error:
            return []

    def _matches(self, db: sqlite3.Connection) -> bool:
        spec = self.spec
        assert spec is not None
        if "commit" in spec:
            return self.commits == int(spec["commit"])
        running = self._running(db)
        if "stage" in spec:
            wanted = spec["stage"]
            for run in running:
                stage = run["stage"] or ""
                if spec.get("kind", _kind(run)) != _kind(run):
                    continue
                if stage.startswith(wanted) if spec.get("prefix") else stage == wanted:
                    return True
            return False
        if "journal" in spec:
            return any(
                self._journaled_parts(db, spec["journal"], run["slug"]) >= int(spec.get("parts", 1))
                for run in running
                if run["slug"] and spec.get("kind", _kind(run)) == _kind(run)
            )
        if "copy" in spec:
            for run in running:
                if not run["slug"] or spec.get("kind", _kind(run)) != _kind(run):
                    continue
                try:
                    found = sqlite3.Connection.execute(
                        db, "SELECT state FROM copies WHERE slug = ? AND location = ?", (run["slug"], spec["copy"])
                    ).fetchone()
                except sqlite3.Error:
                    return False
                if found is not None and found[0] == spec["state"]:
                    return True
        return False

    @staticmethod
    def _journaled_parts(db: sqlite3.Connection, location: str, slug: str) -> int:
        """The most parts an open upload of this backup to the location has stored."""
        try:
            rows = sqlite3.Connection.execute(
                db, "SELECT key, state FROM upload_journal WHERE scope = ?", (location,)
            ).fetchall()
        except sqlite3.Error:
            return 0
        return max((len(json.loads(state).get("parts", [])) for key, state in rows if slug in key), default=0)

    def _log_stage(self, db: sqlite3.Connection) -> None:
        if not self.stage_log:
            return
        running = self._running(db)
        lines = []
        for run in running:
            seen = (run["id"], run["stage"])
            if run["stage"] and seen not in self.seen:
                self.seen.add(seen)
                lines.append(f"stage\t{_kind(run)}\t{run['stage']}")
        now = ",".join(f"{_kind(r)}:{r['stage'] or ''}" for r in running)
        lines.append(f"commit\t{self.commits}\t{now}")
        with Path(self.stage_log).open("a") as log:
            log.write("".join(line + "\n" for line in lines))


WATCH = _Watch()


def _kind(run: sqlite3.Row) -> str:
    # `in` on a sqlite3.Row looks at its values, so ask for its keys.
    return str(run["kind"]) if "kind" in run.keys() else "backup"  # noqa: SIM118


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _WatchedConnection(sqlite3.Connection):
    """A catalog connection that lets the kill point look at every commit."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql.strip().upper() != "COMMIT":
            return super().execute(sql, parameters)
        WATCH.before(self)
        cursor = super().execute(sql, parameters)
        WATCH.after(self)
        return cursor


def _watched_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    kwargs.setdefault("factory", _WatchedConnection)
    return _connect(*args, **kwargs)


def main() -> int:
    sqlite3.connect = _watched_connect  # type: ignore[assignment]
    from backup_addon.service import Settings, run_service
    from backup_addon.web.app import SUPERVISOR_ADDRESS

    settings = Settings.from_environment()
    if os.environ.get("BACKUP_321_TEST_ALLOW_LOOPBACK") == "1":
        settings = replace(settings, allowed_clients=(SUPERVISOR_ADDRESS, "127.0.0.1"))
    if clients := os.environ.get("BACKUP_321_TEST_ALLOW_CLIENTS"):
        settings = replace(settings, allowed_clients=(SUPERVISOR_ADDRESS, *clients.split(",")))
    if poll := os.environ.get("BACKUP_321_TEST_POLL_INTERVAL"):
        settings = replace(settings, poll_interval=float(poll))
    if other := os.environ.get("BACKUP_321_TEST_OTHER_BACKUPS_POLL"):
        from backup_addon import service

        service.OTHER_BACKUPS_POLL = float(other)
        service.UPKEEP_TICK = min(service.UPKEEP_TICK, float(other))
    return asyncio.run(run_service(settings))


if __name__ == "__main__":
    sys.exit(main())
