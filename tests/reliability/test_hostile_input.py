"""Hostile and broken input where users and servers hand the add-on text: options, hosts and URLs,
backup names and slugs. Every problem must come back as a sentence, never a traceback, and nothing
may be written anywhere it should not.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_addon.catalog import Catalog
from backup_addon.errors import AddonError, InvalidOptions
from backup_addon.locations import FolderLocation
from backup_addon.locations.registry import build_location
from backup_addon.options import AddonOptions, parse_options
from backup_addon.pipeline import object_key

CATEGORY = "hostile input"
KEY = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
MAX_PROBLEM = 300
NOT_FOR_USERS = ("Traceback", "pydantic", "errors.pydantic.dev", "For further information", "ValidationError")


def problems_of(raw: object) -> list[str]:
    try:
        parse_options(raw)
    except InvalidOptions as err:
        return err.problems
    return []


def unclear(problem: object) -> str | None:
    """Why a problem text is not one clear sentence for a user, or None when it is."""
    if not isinstance(problem, str) or not problem.strip():
        return "not a text"
    if "\n" in problem or "\r" in problem:
        return "more than one line"
    if len(problem) > MAX_PROBLEM:
        return f"{len(problem)} characters long"
    if any(word in problem for word in NOT_FOR_USERS):
        return "speaks of the validator, not of the option"
    if not re.match(r"^[\w.\[\]-]+(\.[\w\[\]-]+)*: ", problem) and not problem.startswith("options: "):
        return "does not start with the option it is about"
    return None


# --- options ------------------------------------------------------------------------------

FOLDER = {"name": "USB", "kind": "folder", "path": "/media/usb"}
WRONG_OPTIONS: dict[str, list[Any]] = {
    "schedules": ["daily", [{"time": "25:00"}], [{"days": "funday"}], [{"cron": "* * *"}], [{"type": "huge"}], [7]],
    "include_homeassistant": [[1], {"yes": True}, "perhaps"],
    "include_addons": ["core_ssh", ["bad slug!"], ["core_ssh", "core_ssh"], [None]],
    "include_folders": [["nope"], ["ssl", "ssl"], "ssl"],
    "exclude_database": ["sometimes"],
    "supervisor_locations": [["my nas"], ["NAS", "NAS"], "NAS"],
    "locations": [{}, [{"kind": "tape", "name": "x"}], [{"name": "x"}], [dict(FOLDER, name="")],
                  [dict(FOLDER, path="media/usb")], [dict(FOLDER, path="/data/x")], [dict(FOLDER, path="/media/../etc")],
                  [FOLDER, dict(FOLDER, name="usb")], ["USB"], [dict(FOLDER, upload_limit_mbit=-1)],
                  [dict(FOLDER, upload_window="25:00-26:00")], [dict(FOLDER, colour="red")]],
    "keep_last": [-1, 10**9, "three", 1.5, None],
    "keep_days": [-5, 10**7],
    "max_deletions_per_run": [-1, "all"],
    "encryption_key": ["abc", 123, "abcd-efgh-ijkl-mnop-qrst-uvwx-yz12", KEY + "-EXTRA"],
    "age_recipients": ["age1xyz", ["age1xyz"], [RECIPIENT, RECIPIENT], [KEY]],
    "log_level": ["loud", 3],
    "verify_limit_mbit": [0, 1e9, "fast"],
    "notify": ["maybe"],
    "colour": ["blue"],
}


@pytest.mark.reliability(
    CATEGORY,
    "options with a wrong type, range or pattern in every option (one at a time, then all at once)",
    "parse_options raises InvalidOptions with one sentence per problem, naming the option; never a traceback",
)
def test_every_wrong_option_gives_one_clear_sentence(row):
    failures, tried = [], 0
    for option, values in WRONG_OPTIONS.items():
        for value in values:
            tried += 1
            raw = {option: value}
            try:
                problems = problems_of(raw)
            except Exception as err:  # anything but InvalidOptions is a bug
                failures.append(f"{option}={value!r}: raised {err!r}")
                continue
            if not problems:
                failures.append(f"{option}={value!r}: accepted")
                continue
            if len(problems) != 1:
                failures.append(f"{option}={value!r}: {len(problems)} problems for one mistake: {problems}")
            for problem in problems:
                if why := unclear(problem):
                    failures.append(f"{option}={value!r}: {why}: {problem!r}")
                elif not problem.removeprefix("options: ").startswith(option):
                    failures.append(f"{option}={value!r}: the sentence names another option: {problem!r}")
    # All at once: one problem per wrong option.
    together = {option: values[0] for option, values in WRONG_OPTIONS.items()}
    problems = problems_of(together)
    if len(problems) != len(together):
        failures.append(f"{len(together)} wrong options at once gave {len(problems)} problems: {problems}")
    for raw in ([], None, "text", 42, {"locations": None}):
        try:
            if not problems_of(raw) and raw is not None:
                failures.append(f"options {raw!r}: accepted")
        except Exception as err:
            failures.append(f"options {raw!r}: raised {err!r}")
    row.happened = f"{tried} wrong values one at a time and {len(together)} at once: {len(failures)} problems"
    if failures:
        row.happened += ": " + "; ".join(failures[:6])
    assert not failures, "\n".join(failures)


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=80),
)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
option_names = st.sampled_from(sorted(AddonOptions.model_fields)) | st.text(max_size=12)
location_fields = st.sampled_from(
    ["name", "kind", "path", "host", "port", "username", "password", "private_key", "passphrase", "folder",
     "host_key", "server", "share", "domain", "url", "endpoint", "bucket", "prefix", "region", "access_key_id",
     "secret_access_key", "verify_tls", "envelope", "upload_limit_mbit", "upload_window", "offsite", "storage_class"]
)
hostile_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["", " ", "..", "../../etc", "\x00", "a\nb", "x" * 5000, "☃", "http://", "https://[::1", "::", "@", ";", "%00"]
)
location_entry = st.fixed_dictionaries(
    {"kind": st.sampled_from(["folder", "s3", "sftp", "smb", "webdav"]), "name": st.sampled_from(["Loc", "Loc 2"])},
    optional={},
).flatmap(lambda base: st.dictionaries(location_fields, hostile_text | json_leaf, max_size=8).map(lambda extra: {**extra, **base}))


@pytest.mark.reliability(
    CATEGORY,
    "hypothesis: random JSON for random options, and location entries of every kind with hostile text in every field",
    "parse_options returns options or raises InvalidOptions whose problems are each one line of bounded length; "
    "nothing else is ever raised",
)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_options_fuzz_never_raises_anything_but_invalid_options(row, data):
    if data.draw(st.booleans()):
        raw: Any = data.draw(st.dictionaries(option_names, json_value, max_size=6))
    else:
        raw = {"locations": data.draw(st.lists(location_entry, min_size=1, max_size=2))}
    row.happened = "300 random option sets, all answered with options or InvalidOptions"
    try:
        parse_options(raw)
    except InvalidOptions as err:
        assert err.problems
        for problem in err.problems:
            why = unclear(problem)
            if why not in (None, "does not start with the option it is about"):
                # The last example hypothesis replays is the smallest that fails: it names the bug.
                row.happened = f"smallest failing options: {raw!r} gave a problem that is {why}: {problem!r}"
            assert why is None or why == "does not start with the option it is about", f"{why}: {problem!r}"
    except Exception as err:
        row.happened = f"smallest failing options: {raw!r} raised {err!r}"
        raise


# --- hosts and URLs -----------------------------------------------------------------------

INJECTIONS = [
    "nas.local\nHost: evil.example", "nas.local\r\nX: y", "nas;rm -rf /", "nas && reboot", "$(reboot)", "`id`",
    "user@nas.local", "../../etc/passwd", "nas local", "nás.lokal", "nas\x00.local", "nas.local/../..",
    "nas.local:22", "-oProxyCommand=sh", "%0d%0aHost:evil", "nas.local#frag", "[::1]", "evil.example?x=1",
]
BASES = {
    "sftp": ("host", {"name": "Remote", "kind": "sftp", "username": "backup", "password": "pw"}),
    "smb": ("server", {"name": "Remote", "kind": "smb", "share": "backups", "username": "backup", "password": "pw"}),
    "s3": ("endpoint", {"name": "Remote", "kind": "s3", "bucket": "my-backups", "access_key_id": "AKIA1",
                        "secret_access_key": "secret"}),
    "webdav": ("url", {"name": "Remote", "kind": "webdav", "username": "u", "password": "p"}),
    "folder": ("path", {"name": "Remote", "kind": "folder"}),
}


def _as_value(kind: str, attempt: str) -> str:
    if kind == "webdav":
        return f"https://{attempt}/dav/backups"
    if kind == "s3":
        return f"https://{attempt}"
    if kind == "folder":
        return f"/media/{attempt}"
    return attempt


def _dangerous(text: str) -> bool:
    """Control characters have no place in a host, URL or path a user types."""
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _innermost(location: Any) -> Any:
    while hasattr(location, "inner"):
        location = location.inner
    return location


async def _fails_cleanly(location: Any) -> str | None:
    """Ask the location for its free space: it may answer or raise an AddonError, nothing else."""
    try:
        await asyncio.wait_for(_innermost(location).usage(), 5)
    except (AddonError, TimeoutError):
        return None
    except Exception as err:
        return f"asking it for free space raised {err!r}"
    return None


def _targets(location: Any) -> list[str]:
    """What the built location will connect to or write under, as text."""
    inner = location
    while hasattr(inner, "inner"):
        inner = inner.inner
    found = []
    for attribute in ("host", "server", "endpoint", "url", "root", "_base", "base_url", "_root_unc"):
        value = getattr(inner, attribute, None)
        if value is not None:
            found.append(str(value))
    return found


@pytest.mark.reliability(
    CATEGORY,
    "location hosts, URLs, endpoints and paths with injection attempts (newlines, ';', '@', '..', spaces, NUL, "
    "unicode, option-like '-o...') for each kind",
    "each is refused with a sentence naming the field, or accepted only in a form without control characters (line "
    "breaks, NUL) that fails cleanly (a LocationError) when used; building the location never raises",
)
@pytest.mark.parametrize("kind", sorted(BASES))
async def test_injection_attempts_in_hosts_and_urls(kind, tmp_path, row):
    field, base = BASES[kind]
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    accepted, refused, failures = [], [], []
    try:
        for attempt in INJECTIONS:
            value = _as_value(kind, attempt)
            entry = {**base, field: value}
            try:
                problems = problems_of({"locations": [entry]})
            except Exception as err:
                failures.append(f"{value!r}: raised {err!r}")
                continue
            if problems:
                refused.append(attempt)
                for problem in problems:
                    if why := unclear(problem):
                        failures.append(f"{value!r}: {why}: {problem!r}")
                continue
            try:
                location = build_location(parse_options({"locations": [entry]}).locations[0], catalog)
            except Exception as err:
                failures.append(f"{value!r}: accepted, but building the location raised {err!r}")
                continue
            targets = _targets(location)
            accepted.append(f"{attempt!r} -> {targets}")
            if any(_dangerous(t) for t in targets) or not targets:
                failures.append(f"{value!r}: accepted as {targets}")
            if problem := await _fails_cleanly(location):
                failures.append(f"{value!r}: accepted, then {problem}")
    finally:
        catalog.close()
    row.happened = f"refused {len(refused)} of {len(INJECTIONS)}; " + (
        f"PROBLEMS: {'; '.join(failures)}; " if failures else ""
    ) + f"accepted: {'; '.join(accepted) or 'none'}"
    row.nothing_lost = None
    assert not failures, "\n".join(failures)


# --- backup names and slugs ---------------------------------------------------------------

HOSTILE_SLUGS = [
    "../../../etc/cron.d/evil", "a/../../b", "x\x00y", "x" * 300, "x" * 5000, "Ünïcødé 💾", "a\\b", " ", "-rf",
    "..", ".hidden", "a/b", "CON", "slug\nnext", "%2e%2e%2f",
]


@pytest.mark.reliability(
    CATEGORY,
    "backup slugs with '../', NUL, 300 and 5000 characters, unicode, backslashes and newlines, through the pipeline's "
    "object_key and the folder location",
    "either stored exactly at <root>/<key> or refused with a clear error; nothing written outside the location, "
    "no temp file left inside it",
)
async def test_hostile_slugs_through_object_key_and_folder_location(tmp_path, row):
    sandbox = tmp_path / "sandbox"
    root = sandbox / "location"
    root.mkdir(parents=True)
    location = FolderLocation("USB", root)
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored, refused, failures = [], [], []

    async def body():
        yield b"archive bytes"

    for slug in HOSTILE_SLUGS:
        try:
            key = object_key("abcdef123456", created, slug)
        except Exception as err:
            refused.append(f"{slug[:20]!r}: object_key: {type(err).__name__}")
            continue
        try:
            await location.put(key, body())
        except (ValueError, AddonError) as err:
            refused.append(f"{slug[:20]!r}: {str(err)[:80]}")
            continue
        except Exception as err:
            failures.append(f"{slug[:20]!r}: raised {err!r}")
            continue
        target = root.joinpath(*key.split("/"))
        if not target.is_file() or target.read_bytes() != b"archive bytes":
            failures.append(f"{slug[:20]!r}: put succeeded but {key[:60]!r} is not there")
        stored.append(slug[:20])
    outside = [p for p in sandbox.rglob("*") if root not in p.parents and p != root]
    temps = [p for p in root.rglob("*") if ".partial-" in p.name]
    if outside:
        failures.append(f"written outside the location: {outside}")
    if temps:
        failures.append(f"temp files left: {temps}")
    row.happened = f"stored {stored}; refused: {'; '.join(refused)}"
    row.nothing_lost = not outside and not temps
    assert not failures, "\n".join(failures)


@pytest.mark.reliability(
    CATEGORY,
    "backup names with NUL, newlines, 10000 characters, right-to-left marks and emoji stored in the catalog",
    "the catalog keeps them byte for byte and the panel's JSON can carry them",
)
def test_hostile_backup_names_in_the_catalog(tmp_path, row):
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    names = ["nul\x00inside", "two\nlines", "x" * 10_000, "\u202eevil\u202c", "💾 Backup ☃", "'; DROP TABLE backups; --"]
    failures = []
    try:
        for index, name in enumerate(names):
            slug = f"slug{index}"
            catalog.record_backup(slug=slug, run_id=None, name=name, type="full",
                                  created_at=datetime.now(UTC), size_bytes=1)
            back = catalog.backup(slug)
            if back is None or back.name != name:
                failures.append(f"{name[:20]!r} came back as {None if back is None else back.name[:20]!r}")
            json.dumps({"name": back.name if back else None})
        problems = catalog.integrity_problems()
        tables = {r[0] for r in catalog._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        catalog.close()
    row.happened = f"{len(names) - len(failures)} of {len(names)} names kept exactly; integrity: {problems or 'ok'}"
    row.nothing_lost = "backups" in tables and not problems
    assert not failures, failures
    assert not problems
    assert "backups" in tables
