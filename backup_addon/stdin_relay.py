"""Hand the container's stdin to the service: `hassio.addon_stdin` lines reach the add-on here.

Under s6-overlay v3 supervised services get /dev/null as stdin; only the container's main
command (the Dockerfile CMD) holds the stdin the Supervisor writes to. This relay is that
command: it copies each line into a FIFO the service reads, and never exits on its own,
because the container stops when it does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path
from typing import BinaryIO

COMMANDS_FIFO = Path("/run/backup_321/commands")


def ensure_fifo(path: Path) -> None:
    """Create the FIFO (and its folder) unless it exists; whichever side starts first makes it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.mkfifo(path, 0o600)
    if not stat.S_ISFIFO(path.stat().st_mode):
        raise OSError(f"{path} exists and is not a FIFO")


def open_keeper(path: Path) -> int:
    """Open the FIFO read-write: a writer that is always there, so readers never see end-of-file."""
    ensure_fifo(path)
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


def relay(source: BinaryIO, fifo: Path) -> None:
    """Copy lines from source into the FIFO until source ends, then wait to be stopped."""
    fd = open_keeper(fifo)
    try:
        for line in source:
            data = line if line.endswith(b"\n") else line + b"\n"
            os.write(fd, data)
    finally:
        os.close(fd)


def main(fifo: Path = COMMANDS_FIFO) -> int:
    stdin = os.fdopen(os.dup(0), "rb", buffering=0)
    with stdin:
        relay(stdin, fifo)
    # The Supervisor closed stdin; the container must keep running until it is stopped.
    while True:
        signal.pause()
