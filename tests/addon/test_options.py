"""Options: valid files load, invalid ones give one clear line per problem."""

import json

import pytest

from backup_addon.errors import InvalidOptions
from backup_addon.options import BackupType, load_options, parse_options


def test_empty_options_take_the_defaults():
    options = parse_options({})
    [nightly] = options.schedules
    assert (nightly.type, nightly.days, nightly.time, nightly.cron) == (BackupType.FULL, "daily", None, None)
    assert options.keep_last == 3
    assert options.max_deletions_per_run == 2
    assert options.locations == []


def test_folder_location_is_accepted():
    options = parse_options({"locations": [{"name": "NAS", "kind": "folder", "path": "/share/nas/"}]})
    assert options.locations[0].path == "/share/nas"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"schedules": [{"time": "25:00"}]}, "schedules.0.time: must be a time of day as HH:MM"),
        ({"schedules": [{"time": "4:45"}]}, "schedules.0.time: must be a time of day as HH:MM"),
        ({"schedules": [{"type": "weekly"}]}, "schedules.0.type: 'weekly' is not allowed; use one of 'full' or 'partial'"),
        ({"schedules": [{"days": "someday"}]}, "schedules.0.days:"),
        ({"schedules": [{"cron": "every night"}]}, "schedules.0.cron:"),
        ({"keep_last": -1}, "keep_last: must be at least 0"),
        ({"max_deletions_per_run": 5000}, "max_deletions_per_run: must be at most 1000"),
        ({"other_backups": "delete"}, "other_backups: 'delete' is not allowed"),
        ({"locations": [{"name": "x", "kind": "folder", "path": "/share", "keep_last": -3}]}, "keep_last: must be at least 0"),
        ({"include_folders": ["etc"]}, "include_folders.0: 'etc' is not allowed"),
        ({"supervisor_locations": ["my nas"]}, "supervisor_locations: 'my nas' is not a network storage name"),
        ({"colour": "blue"}, "colour: unknown option; remove it"),
        ({"locations": [{"name": "x", "kind": "ftp", "path": "/a"}]}, "locations.0: kind 'ftp' is not known"),
        ({"locations": [{"name": "x", "kind": "folder", "path": "share"}]}, "locations.0.folder.path: must be an absolute path"),
        ({"locations": [{"name": "x", "kind": "folder", "path": "/share/../etc"}]}, "must not contain '..'"),
        ({"locations": [{"name": "", "kind": "folder", "path": "/share"}]}, "locations.0.folder.name: must be 1-40"),
        ({"locations": [{"name": "x", "kind": "folder", "path": "/data/copies"}]}, "must not be under /data"),
        ({"locations": [{"kind": "folder", "path": "/share"}]}, "locations.0.folder.name: missing"),
        (
            {"locations": [{"name": "A", "kind": "folder", "path": "/a"}, {"name": "a", "kind": "folder", "path": "/b"}]},
            "two locations are named 'a'",
        ),
    ],
)
def test_invalid_option_names_the_option_and_the_fix(raw, expected):
    with pytest.raises(InvalidOptions) as caught:
        parse_options(raw)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_not_just_the_first():
    with pytest.raises(InvalidOptions) as caught:
        parse_options({"schedules": [{"time": "x", "type": "y"}], "log_level": "loud"})
    assert [p.split(":")[0] for p in caught.value.problems] == ["schedules.0.type", "schedules.0.time", "log_level"]


def test_options_file_that_is_not_json(tmp_path):
    path = tmp_path / "options.json"
    path.write_text("{not json")
    with pytest.raises(InvalidOptions, match="not valid JSON"):
        load_options(path)


def test_options_file_round_trip(tmp_path):
    path = tmp_path / "options.json"
    raw = {"schedules": [{"type": "partial", "days": "mon,thu", "time": "03:15"}], "include_addons": ["core_ssh"]}
    path.write_text(json.dumps(raw))
    assert load_options(path) == parse_options(raw)
    assert load_options(path).schedules[0].schedule().days == frozenset({0, 3})
