"""Proving copies: the streaming archive walk (restore drill) and the scrub of stored copies.

Archives are real: the simulator's writer makes Supervisor backups with securetar (v3, and v2
when asked), and a small writer below reproduces securetar v1's legacy layout.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supervisor_sim.archive as sim_archive
from backup_addon.catalog import ProofLevel
from backup_addon.crypto.age import Identity, encrypt_bytes
from backup_addon.errors import LocationUnreachable
from backup_addon.verify import (
    BAD_METADATA,
    COPY_DAMAGED,
    COPY_DAMAGED_OR_SHORT,
    COPY_DIFFERS,
    COPY_SHORT,
    COPY_TRUNCATED,
    COPY_WRONG_KEY,
    NO_KEY,
    NO_METADATA,
    NOT_A_TAR,
    TRUNCATED,
    WRONG_KEY,
    Limits,
    prove_copy,
    walk_archive,
)
from supervisor_sim.archive import ArchiveWriter

PASSWORD = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ01"
OTHER_PASSWORD = "ZZZZ-EFGH-IJKL-MNOP-QRST-UVWX-YZ01"
MIB = 1 << 20


# --- building archives ------------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    """A small folder with text, binary data and a subfolder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "configuration.yaml").write_text("homeassistant:\n  name: Home\n" * 50)
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "data.bin").write_bytes(os.urandom(50_000))
    return root


def backup_json(
    *,
    protected: bool,
    compressed: bool = True,
    addons: Iterable[tuple[str, str]] = (("core_ssh", "Advanced SSH"),),
    folders: Iterable[str] = ("share", "addons/local"),
    homeassistant: bool = True,
) -> dict[str, Any]:
    return {
        "slug": "9f3a1c2e",
        "version": 2,
        "name": "Nightly",
        "date": "2026-03-01T03:30:00.000000+00:00",
        "type": "partial",
        "supervisor_version": "2026.08.0",
        "extra": {"created_by": "backup_321"},
        "folders": list(folders),
        "homeassistant": {"version": "2026.3.0", "exclude_database": False, "size": 0.0}
        if homeassistant
        else None,
        "compressed": compressed,
        "addons": [{"slug": s, "name": n, "version": "1.0", "size": 0.0} for s, n in addons],
        "repositories": [],
        "protected": protected,
    }


def build_archive(
    path: Path,
    *,
    password: str | None = PASSWORD,
    compressed: bool = True,
    payload: int = 0,
    skip_addon: bool = False,
) -> Path:
    """A Supervisor backup written by the simulator: Home Assistant, one add-on, two folders."""
    tree = make_tree(path.parent / f"{path.stem}-tree")
    writer = ArchiveWriter(path, password=password, compressed=compressed)
    writer.add_homeassistant(tree, {"version": "2026.3.0"}, exclude_database=False)
    if not skip_addon:
        writer.add_addon("core_ssh", {"slug": "core_ssh"}, tree)
    writer.add_folder("share", tree, payload_bytes=payload)
    writer.add_folder("addons/local", tree)
    writer.finish(backup_json(protected=password is not None, compressed=compressed))
    return path


def members_of(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path, "r:") as tar:
        return {m.name: m for m in tar.getmembers()}


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x55]))


def outer_tar(parts: dict[str, bytes], metadata: dict[str, Any] | bytes | None) -> bytes:
    """An outer archive made by hand: the given parts, then ./backup.json."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if metadata is not None:
            raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
            info = tarfile.TarInfo("./backup.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return out.getvalue()


def inner_tar(entries: Callable[[tarfile.TarFile], None], *, gzip: bool = True) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gzip else "w:", format=tarfile.PAX_FORMAT) as tar:
        entries(tar)
    return out.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"data") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, *, hard: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    tar.addfile(info)


class LegacyCipher:
    """securetar v1 as Supervisors before 2025.01 wrote it: a 16-byte salt, then AES-128-CBC.

    The key is SHA-256 applied 100 times to the password (first 16 bytes), the IV SHA-256
    applied 100 times to key + salt, and every write whose length is not a multiple of 16 was
    padded (PKCS7) on its own, which is why gzip's trailer ends up padded in the middle.
    """

    def __init__(self, out: io.BytesIO, password: str) -> None:
        key = password.encode()
        for _ in range(100):
            key = hashlib.sha256(key).digest()
        key = key[:16]
        salt = os.urandom(16)
        iv = key + salt
        for _ in range(100):
            iv = hashlib.sha256(iv).digest()
        self._out = out
        self._encryptor = Cipher(algorithms.AES(key), modes.CBC(iv[:16])).encryptor()
        out.write(salt)

    def write(self, data: bytes) -> int:
        if len(data) % 16:
            pad = 16 - len(data) % 16
            data = bytes(data) + bytes([pad]) * pad
        self._out.write(self._encryptor.update(data))
        return len(data)


def legacy_part(tree: Path, password: str, arcname: str = "data") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=LegacyCipher(out, password), mode="w|gz") as tar:  # type: ignore[call-overload]
        tar.add(str(tree), arcname=arcname)
    return out.getvalue()


def zero_bomb(nominal: int, *, valid: bool = False) -> bytes:
    """A gzip'd tar of one file of `nominal` zero bytes (a multiple of 1 MiB), built quickly.

    After a full flush deflate starts afresh, so one compressed MiB of zeros can be repeated.
    With `valid` the gzip trailer's checksum is computed too (slow for huge sizes); without, it
    is wrong, which a bounded reader never gets far enough to notice.
    """
    header = tarfile.TarInfo("./zeros.bin")
    header.size = nominal
    head = header.tobuf(tarfile.PAX_FORMAT)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH) == segment
    end = bytes(2 * tarfile.BLOCKSIZE)
    tail = compressor.compress(end) + compressor.flush()
    crc = zlib.crc32(head)
    if valid:
        zeros = bytes(MIB)
        for _ in range(nominal // MIB):
            crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(end, crc)
    size = (len(head) + nominal + len(end)) & 0xFFFFFFFF
    gzip_header = b"\x1f\x8b\x08\x00" + bytes(4) + b"\x02\xff"
    return (
        gzip_header
        + body
        + segment * (nominal // MIB)
        + tail
        + crc.to_bytes(4, "little")
        + size.to_bytes(4, "little")
    )


# --- streaming helpers ------------------------------------------------------------------------


async def pieces(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def file_chunks(path: Path, size: int = MIB) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(size):
            yield block


async def walk_file(path: Path, password: str | None = PASSWORD, **kwargs: Any) -> Any:
    return await walk_archive(file_chunks(path), password, **kwargs)


def expected_listing(tree: Path, arcname_prefix_entries: int) -> tuple[int, int]:
    """(entries, file bytes) of `tree` added recursively, plus the extra entries the writer adds."""
    entries = 1 + arcname_prefix_entries
    size = 0
    for item in tree.rglob("*"):
        entries += 1
        if item.is_file():
            size += item.stat().st_size
    return entries, size


@pytest.fixture(scope="module")
def v3_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(tmp_path_factory.mktemp("v3") / "backup.tar")


# --- the walk: good archives -------------------------------------------------------------------


async def test_a_securetar_v3_backup_is_restorable_and_every_part_is_listed(v3_archive: Path) -> None:
    report = await walk_file(v3_archive)
    assert report.ok, report.problems
    assert (report.name, report.slug) == ("Nightly", "9f3a1c2e")
    assert [p.name for p in report.parts] == [
        "homeassistant.tar.gz",
        "core_ssh.tar.gz",
        "share.tar.gz",
        "addons_local.tar.gz",
    ]
    tree = v3_archive.parent / "backup-tree"
    # Home Assistant and add-ons: ".", the metadata file, then the tree as "data".
    assert (report.parts[0].members, report.parts[0].bytes) == (
        expected_listing(tree, 1)[0] + 1,
        expected_listing(tree, 1)[1] + len(json.dumps({"version": "2026.3.0"}, separators=(",", ":"))),
    )
    # Folders: the tree itself as ".".
    assert (report.parts[3].members, report.parts[3].bytes) == expected_listing(tree, 0)
    assert report.metadata is not None
    assert report.metadata.protected and report.metadata.compressed
    assert report.metadata.addons == (("core_ssh", "Advanced SSH"),)


@pytest.mark.parametrize("compressed", [True, False])
async def test_an_unprotected_backup_is_restorable_with_or_without_a_key(
    tmp_path: Path, compressed: bool
) -> None:
    path = build_archive(tmp_path / "plain.tar", password=None, compressed=compressed, payload=300_000)
    assert (await walk_file(path, None)).ok
    report = await walk_file(path, PASSWORD)
    assert report.ok, report.problems
    suffix = ".tar.gz" if compressed else ".tar"
    assert all(p.name.endswith(suffix) for p in report.parts)
    assert report.parts[2].bytes > 300_000


async def test_an_uncompressed_protected_backup_is_restorable(tmp_path: Path) -> None:
    report = await walk_file(build_archive(tmp_path / "b.tar", compressed=False, payload=2 * MIB + 5))
    assert report.ok, report.problems
    assert report.parts[0].name == "homeassistant.tar"


async def test_a_securetar_v2_backup_is_restorable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Supervisors write v2 when Home Assistant Core is older than 2026.3.0.
    monkeypatch.setattr(sim_archive, "SECURETAR_VERSION", 2)
    path = build_archive(tmp_path / "v2.tar", payload=MIB + 3)
    with tarfile.open(path, "r:") as tar:
        member = tar.extractfile("share.tar.gz")
        assert member is not None
        assert member.read(10) == b"SecureTar\x02"
    report = await walk_file(path)
    assert report.ok, report.problems
    assert (await walk_file(path, OTHER_PASSWORD)).problems == [WRONG_KEY]


async def test_a_legacy_securetar_v1_backup_is_restorable(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    meta = backup_json(protected=True, addons=[("core_ssh", "SSH")], folders=["ssl"])
    archive = outer_tar(
        {
            name: legacy_part(tree, PASSWORD)
            for name in ("homeassistant.tar.gz", "core_ssh.tar.gz", "ssl.tar.gz")
        },
        meta,
    )
    report = await walk_archive(pieces(archive), PASSWORD)
    assert report.ok, report.problems
    assert all(p.members == expected_listing(tree, 0)[0] for p in report.parts)
    wrong = await walk_archive(pieces(archive), OTHER_PASSWORD)
    assert wrong.problems == [WRONG_KEY]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=40))
async def test_how_the_stream_is_cut_into_pieces_never_changes_the_result(
    v3_archive: Path, sizes: list[int]
) -> None:
    data = v3_archive.read_bytes()

    async def uneven() -> AsyncIterator[bytes]:
        position = 0
        for index in range(len(data)):
            size = sizes[index % len(sizes)]
            if position >= len(data):
                return
            yield data[position : position + size]
            position += size

    reference = await walk_archive(pieces(data), PASSWORD)
    assert await walk_archive(uneven(), PASSWORD) == reference


# --- the walk: what goes wrong -----------------------------------------------------------------


async def test_a_wrong_password_gives_one_clear_sentence(v3_archive: Path) -> None:
    report = await walk_file(v3_archive, OTHER_PASSWORD)
    assert not report.ok
    assert report.problems == [WRONG_KEY]
    assert all(p.error == "cannot be opened with this encryption key" for p in report.parts)
    assert OTHER_PASSWORD not in repr(report)


async def test_no_password_for_a_protected_backup_says_a_key_is_needed(v3_archive: Path) -> None:
    report = await walk_file(v3_archive, None)
    assert report.problems == [NO_KEY]


async def test_a_corrupt_inner_securetar_is_named_and_the_other_parts_still_pass(tmp_path: Path) -> None:
    path = build_archive(tmp_path / "b.tar", payload=3 * MIB)
    share = members_of(path)["share.tar.gz"]
    flip_byte(path, share.offset_data + share.size // 2)
    report = await walk_file(path)
    assert report.problems == [
        "the folder share (share.tar.gz) is damaged: its encrypted data does not check out"
    ]
    assert [p.ok for p in report.parts] == [True, True, False, True]


async def test_a_corrupt_v2_part_is_caught_by_the_gzip_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_archive, "SECURETAR_VERSION", 2)
    path = build_archive(tmp_path / "b.tar", payload=2 * MIB)
    share = members_of(path)["share.tar.gz"]
    flip_byte(path, share.offset_data + share.size // 2)  # AES-CBC has no tag: only gzip can tell
    report = await walk_file(path)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("the folder share (share.tar.gz) is damaged: its compressed data")


async def test_a_damaged_encryption_header_reads_as_damage_when_the_key_opens_other_parts(
    tmp_path: Path,
) -> None:
    path = build_archive(tmp_path / "b.tar")
    addon = members_of(path)["core_ssh.tar.gz"]
    # v3's header: id and size (32 bytes), then the root salt: a changed salt fails the key check.
    flip_byte(path, addon.offset_data + 40)
    report = await walk_file(path)
    assert report.problems == [
        "the add-on Advanced SSH (core_ssh.tar.gz) is damaged: it is not a readable archive"
    ]


async def test_a_missing_addon_archive_is_named(tmp_path: Path) -> None:
    report = await walk_file(build_archive(tmp_path / "b.tar", skip_addon=True))
    assert report.problems == [
        "the add-on Advanced SSH is listed in this backup, but its archive (core_ssh.tar.gz) is missing"
    ]
    assert report.parts[-1].name == "core_ssh.tar.gz" and not report.parts[-1].ok


async def test_missing_folder_and_home_assistant_archives_are_named(tmp_path: Path) -> None:
    part = inner_tar(lambda tar: add_file(tar, "./x"))
    meta = backup_json(protected=False, addons=[], folders=["share", "addons/local"])
    report = await walk_archive(pieces(outer_tar({"share.tar.gz": part}, meta)), None)
    assert report.problems == [
        "Home Assistant's configuration is listed in this backup, but its archive (homeassistant.tar.gz) is missing",
        "the folder local add-ons is listed in this backup, but its archive (addons_local.tar.gz) is missing",
    ]


@pytest.mark.parametrize("fraction", [0.0001, 0.3, 0.5, 0.9])
async def test_a_truncated_archive_is_reported_wherever_it_is_cut(v3_archive: Path, fraction: float) -> None:
    data = v3_archive.read_bytes()
    report = await walk_archive(pieces(data[: int(len(data) * fraction)]), PASSWORD)
    assert not report.ok
    assert report.problems[0] == TRUNCATED
    assert report.truncated


async def test_an_archive_cut_inside_backup_json_is_truncated(v3_archive: Path) -> None:
    metadata = members_of(v3_archive)["./backup.json"].offset_data
    report = await walk_archive(pieces(v3_archive.read_bytes()[: metadata + 5]), PASSWORD)
    assert report.problems == [TRUNCATED]


async def test_a_cut_in_the_zero_padding_after_the_end_marker_still_restores(v3_archive: Path) -> None:
    # The walk cannot notice this, and need not: the archive is whole. The scrub's hash does.
    data = v3_archive.read_bytes()
    assert (await walk_archive(pieces(data[:-1000]), PASSWORD)).ok


async def test_an_archive_cut_between_two_entries_is_truncated(v3_archive: Path) -> None:
    metadata_header = members_of(v3_archive)["./backup.json"].offset
    report = await walk_archive(pieces(v3_archive.read_bytes()[:metadata_header]), PASSWORD)
    assert report.problems == [TRUNCATED]
    assert all(p.ok for p in report.parts)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", NOT_A_TAR),
        (os.urandom(50_000), NOT_A_TAR),
        (b"PK\x03\x04" + bytes(4000), NOT_A_TAR),
        (outer_tar({}, None), NO_METADATA),
        (outer_tar({}, b"{not json"), BAD_METADATA),
        (outer_tar({}, {"name": "no slug"}), BAD_METADATA),
    ],
    ids=["empty", "random", "zip", "no-backup-json", "bad-json", "no-slug"],
)
async def test_a_file_that_is_not_a_backup_says_so(data: bytes, problem: str) -> None:
    report = await walk_archive(pieces(data), PASSWORD)
    assert report.problems == [problem]


async def test_an_inner_archive_that_is_not_gzip_is_damaged() -> None:
    meta = backup_json(protected=False, addons=[], folders=["share"], homeassistant=False)
    # A valid gzip header, then a deflate block of the reserved type 3.
    part = b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 5000
    report = await walk_archive(pieces(outer_tar({"share.tar.gz": part}, meta)), None)
    assert report.problems == ["the folder share (share.tar.gz) is damaged: its compressed data is corrupt"]


async def test_a_gzip_bomb_stays_bounded_in_memory_and_time() -> None:
    bomb = zero_bomb(4 << 30)  # 4 GiB of zeros in about 4 MiB
    meta = backup_json(protected=False, addons=[], folders=["share"], homeassistant=False)
    archive = outer_tar({"share.tar.gz": bomb}, meta)
    tracemalloc.start()
    started = time.monotonic()
    try:
        report = await walk_archive(pieces(archive), None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    assert report.problems == [
        "the folder share (share.tar.gz) unpacks to more than 1.1 GB, far more than its stored size "
        "suggests, so it was not checked further"
    ]
    assert peak < 16 * MIB, peak
    assert elapsed < 20, elapsed


async def test_many_small_bombs_share_one_budget() -> None:
    bomb = zero_bomb(64 * MIB, valid=True)
    meta = backup_json(protected=False, addons=[], folders=["share", "media", "ssl"], homeassistant=False)
    archive = outer_tar({f"{name}.tar.gz": bomb for name in ("share", "media", "ssl")}, meta)
    limits = Limits(unpack_ratio=10, unpack_floor=100 * MIB)
    report = await walk_archive(pieces(archive), None, limits=limits)
    # Each part alone fits; the second one exhausts what the archive may unpack to.
    assert [p.ok for p in report.parts] == [True, False, False]
    assert report.problems[0] == (
        "the folder media (media.tar.gz) unpacks to more than 104.9 MB, far more than its stored size "
        "suggests, so it was not checked further"
    )


async def test_entries_a_restore_would_place_outside_their_folder_are_reported() -> None:
    def hostile(tar: tarfile.TarFile) -> None:
        add_file(tar, "./fine.txt")
        add_link(tar, "./fine_link", "fine.txt")
        add_link(tar, "./sub/up_link", "../fine.txt")
        add_file(tar, "../../etc/cron.d/evil")
        add_file(tar, "/etc/passwd")
        add_link(tar, "./escape", "../../../../root")
        add_link(tar, "./abs", "/etc")
        add_link(tar, "./hard", "../outside", hard=True)

    meta = backup_json(protected=False, addons=[], folders=["share"], homeassistant=False)
    started = time.monotonic()
    report = await walk_archive(pieces(outer_tar({"share.tar.gz": inner_tar(hostile)}, meta)), None)
    assert time.monotonic() - started < 5
    assert report.problems == [
        "the folder share (share.tar.gz) holds entries that a restore would place outside their folder "
        "(../../etc/cron.d/evil, /etc/passwd, ./escape and 2 more)"
    ]
    assert report.parts[0].members == 8


async def test_an_outer_entry_outside_the_archive_is_reported() -> None:
    meta = backup_json(protected=False, addons=[], folders=[], homeassistant=False)
    report = await walk_archive(
        pieces(outer_tar({"../escape.tar": inner_tar(lambda t: None, gzip=False)}, meta)), None
    )
    assert report.problems == [
        "the backup file holds entries that a restore would place outside its folder (../escape.tar)"
    ]


async def test_too_many_files_in_a_part_stop_the_walk() -> None:
    def many(tar: tarfile.TarFile) -> None:
        for index in range(50):
            add_file(tar, f"./f{index}", b"")

    meta = backup_json(protected=False, addons=[], folders=["share"], homeassistant=False)
    report = await walk_archive(
        pieces(outer_tar({"share.tar.gz": inner_tar(many)}, meta)), None, limits=Limits(max_members=20)
    )
    assert report.problems == [
        "the folder share (share.tar.gz) holds more than 20 files; it was not checked further"
    ]


async def test_an_oversized_extended_header_stops_the_walk() -> None:
    def long_name(tar: tarfile.TarFile) -> None:
        add_file(tar, "./" + "n" * 5000)

    meta = backup_json(protected=False, addons=[], folders=["share"], homeassistant=False)
    report = await walk_archive(
        pieces(outer_tar({"share.tar.gz": inner_tar(long_name)}, meta)),
        None,
        limits=Limits(max_header_bytes=1024),
    )
    assert report.problems == [
        "the folder share (share.tar.gz) has a file entry with an oversized header; it was not checked further"
    ]


async def test_garbage_after_an_inner_end_marker_is_damage() -> None:
    raw = inner_tar(lambda tar: add_file(tar, "./a"), gzip=False)
    damaged = raw[:512] + bytes(1024) + b"garbage" + raw[512 + 1024 + 7 :]
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    part = gz.compress(damaged) + gz.flush()
    meta = backup_json(protected=False, addons=[], folders=["share"], homeassistant=False)
    report = await walk_archive(pieces(outer_tar({"share.tar.gz": part}, meta)), None)
    assert report.problems == [
        "the folder share (share.tar.gz) is damaged: its list of files stops in the middle"
    ]


async def test_walking_a_large_archive_keeps_memory_flat(tmp_path: Path) -> None:
    path = build_archive(tmp_path / "big.tar", payload=64 * MIB)
    tracemalloc.start()
    try:
        report = await walk_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.ok, report.problems
    assert peak < 16 * MIB, peak


async def test_the_walk_stops_reading_once_the_archive_has_ended(v3_archive: Path) -> None:
    data = v3_archive.read_bytes()
    served = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal served
        async for piece in pieces(data):
            served += len(piece)
            yield piece
        while True:  # a broken source that never ends must not keep the walk busy
            served += MIB
            yield bytes(MIB)

    report = await asyncio.wait_for(walk_archive(endless(), PASSWORD), 30)
    assert report.ok
    assert served < len(data) + 16 * MIB


async def test_a_source_error_propagates_and_stops_the_worker(v3_archive: Path) -> None:
    async def failing() -> AsyncIterator[bytes]:
        async for piece in file_chunks(v3_archive, 4096):
            yield piece
            raise LocationUnreachable("NAS", "the share went away")

    with pytest.raises(LocationUnreachable):
        await walk_archive(failing(), PASSWORD)


async def test_cancelling_a_walk_stops_its_worker_thread(v3_archive: Path) -> None:
    release = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield v3_archive.read_bytes()[:10_000]
        await release.wait()

    task = asyncio.create_task(walk_archive(stalled(), PASSWORD))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await wait_for_walk_threads()


async def wait_for_walk_threads() -> None:
    for _ in range(100):
        if not any(t.name == "archive walk" for t in threading.enumerate()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("a walk's thread is still running")


async def test_many_drills_at_once_do_not_starve_each_other(tmp_path: Path) -> None:
    path = build_archive(tmp_path / "plain.tar", password=None, payload=2 * MIB)

    async def threaded_reads() -> AsyncIterator[bytes]:
        # Like the locations: every read in the default executor, which the walks must not hold.
        with path.open("rb") as handle:
            while block := await asyncio.to_thread(handle.read, 256 * 1024):
                yield block

    reports = await asyncio.wait_for(
        asyncio.gather(*(walk_archive(threaded_reads(), None) for _ in range(12))), 60
    )
    assert all(report.ok for report in reports)
    await wait_for_walk_threads()


# --- prove_copy ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def sealed(v3_archive: Path, key: Identity) -> bytes:
    return encrypt_bytes(v3_archive.read_bytes(), [key.recipient()])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def prove(data: bytes, key: Identity, reference: bytes, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "identities": [key],
        "enveloped": True,
        "expected_sha256": sha256(reference),
        "expected_size": len(reference),
        "password": PASSWORD,
        "drill": True,
    }
    options.update(kwargs)
    return await prove_copy(pieces(data, 300_000), **options)


async def test_a_sealed_copy_is_proven_restorable(v3_archive: Path, sealed: bytes, key: Identity) -> None:
    reference = v3_archive.read_bytes()
    proof = await prove(sealed, key, reference)
    assert proof.ok and proof.error is None
    assert proof.level is ProofLevel.DRILLED and proof.reached is ProofLevel.DRILLED
    assert (proof.sha256, proof.size) == (sha256(reference), len(reference))
    assert proof.report is not None and proof.report.ok


async def test_a_scrub_hashes_without_walking(v3_archive: Path, sealed: bytes, key: Identity) -> None:
    proof = await prove(sealed, key, v3_archive.read_bytes(), drill=False)
    assert proof.ok
    assert (proof.level, proof.reached, proof.report) == (ProofLevel.SCRUBBED, ProofLevel.SCRUBBED, None)


async def test_a_flipped_byte_in_a_sealed_copy_fails_the_scrub(
    v3_archive: Path, sealed: bytes, key: Identity
) -> None:
    damaged = bytearray(sealed)
    damaged[len(damaged) // 2] ^= 1
    proof = await prove(bytes(damaged), key, v3_archive.read_bytes())
    assert not proof.ok
    assert (proof.error, proof.reached, proof.report) == (COPY_DAMAGED, None, None)


async def test_a_damaged_sealed_copy_releases_its_source(
    v3_archive: Path, sealed: bytes, key: Identity
) -> None:
    closed = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            yield sealed[:200]
            yield b"not what was sealed" * 10_000
            yield sealed[200:]
        finally:
            closed = True

    proof = await prove_copy(
        source(),
        identities=[key],
        enveloped=True,
        expected_sha256=None,
        expected_size=None,
        password=PASSWORD,
        drill=True,
    )
    assert (proof.ok, proof.error, closed) == (False, COPY_DAMAGED, True)


async def test_a_truncated_sealed_copy_fails_the_scrub(
    v3_archive: Path, sealed: bytes, key: Identity
) -> None:
    for cut in (len(sealed) - 1, len(sealed) // 2, 200):
        proof = await prove(sealed[:cut], key, v3_archive.read_bytes())
        # A cut inside the last chunk looks like a damaged last chunk; both sentences say so.
        assert proof.ok is False, cut
        assert proof.error in (COPY_TRUNCATED, COPY_DAMAGED_OR_SHORT), cut


async def test_a_copy_sealed_for_another_key_says_so(v3_archive: Path, sealed: bytes) -> None:
    proof = await prove(sealed, Identity.generate(), v3_archive.read_bytes())
    assert (proof.ok, proof.error) == (False, COPY_WRONG_KEY)


async def test_a_plain_copy_is_proven_restorable(v3_archive: Path, key: Identity) -> None:
    reference = v3_archive.read_bytes()
    proof = await prove(reference, key, reference, enveloped=False, identities=[])
    assert proof.ok and proof.reached is ProofLevel.DRILLED


async def test_a_plain_copy_that_differs_is_damaged(tmp_path: Path, v3_archive: Path, key: Identity) -> None:
    reference = v3_archive.read_bytes()
    other = build_archive(tmp_path / "other.tar").read_bytes()
    proof = await prove(other, key, reference, enveloped=False, expected_size=None)
    assert (proof.ok, proof.error, proof.reached) == (False, COPY_DIFFERS, None)
    assert proof.report is not None and proof.report.ok  # restorable, but not the backup that was made
    short = await prove(reference[:-10240], key, reference, enveloped=False)
    assert (short.ok, short.error) == (False, COPY_SHORT)


async def test_a_copy_whose_hash_matches_but_does_not_open_reaches_only_the_scrub(
    v3_archive: Path, sealed: bytes, key: Identity
) -> None:
    proof = await prove(sealed, key, v3_archive.read_bytes(), password=OTHER_PASSWORD)
    assert not proof.ok
    assert (proof.error, proof.level, proof.reached) == (WRONG_KEY, ProofLevel.DRILLED, ProofLevel.SCRUBBED)


async def test_a_drill_that_ends_early_still_hashes_the_whole_copy(key: Identity) -> None:
    garbage = os.urandom(3 * MIB)
    proof = await prove(garbage, key, garbage, enveloped=False)
    assert proof.sha256 == sha256(garbage)
    assert (proof.ok, proof.error, proof.reached) == (False, NOT_A_TAR, ProofLevel.SCRUBBED)


@pytest.mark.parametrize("drill", [True, False])
async def test_a_location_error_propagates(sealed: bytes, key: Identity, drill: bool) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield sealed[: 2 * MIB]
        raise LocationUnreachable("NAS", "the share went away")

    with pytest.raises(LocationUnreachable):
        await prove_copy(
            failing(),
            identities=[key],
            enveloped=True,
            expected_sha256=None,
            expected_size=None,
            password=PASSWORD,
            drill=drill,
        )
