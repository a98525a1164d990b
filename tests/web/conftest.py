"""The real add-on, the simulated Supervisor and folder locations on loopback, and one headless Chromium.

Every fixture runs in the module's event loop, so one browser serves all tests of a module.
"""

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from backup_addon.options import load_options, parse_options
from backup_addon.service import Addon, Settings
from backup_addon.web.app import LOOPBACK, create_app
from backup_addon.web.wizard import SETUP_DONE_META
from supervisor_sim import Faults, SimConfig, SupervisorSim
from supervisor_sim.addon_self import addon_self

TOKEN = "web-test-supervisor-token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
MOUNT = "NAS"


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on loopback (a free port by default); the URL has no trailing slash."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@dataclass
class Stack:
    """One simulated Supervisor, one add-on and its panel, all on loopback."""

    sim: SupervisorSim
    addon: Addon
    url: str  # the panel, with a trailing slash
    sim_url: str
    root: Path
    runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.addon.settings.data_dir

    async def restart(self) -> None:
        """What the Supervisor does on /addons/self/restart: the add-on starts again with its options file."""
        port = self.runners[0].addresses[0][1]
        await self.runners[0].cleanup()
        await self.addon.stop()
        self.addon = Addon(self.addon.settings, load_options(self.data_dir / "options.json"))
        await self.addon.start(web_server=False, upkeep_loop=False)
        self.runners[0] = (await serve(create_app(self.addon, LOOPBACK), port=port))[0]

    async def close(self) -> None:
        for runner in self.runners[:1]:
            await runner.cleanup()
        await self.addon.stop()
        for runner in self.runners[1:]:
            await runner.cleanup()


type MakeStack = Callable[..., Awaitable[Stack]]


async def build_stack(
    root: Path,
    *,
    locations: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    setup_done: bool = True,
    stage_delay: float = 0.01,
) -> Stack:
    """Start a simulated Supervisor, the add-on over folder locations and its panel under ``root``."""
    usb = root / "usb"
    usb.mkdir(parents=True)
    sim = SupervisorSim(
        SimConfig(
            root=root / "supervisor", token=TOKEN, mounts=[MOUNT], faults=Faults(stage_delay=stage_delay)
        )
    )
    sim_runner, sim_url = await serve(sim.app)
    data_dir = root / "data"
    raw = {
        "supervisor_locations": [MOUNT],
        "locations": locations
        if locations is not None
        else [{"name": "USB disk", "kind": "folder", "path": str(usb)}],
        **(options or {}),
    }
    settings = Settings(
        supervisor_url=sim_url,
        token=TOKEN,
        data_dir=data_dir,
        backup_dir=root / "supervisor" / "backup",
        web_host="127.0.0.1",
        web_port=0,
        allowed_clients=LOOPBACK,
        poll_interval=0.02,
    )
    addon = Addon(settings, parse_options(raw))
    await addon.start(web_server=False, upkeep_loop=False)
    addon_self(sim).options_file = data_dir / "options.json"
    if setup_done:
        addon.confirm_kit()
        addon.catalog.set_meta(SETUP_DONE_META, "1")
    panel_runner, panel_url = await serve(create_app(addon, LOOPBACK))
    stack = Stack(sim, addon, f"{panel_url}/", sim_url, root, [panel_runner, sim_runner])
    addon_self(sim).on_restart = stack.restart
    return stack


@pytest_asyncio.fixture(loop_scope="module")
async def make_stack(tmp_path: Path) -> AsyncIterator[MakeStack]:
    """Build stacks for one test; `setup_done=False` leaves the first-run setup to do."""
    stacks: list[Stack] = []

    async def make(**kwargs: Any) -> Stack:
        stack = await build_stack(tmp_path / f"stack{len(stacks)}", **kwargs)
        stacks.append(stack)
        return stack

    yield make
    for stack in reversed(stacks):
        await stack.close()


@pytest_asyncio.fixture(loop_scope="module")
async def stack(make_stack: MakeStack) -> Stack:
    return await make_stack()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class PageErrors:
    """JavaScript errors and alert() calls seen on a page: a passing test has none."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def watch(page: Page) -> PageErrors:
    seen = PageErrors()
    page.on("pageerror", lambda err: seen.errors.append(str(err)))

    async def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return seen


@pytest_asyncio.fixture(loop_scope="module")
async def new_page(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[tuple[Page, PageErrors]]]]:
    """Open pages in fresh browser contexts (viewport, colour scheme); closed after the test."""
    contexts = []

    async def open_page(**context_options: Any) -> tuple[Page, PageErrors]:
        context = await browser.new_context(
            **{"viewport": DESKTOP, "accept_downloads": True, "reduced_motion": "reduce", **context_options}
        )
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(10_000)
        return page, watch(page)

    yield open_page
    for context in contexts:
        await context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Page, str], Awaitable[None]]:
    """Save a screenshot as a test artifact: in BACKUP_321_SCREENSHOTS when set, else in a temp dir."""
    wanted = os.environ.get("BACKUP_321_SCREENSHOTS")
    directory = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)

    async def take(page: Page, name: str) -> None:
        # From the top: a full-page shot of a scrolled page repeats the sticky app bar mid-way.
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=directory / f"{name}.png", full_page=True, animations="disabled")

    return take
