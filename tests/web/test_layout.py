"""The panel as Home Assistant shows it: under ingress's path prefix, light and dark, on a phone."""

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import expect

from backup_addon.options import BackupType
from backup_addon.pipeline import ManualBackup

from .conftest import PHONE, Stack, build_stack, serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

INGRESS_TOKEN = "sim_ingress_token_0123456789abcdefghijklmnop"
PREFIX = f"/api/hassio_ingress/{INGRESS_TOKEN}"
PAGES = ("overview", "backups", "locations", "activity")
# Hop-by-hop headers, and what the proxy recomputes itself.
NOT_FORWARDED = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding"}
)
NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


def ingress_proxy(upstream: str) -> web.Application:
    """Home Assistant's ingress in miniature: the panel under a path prefix, with X-Ingress-Path."""
    app = web.Application()
    client: dict[str, aiohttp.ClientSession] = {}

    async def forward(request: web.Request) -> web.StreamResponse:
        url = f"{upstream}/{request.match_info['tail']}"
        if request.query_string:
            url += f"?{request.query_string}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        headers["X-Ingress-Path"] = PREFIX
        body = await request.read()
        async with client["session"].request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as answer:
            response = web.StreamResponse(
                status=answer.status,
                headers={k: v for k, v in answer.headers.items() if k.lower() not in NOT_RETURNED},
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def start(_app: web.Application) -> None:
        client["session"] = aiohttp.ClientSession(auto_decompress=False)

    async def stop(_app: web.Application) -> None:
        await client["session"].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", PREFIX + "/{tail:.*}", forward)
    return app


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A panel with history: backups of several days, checked, verified and proven restorable."""
    root = tmp_path_factory.mktemp("seeded")
    cloud = root / "cloud"
    cloud.mkdir()
    stack = await build_stack(
        root / "stack",
        locations=[
            {"name": "USB disk", "kind": "folder", "path": str(root / "stack" / "usb")},
            {"name": "Cloud drive", "kind": "folder", "path": str(cloud), "offsite": True},
        ],
        options={"keep_last": 5},
    )
    addon = stack.addon
    plan = [
        (
            3,
            ManualBackup(
                name="Before updating Mosquitto", type=BackupType.PARTIAL, addons=["core_mosquitto"]
            ),
        ),
        (2, ManualBackup(name="Nightly backup, Tuesday")),
        (1, ManualBackup(name="Nightly backup, Wednesday")),
        (0, ManualBackup(name="Nightly backup, Thursday")),
    ]
    slugs = []
    for days_ago, what in plan:
        stack.sim.faults = stack.sim.faults.updated(
            {"clock_offset": -timedelta(days=days_ago, hours=2).total_seconds()}
        )
        result = await addon.start_backup(what, trigger="schedule")
        assert result.slug is not None, result.error
        slugs.append(result.slug)
    await addon.verify_copy(slugs[-1], "Cloud drive", drill=True)
    await addon.verify_copy(slugs[-1], "USB disk", drill=False)
    await addon.verify_copy(slugs[-2], "Cloud drive", drill=False)
    yield stack
    await stack.close()


async def test_the_panel_works_under_an_ingress_path_prefix(seeded, new_page):
    runner, proxy = await serve(ingress_proxy(seeded.url.rstrip("/")))
    page, seen = await new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        await page.goto(f"{proxy}{PREFIX}/")
        await expect(page.locator("#verdict")).to_be_visible()
        await page.click("#tabs a[data-page=backups]")
        await expect(page.locator("#matrix tbody tr")).to_have_count(4)
        await page.click("#tabs a[data-page=locations]")
        await expect(page.locator("#retention")).to_be_visible()
        await page.click("#tabs a[data-page=activity]")
        await expect(page.locator("#runs li").first).to_be_visible()
    finally:
        await page.close()
        await runner.cleanup()
    assert f"{proxy}{PREFIX}/api/events" in requested
    outside = [
        url for url in requested if not url.startswith(f"{proxy}{PREFIX}/") and not url.startswith("data:")
    ]
    assert outside == []
    assert seen.errors == []


async def test_dark_mode_follows_the_system_setting(seeded, new_page):
    colours = {}
    for scheme in ("light", "dark"):
        page, _ = await new_page(color_scheme=scheme)
        await page.goto(f"{seeded.url}#overview")
        await expect(page.locator("#verdict")).to_be_visible()
        colours[scheme] = await page.evaluate(
            """() => [document.body, document.querySelector("#verdict")].map(
                   (el) => [getComputedStyle(el).backgroundColor, getComputedStyle(el).color])"""
        )
    assert colours["light"][0][0] != colours["dark"][0][0]  # page background
    assert colours["light"][1][0] != colours["dark"][1][0]  # card background
    assert colours["light"][0][1] != colours["dark"][0][1]  # text


async def test_every_page_fits_a_phone_without_sideways_scrolling(seeded, new_page, shots):
    page, seen = await new_page(viewport=PHONE)
    for name in PAGES:
        await page.goto(f"{seeded.url}#{name}")
        await page.wait_for_selector(f'#page[data-page="{name}"] .card')
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], name
        if name in ("overview", "backups"):
            await shots(page, f"phone-{name}")
        if name == "backups":
            await page.click("#matrix tbody tr >> nth=0")
            await expect(page.locator("#backup-dialog .copy-row").first).to_be_visible()
            assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert seen.errors == []


async def test_screenshots_of_every_page(seeded, new_page, shots):
    page, seen = await new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for name in PAGES:
        await page.goto(f"{seeded.url}#{name}")
        await page.wait_for_selector(f'#page[data-page="{name}"] .card')
        await shots(page, name)
    await page.goto(f"{seeded.url}#backups")
    await page.click("#matrix tbody tr >> nth=0")
    await expect(page.locator("#backup-dialog .copy-row").first).to_be_visible()
    await shots(page, "backup-details")
    await page.keyboard.press("Escape")
    await page.click("#backup-now")
    await expect(page.locator("#backup-now-dialog")).to_be_visible()
    await page.check("input[name=backup-type][value=partial]")
    await shots(page, "back-up-now")

    dark, _ = await new_page(color_scheme="dark")
    await dark.goto(f"{seeded.url}#overview")
    await expect(dark.locator("#verdict")).to_be_visible()
    await shots(dark, "dark-overview")
    # Nothing is fetched from anywhere but the add-on itself.
    assert all(url.startswith(seeded.url) or url.startswith("data:") for url in requested)
    assert seen.errors == []
