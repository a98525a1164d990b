"""kill -9 of the real service at every stage of its runs, then a restart that must lose nothing.

One installation lives through every crash of this file: the simulated Supervisor (its archive
download slowed by the fault proxy so that streaming takes a while), the service with two folder
locations (one plain, one sealed) and its catalog. Each crash is followed by a restart and a
backup that must succeed; after the crash and after the restart nothing may be lost (see
`harness.nothing_lost`), the interrupted run must be marked failed and no temp file may remain.

Where to kill is read from the catalog: the stages of the runs (``runs.stage``, for every run
kind: backup, verify, drill, prune, ...) are discovered from a first, clean pass; the kill point
is then each stage in turn, commits around a copy becoming committed, commits at random, the
middle of streaming, and random moments (seeded).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .faultproxy import FaultProxy
from .harness import (
    Service,
    Simulator,
    last_run_id,
    nothing_lost,
    query,
    temp_files,
    wait_for,
    wait_idle,
    wait_no_run,
)

CATEGORY = "crash (kill -9)"
EXPECTED = (
    "after the kill and after the restart: nothing partial under a final name, every committed copy "
    "complete, no backup lost from the Supervisor, catalog integrity ok; the interrupted run marked "
    "failed, temp files cleaned, the next backup succeeds"
)
# The rows of single crashes inside a test repeat the test's promise in short.
SAME = "as above: nothing lost after the kill and the restart; interrupted run failed; next backup succeeds"
SEED = 321
RANDOM_KILLS = 5
COMMIT_KILLS = 2
DOWNLOAD_RATE = 12 << 20  # bytes/s of the archive download: streaming lasts a few tenths of a second
PAYLOAD_MIB = 2
SUPERVISOR_STAGE = "supervisor:"


@dataclass
class Outcome:
    killed: bool
    died_at: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.killed and not self.problems

    def describe(self) -> str:
        if not self.killed:
            return "the kill point was never reached: " + "; ".join(self.notes)
        text = f"died at {self.died_at}; " + "; ".join(self.notes)
        if self.problems:
            text += "; PROBLEMS: " + "; ".join(self.problems)
        return text


class Installation:
    """The service, its Supervisor and its folders, crashed and restarted again and again."""

    def __init__(self, root: Path, sim: Simulator, proxy: FaultProxy) -> None:
        self.root = root
        self.sim = sim
        self.proxy = proxy
        self.data = root / "data"
        self.folders = {"Plain": root / "plain", "Sealed": root / "sealed"}
        for folder in (self.data, *self.folders.values()):
            folder.mkdir(parents=True)
        options = {
            "schedules": [],
            "keep_last": 2,
            "locations": [
                {"name": "Plain", "kind": "folder", "path": str(self.folders["Plain"]), "envelope": False},
                {"name": "Sealed", "kind": "folder", "path": str(self.folders["Sealed"])},
            ],
        }
        (self.data / "options.json").write_text(json.dumps(options))
        self.kill_file = root / "kill.json"
        self.stage_log = root / "stages.log"
        self.service = Service(
            proxy.url(),
            self.data,
            root / "backup-not-visible",  # as with a backup mount: the add-on streams the download
            kill_file=self.kill_file,
            stage_log=self.stage_log,
        )
        self.archives: dict[str, str] = {}
        self.known: set[str] = set()

    # --- driving the service ------------------------------------------------------------------

    def arm(self, spec: dict[str, Any] | None) -> None:
        # A spec that never matches still restarts the commit count, so counts are per trigger.
        self.kill_file.write_text(json.dumps(spec or {"armed": time.monotonic()}))

    def ensure_running(self) -> Service:
        if not self.service.alive:
            self.service.start().wait_ready()
        return self.service

    def newest_backup(self) -> str | None:
        rows = query(
            self.data,
            "SELECT c.slug FROM copies c JOIN backups b ON b.slug = c.slug "
            "WHERE c.location = 'Sealed' AND c.state = 'committed' ORDER BY b.created_at DESC LIMIT 1",
        )
        return rows[0]["slug"] if rows else None

    def trigger(self, kind: str) -> None:
        """Start a run of this kind the way a user or the add-on itself would."""
        if kind in ("verify", "drill"):
            slug = self.newest_backup()
            assert slug is not None, "no committed copy to check"
            # The check answers when done; a killed service answers nothing.
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                self.service.post(f"/api/backups/{slug}/verify", {"location": "Sealed", "drill": kind == "drill"})
            return
        # Backups, and what follows them (pruning).
        self.service.backup_now()

    def wait_all_done(self, after: int) -> list[Any]:
        return wait_idle(self.data, after, timeout=60, quiet=0.3)

    def check(self, *, integrity: bool) -> list[str]:
        self.archives.update(self.sim.archives())
        slugs = self.sim.slugs()
        problems = nothing_lost(self.data, self.folders, self.archives, slugs, self.known, check_integrity=integrity)
        self.known |= slugs
        return problems

    def crash_at(self, spec: dict[str, Any], kind: str = "backup", attempts: int = 3) -> Outcome:
        """Crash at a kill point read from the catalog; a point that depends on polling may be missed once."""
        outcome = Outcome(False)
        for _ in range(attempts):
            outcome = self.crash(spec=spec, kind=kind)
            if outcome.killed:
                break
        return outcome

    def _dies_or_settles(self, service: Service, before: int, timeout: float) -> bool:
        """True when the service died; False when its runs all finished and it still lives."""
        calm: list[float] = []

        def decided() -> str:
            if not service.alive:
                return "dead"
            newer = query(self.data, "SELECT state FROM runs WHERE id > ?", (before,))
            if newer and all(r["state"] != "running" for r in newer):
                calm.append(time.monotonic())
                if calm[-1] - calm[0] >= 0.5:
                    return "settled"
            else:
                calm.clear()
            return ""

        return wait_for(decided, timeout, "the service to die at its kill point or finish") == "dead"

    # --- one crash ----------------------------------------------------------------------------

    def crash(
        self,
        *,
        spec: dict[str, Any] | None = None,
        kind: str = "backup",
        kill_from_outside: Callable[[Service], None] | None = None,
        timeout: float = 30,
    ) -> Outcome:
        service = self.ensure_running()
        wait_no_run(self.data)
        before = last_run_id(self.data)
        self.arm(spec)
        self.trigger(kind)
        if kill_from_outside is not None:
            kill_from_outside(service)
        if not self._dies_or_settles(service, before, timeout):
            self.arm(None)
            return Outcome(False, notes=["every run finished without reaching it"])
        code = service.wait_dead(10)
        self.arm(None)
        outcome = Outcome(True)
        if code != -9:
            outcome.problems.append(f"the service exited with {code}, not by the kill")
        running = query(self.data, "SELECT id, kind, stage FROM runs WHERE state = 'running' ORDER BY id")
        outcome.died_at = ", ".join(f"{r['kind']} run {r['id']} in stage {r['stage']!r}" for r in running) or (
            "no run in progress"
        )
        outcome.problems += [f"after the kill: {p}" for p in self.check(integrity=True)]

        # Restart: repair, cleanup, then a backup that must succeed.
        self.service.start().wait_ready()
        interrupted = query(
            self.data, f"SELECT id, state, error FROM runs WHERE id IN ({','.join(str(r['id']) for r in running) or '0'})"
        )
        kinds = {r["id"]: r["kind"] for r in running}
        for run in interrupted:
            if kinds.get(run["id"]) == "restore" and run["state"] == "succeeded":
                # A full restore restarts the add-on; after the restart it asks the Supervisor how it ended.
                outcome.notes.append(f"restore run {run['id']} finished in the Supervisor: recorded as succeeded")
                continue
            if run["state"] != "failed" or "interrupt" not in (run["error"] or ""):
                outcome.problems.append(f"run {run['id']} is {run['state']} ({run['error']}) after the restart")
        # A copy the crash cut off may be written again right away ("late copy"); its temp file
        # is work in progress, not a leftover.
        wait_no_run(self.data)
        leftovers = [p for folder in self.folders.values() for p in temp_files(folder)]
        if leftovers:
            outcome.problems.append(f"{len(leftovers)} temp files left after the restart")
        outcome.notes.append(f"restart marked {len(interrupted)} run(s) failed")
        after = last_run_id(self.data)
        self.trigger("backup")
        runs = self.wait_all_done(after)
        backups = [r for r in runs if r["kind"] == "backup"]
        states = ", ".join(f"{r['kind']} {r['state']}" for r in runs)
        outcome.notes.append(f"next runs: {states}")
        if not backups or any(r["state"] != "succeeded" for r in backups):
            errors = "; ".join(r["error"] or "" for r in backups)
            outcome.problems.append(f"the next backup did not succeed: {errors}")
        outcome.problems += [f"after the restart: {p}" for p in self.check(integrity=False)]
        return outcome


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    sim = Simulator(root / "supervisor", payload_mib=PAYLOAD_MIB, stage_delay=0.02).start()
    try:
        with FaultProxy.in_thread(("127.0.0.1", sim.port)) as proxy:
            proxy.set_bandwidth(DOWNLOAD_RATE)
            place = Installation(root, sim, proxy)
            try:
                yield place
            finally:
                place.service.stop()
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def discovered(installation):
    """A clean pass first: backups (with pruning after them), a verify and a drill, every stage logged."""
    place = installation
    place.ensure_running()
    duration = 0.0
    stages: list[tuple[str, str]] = []
    commits: list[tuple[int, str]] = []  # (n, running runs) of the first backup's commits
    for index, kind in enumerate(("backup", "backup", "backup", "verify", "drill")):
        wait_no_run(place.data)
        after = last_run_id(place.data)
        seen = len(place.stage_log.read_text().splitlines()) if place.stage_log.exists() else 0
        place.arm(None)  # commits are counted from here, as in a crash
        triggered = time.monotonic()
        place.trigger(kind)
        runs = place.wait_all_done(after)
        if index == 0:
            duration = time.monotonic() - triggered
        assert all(r["state"] == "succeeded" for r in runs), [dict(r) for r in runs]
        for line in place.stage_log.read_text().splitlines()[seen:]:
            fields = line.split("\t")
            if fields[0] == "stage" and (fields[1], fields[2]) not in stages:
                stages.append((fields[1], fields[2]))
            elif fields[0] == "commit" and index == 0 and fields[2]:
                commits.append((int(fields[1]), fields[2]))
    assert place.check(integrity=False) == []
    return {"stages": stages, "commits": commits, "run_seconds": duration}


def _settle(row, outcome: Outcome) -> None:
    row.settle(outcome.ok, outcome.describe(), nothing_lost=not any("after" in p for p in outcome.problems))


@pytest.mark.reliability(CATEGORY, "kill -9 as a run enters each stage it goes through (discovered from runs.stage)", EXPECTED)
def test_kill_at_every_stage_of_every_run_kind(installation, discovered, row):
    failures = []
    points: list[tuple[str, str, bool]] = []
    for kind, stage in discovered["stages"]:
        # The Supervisor job's own stages pass by as its job is polled: one kill stands for them all.
        prefix = stage.startswith(SUPERVISOR_STAGE)
        point = (kind, SUPERVISOR_STAGE if prefix else stage, prefix)
        if point not in points:
            points.append(point)
    for kind, stage, prefix in points:
        outcome = installation.crash_at({"stage": stage, "kind": kind, "prefix": prefix}, kind=kind)
        what = "while the Supervisor's backup job runs" if prefix else f"as it enters stage '{stage}'"
        _settle(row.add(CATEGORY, f"kill -9 of a {kind} run {what}", SAME), outcome)
        if not outcome.ok:
            failures.append(f"{kind}/{stage}: {outcome.describe()}")
    kinds = sorted({kind for kind, _ in discovered["stages"]})
    seen = ", ".join(f"{k}:{s}" for k, s in discovered["stages"])
    row.happened = f"{len(points)} kill points for run kinds {', '.join(kinds)} (stages seen: {seen}); {len(failures)} failed"
    assert not failures, "\n".join(failures)


@pytest.mark.reliability(
    CATEGORY,
    "kill -9 around the commit of a copy: file renamed into place but not yet committed, and just after",
    EXPECTED,
)
def test_kill_around_the_commit_of_a_copy(installation, discovered, row):
    failures = []
    words = {
        "before": "after its file got its final name, before the catalog's commit is durable",
        "after": "right after the catalog committed it",
    }
    for location, phase in (("Plain", "before"), ("Sealed", "before"), ("Sealed", "after")):
        outcome = installation.crash_at({"copy": location, "state": "committed", "phase": phase})
        tried = f"kill -9 at the {location} copy: {words[phase]}"
        _settle(row.add(CATEGORY, tried, SAME), outcome)
        if not outcome.ok:
            failures.append(f"{tried}: {outcome.describe()}")
    row.happened = f"3 kills; {len(failures)} failed"
    assert not failures, "\n".join(failures)


@pytest.mark.reliability(
    CATEGORY,
    "kill -9 as retention deletes a copy: after the file is gone, before the catalog says so",
    EXPECTED,
)
def test_kill_while_pruning_a_copy(installation, discovered, row):
    if not any(kind == "prune" for kind, _ in discovered["stages"]):
        pytest.fail(f"no prune run was seen in the clean pass: {discovered['stages']}")
    failures = []
    for location in ("Plain", ".local"):
        outcome = installation.crash_at({"copy": location, "state": "deleted", "phase": "before", "kind": "prune"})
        tried = f"kill -9 while pruning {location}: deleted there, catalog commit not yet durable"
        _settle(row.add(CATEGORY, tried, SAME), outcome)
        if not outcome.ok:
            failures.append(f"{tried}: {outcome.describe()}")
    row.happened = f"{len(failures)} of 2 failed"
    assert not failures, "\n".join(failures)


@pytest.mark.reliability(CATEGORY, f"kill -9 inside {COMMIT_KILLS} catalog commits picked at random (seeded)", EXPECTED)
def test_kill_during_catalog_writes(installation, discovered, row):
    backup_commits = [n for n, running in discovered["commits"] if running.startswith("backup:")]
    assert backup_commits, "no commit of a backup run was seen"
    rng = random.Random(SEED)
    picks = sorted(rng.sample(range(1, max(backup_commits) + 1), COMMIT_KILLS))
    failures = []
    for number in picks:
        outcome = installation.crash_at({"commit": number, "phase": "before"})
        tried = f"kill -9 during catalog commit #{number} of a backup run (the transaction is lost)"
        _settle(row.add(CATEGORY, tried, SAME), outcome)
        if not outcome.ok:
            failures.append(f"{tried}: {outcome.describe()}")
    row.happened = f"commits {picks}; {len(failures)} failed"
    assert not failures, "\n".join(failures)


@pytest.mark.reliability(CATEGORY, "kill -9 from outside while a copy is half-written (streaming)", EXPECTED)
def test_kill_while_streaming(installation, discovered, row):
    def when_half_written(service: Service) -> None:
        def half_written() -> bool:
            return any(p.stat().st_size >= 512 * 1024 for f in installation.folders.values() for p in temp_files(f))

        try:
            wait_for(half_written, 30, "a copy to be half-written", every=0.005)
            service.kill()
        finally:
            installation.sim.set_faults({"stall_download_after": None})

    # The archive download stops part-way (and stays open), so copies are caught half-written.
    installation.sim.set_faults({"stall_download_after": (PAYLOAD_MIB << 20) * 3 // 4})
    outcome = installation.crash(kill_from_outside=when_half_written)
    _settle(row, outcome)
    assert outcome.ok, outcome.describe()


@pytest.mark.reliability(CATEGORY, f"kill -9 from outside at {RANDOM_KILLS} random moments of a backup (seed {SEED})", EXPECTED)
def test_kill_at_random_moments(installation, discovered, row):
    rng = random.Random(SEED)
    failures = []
    span = max(0.3, discovered["run_seconds"] - 0.3)  # the run's length, without the wait for quiet
    for _ in range(RANDOM_KILLS):
        delay = rng.uniform(0, span)

        def later(service: Service, delay: float = delay) -> None:
            time.sleep(delay)
            service.kill()

        outcome = installation.crash(kill_from_outside=later)
        tried = f"kill -9 {delay:.2f} s after 'back up now'"
        _settle(row.add(CATEGORY, tried, SAME), outcome)
        if not outcome.ok:
            failures.append(f"{tried}: {outcome.describe()}")
    row.happened = f"{RANDOM_KILLS} kills within {span:.1f} s of the start; {len(failures)} failed"
    assert not failures, "\n".join(failures)
