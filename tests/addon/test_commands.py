"""Commands from automations (hassio.addon_stdin): parsing, and reading them from pipes."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from backup_addon.commands import (
    MAX_LINE_BYTES,
    Action,
    BackupKind,
    Command,
    InvalidCommand,
    parse_command,
    read_commands,
)
from backup_addon.errors import AddonError


def stdin_line(value: object) -> str:
    """What reaches the add-on: Home Assistant json.dumps the input, the Supervisor adds a newline."""
    return json.dumps(value) + "\n"


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["backup", "verify", "drill"])
def test_a_text_input_is_a_command_word(word: str) -> None:
    assert parse_command(stdin_line(word)) == Command(action=Action(word))


@pytest.mark.parametrize("line", ["backup", "  BACKUP \n", '" Backup "'])
def test_bare_and_differently_cased_words_are_accepted(line: str) -> None:
    assert parse_command(line).action is Action.BACKUP


def test_a_plain_backup_object_uses_the_configured_backup() -> None:
    command = parse_command(stdin_line({"command": "backup"}))
    assert command == Command(action=Action.BACKUP)
    assert command.type is None
    assert command.exclude_database is None


def test_a_partial_backup_carries_its_selection() -> None:
    command = parse_command(
        stdin_line(
            {
                "command": "backup",
                "type": "partial",
                "name": "Before the kitchen upgrade",
                "homeassistant": False,
                "addons": ["core_mosquitto", "a0d7b954_nodered"],
                "folders": ["share", "addons/local"],
                "exclude_database": True,
            }
        )
    )
    assert command == Command(
        action=Action.BACKUP,
        type=BackupKind.PARTIAL,
        name="Before the kitchen upgrade",
        homeassistant=False,
        addons=("core_mosquitto", "a0d7b954_nodered"),
        folders=("share", "addons/local"),
        exclude_database=True,
    )


def test_a_full_backup_may_be_named_and_leave_out_the_database() -> None:
    command = parse_command(
        stdin_line({"command": "backup", "type": "full", "name": "Weekly", "exclude_database": True})
    )
    assert (command.type, command.name, command.exclude_database) == (BackupKind.FULL, "Weekly", True)


@pytest.mark.parametrize("action", ["verify", "drill"])
def test_verify_and_drill_can_name_a_location_and_a_backup(action: str) -> None:
    command = parse_command(stdin_line({"command": action, "location": "NAS", "slug": "9ecf0028"}))
    assert command == Command(action=Action(action), location="NAS", slug="9ecf0028")
    assert parse_command(stdin_line({"command": action})) == Command(action=Action(action))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("restore", "unknown command 'restore'"),
        ({"command": "format_disk"}, "unknown command 'format_disk'"),
        ({"type": "full"}, 'no "command"'),
        ({"command": 3}, "unknown command 'int'"),
        ({"command": "backup", "colour": "red"}, 'unknown setting "colour"'),
        ({"command": "verify", "type": "full"}, 'unknown setting "type"'),
        ({"command": "backup", "location": "NAS"}, 'unknown setting "location"'),
        ({"command": "backup", "type": "weekly"}, '"type" must be "full" or "partial"'),
        ({"command": "backup", "folders": ["share"]}, 'only apply with "type": "partial"'),
        ({"command": "backup", "type": "full", "addons": []}, 'only apply with "type": "partial"'),
        ({"command": "backup", "type": "partial", "folders": "share"}, '"folders" must be a list'),
        ({"command": "backup", "type": "partial", "folders": ["homeassistant"]}, '"folders" must be a list'),
        ({"command": "backup", "type": "partial", "folders": ["ssl", "ssl"]}, "names something twice"),
        ({"command": "backup", "type": "partial", "addons": ["no spaces"]}, '"addons" must be a list'),
        ({"command": "backup", "type": "partial", "homeassistant": False}, "needs Home Assistant, an add-on"),
        (
            {"command": "backup", "type": "partial", "homeassistant": "yes"},
            '"homeassistant" must be true or false',
        ),
        ({"command": "backup", "exclude_database": 1}, '"exclude_database" must be true or false'),
        ({"command": "backup", "name": 42}, '"name" must be a text'),
        ({"command": "backup", "name": ""}, '"name" must be a text'),
        ({"command": "backup", "name": "x" * 101}, '"name" must be a text'),
        ({"command": "backup", "name": "two\nlines"}, '"name" must be a text'),
        ({"command": "drill", "slug": "../etc"}, '"slug" must be a backup slug'),
        ({"command": "verify", "location": ["NAS"]}, '"location" must be the name'),
        (["backup"], "got JSON list"),
        (7, "got JSON int"),
        (None, "got JSON NoneType"),
    ],
)
def test_bad_commands_say_what_is_wrong(value: object, reason: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_command(stdin_line(value))
    assert reason in str(caught.value)
    assert isinstance(caught.value, AddonError)


@pytest.mark.parametrize("line", ["{not json", "backup now please", "", "   \n", '{"command": "backup",}'])
def test_lines_that_are_no_command_at_all_are_refused(line: str) -> None:
    with pytest.raises(InvalidCommand):
        parse_command(line)


def test_the_message_shows_at_most_80_characters_of_the_input() -> None:
    line = '{"command": "backup", "name": "' + "A" * 5000 + '", "oops": 1}'
    with pytest.raises(InvalidCommand) as caught:
        parse_command(line)
    assert len(caught.value.received) <= 80
    assert "A" * 81 not in str(caught.value)
    assert len(str(caught.value)) < 400


def test_unknown_keys_are_listed_shortly() -> None:
    data = {"command": "backup", **{f"key_{i}_{'z' * 100}": i for i in range(20)}}
    with pytest.raises(InvalidCommand) as caught:
        parse_command(json.dumps(data))
    assert "z" * 31 not in caught.value.reason
    assert '..." ... for "backup"' in caught.value.reason
    assert caught.value.reason.count("key_") == 5


def test_control_characters_do_not_reach_the_message() -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_command('"\\u001b[31mred\\u0007"')
    assert "\x1b" not in str(caught.value)
    assert "\x07" not in str(caught.value)


# --- reading --------------------------------------------------------------------------------


async def collect(path: Path | str, **kwargs: int) -> list[Command | InvalidCommand]:
    return [item async for item in read_commands(path, **kwargs)]


def write_in_thread(path: Path | str, data: bytes, *, delay: float = 0.0) -> threading.Thread:
    def work() -> None:
        if delay:
            threading.Event().wait(delay)
        with open(path, "wb") as pipe:
            pipe.write(data)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def kinds(items: list[Command | InvalidCommand]) -> list[str]:
    return [item.action.value if isinstance(item, Command) else "invalid" for item in items]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "stdin"
    os.mkfifo(path)
    return path


async def test_commands_are_read_from_a_fifo_and_bad_lines_are_skipped(fifo: Path) -> None:
    data = "".join(
        [
            stdin_line("backup"),
            "this is not a command\n",
            stdin_line({"command": "verify", "location": "NAS"}),
            "\n",
            stdin_line({"command": "backup", "colour": "red"}),
            stdin_line("drill"),
        ]
    ).encode()
    writer = write_in_thread(fifo, data)
    items = await asyncio.wait_for(collect(fifo), 10)
    writer.join()
    assert kinds(items) == ["backup", "invalid", "verify", "invalid", "drill"]
    assert items[2] == Command(action=Action.VERIFY, location="NAS")
    bad = items[1]
    assert isinstance(bad, InvalidCommand)
    assert "this is not a command" in bad.received


async def test_reading_waits_for_a_writer_that_comes_later(fifo: Path) -> None:
    writer = write_in_thread(fifo, stdin_line("backup").encode(), delay=0.3)
    items = await asyncio.wait_for(collect(fifo), 10)
    writer.join()
    assert kinds(items) == ["backup"]


async def test_commands_are_read_from_a_pipe_as_stdin_would_be() -> None:
    read_end, write_end = os.pipe()
    try:
        reading = asyncio.create_task(collect(f"/proc/self/fd/{read_end}"))
        await asyncio.sleep(0.05)
        os.write(write_end, stdin_line({"command": "backup", "type": "full"}).encode())
        await asyncio.sleep(0.05)
        os.write(write_end, stdin_line("verify").encode())
        os.close(write_end)
        write_end = -1
        items = await asyncio.wait_for(reading, 10)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert items == [Command(action=Action.BACKUP, type=BackupKind.FULL), Command(action=Action.VERIFY)]


async def test_an_overlong_line_is_rejected_and_reading_goes_on(fifo: Path) -> None:
    huge = '{"command": "backup", "name": "' + "x" * (MAX_LINE_BYTES + 10_000) + '"}\n'
    writer = write_in_thread(fifo, (huge + stdin_line("drill")).encode())
    items = await asyncio.wait_for(collect(fifo), 10)
    writer.join()
    assert kinds(items) == ["invalid", "drill"]
    bad = items[0]
    assert isinstance(bad, InvalidCommand)
    assert "longer than 64 KiB" in str(bad)
    assert len(bad.received) <= 80


async def test_overlong_lines_are_not_buffered(fifo: Path) -> None:
    # 8 MiB without a newline against a 1 KiB limit: the reader drops it as it arrives.
    writer = write_in_thread(fifo, b"y" * (8 << 20) + b"\n" + stdin_line("backup").encode())
    items = await asyncio.wait_for(collect(fifo, max_line=1024), 30)
    writer.join()
    assert kinds(items) == ["invalid", "backup"]


async def test_a_line_exactly_at_the_limit_is_still_read(fifo: Path) -> None:
    line = json.dumps({"command": "backup", "name": "n"}).encode()
    writer = write_in_thread(fifo, line + b"\n")
    items = await asyncio.wait_for(collect(fifo, max_line=len(line)), 10)
    writer.join()
    assert kinds(items) == ["backup"]


async def test_text_that_is_not_utf8_is_reported(fifo: Path) -> None:
    writer = write_in_thread(fifo, b"\xff\xfe backup\n" + stdin_line("verify").encode())
    items = await asyncio.wait_for(collect(fifo), 10)
    writer.join()
    assert kinds(items) == ["invalid", "verify"]
    assert "not UTF-8" in str(items[0])


async def test_a_regular_file_is_read_to_its_end_without_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "commands.txt"
    path.write_text(stdin_line("backup") + '"drill"')
    assert kinds(await collect(path)) == ["backup", "drill"]


async def test_dev_null_ends_at_once() -> None:
    assert await asyncio.wait_for(collect("/dev/null"), 5) == []


async def test_waiting_for_commands_does_not_block_the_event_loop(fifo: Path) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    reading = asyncio.create_task(collect(fifo))
    await asyncio.sleep(0.3)
    assert ticks >= 10
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reading, 2)
    ticker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ticker


async def test_a_missing_path_raises_a_clear_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await collect(tmp_path / "nothing")
