"""The first-run setup in a real browser: save the kit, prove it, choose settings, add a location, save."""

import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from supervisor_sim.addon_self import addon_self

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY_LINE = re.compile(r"^#\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){6})\s*$", re.MULTILINE)


async def test_the_setup_wizard_from_the_kit_to_saved_settings(make_stack, new_page, shots):
    stack = await make_stack(setup_done=False)
    new_disk = stack.root / "new-disk"
    new_disk.mkdir()
    page, seen = await new_page()
    await page.goto(stack.url)

    setup = page.locator("#setup")
    await expect(setup).to_have_attribute("data-step", "1")
    await expect(page.locator("#key-id")).to_have_text(re.compile(r"^age1"))
    assert stack.addon.keys.current not in await page.content()
    async with page.expect_download() as info:
        await page.click("#kit-download")
    kit = Path(await (await info.value).path()).read_text(encoding="utf-8")
    key = KEY_LINE.search(kit).group(1)
    assert key == stack.addon.keys.current
    await shots(page, "setup-kit")

    await page.fill("#kit-fragment", "0000" if not key.endswith("0000") else "1111")
    await page.click("[data-action=confirm-kit]")
    await expect(page.locator("#kit-error")).to_contain_text("does not match")
    assert not stack.addon.keys.kit_confirmed
    await page.fill("#kit-fragment", key.rsplit("-", 1)[1].lower())
    await page.click("[data-action=confirm-kit]")
    await expect(setup).to_have_attribute("data-step", "2")
    assert stack.addon.keys.kit_confirmed

    await expect(page.locator("input[name=settings][value=recommended]")).to_be_checked()
    await page.select_option("#new-location-kind", "folder")
    await page.fill("#new-location-name", "New disk")
    await page.fill("#new-location-path", str(new_disk))
    await expect(page.locator("[data-action=add-location]")).to_be_disabled()
    await page.click("[data-action=test-new-location]")
    await expect(page.locator("#new-location-result .probe")).to_have_attribute("data-ok", "true")
    await page.click("[data-action=add-location]")
    await expect(page.locator('#added-locations li[data-location="New disk"]')).to_be_visible()
    await shots(page, "setup-settings")

    await page.click("[data-action=next]")
    await expect(setup).to_have_attribute("data-step", "3")
    await page.click("[data-action=save]")
    await expect(page.locator("#setup-saved")).to_be_visible()
    own = addon_self(stack.sim)
    assert len(own.restarts) == 1
    assert [loc["name"] for loc in own.options["locations"]] == ["USB disk", "New disk"]
    assert own.options["keep_last"] == 3
    # The add-on restarts with the saved options; once it answers, the page goes on by itself.
    await expect(page.locator('#health [data-location="New disk"]')).to_be_visible(timeout=15_000)
    await expect(page.locator("#setup-reminder")).to_have_count(0)
    assert [loc.name for loc in stack.addon.locations] == ["USB disk", "New disk"]
    assert stack.addon.options.keep_last == 3
    assert seen.errors == []


async def test_the_setup_can_wait_and_the_overview_offers_it_until_done(make_stack, new_page):
    stack = await make_stack(setup_done=False)
    page, seen = await new_page()
    await page.goto(stack.url)
    await expect(page.locator("#setup")).to_be_visible()
    await page.get_by_role("button", name="Set up later").click()
    reminder = page.locator("#setup-reminder")
    await expect(reminder).to_contain_text("Save your emergency kit")
    await reminder.get_by_role("button", name="Continue setup").click()
    await expect(page.locator("#setup")).to_have_attribute("data-step", "1")
    await page.reload()
    await expect(page.locator("#setup")).to_be_visible()  # opens by itself until it is done
    assert seen.errors == []


async def test_a_wrong_new_location_is_explained_before_it_can_be_added(make_stack, new_page, tmpfs):
    stack = await make_stack()
    read_only = tmpfs(1, read_only=True)
    page, _ = await new_page()
    await page.goto(f"{stack.url}#setup")
    await expect(page.locator("#setup")).to_have_attribute("data-step", "2")
    await page.fill("#new-location-name", "Read-only stick")
    await page.fill("#new-location-path", str(read_only))
    await page.click("[data-action=test-new-location]")
    result = page.locator("#new-location-result")
    await expect(result.locator(".probe")).to_have_attribute("data-ok", "false")
    await expect(result.locator(".error-box")).to_contain_text("read-write")
    await expect(page.locator("[data-action=add-location]")).to_be_disabled()
    await page.fill("#new-location-path", "relative/path")
    await page.click("[data-action=test-new-location]")
    await expect(result).to_contain_text("absolute path")
