"""The results table and the shared fixtures of the reliability tests.

Every test here declares the row it stands for in docs/reliability.md::

    @pytest.mark.reliability("network faults", "SFTP upload reset mid-way", "the copy fails; nothing partial")
    async def test_...(row):
        ...
        row.happened = "failed with 'connection lost'; the folder copy was committed"
        row.nothing_lost = True

A test that tries many things in one go adds a row for each with ``row.add(...)`` and settles it
with ``.passed(...)`` or ``.failed(...)``. At the end of a session that ran the whole directory,
the table is written again from scratch; partial runs leave it alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TABLE = ROOT / "docs" / "reliability.md"
MARKER = "reliability"


# --- rows ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One line of the table: what was tried, what was expected, what happened."""

    category: str
    tried: str
    expected: str
    nodeid: str = ""
    happened: str | None = None
    nothing_lost: bool | None = None
    result: str | None = None  # "pass" / "fail"; None: taken from the test's outcome
    extra: list[Row] = field(default_factory=list)

    def add(self, category: str, tried: str, expected: str) -> Row:
        """Another row, for one of several things a test tries."""
        sub = Row(category, tried, expected, nodeid=self.nodeid)
        self.extra.append(sub)
        return sub

    def passed(self, happened: str, *, nothing_lost: bool | None = None) -> Row:
        self.happened, self.nothing_lost, self.result = happened, nothing_lost, "pass"
        return self

    def failed(self, happened: str, *, nothing_lost: bool | None = None) -> Row:
        self.happened, self.nothing_lost, self.result = happened, nothing_lost, "fail"
        return self

    def settle(self, ok: bool, happened: str, *, nothing_lost: bool | None = None) -> Row:
        return (self.passed if ok else self.failed)(happened, nothing_lost=nothing_lost)


@dataclass(slots=True)
class _Results:
    rows: dict[str, Row] = field(default_factory=dict)  # nodeid -> the test's own row
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # nodeid -> (outcome, message)
    selected: list[str] = field(default_factory=list)
    full_run: bool = False


_RESULTS = _Results()
_KEY = pytest.StashKey[Row]()


def _is_ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def _declared(item: pytest.Item) -> Row | None:
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return None
    category, tried, expected = mark.args
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        tried = f"{tried} [{callspec.id}]"
    return Row(category, tried, expected, nodeid=item.nodeid)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(category, tried, expected): the row of docs/reliability.md this test stands for"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Before -k/-m deselect anything: the table is only rewritten when everything here runs.
    ours = [item for item in items if _is_ours(item)]
    modules = {Path(str(item.path)).resolve() for item in ours}
    expected = {p.resolve() for p in HERE.glob("test_*.py")}
    _RESULTS.full_run = bool(ours) and modules == expected
    _RESULTS.selected = [item.nodeid for item in ours]
    for item in ours:
        declared = _declared(item)
        if declared is not None:
            _RESULTS.rows[item.nodeid] = declared
            item.stash[_KEY] = declared


def pytest_collection_finish(session: pytest.Session) -> None:
    remaining = {item.nodeid for item in session.items if _is_ours(item)}
    if remaining != set(_RESULTS.selected):
        _RESULTS.full_run = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _is_ours(item) and _KEY not in item.stash:
        pytest.fail(f"{item.nodeid} declares no row: mark it with @pytest.mark.{MARKER}(category, tried, expected)")


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Row:
    """The row of docs/reliability.md this test fills in."""
    declared = request.node.stash.get(_KEY, None)
    if declared is None:
        pytest.fail("this test declares no row")
    return declared


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if _is_ours(item):
        outcome, message = _RESULTS.outcomes.get(item.nodeid, ("passed", ""))
        if report.failed and outcome != "failed":
            crash = getattr(report.longrepr, "reprcrash", None)
            text = crash.message if crash is not None else str(report.longrepr)
            _RESULTS.outcomes[item.nodeid] = ("failed", f"{report.when}: {text}")
        elif report.skipped and outcome == "passed":
            _RESULTS.outcomes[item.nodeid] = ("skipped", str(report.longrepr[-1]) if report.longrepr else "")
        elif item.nodeid not in _RESULTS.outcomes:
            _RESULTS.outcomes[item.nodeid] = (outcome, message)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _RESULTS.full_run or session.config.option.collectonly:
        return
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text(render_table(), encoding="utf-8")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if terminalreporter.config.option.verbose > 0 and _RESULTS.selected:
        terminalreporter.section("reliability rows")
        for r in _rows_in_order():
            if r.result != "not run":
                terminalreporter.write_line(
                    f"[{r.result}] {r.category} | {_cell(r.tried, 120)} | {_cell(r.happened or '', 600)}"
                    f" | lost nothing: {_lost(r.nothing_lost)}"
                )
    if _RESULTS.selected and not _RESULTS.full_run:
        terminalreporter.write_line(
            "docs/reliability.md left as it was: only part of tests/reliability ran", yellow=True
        )
    elif _RESULTS.full_run:
        terminalreporter.write_line("docs/reliability.md rewritten from this run")


# --- the table ----------------------------------------------------------------------------

_TEMP = re.escape(str(Path(tempfile.gettempdir()).resolve()))
_SCRUB = [
    (re.compile(re.escape(str(ROOT))), "."),
    (re.compile(_TEMP + r"/[^\s'\"),;:]*"), "<tmp>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\s+"), " "),
]


def _cell(text: str, limit: int = 400) -> str:
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    text = text.strip().replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rows_in_order() -> list[Row]:
    ordered: list[Row] = []
    for nodeid in _RESULTS.selected:
        own = _RESULTS.rows.get(nodeid)
        if own is None:
            continue
        outcome, message = _RESULTS.outcomes.get(nodeid, ("not run", ""))
        for current in (own, *own.extra):
            settled = current.result is not None and current is not own
            if outcome == "not run":
                current.result, current.happened = "not run", "the test did not run in this session"
            elif settled:
                pass  # a row the test settled itself keeps its own result
            elif outcome == "passed":
                current.result = current.result or "pass"
                current.happened = current.happened or "as expected"
            elif outcome == "skipped":
                current.result, current.happened = "skipped", current.happened or message
            else:
                current.result = "fail"
                current.happened = current.happened or message
            ordered.append(current)
    return ordered


def _lost(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "**NO**")


def render_table() -> str:
    rows = _rows_in_order()
    passed = sum(r.result == "pass" for r in rows)
    failed = sum(r.result == "fail" for r in rows)
    lines = [
        "# Reliability and security results",
        "",
        "Generated by the tests in `tests/reliability/` at the end of every run of that directory",
        "(`.venv/bin/python -m pytest tests/reliability`); do not edit by hand. Each row is one fault,",
        "load or hostile input tried against the real service, the real servers and the simulated",
        "Supervisor. \"Nothing lost\" means every copy marked as committed is complete and matches the",
        "archive, no partial file sits under a final name, and no backup vanished from the Supervisor",
        "(n/a where no data is involved).",
        "",
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, on {_describe_host()}: "
        f"{passed} passed, {failed} failed, {len(rows) - passed - failed} other, of {len(rows)} rows.",
        "",
        "| category | what was tried | expected | what happened | nothing lost | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        result = "pass" if r.result == "pass" else f"**{(r.result or 'fail').upper()}**"
        lines.append(
            f"| {_cell(r.category, 60)} | {_cell(r.tried)} | {_cell(r.expected)} | "
            f"{_cell(r.happened or '')} | {_lost(r.nothing_lost)} | {result} |"
        )
    return "\n".join(lines) + "\n"


def _describe_host() -> str:
    return f"Linux, {os.cpu_count()} CPUs"


# --- shared fixtures ----------------------------------------------------------------------


class Servers:
    """The real servers of the location kinds, each started on first use and kept for the session.

    Own provider instances (not the conformance suite's), so both suites can run in one session.
    A server that cannot start fails the test that needs it, with the server's log.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: dict[str, object] = {}

    def _get(self, key: str, make):
        if key not in self._started:
            provider = make()
            folder = self.workdir / key
            folder.mkdir()
            provider.start(folder)
            self._started[key] = provider
        return self._started[key]

    @property
    def sftp(self):
        from tests.locations.kinds.sftp import SftpProvider

        return self._get("sftp", SftpProvider)

    @property
    def s3(self):
        """moto: unlike rclone it lists open multipart uploads, so leftovers can be seen."""
        from tests.locations.kinds.s3 import MotoS3Provider

        return self._get("s3", MotoS3Provider)

    @property
    def s3_tls(self):
        from tests.locations.kinds.s3 import RcloneS3Provider

        return self._get("s3-tls", lambda: RcloneS3Provider(tls=True))

    @property
    def webdav(self):
        from tests.locations.kinds.webdav import ApacheProvider

        return self._get("webdav", ApacheProvider)

    @property
    def smb(self):
        from tests.locations.kinds.smb import SambaProvider

        return self._get("smb", SambaProvider)

    def stop(self) -> None:
        for provider in self._started.values():
            with contextlib.suppress(Exception):
                provider.resume_server()
            provider.stop()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    # Not under pytest's temp root: every pytest that starts on this machine takes the others'
    # search permission off that root, and the servers' own users (www-data, the SFTP user)
    # must pass through to their files.
    with tempfile.TemporaryDirectory(prefix="reliability-servers-") as workdir:
        started = Servers(Path(workdir))
        try:
            yield started
        finally:
            started.stop()


class Disks:
    """Small real tmpfs mounts (needs root): full disks, read-only disks. Unmounted at teardown."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.mounted: list[Path] = []

    def make(self, size_kib: int, where: Path | None = None) -> Path:
        target = where or self.base / f"disk{len(self.mounted)}"
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(target)],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cannot mount a tmpfs (these tests need root): {result.stderr.strip()}")
        self.mounted.append(target)
        return target

    def remount(self, target: Path, *, read_only: bool) -> None:
        mode = "ro" if read_only else "rw"
        result = subprocess.run(
            ["mount", "-o", f"remount,{mode}", str(target)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"cannot remount {target} {mode}: {result.stderr.strip()}")

    @staticmethod
    def fill(target: Path, leave: int = 0) -> Path:
        """Fill the disk up, leaving about `leave` bytes free; returns the filler file."""
        filler = target / "filler.bin"
        with filler.open("ab") as handle:
            block = bytes(64 * 1024)
            while True:
                free = os.statvfs(target).f_bavail * os.statvfs(target).f_frsize
                if free <= leave:
                    break
                try:
                    handle.write(block[: max(1, min(len(block), free - leave))])
                    handle.flush()
                except OSError:
                    break
        return filler

    def unmount_all(self) -> None:
        failures = []
        for target in reversed(self.mounted):
            result = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                lazy = subprocess.run(["umount", "-l", str(target)], capture_output=True, text=True, check=False)
                if lazy.returncode != 0:
                    failures.append(f"{target}: {lazy.stderr.strip()}")
        self.mounted.clear()
        if failures:
            raise RuntimeError("could not unmount: " + "; ".join(failures))


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[Disks]:
    made = Disks(tmp_path / "disks")
    try:
        yield made
    finally:
        made.unmount_all()


SIM_TOKEN = "reliability-sim-token"


@pytest.fixture
async def make_sim(tmp_path: Path):
    """In-process simulated Supervisors served on loopback: ``sim, url = await make_sim(payload_bytes=...)``."""
    from aiohttp.test_utils import TestServer

    from supervisor_sim import Faults, SimConfig, SupervisorSim

    started: list[TestServer] = []

    async def make(payload_bytes: int = 0, root: Path | None = None, stage_delay: float = 0.0):
        sim = SupervisorSim(
            SimConfig(
                root=root or tmp_path / f"supervisor{len(started)}",
                token=SIM_TOKEN,
                payload_bytes=payload_bytes,
                faults=Faults(stage_delay=stage_delay),
            )
        )
        server = TestServer(sim.app, host="127.0.0.1")
        await server.start_server()
        started.append(server)
        return sim, str(server.make_url("")).rstrip("/")

    yield make
    for server in started:
        await server.close()


@pytest.fixture
async def make_runner(tmp_path: Path):
    """Backup runners over given locations against a simulator URL, each with the catalog in tmp_path/data."""
    from backup_addon.catalog import Catalog
    from backup_addon.options import parse_options
    from backup_addon.pipeline import BackupRunner
    from backup_addon.supervisor import SupervisorGateway

    made: list[BackupRunner] = []

    async def make(url: str, locations: list, *, backup_dir: Path | None = None, data_dir: Path | None = None):
        runner = BackupRunner(
            gateway=SupervisorGateway(url, SIM_TOKEN, poll_interval=0.02, stall_timeout=10, request_timeout=10),
            catalog=Catalog((data_dir or tmp_path / "data") / "catalog.sqlite3"),
            locations=locations,
            options=parse_options({}),
            backup_dir=backup_dir or tmp_path / "backup-not-visible",
        )
        made.append(runner)
        return runner

    yield make
    for runner in made:
        await runner.gateway.close()
        runner.catalog.close()
