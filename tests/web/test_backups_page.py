"""Backups in a real browser: live progress, the matrix, failures, confirmations, hostile names."""

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from backup_addon.catalog import CopyState
from backup_addon.pipeline import ManualBackup
from supervisor_sim.restore import restores

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOSTILE = "<img src=x onerror=alert(1)>"
PROVEN = re.compile(r"^(Written|Checked|Verified|Restorable)$")


async def backed_up(stack, name=None):
    """One finished backup made by the add-on; returns its slug."""
    result = await stack.addon.start_backup(ManualBackup(name=name) if name else None, trigger="test")
    assert result.slug is not None, result.error
    return result.slug


async def test_a_backup_started_from_the_panel_shows_live_progress_and_lands_in_the_matrix(
    make_stack, new_page
):
    stack = await make_stack(stage_delay=0.3)
    page, seen = await new_page()
    await page.goto(stack.url)
    await expect(page.locator("#current-run [data-idle]")).to_be_visible()

    await page.click("#backup-now")
    await page.click("[data-action=start-backup]")
    stage = page.locator("#current-run .run-stage")
    await expect(stage).to_contain_text("Home Assistant is making the backup")
    await expect(page.locator("#backup-now")).to_be_disabled()
    await expect(page.locator("#current-run [data-idle]")).to_be_visible(timeout=20_000)
    await expect(page.locator("#backups-summary")).to_contain_text("Succeeded")

    await page.click("#tabs a[data-page=backups]")
    row = page.locator("#matrix tbody tr").first
    for location in (".local", "NAS", "USB disk"):
        cell = row.locator(f'td[data-location="{location}"]')
        await expect(cell).to_have_attribute("data-state", "committed")
        await expect(cell.locator(".chip")).to_have_text(PROVEN)
    await expect(page.locator("#backup-now")).to_be_enabled()
    assert seen.errors == []


async def test_a_failing_location_shows_its_error(make_stack, new_page, tmpfs):
    # A USB stick that came back read-only: every write fails at once, nothing is retried.
    stick = tmpfs(1, read_only=True)
    stack = await make_stack(locations=[{"name": "Read-only stick", "kind": "folder", "path": str(stick)}])
    slug = await backed_up(stack)
    error = stack.addon.catalog.copy(slug, "Read-only stick").error
    assert error
    page, seen = await new_page()
    await page.goto(stack.url)
    await expect(page.locator('#health [data-location="Read-only stick"] .location-error')).to_have_text(
        error
    )

    await page.click("#tabs a[data-page=backups]")
    cell = page.locator(f'#matrix tr[data-slug="{slug}"] td[data-location="Read-only stick"]')
    await expect(cell).to_have_attribute("data-state", "failed")
    await expect(cell.locator(".cell-error")).to_have_text(error)

    await page.click("#tabs a[data-page=locations]")
    await expect(page.locator('.card[data-location="Read-only stick"] .location-error')).to_have_text(error)
    assert seen.errors == []


async def test_restore_and_delete_ask_before_they_replace_or_remove_anything(make_stack, new_page):
    stack = await make_stack()
    slug = await backed_up(stack)
    page, seen = await new_page()
    await page.goto(f"{stack.url}#backups")
    await page.click(f'#matrix tr[data-slug="{slug}"]')
    copy = page.locator('#backup-dialog .copy-row[data-location="USB disk"]')

    await copy.locator("[data-action=restore]").click()
    confirm = page.locator("dialog.confirm")
    await expect(confirm).to_contain_text("This replaces Home Assistant's settings and history")
    await expect(confirm).to_contain_text("Anything changed since then is lost")
    await confirm.locator("[data-action=cancel]").click()
    await expect(confirm).to_have_count(0)
    assert stack.addon.catalog.recent_runs(5, kind="restore") == []

    await copy.locator("[data-action=delete]").click()
    await expect(confirm).to_contain_text("Delete the copy of")
    await expect(confirm).to_contain_text("The other copies are kept")
    await confirm.locator("[data-action=cancel]").click()
    await asyncio.sleep(0.2)
    assert stack.addon.catalog.copy(slug, "USB disk").state is CopyState.COMMITTED

    await copy.locator("[data-action=delete]").click()
    await confirm.locator("[data-action=confirm]").click()
    await expect(page.locator("#toast")).to_contain_text("Deleted from USB disk")
    assert stack.addon.catalog.copy(slug, "USB disk").state is CopyState.DELETED
    await expect(page.locator('#backup-dialog .copy-row[data-location="USB disk"]')).to_have_count(0)
    assert seen.errors == []


async def test_a_backup_named_like_html_is_shown_as_text(make_stack, new_page):
    stack = await make_stack()
    page, seen = await new_page()
    await page.goto(f"{stack.url}#backups")
    # Named through the panel's own API, as a user typing it into "Back up now" would.
    started = await page.evaluate(
        """async (name) => (await fetch("api/backup", {method: "POST",
             headers: {"X-Requested-With": "backup_321", "Content-Type": "application/json"},
             body: JSON.stringify({type: "full", name})})).status""",
        HOSTILE,
    )
    assert started == 202
    name = page.locator("#matrix .backup-name")
    await expect(name).to_have_text(HOSTILE, timeout=15_000)
    assert await page.locator("#matrix img").count() == 0

    await name.click()
    await expect(page.locator("#backup-dialog .dialog-title")).to_have_text(HOSTILE)
    await page.keyboard.press("Escape")
    await page.click("#tabs a[data-page=overview]")
    await expect(page.locator("#backups-summary")).to_contain_text(HOSTILE)
    await page.click("#tabs a[data-page=activity]")
    await expect(page.locator("#runs li").first).to_contain_text(HOSTILE)
    assert await page.locator("main img").count() == 0
    assert seen.dialogs == []
    assert seen.errors == []


async def test_a_confirmed_restore_hands_the_backup_to_home_assistant(make_stack, new_page):
    stack = await make_stack()
    slug = await backed_up(stack, "Before the kitchen remodel")
    page, seen = await new_page()
    await page.goto(f"{stack.url}#backups")
    await page.click(f'#matrix tr[data-slug="{slug}"]')
    await page.locator('#backup-dialog .copy-row[data-location="USB disk"] [data-action=restore]').click()
    await page.locator("dialog.confirm [data-action=confirm]").click()
    await expect(page.locator("#toast")).to_contain_text("The restore has started")
    (record,) = restores(stack.sim).records
    assert (record.full, record.ok) == (True, True)
    (run,) = stack.addon.catalog.recent_runs(5, kind="restore")
    assert run.state == "succeeded"
    assert seen.errors == []


async def test_a_copy_downloads_decrypted_under_the_backup_s_name(make_stack, new_page):
    stack = await make_stack()
    slug = await backed_up(stack, "Nightly: before/after")
    page, _ = await new_page()
    await page.goto(f"{stack.url}#backups")
    await page.click(f'#matrix tr[data-slug="{slug}"]')
    async with page.expect_download() as info:
        await page.locator(
            '#backup-dialog .copy-row[data-location="USB disk"] [data-action=download]'
        ).click()
    download = await info.value
    assert download.suggested_filename == "Nightly_ before_after.tar"
    data = Path(await download.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == stack.addon.catalog.backup(slug).sha256
