"""The panel's JSON API against the real add-on: who may call it, what it reveals, what it does."""

import asyncio
import json

import aiohttp
import pytest

from backup_addon.catalog import Catalog
from backup_addon.web.app import FORGERY_HEADER, FORGERY_VALUE, SUPERVISOR_ADDRESS, create_app
from backup_addon.web.backups import download_filename
from backup_addon.web.memo import Memo
from supervisor_sim.addon_self import addon_self

from .conftest import serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

PANEL = {FORGERY_HEADER: FORGERY_VALUE}


async def _json(session, method, url, body=None, headers=PANEL):
    async with session.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def _wait_for_run(session, url, timeout=15.0):
    async with asyncio.timeout(timeout):
        while True:
            _, overview = await _json(session, "GET", f"{url}api/overview")
            if (
                not overview["running"]
                and overview["last_run"]
                and overview["last_run"]["state"] != "running"
            ):
                return overview
            await asyncio.sleep(0.05)


async def test_a_request_from_another_address_than_the_supervisor_is_refused(stack):
    runner, url = await serve(create_app(stack.addon, [SUPERVISOR_ADDRESS]))
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/api/overview", "/static/js/main.js", "/api/kit"):
                async with session.get(f"{url}{path}") as response:
                    assert response.status == 403, path
                    assert "Home Assistant" in await response.text()
            async with session.post(f"{url}/api/backup", headers=PANEL) as response:
                assert response.status == 403
    finally:
        await runner.cleanup()


async def test_a_state_changing_request_without_the_panel_header_is_refused(stack):
    async with aiohttp.ClientSession() as session:
        for method, path in (
            ("POST", "api/backup"),
            ("POST", "api/kit/confirm"),
            ("POST", "api/setup/save"),
            ("POST", "api/locations/USB%20disk/test"),
            ("DELETE", "api/backups/x/copies/USB%20disk"),
        ):
            status, body = await _json(session, method, f"{stack.url}{path}", {}, headers={})
            assert status == 403, path
            assert "did not come from the add-on's page" in body["error"]
        assert not stack.addon.runner.running


async def test_back_up_now_then_the_matrix_lists_every_copy(stack):
    async with aiohttp.ClientSession() as session:
        status, _ = await _json(session, "POST", f"{stack.url}api/backup", {"type": "full"})
        assert status == 202
        status, body = await _json(session, "POST", f"{stack.url}api/backup", {"type": "full"})
        assert (status, body["error"]) == (409, "A backup is already running; wait for it to finish.")
        overview = await _wait_for_run(session, stack.url)
        assert overview["last_run"]["state"] == "succeeded"
        status, page = await _json(session, "GET", f"{stack.url}api/backups")
    assert status == 200
    assert [c["name"] for c in page["locations"]] == [".local", "NAS", "USB disk"]
    (backup,) = page["backups"]
    assert {name: c["state"] for name, c in backup["copies"].items()} == {
        ".local": "committed",
        "NAS": "committed",
        "USB disk": "committed",
    }


async def test_a_partial_backup_takes_only_known_folders_and_add_on_slugs(stack):
    async with aiohttp.ClientSession() as session:
        status, body = await _json(
            session, "POST", f"{stack.url}api/backup", {"type": "partial", "folders": ["etc"]}
        )
        assert (status, body["error"]) == (400, "The list of folders is not valid.")
        status, body = await _json(
            session,
            "POST",
            f"{stack.url}api/backup",
            {"type": "partial", "addons": ["../x"], "homeassistant": False},
        )
        assert status == 400
        status, _ = await _json(
            session,
            "POST",
            f"{stack.url}api/backup",
            {"type": "partial", "folders": ["share"], "name": "Just share"},
        )
        assert status == 202
        await _wait_for_run(session, stack.url)
        _, page = await _json(session, "GET", f"{stack.url}api/backups")
    (backup,) = page["backups"]
    assert (backup["name"], backup["type"]) == ("Just share", "partial")


async def test_a_partial_backup_offers_every_installed_add_on_by_name(stack):
    async with aiohttp.ClientSession() as session:
        status, body = await _json(session, "GET", f"{stack.url}api/backup/choices")
    assert status == 200
    offered = {a["slug"]: a["name"] for a in body["addons"]}
    assert offered["core_mosquitto"] == "Mosquitto broker"
    assert "Terminal & SSH" in offered.values()


async def test_the_key_never_reaches_the_page_except_inside_the_kit(make_stack):
    stack = await make_stack(setup_done=False)
    key = stack.addon.keys.current
    async with aiohttp.ClientSession() as session:
        for path in (
            "api/overview",
            "api/setup",
            "api/backups",
            "api/locations",
            "api/runs",
            "api/retention",
        ):
            async with session.get(f"{stack.url}{path}") as response:
                assert response.status == 200, path
                assert key not in await response.text(), path
        async with session.get(f"{stack.url}api/kit") as response:
            assert (
                response.headers["Content-Disposition"]
                == 'attachment; filename="backup_321_emergency_kit.txt"'
            )
            assert response.headers["Cache-Control"] == "no-store"
            assert key in await response.text()


async def test_the_kit_is_confirmed_only_with_the_last_group_of_the_key(make_stack):
    stack = await make_stack(setup_done=False)
    last = stack.addon.keys.current.rsplit("-", 1)[1]
    wrong = "0000" if last != "0000" else "1111"
    async with aiohttp.ClientSession() as session:
        status, body = await _json(session, "POST", f"{stack.url}api/kit/confirm", {"fragment": wrong})
        assert status == 400
        assert "does not match" in body["error"]
        assert not stack.addon.keys.kit_confirmed
        status, body = await _json(
            session, "POST", f"{stack.url}api/kit/confirm", {"fragment": f" {last.lower()} "}
        )
        assert status == 200
        assert body["kit_confirmed"] is True
    assert stack.addon.keys.kit_confirmed


async def test_guessing_the_key_fragment_is_slowed_down(make_stack):
    stack = await make_stack(setup_done=False)
    last = stack.addon.keys.current.rsplit("-", 1)[1]
    guesses = [g for g in ("AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF") if g != last][:5]
    async with aiohttp.ClientSession() as session:
        for guess in guesses:
            status, _ = await _json(session, "POST", f"{stack.url}api/kit/confirm", {"fragment": guess})
            assert status == 400
        status, body = await _json(session, "POST", f"{stack.url}api/kit/confirm", {"fragment": last})
    assert status == 429
    assert "Too many wrong tries" in body["error"]
    assert not stack.addon.keys.kit_confirmed


async def test_saving_the_settings_goes_through_the_supervisor_which_restarts_the_add_on(make_stack):
    stack = await make_stack()
    new = stack.root / "new-disk"
    new.mkdir()
    location = {"name": "New disk", "kind": "folder", "path": str(new)}
    async with aiohttp.ClientSession() as session:
        status, report = await _json(
            session, "POST", f"{stack.url}api/setup/test-location", {"location": location}
        )
        assert status == 200
        assert report["ok"] is True
        status, body = await _json(
            session, "POST", f"{stack.url}api/setup/save", {"recommended": True, "add_locations": [location]}
        )
    assert (status, body) == (200, {"saved": True, "restarting": True})
    own = addon_self(stack.sim)
    assert len(own.restarts) == 1
    assert [loc["name"] for loc in own.options["locations"]] == ["USB disk", "New disk"]
    assert own.options["keep_last"] == 3
    written = json.loads((stack.data_dir / "options.json").read_text())
    assert written == own.options


async def test_testing_a_new_location_explains_what_is_wrong_with_it(stack):
    async with aiohttp.ClientSession() as session:
        status, body = await _json(
            session,
            "POST",
            f"{stack.url}api/setup/test-location",
            {"location": {"name": "Relative", "kind": "folder", "path": "usb"}},
        )
        assert status == 400
        assert body["error"] == "Check the location's details."
        assert any("absolute path" in p for p in body["problems"])
        status, report = await _json(
            session,
            "POST",
            f"{stack.url}api/setup/test-location",
            {"location": {"name": "Gone", "kind": "folder", "path": str(stack.root / "unplugged")}},
        )
    assert status == 200
    assert report["ok"] is False
    assert report["error"]


async def test_the_live_event_stream_starts_with_the_current_state(stack):
    async with aiohttp.ClientSession() as session, session.get(f"{stack.url}api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.content.readline() == b"retry: 2000\n"
        await response.content.readline()
        first = await response.content.readline()
    assert json.loads(first.removeprefix(b"data: ")) == {"type": "idle"}


async def test_pages_are_served_with_a_strict_content_security_policy(stack):
    async with aiohttp.ClientSession() as session, session.get(stack.url) as response:
        policy = response.headers["Content-Security-Policy"]
        page = await response.text()
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert 'src="static/js/main.js"' in page


async def test_unknown_backups_and_copies_answer_not_found(stack):
    async with aiohttp.ClientSession() as session:
        status, body = await _json(
            session, "POST", f"{stack.url}api/backups/nope/verify", {"location": "USB disk"}
        )
        assert status == 404
        assert "not known" in body["error"]
        async with session.get(f"{stack.url}api/backups/nope/download?location=USB%20disk") as response:
            assert response.status == 404


async def test_download_names_keep_only_safe_characters():
    assert download_filename("<img src=x onerror=alert(1)>", "abc123") == "_img src_x onerror_alert_1_.tar"
    assert download_filename("../../etc/passwd", "abc123") == "_.._etc_passwd.tar"
    assert download_filename("...", "abc123") == "abc123.tar"
    assert download_filename("3-2-1 Backup 2026-08-01 04:45", "s") == "3-2-1 Backup 2026-08-01 04_45.tar"


async def test_the_retention_preview_names_the_backups_per_location(stack):
    async with aiohttp.ClientSession() as session:
        await _json(session, "POST", f"{stack.url}api/backup", {"type": "full", "name": "Only one"})
        await _wait_for_run(session, stack.url)
        status, plan = await _json(session, "GET", f"{stack.url}api/retention")
    assert status == 200
    assert plan["held"] is None
    assert [p["location"] for p in plan["locations"]] == [".local", "NAS", "USB disk"]
    for place in plan["locations"]:
        assert (place["kept"], place["deleted"]) == (1, 0)
        (decision,) = place["decisions"]
        assert (decision["name"], decision["delete"]) == ("Only one", False)
        assert decision["reasons"]


async def test_answers_are_reused_until_the_catalog_changes_or_they_age(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    now = [0.0]
    memo = Memo(max_age=30.0, clock=lambda: now[0])
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    try:
        assert memo.get("x", catalog, compute) == 1
        assert memo.get("x", catalog, compute) == 1
        catalog.set_meta("anything", "changed")
        assert memo.get("x", catalog, compute) == 2
        now[0] = 31.0
        assert memo.get("x", catalog, compute) == 3
        assert memo.get("y", catalog, compute) == 4
    finally:
        catalog.close()
