"""``python -m supervisor_sim`` starts a working simulator and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _run(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supervisor_sim", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_help_lists_the_options() -> None:
    process = await _run("--help")
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    for option in ("--port", "--dir", "--token", "--host", "--payload-mib", "--mount"):
        assert option in stdout.decode()


async def test_cli_serves_the_api_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    process = await _run(
        "--port", str(port), "--dir", str(tmp_path / "d"), "--token", "cli-token", "--mount", "NAS"
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        assert f"http://127.0.0.1:{port}" in line.decode()
        async with aiohttp.ClientSession(headers={"X-Supervisor-Token": "cli-token"}) as session:
            async with session.get(f"http://127.0.0.1:{port}/info") as resp:
                assert (await resp.json())["data"]["state"] == "running"
            async with session.post(
                f"http://127.0.0.1:{port}/backups/new/partial", json={"name": "cli", "folders": ["ssl"]}
            ) as resp:
                slug = (await resp.json())["data"]["slug"]
        assert (tmp_path / "d" / "backup" / f"{slug}.tar").is_file()
        assert (tmp_path / "d" / "mounts" / "NAS").is_dir()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
