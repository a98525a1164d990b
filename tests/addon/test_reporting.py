"""Notifications, sensors and events for Home Assistant: what is wanted, and how it gets there."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_addon.homeassistant import HomeAssistant
from backup_addon.reporting import (
    ENTITY_LAST_BACKUP,
    ENTITY_LAST_BACKUP_SIZE,
    ENTITY_NEXT_BACKUP,
    ENTITY_STALE,
    ENTITY_STATUS,
    EVENT_BACKUP_COMPLETED,
    EVENT_BACKUP_FAILED,
    EVENTS,
    NOTIFICATION_IDS,
    NOTIFY_BACKUP_FAILED,
    NOTIFY_COPY_CORRUPT,
    NOTIFY_DISK_NEARLY_FULL,
    NOTIFY_KIT_NOT_SAVED,
    NOTIFY_LOCATION_UNREACHABLE,
    NOTIFY_OTHER_BACKUP_FAILED,
    NOTIFY_RULE_NOT_MET,
    NOTIFY_STALE,
    BadCopy,
    LocationTimes,
    Reporter,
    RunFailure,
    StatusSnapshot,
    backup_completed_payload,
    backup_failed_payload,
    backup_started_payload,
    copy_failed_payload,
    copy_verified_payload,
    desired_notifications,
    desired_states,
    location_entities,
    location_slugs,
    pruned_payload,
    redact,
    redact_value,
)
from supervisor_sim import Faults, SupervisorSim
from supervisor_sim.core_api import RE_ENTITY_ID

from .conftest import TOKEN

TZ = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 8, 21, 12, 0, tzinfo=TZ)
NEXT_STEP = re.compile(r"\b[Oo]pen 3-2-1 Backup from the sidebar\b")


def healthy(**changes: object) -> StatusSnapshot:
    snapshot = StatusSnapshot(
        now=NOW,
        last_success_at=NOW - timedelta(hours=9),
        next_backup_at=NOW + timedelta(hours=15),
        last_backup_size=1_234_567_890,
        last_backup_name="3-2-1 Backup 2026-08-21 03:00",
        last_backup_slug="9ecf0028",
        rule_met=True,
        copies=3,
        media=2,
        offsite=1,
        kit_confirmed=True,
        disk_free_bytes=50_000_000_000,
        disk_total_bytes=100_000_000_000,
        locations={
            "USB disk": LocationTimes(NOW - timedelta(hours=9), NOW - timedelta(hours=8)),
            "NAS": LocationTimes(NOW - timedelta(hours=9), None),
        },
    )
    return replace(snapshot, **changes)


PROBLEMS: dict[str, Callable[[], StatusSnapshot]] = {
    NOTIFY_BACKUP_FAILED: lambda: healthy(
        last_failure=RunFailure(12, "copying", "NAS: connection refused", ["NAS"])
    ),
    NOTIFY_LOCATION_UNREACHABLE: lambda: healthy(unreachable={"NAS": NOW - timedelta(hours=7)}),
    NOTIFY_COPY_CORRUPT: lambda: healthy(
        bad_copies=[BadCopy("3-2-1 Backup 2026-08-20 03:00", "NAS", "the checksum does not match")]
    ),
    NOTIFY_RULE_NOT_MET: lambda: healthy(
        rule_met=False, copies=2, offsite=0, missing=["Only 2 copies exist; keep at least 3."]
    ),
    NOTIFY_STALE: lambda: healthy(stale=True, stale_reason="No backup succeeded for 3 days."),
    NOTIFY_KIT_NOT_SAVED: lambda: healthy(kit_confirmed=False),
    NOTIFY_DISK_NEARLY_FULL: lambda: healthy(disk_free_bytes=5_050_000_000),
    NOTIFY_OTHER_BACKUP_FAILED: lambda: healthy(other_failures=["Backup was canceled: disk full"]),
}


# --- desired notifications ------------------------------------------------------------------


def test_a_healthy_system_needs_no_notification() -> None:
    assert desired_notifications(healthy()) == {}


def test_every_problem_has_its_own_notification() -> None:
    assert set(PROBLEMS) == set(NOTIFICATION_IDS)
    assert all(nid.startswith("backup_321_") for nid in NOTIFICATION_IDS)


@pytest.mark.parametrize("notification_id", sorted(PROBLEMS))
def test_each_problem_raises_one_notification_with_the_next_step(notification_id: str) -> None:
    wanted = desired_notifications(PROBLEMS[notification_id]())
    assert list(wanted) == [notification_id]
    notification = wanted[notification_id]
    assert notification.title.startswith("3-2-1 Backup: ")
    assert NEXT_STEP.search(notification.message)


@pytest.mark.parametrize("notification_id", sorted(PROBLEMS))
def test_the_text_does_not_change_as_time_passes(notification_id: str) -> None:
    snapshot = PROBLEMS[notification_id]()
    later = replace(
        snapshot,
        now=snapshot.now + timedelta(minutes=20),
        disk_free_bytes=(snapshot.disk_free_bytes or 0) - 3_000,
    )
    assert desired_notifications(later) == desired_notifications(snapshot)


def test_the_failure_names_the_stage_the_error_and_the_locations() -> None:
    message = desired_notifications(PROBLEMS[NOTIFY_BACKUP_FAILED]())[NOTIFY_BACKUP_FAILED].message
    assert "run #12 failed while copying the backup to your locations" in message
    assert "NAS: connection refused" in message
    assert "No new copy reached 'NAS'" in message
    assert "2026-08-22 03:00" in message


def test_a_failure_in_the_supervisor_names_its_step() -> None:
    snapshot = healthy(last_failure=RunFailure(3, "supervisor:home_assistant", "No space left", []))
    message = desired_notifications(snapshot)[NOTIFY_BACKUP_FAILED].message
    assert "while the Supervisor was making the backup (its step 'home_assistant')" in message


def test_a_very_long_error_is_shortened() -> None:
    snapshot = healthy(last_failure=RunFailure(3, None, "trace line\n" * 500, []))
    assert len(desired_notifications(snapshot)[NOTIFY_BACKUP_FAILED].message) < 1200


def test_a_location_is_reported_unreachable_only_after_the_threshold() -> None:
    since = NOW - timedelta(hours=5, minutes=59)
    assert desired_notifications(healthy(unreachable={"NAS": since})) == {}
    late = desired_notifications(healthy(unreachable={"NAS": since}, now=NOW + timedelta(minutes=1)))
    assert "'NAS' (since 2026-08-21 06:01)" in late[NOTIFY_LOCATION_UNREACHABLE].message
    short = desired_notifications(healthy(unreachable={"NAS": since}), unreachable_after=timedelta(hours=1))
    assert NOTIFY_LOCATION_UNREACHABLE in short


def test_times_are_shown_in_the_time_zone_of_now() -> None:
    since = datetime(2026, 8, 21, 2, 0, tzinfo=ZoneInfo("UTC"))
    message = desired_notifications(healthy(unreachable={"NAS": since}))[NOTIFY_LOCATION_UNREACHABLE].message
    assert "since 2026-08-21 04:00" in message


def test_the_disk_is_nearly_full_when_the_next_backup_may_not_fit() -> None:
    roomy = healthy(disk_free_bytes=300_000_000_000, disk_total_bytes=1_000_000_000_000)
    assert desired_notifications(roomy) == {}
    big_backups = replace(roomy, last_backup_size=400_000_000_000)
    message = desired_notifications(big_backups)[NOTIFY_DISK_NEARLY_FULL].message
    assert "Only 300.0 GB of 1.0 TB are free" in message
    assert "The last backup needed 400.0 GB" in message
    assert desired_notifications(healthy(disk_free_bytes=None, disk_total_bytes=None)) == {}


def test_an_unknown_verdict_raises_no_notification() -> None:
    assert desired_notifications(healthy(rule_met=None)) == {}


# --- desired states -------------------------------------------------------------------------


def test_states_have_valid_ids_names_and_icons() -> None:
    states = desired_states(healthy())
    assert {
        ENTITY_LAST_BACKUP,
        ENTITY_NEXT_BACKUP,
        ENTITY_LAST_BACKUP_SIZE,
        ENTITY_STATUS,
        ENTITY_STALE,
    } <= set(states)
    for entity_id, state in states.items():
        assert RE_ENTITY_ID.match(entity_id), entity_id
        assert state.attributes["friendly_name"].startswith("3-2-1 Backup")
        assert state.attributes["icon"].startswith("mdi:")
        assert len(state.state) <= 255


def test_timestamps_are_iso_with_a_time_zone_or_unknown() -> None:
    states = desired_states(healthy())
    last = states[ENTITY_LAST_BACKUP]
    assert last.attributes["device_class"] == "timestamp"
    assert datetime.fromisoformat(last.state) == NOW - timedelta(hours=9)
    assert datetime.fromisoformat(last.state).utcoffset() is not None
    assert last.attributes["backup_name"] == "3-2-1 Backup 2026-08-21 03:00"
    empty = desired_states(healthy(last_success_at=None, next_backup_at=None))
    assert empty[ENTITY_LAST_BACKUP].state == "unknown"
    assert empty[ENTITY_NEXT_BACKUP].state == "unknown"


def test_the_size_is_in_megabytes_with_the_exact_bytes_beside() -> None:
    size = desired_states(healthy())[ENTITY_LAST_BACKUP_SIZE]
    assert size.state == "1234.57"
    assert size.attributes["unit_of_measurement"] == "MB"
    assert size.attributes["device_class"] == "data_size"
    assert size.attributes["state_class"] == "measurement"
    assert size.attributes["bytes"] == 1_234_567_890
    assert desired_states(healthy(last_backup_size=None))[ENTITY_LAST_BACKUP_SIZE].state == "unknown"


@pytest.mark.parametrize(("rule_met", "state"), [(True, "met"), (False, "not met"), (None, "unknown")])
def test_the_status_tells_the_verdict(rule_met: bool | None, state: str) -> None:
    status = desired_states(healthy(rule_met=rule_met, missing=["x"]))[ENTITY_STATUS]
    assert status.state == state
    assert {k: status.attributes[k] for k in ("copies", "media", "offsite", "missing")} == {
        "copies": 3,
        "media": 2,
        "offsite": 1,
        "missing": ["x"],
    }


def test_stale_is_a_problem_binary_sensor() -> None:
    fresh = desired_states(healthy())[ENTITY_STALE]
    assert (fresh.state, fresh.attributes["device_class"], fresh.attributes["reason"]) == (
        "off",
        "problem",
        None,
    )
    stale = desired_states(healthy(stale=True, stale_reason="No backup for 3 days."))[ENTITY_STALE]
    assert (stale.state, stale.attributes["reason"]) == ("on", "No backup for 3 days.")


def test_each_location_has_a_last_copy_and_a_last_proven_sensor() -> None:
    states = desired_states(healthy(unreachable={"NAS": NOW - timedelta(hours=1)}))
    copy = states["sensor.backup_321_nas_last_copy"]
    proven = states["sensor.backup_321_nas_last_proven"]
    assert (copy.attributes["device_class"], copy.attributes["location"]) == ("timestamp", "NAS")
    assert proven.state == "unknown"
    assert copy.attributes["unreachable_since"] == (NOW - timedelta(hours=1)).isoformat()
    usb = states["sensor.backup_321_usb_disk_last_proven"]
    assert datetime.fromisoformat(usb.state) == NOW - timedelta(hours=8)
    assert usb.attributes["friendly_name"] == "3-2-1 Backup USB disk last proven restorable"


def test_plain_tuples_work_like_the_named_ones() -> None:
    named = healthy(bad_copies=[BadCopy("b", "NAS", "bad")])
    plain = healthy(
        bad_copies=[("b", "NAS", "bad")],
        locations={name: (times[0], times[1]) for name, times in named.locations.items()},
    )
    assert desired_notifications(plain) == desired_notifications(named)
    assert desired_states(plain) == desired_states(named)


HOSTILE = [
    "NAS",
    "nas",
    "N.A.S",
    "Ünïcødé Dïsk",
    "東京",
    "🦄",
    "",
    "   ",
    "../../etc/passwd",
    "a__b",
    "_x_",
    "x" * 300,
]


def test_hostile_location_names_get_valid_distinct_entity_ids() -> None:
    slugs = location_slugs(HOSTILE)
    ids = [eid for name in HOSTILE for eid in location_entities(slugs[name])]
    assert all(RE_ENTITY_ID.match(eid) for eid in ids), ids
    assert len(set(ids)) == len(ids)
    assert slugs["Ünïcødé Dïsk"] == "unicode_disk"
    assert location_slugs(["Øresund Æble Straße"]) == {"Øresund Æble Straße": "oresund_aeble_strasse"}
    assert slugs["../../etc/passwd"] == "etc_passwd"
    assert location_slugs(reversed(HOSTILE)) == slugs


def test_a_unique_name_keeps_a_plain_slug() -> None:
    assert location_slugs(["Backblaze B2", "USB disk"]) == {
        "Backblaze B2": "backblaze_b2",
        "USB disk": "usb_disk",
    }


@given(st.sets(st.text(max_size=60), max_size=8))
def test_any_location_names_give_valid_distinct_entity_ids(names: set[str]) -> None:
    slugs = location_slugs(names)
    ids = [eid for name in names for eid in location_entities(slugs[name])]
    assert all(RE_ENTITY_ID.match(eid) for eid in ids), ids
    assert len(set(ids)) == len(ids)


# --- events and redaction -------------------------------------------------------------------


def test_event_types_are_prefixed() -> None:
    assert EVENTS == (
        "backup_321_backup_started",
        "backup_321_backup_completed",
        "backup_321_backup_failed",
        "backup_321_copy_verified",
        "backup_321_copy_failed",
        "backup_321_pruned",
    )


def test_payload_builders_give_the_documented_keys() -> None:
    assert backup_started_payload(run_id=1, trigger="schedule", backup_type="full", locations=["NAS"]) == {
        "run_id": 1,
        "trigger": "schedule",
        "type": "full",
        "locations": ["NAS"],
    }
    assert backup_completed_payload(
        run_id=1,
        slug="9ecf0028",
        name="n",
        size_bytes=10,
        duration=timedelta(seconds=61.26),
        locations=["NAS"],
        failed_locations=["USB"],
    ) == {
        "run_id": 1,
        "slug": "9ecf0028",
        "name": "n",
        "size_bytes": 10,
        "duration_seconds": 61.3,
        "locations": ["NAS"],
        "failed_locations": ["USB"],
    }
    assert set(backup_failed_payload(run_id=1, stage="copying", error="e")) == {
        "run_id",
        "stage",
        "error",
        "failed_locations",
        "duration_seconds",
    }
    assert set(copy_verified_payload(slug="s", name="n", location="l", size_bytes=1, duration=2.0)) == {
        "slug",
        "name",
        "location",
        "size_bytes",
        "duration_seconds",
    }
    assert copy_failed_payload(slug="s", name="n", location="l", error="e") == {
        "slug": "s",
        "name": "n",
        "location": "l",
        "error": "e",
    }
    assert pruned_payload(slug="s", name="n", locations=["l"], reason="older than 30 days") == {
        "slug": "s",
        "name": "n",
        "locations": ["l"],
        "reason": "older than 30 days",
    }


def test_redact_removes_secrets_in_every_form() -> None:
    secret = "p@ss w0rd/secret"
    text = (
        f"login {secret} failed; url https://bob:p%40ss%20w0rd%2Fsecret@nas.local/dav; "
        "header Authorization: Bearer abcdefghijklmnop; query ?X-Amz-Signature=deadbeef&a=1; password=hunter22"
    )
    clean = redact(text, [secret])
    for leak in (secret, "p%40ss%20w0rd%2Fsecret", "abcdefghijklmnop", "deadbeef", "hunter22", "bob:"):
        assert leak not in clean
    assert "a=1" in clean
    assert "https://[redacted]@nas.local/dav" in clean


def test_redact_leaves_short_secrets_and_ordinary_text_alone() -> None:
    assert redact("a backup of abc", ["abc", ""]) == "a backup of abc"


def test_redact_value_walks_nested_data() -> None:
    data = {"error": "key K1 leaked", "list": ["K1-and-more", 3], "K1-key": None}
    assert redact_value(data, ["K1-and-more", "K1 leaked"]) == {
        "error": "key [redacted]",
        "list": ["[redacted]", 3],
        "K1-key": None,
    }


# --- the Reporter against the simulator ------------------------------------------------------


@pytest.fixture
async def client(sim_url: str) -> AsyncIterator[HomeAssistant]:
    async with HomeAssistant(sim_url, TOKEN, timeout=2) as ha:
        yield ha


@pytest.fixture
def reporter(client: HomeAssistant) -> Reporter:
    return Reporter(client)


def posts(sim: SupervisorSim) -> list[str]:
    return [c.path for c in sim.core_calls if c.method == "POST"]


@pytest.mark.parametrize("notification_id", sorted(PROBLEMS))
async def test_each_notification_is_shown_then_dismissed_when_the_problem_is_gone(
    reporter: Reporter, sim: SupervisorSim, notification_id: str
) -> None:
    assert await reporter.publish(PROBLEMS[notification_id]())
    assert list(sim.core.notifications) == [notification_id]
    wanted = desired_notifications(PROBLEMS[notification_id]())[notification_id]
    assert sim.core.notifications[notification_id]["message"] == wanted.message
    assert await reporter.publish(healthy())
    assert sim.core.notifications == {}


async def test_unchanged_status_costs_one_probe_and_nothing_else(
    reporter: Reporter, sim: SupervisorSim
) -> None:
    assert await reporter.publish(PROBLEMS[NOTIFY_STALE]())
    sim.core.calls.clear()
    assert await reporter.publish(replace(PROBLEMS[NOTIFY_STALE](), now=NOW + timedelta(minutes=5)))
    assert [(c.method, c.path) for c in sim.core_calls] == [("GET", f"/core/api/states/{ENTITY_STATUS}")]


async def test_only_changed_states_and_texts_are_sent(reporter: Reporter, sim: SupervisorSim) -> None:
    await reporter.publish(PROBLEMS[NOTIFY_STALE]())
    sim.core.calls.clear()
    await reporter.publish(
        healthy(stale=True, stale_reason="No backup succeeded for 4 days.", last_backup_size=7)
    )
    assert sorted(posts(sim)) == sorted(
        [
            "/core/api/services/persistent_notification/create",
            f"/core/api/states/{ENTITY_LAST_BACKUP_SIZE}",
            f"/core/api/states/{ENTITY_STALE}",
        ]
    )
    assert "4 days" in sim.core.notifications[NOTIFY_STALE]["message"]


async def test_all_states_are_posted_on_the_first_publish(reporter: Reporter, sim: SupervisorSim) -> None:
    await reporter.publish(healthy())
    assert set(sim.core.states) == set(desired_states(healthy()))
    assert sim.core.states[ENTITY_STATUS]["state"] == "met"
    assert sim.core.states[ENTITY_LAST_BACKUP_SIZE]["attributes"]["unit_of_measurement"] == "MB"


async def test_notifications_left_by_an_earlier_run_are_dismissed_at_start(
    client: HomeAssistant, sim: SupervisorSim
) -> None:
    await client.notify(NOTIFY_STALE, "3-2-1 Backup", "from yesterday")
    await client.notify(NOTIFY_KIT_NOT_SAVED, "3-2-1 Backup", "old wording")
    await client.notify("someone_else", "Other", "not ours")
    assert await Reporter(client).publish(healthy(kit_confirmed=False))
    assert set(sim.core.notifications) == {NOTIFY_KIT_NOT_SAVED, "someone_else"}
    wanted = desired_notifications(healthy(kit_confirmed=False))[NOTIFY_KIT_NOT_SAVED]
    assert sim.core.notifications[NOTIFY_KIT_NOT_SAVED]["message"] == wanted.message


async def test_everything_comes_back_after_home_assistant_restarts(
    reporter: Reporter, sim: SupervisorSim, client: HomeAssistant
) -> None:
    snapshot = PROBLEMS[NOTIFY_RULE_NOT_MET]()
    await reporter.publish(snapshot)
    before = {eid: s["state"] for eid, s in sim.core.states.items()}
    sim.core.restart()
    assert await reporter.publish(snapshot)
    assert {eid: s["state"] for eid, s in sim.core.states.items()} == before
    assert list(sim.core.notifications) == [NOTIFY_RULE_NOT_MET]


async def test_a_sensor_that_vanished_means_a_restart(
    reporter: Reporter, sim: SupervisorSim, client: HomeAssistant
) -> None:
    await reporter.publish(PROBLEMS[NOTIFY_KIT_NOT_SAVED]())
    # Home Assistant restarted and something else posted the status sensor meanwhile, so only
    # the answer 201 Created for a sensor posted before tells that the others are gone.
    sim.core.restart()
    await client.set_state(ENTITY_STATUS, "met", {})
    assert await reporter.publish(replace(PROBLEMS[NOTIFY_KIT_NOT_SAVED](), last_success_at=NOW))
    assert set(sim.core.states) == set(desired_states(healthy()))
    assert list(sim.core.notifications) == [NOTIFY_KIT_NOT_SAVED]


async def test_home_assistant_down_is_a_warning_and_the_next_publish_catches_up(
    reporter: Reporter, sim: SupervisorSim, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults = Faults(stage_delay=0.01, http_status={r"^/core/api/": 502})
    with caplog.at_level(logging.WARNING, logger="backup_addon.reporting"):
        assert await reporter.publish(PROBLEMS[NOTIFY_STALE]()) is False
        assert await reporter.publish(PROBLEMS[NOTIFY_STALE]()) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Home Assistant is not available" in warnings[0].getMessage()
    sim.faults = Faults(stage_delay=0.01)
    assert await reporter.publish(PROBLEMS[NOTIFY_STALE]())
    assert list(sim.core.notifications) == [NOTIFY_STALE]
    assert set(sim.core.states) == set(desired_states(healthy()))


async def test_a_hanging_home_assistant_does_not_hold_up_the_caller(sim_url: str, sim: SupervisorSim) -> None:
    sim.faults = Faults(stage_delay=0.01, hang=r"^/core/api/")
    async with HomeAssistant(sim_url, TOKEN, timeout=0.2) as ha:
        assert await Reporter(ha).publish(healthy()) is False
        assert await Reporter(ha).event(EVENT_BACKUP_FAILED, {}) is False


async def test_events_are_fired_with_their_payload(reporter: Reporter, sim: SupervisorSim) -> None:
    payload = backup_completed_payload(
        run_id=4, slug="9ecf0028", name="n", size_bytes=5, duration=3.0, locations=["NAS", "USB disk"]
    )
    assert await reporter.event(EVENT_BACKUP_COMPLETED, payload)
    call = sim.core_calls[-1]
    assert (call.path, call.body) == (f"/core/api/events/{EVENT_BACKUP_COMPLETED}", payload)


async def test_an_event_while_home_assistant_is_down_is_dropped_quietly(
    reporter: Reporter, sim: SupervisorSim
) -> None:
    sim.faults = Faults(stage_delay=0.01, http_status={r"^/core/api/": 503})
    assert await reporter.event(EVENT_BACKUP_FAILED, {"error": "x"}) is False


SECRETS = [
    "K7QD-3MZP-8WXR-2HNV-5TJC-9BFL-4GYS",  # the backup key
    "sftp-p@ssw0rd/with space",  # a location password
    "AKIAIOSFODNN7EXAMPLE",  # an access key id
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # its secret
    TOKEN,  # the Supervisor token
]


def leaky_snapshot() -> StatusSnapshot:
    key, password, access, secret, token = SECRETS
    return healthy(
        now=NOW + timedelta(days=1),
        rule_met=False,
        missing=[f"'S3' refused key {access} / {secret}"],
        stale=True,
        stale_reason=f"decryption with {key} failed",
        last_backup_name=f"backup {key}",
        last_failure=RunFailure(
            9,
            f"copying {token}",
            f"sftp://bob:{password}@nas.local failed; https://u:sftp-p%40ssw0rd%2Fwith%20space@dav/ 401; "
            f"Authorization: Bearer {token}",
            [f"NAS {password}"],
        ),
        unreachable={f"S3 {access}": NOW - timedelta(days=1)},
        bad_copies=[BadCopy(f"backup {key}", "NAS", f"wrong password {password}")],
        kit_confirmed=False,
        disk_free_bytes=1,
        locations={f"S3 {secret}": LocationTimes(None, None)},
        other_failures=[f"upload to https://u:{password}@nas failed"],
    )


async def test_no_secret_ever_reaches_home_assistant(
    client: HomeAssistant, sim: SupervisorSim, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = Reporter(client, secrets=SECRETS)
    assert await reporter.publish(leaky_snapshot())
    assert set(sim.core.notifications) == set(NOTIFICATION_IDS)
    key, password, access, secret, token = SECRETS
    error = f"upload with {secret} and {password} failed"
    await reporter.event(EVENT_BACKUP_FAILED, backup_failed_payload(run_id=9, stage="copying", error=error))
    await reporter.event(EVENT_BACKUP_COMPLETED, {"name": f"backup {key}", "nested": [{token: access}]})
    sim.faults = Faults(stage_delay=0.01, http_status={r"^/core/api/": 502})
    with caplog.at_level(logging.DEBUG):
        await reporter.publish(leaky_snapshot())
    recorded = json.dumps([c.as_dict() for c in sim.core_calls], ensure_ascii=False).lower()
    logged = caplog.text.lower()
    forms = {*SECRETS, "sftp-p%40ssw0rd%2Fwith%20space", "sftp-p@ssw0rd", "wjalrxutnfemi_k7mdeng"}
    for form in forms:
        assert form.lower() not in recorded, form
        assert form.lower() not in logged, form
    assert "[redacted]" in recorded
    assert "sensor.backup_321_s3_redacted_last_copy" in sim.core.states
