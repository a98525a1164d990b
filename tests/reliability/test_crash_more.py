"""kill -9 of the real service while it restores, while it mirrors Home Assistant's own backups, and
while it copies to S3; then a restart that must lose nothing.

Built on the installation of test_crash.py (the simulated Supervisor behind the fault proxy, the
service through the launcher, folder locations): each crash is followed by a restart and a backup
that must succeed, with `harness.nothing_lost` checked after the kill and after the restart. Here
the Supervisor's backup folder is checked too: every file in it must be a backup, and a backup
the add-on uploads must be byte for byte the original. On top of that:

- a restore from a folder copy is killed as the copy streams into the Supervisor (it no longer
  had the backup), as the copy is checked (the Supervisor still had it), and once the
  Supervisor's restore job runs; the next restore of the same backup must succeed and the
  Supervisor must restore the original's bytes;
- with ``other_backups: mirror`` (looked for twice a second, see the launcher), the mirror of one
  of Home Assistant's backups is killed half-written; a later poll must mirror it after all. With
  the same installation, the weekly restore drill meets a mirrored backup that Home Assistant
  encrypted with its own key, which the add-on cannot open: its intact copies must not be called
  damaged;
- with an S3 bucket (moto, which lists open multipart uploads) next to a folder, a backup is
  killed once the first part of its multipart upload is stored: nothing incomplete may appear
  under a final key, and after the restart and the next backup no upload may be left open.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from supervisor_sim.archive import ArchiveError, read_backup_json

from .faultproxy import FaultProxy
from .harness import (
    Service,
    Simulator,
    _sidecar_problems,
    last_run_id,
    nothing_lost,
    plaintext_sha256,
    query,
    sha256_file,
    temp_files,
    wait_for,
    wait_no_run,
)
from .test_crash import Installation, Outcome

CATEGORY = "crash (kill -9)"
PAYLOAD_MIB = 2
DOWNLOAD_RATE = 12 << 20  # bytes/s between the service and the Supervisor, as in test_crash
SLOW_RATE = 4 << 20  # while a kill must land mid-transfer: 2 MiB take half a second
S3_PAYLOAD_MIB = 20  # more than one 8 MiB part: the copy to S3 is a multipart upload
OTHER_POLL = 0.5  # seconds between looks for Home Assistant's own backups (and upkeep rounds)
DRILL_ROUNDS = 10  # upkeep rounds a drill of Home Assistant's backup gets to happen in
HALF = 512 * 1024


class _Call:
    """A panel request that blocks (a restore answers when done) in a thread of its own."""

    def __init__(self, send: Callable[[], Any]) -> None:
        self.answer: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(send,), daemon=True)
        self._thread.start()

    def _run(self, send: Callable[[], Any]) -> None:
        try:
            self.answer = send()
        except BaseException as err:  # a killed service answers nothing: kept for the report
            self.error = err

    def wait(self, timeout: float = 30) -> _Call:
        self._thread.join(timeout)
        return self


@dataclass
class Bucket:
    """An S3 bucket on the session's moto server, looked at behind the add-on's back."""

    provider: Any
    name: str

    def objects(self) -> list[str]:
        return sorted(o["Key"] for o in self.provider.admin().list_objects_v2(Bucket=self.name).get("Contents", []))

    def open_uploads(self) -> list[str]:
        uploads = self.provider.admin().list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        return sorted(f"{u['Key']} (upload {u['UploadId'][:8]}…)" for u in uploads)

    def problems(self, data_dir: Path, archives: dict[str, str]) -> list[str]:
        """Every object under a final key is complete; every committed S3 copy is there and intact."""
        problems: list[str] = []
        hashes = set(archives.values())
        admin = self.provider.admin()
        present = set(self.objects())
        with tempfile.TemporaryDirectory(prefix="crash-s3-") as scratch:
            for key in sorted(present):
                local = Path(scratch) / Path(key).name
                admin.download_file(self.name, key, str(local))
                if key.endswith(".meta.age"):
                    problems.extend(f"S3: {key}: {p}" for p in _sidecar_problems(local, data_dir, archives))
                    continue
                try:
                    digest = plaintext_sha256(local, data_dir)
                except Exception as err:  # any failure to open it is the finding
                    problems.append(f"S3: {key} under a final key does not open: {err}")
                    continue
                if digest not in hashes:
                    problems.append(f"S3: {key} under a final key is incomplete or matches no archive")
        for copy in query(data_dir, "SELECT * FROM copies WHERE state = 'committed' AND kind = 's3'"):
            if copy["key"] not in present:
                problems.append(f"S3: committed copy {copy['key']} is missing")
        return problems


class Place(Installation):
    """test_crash's installation with other options and locations, restores and an S3 bucket."""

    def __init__(
        self,
        root: Path,
        sim: Simulator,
        proxy: FaultProxy,
        *,
        folders: tuple[str, ...] = ("Plain", "Sealed"),
        options: dict[str, Any] | None = None,
        bucket: Bucket | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(root, sim, proxy)
        self.folders = {name: path for name, path in self.folders.items() if name in folders}
        written = json.loads((self.data / "options.json").read_text())
        written["locations"] = [loc for loc in written["locations"] if loc["name"] in folders]
        if bucket is not None:
            provider = bucket.provider
            written["locations"].append(
                {"name": "S3", "kind": "s3", "endpoint": provider.endpoint, "bucket": bucket.name,
                 "access_key_id": provider.key, "secret_access_key": provider.secret}
            )
        written.update(options or {})
        (self.data / "options.json").write_text(json.dumps(written))
        self.service.env.update(env or {})
        self.bucket = bucket
        self.restoring: str | None = None  # the backup the next "restore" trigger restores
        self.calls: list[_Call] = []
        # What the Supervisor and the bucket held when the service was last found dead.
        self.slugs_at_kill: set[str] | None = None
        self.uploads_at_kill: list[str] = []

    # --- driving the service ------------------------------------------------------------------

    def trigger(self, kind: str) -> None:
        if kind == "restore":
            assert self.restoring is not None
            self.calls.append(self.restore_call(self.restoring))
        elif kind == "mirror":
            self.sim.others_backup("automatic")
        else:
            super().trigger(kind)

    def restore_call(self, slug: str, location: str = "Sealed") -> _Call:
        service = self.service
        return _Call(lambda: service.post(f"/api/backups/{slug}/restore", {"location": location}))

    # --- what must hold ----------------------------------------------------------------------

    def supervisor_problems(self) -> list[str]:
        """Every file in the Supervisor's backup folder is a backup, and the original's bytes."""
        problems = []
        for path in sorted(self.sim.backup_dir.glob("*.tar")):
            try:
                slug = read_backup_json(path)["slug"]
            except ArchiveError as err:
                problems.append(f"the Supervisor's backup folder holds {path.name}, which is no backup: {err}")
                continue
            original = self.archives.get(slug)
            if original is not None and sha256_file(path) != original:
                problems.append(
                    f"the Supervisor holds {path.name} as backup {slug}, but its bytes are not the original's"
                )
        return problems

    def check(self, *, integrity: bool) -> list[str]:
        problems = self.supervisor_problems()
        for slug, digest in self.sim.archives().items():
            self.archives.setdefault(slug, digest)  # the first archive seen of a backup is its original
        slugs = self.sim.slugs()
        dead = not self.service.alive
        if dead:
            self.slugs_at_kill = slugs
        problems += nothing_lost(self.data, self.folders, self.archives, slugs, self.known, check_integrity=integrity)
        self.known |= slugs
        if self.bucket is not None:
            if dead:
                self.uploads_at_kill = self.bucket.open_uploads()
            problems += self.bucket.problems(self.data, self.archives)
        return problems

    def clean_backup(self) -> None:
        """One backup without a kill, so there is something to restore (and the setup is proven)."""
        self.ensure_running()
        wait_no_run(self.data)
        after = last_run_id(self.data)
        self.arm(None)
        self.trigger("backup")
        runs = self.wait_all_done(after)
        assert all(r["state"] == "succeeded" for r in runs), [dict(r) for r in runs]
        assert self.check(integrity=False) == []


# The problems `nothing_lost` found, as `Installation.crash` and these tests label them.
LOSSES = ("after the kill:", "after the restart:", "after the next restore:", "after the later polls:")


def _settle(row, outcome: Outcome) -> None:
    row.settle(outcome.ok, outcome.describe(), nothing_lost=not any(p.startswith(LOSSES) for p in outcome.problems))


def _start(root: Path, payload_mib: int, rate: int | None, **place: Any):
    sim = Simulator(root / "supervisor", payload_mib=payload_mib, stage_delay=0.02).start()
    stack = contextlib.ExitStack()
    stack.callback(sim.stop)
    proxy = stack.enter_context(FaultProxy.in_thread(("127.0.0.1", sim.port)))
    proxy.set_bandwidth(rate)
    installed = Place(root, sim, proxy, **place)
    stack.callback(installed.service.stop)
    return installed, stack


# --- restores -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restore_place(tmp_path_factory):
    place, stack = _start(tmp_path_factory.mktemp("crash-restore"), PAYLOAD_MIB, DOWNLOAD_RATE)
    with stack:
        place.clean_backup()
        yield place


RESTORE_EXPECTED = (
    "after the kill and after the restart: nothing lost, catalog integrity ok, the restore run marked failed "
    "(interrupted), or succeeded when the Supervisor finished it meanwhile; the Supervisor lists no half-uploaded backup (an uploaded one is byte-identical to the "
    "original); the next backup succeeds and the next restore of the same backup succeeds with the original's bytes"
)
RESTORE_KILLS = {
    "uploading": "from outside while the copy streams into the Supervisor: half of it received, the rest cut off",
    "uploading-buffered": "from outside while the copy streams into the Supervisor: half of it received, "
    "what the service had already sent still delivered",
    "checking": "as it checks the copy (the Supervisor still has the backup)",
    "restore-job-started": "once the Supervisor's restore job runs (its first stage seen)",
}


@pytest.mark.parametrize("stage", list(RESTORE_KILLS))
@pytest.mark.reliability(CATEGORY, "kill -9 of a restore from a folder copy", RESTORE_EXPECTED)
def test_kill_during_restore(restore_place, stage, row):
    row.tried = f"kill -9 of a restore from a folder copy {RESTORE_KILLS[stage]}"
    place = restore_place
    place.ensure_running()
    wait_no_run(place.data)
    slug = place.newest_backup()
    assert slug is not None and slug in place.archives, "no backup to restore"
    original = place.archives[slug]
    restores_before = len(place.sim.restores())
    place.restoring = slug
    if stage.startswith("uploading"):
        # The Supervisor no longer has the backup: the restore uploads the copy first.
        place.service.delete(f"/api/backups/{slug}/copies/.local")
        assert slug not in place.sim.slugs()
        uploads = place.sim.root / "tmp"
        proxy = place.proxy

        def receiving(size: int) -> bool:
            with contextlib.suppress(OSError):
                return any(p.is_file() and p.stat().st_size >= size for p in uploads.rglob("*"))
            return size > 0  # the upload's temp folder went away while being looked at

        def half_uploaded(service: Service) -> None:
            wait_for(lambda: receiving(HALF), 30, "the upload into the Supervisor to be half-way", every=0.005)
            if stage == "uploading":
                proxy.stall_now("up")  # the rest stays in the pipe, and the connection is cut
                service.kill()
                proxy.reset_all()
                proxy.heal()
            else:
                service.kill()
            # The Supervisor has taken the upload in, or dropped it, before anything is checked.
            wait_for(lambda: not receiving(0), 30, "the Supervisor to be done with the upload")

        proxy.set_bandwidth(SLOW_RATE)
        try:
            outcome = place.crash(kind="restore", kill_from_outside=half_uploaded)
        finally:
            proxy.heal()
            proxy.set_bandwidth(DOWNLOAD_RATE)
        kept = slug in (place.slugs_at_kill or set())
        outcome.notes.append(
            "after the kill the Supervisor held the uploaded backup, byte-identical to the original" if kept
            else "after the kill the Supervisor did not list the backup: the cut upload was dropped"
        )
    elif stage == "checking":
        assert slug in place.sim.slugs()
        outcome = place.crash_at({"stage": "checking", "kind": "restore"}, kind="restore")
    else:
        assert slug in place.sim.slugs()
        outcome = place.crash_at({"stage": "restoring:", "prefix": True, "kind": "restore"}, kind="restore")

    for call in place.calls:
        call.wait()
    place.calls.clear()
    # The next restore of the same backup, once the Supervisor is back from any restore of its own.
    wait_for(lambda: place.sim.state() == "running", 30, "the Supervisor to finish its restore")
    place.ensure_running()
    wait_no_run(place.data)
    call = place.restore_call(slug).wait(60)
    if call.error is not None or not (call.answer or {}).get("ok"):
        outcome.problems.append(f"the next restore did not succeed: {call.error or call.answer}")
    else:
        done = place.sim.restores()[restores_before:]
        last = done[-1] if done else {}
        if last.get("slug") != slug or not last.get("ok") or last.get("archive_sha256") != original:
            outcome.problems.append(f"the Supervisor's last restore is not the original's bytes, restored: {last}")
        else:
            how = "uploaded again" if call.answer.get("uploaded") else "from the Supervisor's own archive"
            outcome.notes.append(f"next restore ok ({how}, the original's sha256)")
    outcome.problems += [f"after the next restore: {p}" for p in place.check(integrity=False)]
    _settle(row, outcome)
    assert outcome.ok, outcome.describe()


# --- mirroring Home Assistant's own backups -----------------------------------------------


@pytest.fixture(scope="module")
def mirror_place(tmp_path_factory):
    # Restore drills off at first: they cannot open what Home Assistant encrypted with its own key,
    # which the last test of this section tries on its own.
    place, stack = _start(
        tmp_path_factory.mktemp("crash-mirror"), PAYLOAD_MIB, SLOW_RATE,
        options={"other_backups": "mirror", "drill_days": 0},
        env={"BACKUP_321_TEST_OTHER_BACKUPS_POLL": str(OTHER_POLL)},
    )
    with stack:
        yield place


def _mirrored(place: Place, slug: str) -> bool:
    """Every folder location holds a committed copy of the backup, and a mirror run for it succeeded."""
    copies = {
        r["location"]: r["state"] for r in query(place.data, "SELECT location, state FROM copies WHERE slug = ?", (slug,))
    }
    runs = query(place.data, "SELECT state FROM runs WHERE kind = 'mirror' AND slug = ?", (slug,))
    return all(copies.get(name) == "committed" for name in place.folders) and any(
        r["state"] == "succeeded" for r in runs
    )


def _copy_states(place: Place, slug: str) -> str:
    rows = query(place.data, "SELECT location, state, error FROM copies WHERE slug = ? ORDER BY location", (slug,))
    return ", ".join(f"{r['location']} {r['state']}" + (f" ({r['error']})" if r["error"] else "") for r in rows)


def _new_others_backup(place: Place) -> str:
    before = place.sim.slugs()
    place.sim.others_backup("automatic")
    return wait_for(lambda: next(iter(place.sim.slugs() - before), None), 30, "Home Assistant's backup")


@pytest.mark.reliability(
    CATEGORY,
    "kill -9 from outside while one of Home Assistant's own backups is mirrored (other_backups: mirror), "
    "half of its copy written",
    "after the kill and after the restart: nothing lost, catalog integrity ok, the mirror run marked failed "
    "(interrupted), temp files cleaned, the next backup succeeds; a later poll mirrors the interrupted backup "
    "into every location",
)
def test_kill_while_mirroring_home_assistants_backup(mirror_place, row):
    place = mirror_place
    place.ensure_running()
    # The setup works: a backup Home Assistant makes is mirrored on the next poll.
    first = _new_others_backup(place)
    wait_for(lambda: _mirrored(place, first), 30, "Home Assistant's first backup to be mirrored")
    wait_no_run(place.data)
    assert place.check(integrity=False) == []

    def half_written(service: Service) -> None:
        def half() -> bool:
            return any(p.stat().st_size >= HALF for f in place.folders.values() for p in temp_files(f))

        wait_for(half, 30, "a mirrored copy to be half-written", every=0.005)
        service.kill()

    outcome = place.crash(kind="mirror", kill_from_outside=half_written)
    interrupted = query(
        place.data,
        "SELECT slug FROM runs WHERE kind = 'mirror' AND state = 'failed' AND error LIKE 'interrupted%' ORDER BY id",
    )
    slug = interrupted[-1]["slug"] if interrupted else None
    if slug is None:
        outcome.problems.append("no mirror run was interrupted")
    else:
        # Later polls: one finds a backup Home Assistant makes after the restart...
        later = _new_others_backup(place)
        polled = True
        try:
            wait_for(lambda: _mirrored(place, later), 30, "Home Assistant's next backup to be mirrored")
        except AssertionError:
            polled = False
            outcome.problems.append(f"no later poll mirrored the new backup {later}")
        # ...and the interrupted one must have been mirrored by then, or soon after.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: _mirrored(place, slug), 3 * OTHER_POLL, "the interrupted backup to be mirrored")
        if _mirrored(place, slug):
            outcome.notes.append(f"a later poll mirrored the interrupted backup {slug}: {_copy_states(place, slug)}")
        else:
            runs = query(place.data, "SELECT id, state FROM runs WHERE kind = 'mirror' AND slug = ?", (slug,))
            outcome.problems.append(
                f"the interrupted mirror of {slug} was never done again"
                f"{' although later polls mirrored a newer one' if polled else ''}; its copies: "
                f"{_copy_states(place, slug)}; its mirror runs: {', '.join(f'{r[0]} {r[1]}' for r in runs)}"
            )
    wait_no_run(place.data)
    outcome.problems += [f"after the later polls: {p}" for p in place.check(integrity=False)]
    _settle(row, outcome)
    assert outcome.ok, outcome.describe()


@pytest.mark.reliability(
    "mirroring Home Assistant's backups",
    "the weekly restore drill (drill_days: 7) meets a mirrored backup that Home Assistant encrypted with its own "
    "key (the add-on does not have that key)",
    "no copy of it is marked damaged: the copies are intact, only the add-on cannot open them; the drill skips "
    "them or proves what it can (read back, checksum)",
)
def test_drill_of_a_mirrored_home_assistant_backup(mirror_place, row):
    place = mirror_place
    place.service.stop()
    options = json.loads((place.data / "options.json").read_text())
    (place.data / "options.json").write_text(json.dumps({**options, "drill_days": 7}))
    since = last_run_id(place.data)
    place.ensure_running()
    slug = _new_others_backup(place)
    wait_for(lambda: _mirrored(place, slug), 30, "Home Assistant's backup to be mirrored")
    # It is the newest backup everywhere: drills due go to its copies, one per upkeep round (an add-on
    # that knows it cannot open it may skip them: then the rounds pass without one).
    places = {".local", *place.folders}

    def drilled() -> list[Any]:
        return query(place.data, "SELECT id FROM runs WHERE kind = 'drill' AND slug = ? AND state != 'running'", (slug,))

    with contextlib.suppress(AssertionError):
        wait_for(lambda: len(drilled()) >= len(places), DRILL_ROUNDS * OTHER_POLL, "the drills of its copies")
    wait_no_run(place.data)
    copies = query(place.data, "SELECT location, state, error, key FROM copies WHERE slug = ?", (slug,))
    bad = [c for c in copies if c["state"] == "bad"]
    archive = place.sim.archives()[slug]
    intact = all(
        plaintext_sha256(place.folders[c["location"]] / c["key"], place.data) == archive
        for c in copies if c["location"] in place.folders
    )
    what = "; ".join(f"{c['location']} {c['state']}" + (f" ({c['error']})" if c["error"] else "") for c in copies)
    drills = query(place.data, "SELECT COUNT(*) FROM runs WHERE kind = 'drill' AND id > ?", (since,))[0][0]
    row.settle(
        not bad and intact,
        f"{drills} drills since the restart, {len(drilled())} of them of its copies; then: {what}; the files in the folders "
        + ("are intact (sha256 of the archive)" if intact else "DIFFER from the archive"),
        nothing_lost=intact,
    )
    assert not bad, f"copies of an intact backup marked damaged by the drill: {what}"
    assert intact


# --- S3 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_place(servers, tmp_path_factory):
    provider = servers.s3
    bucket = Bucket(provider, provider.make_bucket())
    place, stack = _start(
        tmp_path_factory.mktemp("crash-s3"), S3_PAYLOAD_MIB, None, folders=("Plain",), bucket=bucket
    )
    with stack:
        place.clean_backup()
        yield place


@pytest.mark.reliability(
    CATEGORY,
    f"kill -9 of a backup to an S3 bucket (moto) and a folder, the archive ({S3_PAYLOAD_MIB} MiB) sent to S3 "
    "as a multipart upload, killed once its first part is stored",
    "after the kill: nothing under a final key in the bucket or the folder is incomplete, catalog integrity "
    "ok; after the restart the interrupted run is failed, the open multipart upload is aborted or resumed "
    "(none left open, its journal entry gone), the next backup succeeds in both",
)
def test_kill_during_a_multipart_upload_to_s3(s3_place, row):
    place = s3_place
    assert place.bucket is not None
    outcome = place.crash_at({"journal": "S3", "parts": 1, "kind": "backup"})
    wait_no_run(place.data)
    after_kill = place.uploads_at_kill
    if outcome.killed:
        if not after_kill:
            outcome.problems.append("no multipart upload was open after the kill: the kill missed the upload")
        left = place.bucket.open_uploads()
        journal = [r["key"] for r in query(place.data, "SELECT key FROM upload_journal WHERE scope = 'S3'")]
        outcome.notes.append(f"open uploads after the kill: {len(after_kill)}, after the next backup: {len(left)}")
        if left:
            outcome.problems.append(
                f"multipart upload(s) still open once restarted and the next backup done, neither resumed "
                f"nor aborted: {', '.join(left)}"
            )
        if journal:
            outcome.problems.append(f"the catalog's upload journal still holds S3 upload(s): {len(journal)}")
        committed = query(
            place.data, "SELECT c.location FROM copies c JOIN runs r ON r.slug = c.slug WHERE r.id = "
            "(SELECT MAX(id) FROM runs WHERE kind = 'backup') AND c.state = 'committed'",
        )
        where = {r["location"] for r in committed}
        if not {"S3", "Plain"} <= where:
            outcome.problems.append(f"the next backup is not committed in S3 and Plain: {sorted(where)}")
    _settle(row, outcome)
    assert outcome.ok, outcome.describe()

