"""The scheduler inside the running add-on."""

import asyncio
from datetime import UTC, datetime, timedelta

from backup_addon.service import SLOT_KEY


async def test_first_start_makes_no_backup_and_announces_the_next_one(addon):
    await asyncio.sleep(0.2)
    assert addon.catalog.recent_runs() == []
    assert addon.catalog.get_meta(SLOT_KEY) is not None
    assert addon.next_backup is not None
    assert timedelta(0) < addon.next_backup - datetime.now(UTC) <= timedelta(days=1)


async def test_a_missed_slot_gives_exactly_one_catch_up_run(addon):
    await addon.stop_scheduler()
    addon.catalog.set_meta(SLOT_KEY, (datetime.now(UTC) - timedelta(days=5)).isoformat())
    addon.start_scheduler()
    for _ in range(200):
        runs = addon.catalog.recent_runs()
        if runs and runs[0].state != "running":
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    runs = addon.catalog.recent_runs()
    assert [(r.trigger, r.state) for r in runs] == [("catch-up", "succeeded")]
