"""The service as the Supervisor starts it: `python -m backup_addon run` in its own process."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_addon.catalog import Catalog
from backup_addon.crypto.age import decrypt_file
from backup_addon.crypto.keys import KeyStore

from .conftest import sha256_file

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "service-test-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def simulator(tmp_path):
    """The simulated Supervisor in its own process, like the real one."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor_sim", "--port", str(port), "--dir", str(tmp_path / "supervisor"),
         "--token", TOKEN, "--payload-mib", "48", "--stage-delay", "0.01"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    line = proc.stdout.readline()
    if "listening" not in line:
        proc.kill()
        raise AssertionError(f"the simulator did not start: {line}{proc.stdout.read()}")
    url = f"http://127.0.0.1:{port}"
    yield url
    proc.terminate()
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def set_faults(url, faults):
    request = urllib.request.Request(f"{url}/_sim/faults", data=json.dumps(faults).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


def sim_backups(url):
    request = urllib.request.Request(f"{url}/backups", headers={"Authorization": f"Bearer {TOKEN}"})
    return json.load(urllib.request.urlopen(request, timeout=5))["data"]["backups"]


def start_addon(url, data_dir, backup_dir):
    env = {**os.environ, "SUPERVISOR_API": url, "SUPERVISOR_TOKEN": TOKEN, "BACKUP_321_DATA_DIR": str(data_dir),
           "BACKUP_321_BACKUP_DIR": str(backup_dir), "BACKUP_321_WEB_PORT": str(free_port()), "TZ": "UTC"}
    return subprocess.Popen([sys.executable, "-m", "backup_addon", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pretend_a_slot_was_missed(data_dir):
    catalog = Catalog(data_dir / "catalog.sqlite3")
    catalog.set_meta("last_scheduled_slot", (datetime.now(UTC) - timedelta(days=2)).isoformat())
    catalog.close()


def runs(data_dir):
    with closing(sqlite3.connect(f"file:{data_dir / 'catalog.sqlite3'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT id, state, error FROM runs ORDER BY id").fetchall()


def write_options(data_dir, options):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "options.json").write_text(json.dumps(options))


def test_invalid_options_exit_non_zero_with_one_line_per_problem_and_touch_nothing(simulator, tmp_path):
    data = tmp_path / "data"
    write_options(data, {"schedules": [{"time": "9am"}], "locations": [{"name": "x", "kind": "tape", "path": "/x"}]})
    addon = start_addon(simulator, data, tmp_path / "nowhere")
    out, _ = addon.communicate(timeout=30)

    assert addon.returncode != 0
    problems = [line for line in out.splitlines() if "Invalid option:" in line]
    assert len(problems) == 2, out
    assert "schedules.0.time: must be a time of day as HH:MM" in problems[0]
    assert "locations.0: kind 'tape' is not known; use one of 'folder'" in problems[1]
    assert sim_backups(simulator) == []
    assert not (data / "catalog.sqlite3").exists()


def test_kill_during_streaming_then_restart_recovers(simulator, tmp_path):
    data = tmp_path / "data"
    usb = tmp_path / "usb"
    usb.mkdir()
    write_options(data, {"locations": [{"name": "USB", "kind": "folder", "path": str(usb)}]})
    pretend_a_slot_was_missed(data)
    set_faults(simulator, {"stall_download_after": 16 << 20})
    # The add-on does not see the Supervisor's backup folder, so it streams the download.
    addon = start_addon(simulator, data, tmp_path / "not-visible")
    try:
        partial = wait_for(lambda: [p for p in usb.rglob(".*partial-*") if p.stat().st_size > 0], 60,
                           "a copy to be half-written")
        addon.send_signal(signal.SIGKILL)
        addon.communicate(timeout=10)
    finally:
        if addon.poll() is None:
            addon.kill()
            addon.communicate()
    assert partial[0].exists()
    assert list(usb.rglob("*.tar")) == []  # nothing under a final name
    assert runs(data)[-1][1] == "running"  # the dead process could not record anything

    set_faults(simulator, {"stall_download_after": None})
    pretend_a_slot_was_missed(data)
    addon = start_addon(simulator, data, tmp_path / "not-visible")
    try:
        wait_for(lambda: any(state == "succeeded" for _, state, _ in runs(data)), 60, "the next run to succeed")
        addon.send_signal(signal.SIGTERM)
        out, _ = addon.communicate(timeout=30)
    finally:
        if addon.poll() is None:
            addon.kill()
            addon.communicate()

    assert addon.returncode == 0, out
    (_, first_state, first_error), *_ = runs(data)
    assert first_state == "failed"
    assert "interrupted" in first_error
    assert "was interrupted when the add-on stopped" in out
    assert list(usb.rglob(".*partial-*")) == []
    (copy,) = list(usb.rglob("*.tar.age"))
    opened = tmp_path / "opened.tar"
    with copy.open("rb") as src, opened.open("wb") as dst:
        decrypt_file(src, dst, KeyStore.open(data).identities())
    archives = list((tmp_path / "supervisor" / "backup").glob("*.tar"))
    assert sha256_file(opened) in {sha256_file(a) for a in archives}
