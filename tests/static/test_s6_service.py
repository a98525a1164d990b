"""The s6-overlay service of the add-on: its layout, and its run/finish scripts under a real
s6-svscan (Debian's s6). s6-overlay itself is not available here, so the test rewrites the
s6-overlay-only interpreters and paths into temporary stand-ins:

- `#!/command/with-contenv sh|bash|bashio` -> `/bin/sh` or `/bin/bash` (bashio::log.* stubbed),
- `python3 -m backup_addon run` -> a stand-in that runs until told to exit with a given code,
- the container's exit-code file and `/run/s6/basedir/bin/halt` -> files under tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ._helpers import SERVICE_DIR, SLUG, tool

SERVICE = SERVICE_DIR / SLUG
RUN_COMMAND = "python3 -m backup_addon run"
EXITCODE_FILE = "/run/s6-linux-init-container-results/exitcode"
HALT = "/run/s6/basedir/bin/halt"
SHELLS = {"/bin/sh", "/bin/bash", "/usr/bin/env bash", "/usr/bin/env sh"}
CONTENV_SHELLS = {
    "/command/with-contenv sh": "/bin/sh",
    "/command/with-contenv bash": "/bin/bash",
    "/command/with-contenv bashio": "/bin/bash",
    "/usr/bin/with-contenv sh": "/bin/sh",
    "/usr/bin/with-contenv bash": "/bin/bash",
    "/usr/bin/with-contenv bashio": "/bin/bash",
}
BASHIO_STUBS = "\n".join(
    f'bashio::log.{level}() {{ echo "[{level}] $*" >&2; }}'
    for level in ("trace", "debug", "info", "notice", "warning", "error", "fatal")
)
S6_HINT = "install the Debian packages s6 and execline (`bash scripts/setup.sh` as root)"


def _shebang(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#!"), f"{path.name}: no shebang"
    return first[2:].strip()


# --- Layout ----------------------------------------------------------------------------------


def test_service_is_a_longrun() -> None:
    assert (SERVICE / "type").read_text(encoding="utf-8").strip() == "longrun"


@pytest.mark.parametrize("script", ["run", "finish"])
def test_scripts_are_executable_with_a_known_interpreter(script: str) -> None:
    path = SERVICE / script
    assert path.is_file(), f"{script} is missing"
    assert os.access(path, os.X_OK), f"{script} is not executable (chmod 755)"
    interpreter = _shebang(path)
    assert interpreter in SHELLS or interpreter in CONTENV_SHELLS, f"{script}: #!{interpreter}"


def test_run_execs_the_addon_with_the_container_environment() -> None:
    interpreter = _shebang(SERVICE / "run")
    assert "with-contenv" in interpreter, "run needs with-contenv to see SUPERVISOR_TOKEN"
    lines = [line.strip() for line in (SERVICE / "run").read_text(encoding="utf-8").splitlines()]
    assert f"exec {RUN_COMMAND}" in lines


def test_finish_halts_the_container_the_s6_overlay_way() -> None:
    text = (SERVICE / "finish").read_text(encoding="utf-8")
    assert EXITCODE_FILE in text
    assert f"exec {HALT}" in text


def test_service_is_in_the_user_bundle_and_depends_on_base() -> None:
    assert (SERVICE / "dependencies.d" / "base").is_file()
    assert (SERVICE_DIR / "user" / "contents.d" / SLUG).is_file()
    for dependency in (SERVICE / "dependencies.d").iterdir():
        assert dependency.name == "base" or (SERVICE_DIR / dependency.name).is_dir(), dependency


def test_every_listed_service_exists() -> None:
    for entry in (SERVICE_DIR / "user" / "contents.d").iterdir():
        service = SERVICE_DIR / entry.name
        kind = (service / "type").read_text(encoding="utf-8").strip()
        assert kind in {"longrun", "oneshot", "bundle"}, f"{entry.name}: type {kind!r}"
        if kind == "longrun":
            assert (service / "run").is_file(), f"{entry.name}: no run"
        if kind == "oneshot":
            assert (service / "up").is_file(), f"{entry.name}: no up"


# --- A real run under s6-svscan --------------------------------------------------------------


def _rewrite_for_local_s6(text: str, replacements: dict[str, str]) -> str:
    lines = text.splitlines()
    interpreter = lines[0][2:].strip()
    if interpreter in CONTENV_SHELLS:
        lines[0] = f"#!{CONTENV_SHELLS[interpreter]}"
        if interpreter.endswith("bashio"):
            lines.insert(1, BASHIO_STUBS)
    text = "\n".join(lines) + "\n"
    for old, new in replacements.items():
        assert old in text, f"expected {old!r} in the script"
        text = text.replace(old, new)
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "/command/" in line or "with-contenv" in line], text
    return text


@dataclass
class Supervised:
    """One s6-svscan over a scan directory holding the add-on's service."""

    root: Path
    scandir: Path
    service: Path
    process: subprocess.Popen[bytes]
    seen_pids: set[int] = field(default_factory=set)

    def s6(self, *args: str) -> str:
        result = subprocess.run(
            [tool(args[0], S6_HINT), *args[1:]], capture_output=True, text=True, timeout=15, check=False
        )
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def wait_up(self, not_pid: int | None = None) -> int:
        """Wait until the service runs, as a process other than `not_pid` if given (s6
        restarts a service at most once a second)."""
        state: list[str] = []

        def running() -> bool:
            result = subprocess.run(
                [tool("s6-svstat", S6_HINT), "-o", "up,pid", str(self.service)],
                capture_output=True,
                text=True,
                timeout=15,
                check=False,
            )  # fails until s6-svscan has started the service's s6-supervise
            state[:] = result.stdout.split() if result.returncode == 0 else ["false", "-1"]
            return state[0] == "true" and int(state[1]) != not_pid

        _wait_for(running, "the service to be up")
        pid = int(state[1])
        self.seen_pids.add(pid)
        return pid

    def halts(self) -> list[str]:
        marker = self.root / "halted"
        return marker.read_text(encoding="utf-8").split() if marker.exists() else []

    def exitcode(self) -> str:
        return (self.root / "exitcode").read_text(encoding="utf-8").strip()

    def tell_standin_to_exit(self, code: int) -> None:
        (self.root / "exit-with").write_text(f"{code}\n", encoding="utf-8")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    scandir = tmp_path / "scan"
    service = scandir / SLUG
    service.mkdir(parents=True)
    # Runs until `exit-with` appears, then exits with the code written in it. It gives up
    # after a minute so that nothing outlives a broken test.
    standin = tmp_path / "standin"
    standin.write_text(
        "#!/bin/sh\n"
        f"control={tmp_path}/exit-with\n"
        "i=0\n"
        'while [ ! -f "$control" ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\n'
        'code=$(cat "$control" 2>/dev/null || echo 0); rm -f "$control"; exit "$code"\n',
        encoding="utf-8",
    )
    halt = tmp_path / "halt"
    halt.write_text(f"#!/bin/sh\necho halted >> {tmp_path}/halted\n", encoding="utf-8")
    run = _rewrite_for_local_s6((SERVICE / "run").read_text(encoding="utf-8"), {RUN_COMMAND: str(standin)})
    finish = _rewrite_for_local_s6(
        (SERVICE / "finish").read_text(encoding="utf-8"),
        {EXITCODE_FILE: str(tmp_path / "exitcode"), HALT: str(halt)},
    )
    (service / "run").write_text(run, encoding="utf-8")
    (service / "finish").write_text(finish, encoding="utf-8")
    for script in (standin, halt, service / "run", service / "finish"):
        script.chmod(0o755)

    log = (tmp_path / "s6-svscan.log").open("wb")
    process = subprocess.Popen(
        [tool("s6-svscan", S6_HINT), str(scandir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    box = Supervised(tmp_path, scandir, service, process)
    try:
        yield box
    finally:
        subprocess.run(
            [tool("s6-svscanctl", S6_HINT), "-t", str(scandir)],
            capture_output=True,
            timeout=15,
            check=False,
        )
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        for pid in box.seen_pids:  # only if that pid is still our stand-in
            with contextlib.suppress(OSError):
                if str(standin).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        log.close()


def test_an_unexpected_exit_halts_the_container(supervised: Supervised) -> None:
    pid = supervised.wait_up()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"/standin") for part in cmdline), "run must exec the add-on"

    os.kill(pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
    _wait_for(lambda: supervised.halts() == ["halted"], "finish to halt after SIGKILL")
    assert supervised.exitcode() == str(128 + signal.SIGKILL)

    supervised.wait_up(not_pid=pid)  # s6 restarts it (the real halt stops the container)
    supervised.tell_standin_to_exit(3)  # e.g. an unhandled Python exception
    _wait_for(lambda: len(supervised.halts()) == 2, "finish to halt after exit code 3")
    assert supervised.exitcode() == "3"


def test_a_requested_stop_or_clean_exit_does_not_halt(supervised: Supervised) -> None:
    pid = supervised.wait_up()
    supervised.tell_standin_to_exit(0)
    supervised.wait_up(not_pid=pid)  # restarted by s6, not halted

    supervised.s6("s6-svc", "-wD", "-T", "5000", "-d", str(supervised.service))  # SIGTERM
    status = supervised.s6("s6-svstat", str(supervised.service))
    assert status.startswith("down (signal SIGTERM)"), status
    assert supervised.halts() == []
    assert not (supervised.root / "exitcode").exists()
