"""The ingress web server: only the Supervisor may connect; the health check answers loopback."""

import asyncio
import json
import re
from pathlib import Path

from backup_addon.web.app import (
    FORGERY_HEADER,
    FORGERY_VALUE,
    LOOPBACK,
    STATIC_DIR,
    SUPERVISOR_ADDRESS,
    create_app,
)

from .conftest import TOKEN

PANEL = {FORGERY_HEADER: FORGERY_VALUE}
# Anything the page loads or calls by an absolute path would miss ingress's path prefix.
ABSOLUTE_URL = re.compile(
    r"""(?:fetch|EventSource)\(\s*["'`]/|(?:href|src|action)\s*[=:]\s*["'`]/|["'`]/(?:api|static)/"""
)
# The panel loads nothing from the internet (placeholders showing example addresses are fine).
EXTERNAL = re.compile(
    r"""(?:fetch|EventSource|import)\s*\(?\s*["'`]https?:|(?:href|src)\s*[=:]\s*["'`]https?:|url\(\s*["']?https?:|@import"""
)


async def test_only_the_supervisor_address_may_open_the_panel(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, [SUPERVISOR_ADDRESS]))
    for path in ("/", "/api/overview", "/static/js/main.js"):
        response = await client.get(path)
        assert response.status == 403
        assert "Home Assistant" in await response.text()
    assert (await client.post("/api/backup", headers=PANEL)).status == 403


async def test_health_answers_loopback_even_when_the_panel_refuses_it(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, [SUPERVISOR_ADDRESS]))
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_health_reports_a_dead_service_loop(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, LOOPBACK))
    addon._scheduler.cancel()
    await asyncio.sleep(0)
    assert (await client.get("/health")).status == 503


async def test_back_up_now_from_the_panel_then_the_backups_list_shows_the_copies(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, LOOPBACK))
    assert (await client.post("/api/backup")).status == 403  # no anti-forgery header
    response = await client.post("/api/backup", json={"type": "full"}, headers=PANEL)
    assert response.status == 202
    assert (await client.post("/api/backup", json={"type": "full"}, headers=PANEL)).status == 409
    for _ in range(200):
        runs = (await (await client.get("/api/runs")).json())["runs"]
        if runs and runs[0]["state"] != "running":
            break
        await asyncio.sleep(0.05)
    run = runs[0]
    assert (run["state"], run["trigger"], run["kind"]) == ("succeeded", "panel", "backup")
    listing = await (await client.get("/api/backups")).json()
    (backup,) = listing["backups"]
    assert {name: c["state"] for name, c in backup["copies"].items()} == {
        ".local": "committed",
        "USB": "committed",
    }
    assert TOKEN not in json.dumps(listing)


async def test_the_page_and_its_scripts_use_relative_urls_only(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, LOOPBACK))
    page = await (await client.get("/")).text()
    assert 'src="static/js/main.js"' in page
    sources = {"index.html": page}
    for path in Path(STATIC_DIR).rglob("*"):
        if path.suffix in (".js", ".css"):
            sources[str(path.relative_to(STATIC_DIR))] = path.read_text(encoding="utf-8")
    assert any('EventSource("api/events")' in text for text in sources.values())
    for name, text in sources.items():
        assert not ABSOLUTE_URL.search(text), name
        assert (
            "innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text
        ), name
        assert not EXTERNAL.search(text), name


async def test_test_connection_of_a_location(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, LOOPBACK))
    report = await (await client.post("/api/locations/USB/test", headers=PANEL)).json()
    assert report["ok"] is True
    assert report["steps"][-1] == "deleted it"
    assert (await client.post("/api/locations/Nope/test", headers=PANEL)).status == 404
