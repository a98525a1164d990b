"""A Supervisor that answers garbage: each of the gateway's calls gets a broken answer in turn.

A small aiohttp server sits in front of the simulated Supervisor and passes everything through,
except the one call under test, whose answer it replaces: not JSON, HTML, empty, cut in half,
an array, ``data: null``, every field of the wrong type, no fields at all, huge numbers, a 500
with binary junk, and a backup slug that climbs out of its path. Whatever it gets, a backup run
must end as a failed (or, for harmless oddities, successful) run with a message, never with
"unexpected error", and nothing partial may land in the folder location.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from backup_addon.catalog import RunState
from backup_addon.locations import FolderLocation
from backup_addon.supervisor import SupervisorGateway

from .harness import sha256_file

CATEGORY = "hostile input (Supervisor answers)"

type Answer = tuple[int, str | None, bytes]
type Transform = Callable[[Answer], Answer]


def _json_data(transform: Callable[[Any], Any]) -> Transform:
    def apply(answer: Answer) -> Answer:
        status, _, body = answer
        try:
            document = json.loads(body)
        except ValueError:
            return answer
        if isinstance(document, dict) and "data" in document:
            document["data"] = transform(document["data"])
        return status, "application/json", json.dumps(document).encode()

    return apply


def _retyped(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int | float):
        return "many"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return {"list": "no"}
    if isinstance(value, dict):
        return {k: _retyped(v) for k, v in value.items()}
    return value


def _huge(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return 10**40
    if isinstance(value, list):
        return [_huge(v) for v in value]
    if isinstance(value, dict):
        return {k: _huge(v) for k, v in value.items()}
    return value


def _climbing_slug(data: Any) -> Any:
    """Every job reference (the new backup's slug) becomes a path out of /backups."""
    if isinstance(data, dict):
        return {k: ("../../core/api/states/x" if k == "reference" and v else _climbing_slug(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [_climbing_slug(v) for v in data]
    return data


GARBAGE: dict[str, Transform] = {
    "not JSON": lambda a: (200, "application/json", b"<<<not json>>>"),
    "an HTML page": lambda a: (200, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
    "an empty body": lambda a: (200, "application/json", b""),
    "JSON cut in half": lambda a: (a[0], a[1], a[2][: len(a[2]) // 2]),
    "a JSON array": lambda a: (200, "application/json", b"[1, 2, 3]"),
    "data: null": lambda a: (200, "application/json", b'{"result": "ok", "data": null}'),
    "an error without message": lambda a: (200, "application/json", b'{"result": "error"}'),
    "every field of the wrong type": _json_data(_retyped),
    "no fields at all": _json_data(lambda data: {}),
    "numbers of 10^40": _json_data(_huge),
    "500 with binary junk": lambda a: (500, "application/octet-stream", b"\x00\xff\xfe junk"),
    "a slug climbing out of its path": _json_data(_climbing_slug),
}
CALLS = {
    "start the backup (POST /backups/new/full)": ("POST", r"^/backups/new/"),
    "follow the job (GET /jobs/info)": ("GET", r"^/jobs/info$"),
    "read the backup (GET /backups/{slug}/info)": ("GET", r"^/backups/[^/]+/info$"),
    "download it (GET /backups/{slug}/download)": ("GET", r"^/backups/[^/]+/download$"),
}


class Mangler:
    """Passes requests to the simulator; answers matching (method, path) with a transformed answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rule: tuple[str, re.Pattern[str], Transform] | None = None
        self.mangled = 0
        self.paths: list[str] = []
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(f"{request.method} {request.raw_path}")
        if self.session is None:
            self.session = aiohttp.ClientSession()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        async with self.session.request(
            request.method, self.upstream + request.raw_path, headers=headers, data=await request.read()
        ) as upstream:
            answer: Answer = (upstream.status, upstream.headers.get("Content-Type"), await upstream.read())
        if self.rule is not None and request.method == self.rule[0] and self.rule[1].search(request.path):
            answer = self.rule[2](answer)
            self.mangled += 1
        status, ctype, body = answer
        return web.Response(status=status, body=body, headers={"Content-Type": ctype} if ctype else None)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


@pytest.mark.reliability(
    CATEGORY,
    "garbage answers (not JSON, HTML, empty, cut, array, data null, wrong types, no fields, 10^40, 500 + binary, "
    "slug with '../') to one gateway call",
    "the run ends failed (or succeeds when the oddity is harmless) with a message, never 'unexpected error'; "
    "nothing partial in the folder location",
)
@pytest.mark.parametrize("call", list(CALLS), ids=["start", "jobs", "info", "download"])
async def test_garbage_from_the_supervisor(call, make_sim, make_runner, tmp_path, row):
    method, pattern = CALLS[call]
    sim, url = await make_sim(payload_bytes=256 * 1024)
    mangler = Mangler(url)
    server = TestServer(mangler.app, host="127.0.0.1")
    await server.start_server()
    usb = tmp_path / "usb"
    usb.mkdir()
    runner = await make_runner(str(server.make_url("")).rstrip("/"), [FolderLocation("USB", usb)])
    runner.gateway = SupervisorGateway(
        runner.gateway.url, runner.gateway._client._client.token, poll_interval=0.02, unreachable_grace=2,
        job_timeout=20, stall_timeout=5, request_timeout=5,
    )
    outcomes: list[str] = []
    failures: list[str] = []
    unexpected: list[str] = []
    try:
        for variant, transform in GARBAGE.items():
            mangler.rule = (method, re.compile(pattern), transform)
            before = mangler.mangled
            try:
                result = await runner.run("test")
            except Exception as err:
                failures.append(f"{variant}: run() raised {err!r}")
                continue
            finally:
                mangler.rule = None
                await sim.wait_idle()  # the Supervisor may still be making the backup the run gave up on
            if mangler.mangled == before:
                outcomes.append(f"{variant}: not reached")
                continue
            error = result.error or ""
            outcomes.append(f"{variant}: {result.state}" + (f" ({error[:90]})" if error else ""))
            if "unexpected error" in error:
                unexpected.append(variant)
                failures.append(f"{variant}: {error[:200]}")
            elif result.state is RunState.FAILED and not error:
                failures.append(f"{variant}: failed without a message")
            finals = [p for p in usb.rglob("*") if p.is_file() and not p.name.startswith(".")]
            archives = {sha256_file(p) for p in sim.config.backup_dir.glob("*.tar")}
            damaged = [p.name for p in finals if not p.name.endswith(".meta.age") and sha256_file(p) not in archives]
            temps = [p for p in usb.rglob("*") if ".partial-" in p.name]
            if damaged or temps:
                failures.append(f"{variant}: left {damaged} {temps} in the folder")
        climbed = [p for p in mangler.paths if "core/api" in p or "/../" in p]
        if climbed:
            failures.append(f"requests left /backups: {climbed}")
    finally:
        await runner.gateway.close()
        await mangler.close()
        await server.close()
    row.happened = (
        f"{len(GARBAGE) - len(failures)} of {len(GARBAGE)} garbage answers handled; "
        + (f"'unexpected error' for: {', '.join(unexpected)}; " if unexpected else "")
        + "; ".join(outcomes)
    )
    row.nothing_lost = not any("left" in f for f in failures)
    assert not failures, "\n".join(failures)
