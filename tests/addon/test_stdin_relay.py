"""The container's main command hands hassio.addon_stdin lines to the service through a FIFO."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from backup_addon.commands import Command, InvalidCommand, read_commands
from backup_addon.stdin_relay import open_keeper

ROOT = Path(__file__).resolve().parents[2]


async def test_lines_written_to_the_container_stdin_reach_the_service_and_the_relay_outlives_eof(tmp_path):
    fifo = tmp_path / "run" / "commands"
    keeper = open_keeper(fifo)  # the service side holds the FIFO open, as the service does
    stdin_read, stdin_write = os.pipe()
    relay = subprocess.Popen(
        [sys.executable, "-m", "backup_addon", "relay-stdin", "--fifo", str(fifo)],
        cwd=ROOT, stdin=stdin_read, stderr=subprocess.PIPE,
    )
    os.close(stdin_read)
    try:
        os.write(stdin_write, b'"backup"\n{"command": "verify", "location": "USB"}\nrubbish\n')
        os.close(stdin_write)  # the Supervisor detached: the relay must keep the container running
        received = []

        async def collect():
            async for item in read_commands(fifo):
                received.append(item)
                if len(received) == 3:
                    return

        await asyncio.wait_for(collect(), timeout=10)
        time.sleep(0.3)
        still_running = relay.poll() is None
    finally:
        relay.terminate()
        _, errors = relay.communicate(timeout=10)
        os.close(keeper)

    assert still_running, errors.decode()
    assert received[0] == Command(action="backup")
    assert isinstance(received[1], Command) and received[1].location == "USB"
    assert isinstance(received[2], InvalidCommand)
