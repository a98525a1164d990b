"""Fuzzing the parsers that read bytes the add-on did not write: age files, backup archives, commands.

Each parser has one contract for garbage: a typed answer (an AgeError, a report with ok=False, an
InvalidCommand), never another exception, never a hang, and memory that stays bounded.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from backup_addon.crypto.age import (
    INTRO,
    AgeError,
    Identity,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
)

CATEGORY = "hostile input (fuzzing)"
def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
PASSWORD = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"

IDENTITY = Identity.generate()
OTHER = Identity.generate()
PLAINTEXTS = [b"", b"hello", bytes(range(256)) * 300, b"\x00" * 65536, b"z" * 70_000]
AGE_FILES = [encrypt_bytes(p, [IDENTITY.recipient()]) for p in PLAINTEXTS] + [
    encrypt_bytes(b"two recipients", [OTHER.recipient(), IDENTITY.recipient()])
]


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes], header_bias: int = 400) -> tuple[bytes, bytes]:
    """One of `originals`, damaged a few times; most damage lands near the start (the headers)."""
    index = draw(st.integers(0, len(originals) - 1))
    data = bytearray(originals[index])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=64))
            continue
        near = draw(st.booleans())
        limit = min(len(data), header_bias) if near else len(data)
        at = draw(st.integers(0, max(limit - 1, 0)))
        match draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate", "zero", "line"])):
            case "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "set":
                data[at] = draw(st.integers(0, 255))
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=64))
            case "delete":
                del data[at : at + draw(st.integers(1, 64))]
            case "truncate":
                del data[at:]
            case "duplicate":
                data[at:at] = data[at : at + draw(st.integers(1, 200))]
            case "zero":
                data[at : at + 32] = bytes(len(data[at : at + 32]))
            case "line":
                data[at:at] = draw(st.sampled_from([b"\n", b"-> X25519 \n", b"---", b"-> scrypt AAAA 10\n", b" "]))
    return originals[index], bytes(data)


async def _pieces(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    at, turn = 0, 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        yield data[at : at + size]
        at += size
        turn += 1


async def _decrypt_streaming(data: bytes, sizes: list[int]) -> bytes:
    return b"".join([piece async for piece in decrypt_stream(_pieces(data, sizes), [IDENTITY])])


def _age_outcome(data: bytes, sizes: list[int]) -> tuple[str, bytes | None]:
    started = time.monotonic()
    results = []
    for attempt in (lambda: decrypt_bytes(data, [IDENTITY]), lambda: asyncio.run(_decrypt_streaming(data, sizes))):
        try:
            results.append(("ok", attempt()))
        except AgeError as err:
            results.append((type(err).__name__, None))
    assert time.monotonic() - started < 10, "decrypting a small file took more than 10 s"
    (whole, whole_text), (streamed, _) = results
    assert (whole == "ok") == (streamed == "ok"), f"in memory: {whole}, streamed: {streamed}"
    return whole, whole_text


@pytest.mark.reliability(
    CATEGORY,
    "hypothesis: real age files damaged 1-4 times (bit flips, inserted/deleted/duplicated bytes, truncation, forged "
    "stanza lines), decrypted in memory and as a stream cut at random sizes",
    "only AgeError subclasses are raised; a file that still decrypts gives exactly the original plaintext; never a hang",
)
@fuzz(400)
@given(case=mutated(AGE_FILES), sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=4))
def test_age_decryption_of_damaged_files_only_raises_age_errors(row, case, sizes):
    _, data = case
    outcome, plaintext = _age_outcome(data, sizes)
    if outcome == "ok":
        assert plaintext in [*PLAINTEXTS, b"two recipients"], "a damaged file decrypted to something never encrypted"
    row.happened = "400 damaged files: every outcome a plaintext that was encrypted, or an AgeError"


@pytest.mark.reliability(
    CATEGORY,
    "hypothesis: arbitrary bytes, with and without the age intro line, as age files",
    "only AgeError subclasses are raised, never a hang",
)
@fuzz(300)
@given(
    data=st.one_of(st.binary(max_size=2000), st.binary(max_size=2000).map(lambda b: INTRO + b),
                   st.text(max_size=500).map(lambda t: INTRO + t.encode("utf-8", "surrogatepass"))),
    sizes=st.lists(st.integers(1, 4096), min_size=1, max_size=3),
)
def test_age_decryption_of_arbitrary_bytes_only_raises_age_errors(row, data, sizes):
    outcome, _ = _age_outcome(data, sizes)
    assert outcome != "ok" or data in AGE_FILES
    row.happened = "300 random inputs: every one answered with an AgeError"


# --- the archive walker -------------------------------------------------------------------


@functools.cache
def real_archives() -> list[bytes]:
    """Two real archives from the simulated Supervisor: a protected full backup and a plain partial one."""
    from supervisor_sim import Faults, SimConfig, SupervisorSim

    async def make() -> list[bytes]:
        sim = SupervisorSim(SimConfig(root=Path(tempfile.mkdtemp(prefix="walk-")), faults=Faults(stage_delay=0)))
        full = await sim.create_backup({"name": "Fuzz full", "password": PASSWORD}, full=True)
        partial = await sim.create_backup({"name": "Fuzz partial", "folders": ["ssl", "share"]}, full=False)
        assert full is not None and partial is not None
        return [sim.archive_path(full.slug).read_bytes(), sim.archive_path(partial.slug).read_bytes()]

    return asyncio.run(make())


def _walk(data: bytes, sizes: list[int], password: str | None):  # -> ArchiveReport
    from backup_addon.verify import walk_archive

    return asyncio.run(walk_archive(_pieces(data, sizes), password))


@pytest.mark.reliability(
    CATEGORY,
    "the archive walker (verify.walk_archive) on the untouched real archives",
    "ok=True for both, every part listed",
)
def test_walker_accepts_the_real_archives(row):
    reports = [_walk(data, [65536], PASSWORD if i == 0 else None) for i, data in enumerate(real_archives())]
    row.happened = "; ".join(f"ok={r.ok}, {len(r.parts)} parts, problems {r.problems}" for r in reports)
    assert all(r.ok for r in reports), [r.problems for r in reports]


@pytest.mark.reliability(
    CATEGORY,
    "hypothesis: real Supervisor archives (SecureTar, gzip, tar) damaged 1-4 times, walked by verify.walk_archive "
    "in random piece sizes, with the right, a wrong or no password",
    "a report with ok True or False and one-line sentences for its problems; never an exception; an archive walked "
    "without its password never passes; memory stays under 64 MiB",
)
@fuzz(300)
@given(
    case=st.builds(lambda: None).flatmap(lambda _: mutated(real_archives(), header_bias=1 << 30)),
    sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=3),
    password=st.sampled_from([PASSWORD, "WXYZ-WXYZ-WXYZ-WXYZ-WXYZ-WXYZ-WXYZ", None]),
)
def test_walker_on_damaged_archives_never_raises(row, case, sizes, password):
    original, data = case
    assume(data != original)
    tracemalloc.start()
    try:
        started = time.monotonic()
        report = _walk(data, sizes, password)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(report.ok, bool)
    assert all(isinstance(p, str) and p and "\n" not in p for p in report.problems), report.problems
    assert report.ok or report.problems, "a failed walk must say why"
    assert peak < 64 << 20, f"the walk held {peak / 2**20:.0f} MiB"
    assert elapsed < 20
    if password != PASSWORD and original == real_archives()[0]:
        assert not report.ok, "a protected archive walked without its password must not pass"
    row.happened = "300 damaged archives: a report every time, never an exception, memory bounded"


# --- commands from automations ------------------------------------------------------------

command_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["command", "type", "name", "folders", "addons", "homeassistant", "exclude_database",
                         "location", "slug", "x"]) | st.text(max_size=8), inner, max_size=5),
    max_leaves=10,
)


@pytest.mark.reliability(
    CATEGORY,
    "hypothesis: stdin lines for commands.parse_command: arbitrary text, and JSON objects with random keys and values",
    "a Command or an InvalidCommand whose message is one bounded line; nothing else is ever raised",
)
@fuzz(400)
@given(line=st.one_of(st.text(max_size=300), command_json.map(json.dumps),
                      st.sampled_from(['"backup"', "backup", "BACKUP", "verify", '{"command": "drill"}', "\x00"])))
def test_parse_command_fuzz(row, line):
    from backup_addon.commands import Command, InvalidCommand, parse_command

    try:
        command = parse_command(line)
    except InvalidCommand as err:
        message = str(err)
        assert "\n" not in message and len(message) < 1000, message
    else:
        assert isinstance(command, Command)
    row.happened = "400 lines: every one a Command or an InvalidCommand"


@pytest.mark.reliability(
    CATEGORY,
    "hypothesis: raw stdin bytes (invalid UTF-8, NUL, empty and overlong lines) through commands.read_commands",
    "one Command or InvalidCommand per non-empty line, overlong lines reported and skipped; never an exception",
)
@fuzz(100)
@given(chunks=st.lists(st.one_of(st.binary(max_size=200), st.just(b"\n"), st.just(b"x" * 300),
                                 st.just(b'{"command": "backup"}\n'), st.just(b"\xff\xfe\n")), max_size=12))
def test_read_commands_fuzz(row, chunks, tmp_path_factory):
    from backup_addon.commands import Command, InvalidCommand, read_commands

    path = tmp_path_factory.mktemp("stdin") / "stdin"
    data = b"".join(chunks)
    path.write_bytes(data)

    async def read() -> list[object]:
        return [item async for item in read_commands(path, max_line=256)]

    items = asyncio.run(asyncio.wait_for(read(), 10))
    assert all(isinstance(item, Command | InvalidCommand) for item in items)
    assert len(items) <= data.count(b"\n") + 1
    row.happened = "100 streams of garbage: only Commands and InvalidCommands came out"
