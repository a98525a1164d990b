"""The ingress web server: only the Supervisor may connect; the health check answers loopback."""

import asyncio
import json

from backup_addon.web.app import LOOPBACK, SUPERVISOR_ADDRESS, create_app

from .conftest import TOKEN


async def test_only_the_supervisor_address_may_open_the_panel(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, [SUPERVISOR_ADDRESS]))
    for path in ("/", "/api/status"):
        response = await client.get(path)
        assert response.status == 403
        assert "Home Assistant" in await response.text()
    assert (await client.post("/api/backup")).status == 403


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


async def test_back_up_now_from_the_panel_then_status_shows_the_copies(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, LOOPBACK))
    response = await client.post("/api/backup")
    assert response.status == 202
    assert (await client.post("/api/backup")).status == 409  # one at a time
    for _ in range(200):
        status = await (await client.get("/api/status")).json()
        if status["runs"] and status["runs"][0]["state"] != "running":
            break
        await asyncio.sleep(0.05)
    run = status["runs"][0]
    assert run["state"] == "succeeded"
    assert run["trigger"] == "panel"
    (backup,) = status["backups"]
    assert {c["location"]: c["state"] for c in backup["copies"]} == {".local": "committed", "USB": "committed"}
    assert TOKEN not in json.dumps(status)


async def test_page_uses_relative_urls_only(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, LOOPBACK))
    page = await (await client.get("/")).text()
    assert 'fetch("api/status")' in page
    assert 'fetch("/' not in page and 'href="/' not in page and 'src="/' not in page


async def test_test_connection_of_a_location(addon, aiohttp_client):
    client = await aiohttp_client(create_app(addon, LOOPBACK))
    report = await (await client.post("/api/locations/USB/test")).json()
    assert report["ok"] is True
    assert report["steps"][-1] == "deleted it"
    assert (await client.post("/api/locations/Nope/test")).status == 404
