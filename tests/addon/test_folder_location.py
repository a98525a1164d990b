"""The folder location: atomic puts, clear errors, nothing partial left visible."""

import asyncio
import hashlib
import os

import pytest

from backup_addon.errors import LocationFull, LocationReadOnly, LocationUnreachable, SourceError
from backup_addon.locations import FolderLocation


async def chunks(*parts, fail_after=None):
    for i, part in enumerate(parts):
        if fail_after is not None and i == fail_after:
            raise SourceError("source broke")
        await asyncio.sleep(0)
        yield part


async def test_put_then_open_stat_list_delete(tmp_path):
    loc = FolderLocation("USB", tmp_path)
    stored = await loc.put("backup_321/i/x.tar", chunks(b"abc", b"def"))
    assert stored.size == 6
    assert (tmp_path / "backup_321/i/x.tar").read_bytes() == b"abcdef"
    assert b"".join([c async for c in loc.open("backup_321/i/x.tar")]) == b"abcdef"
    assert (await loc.stat("backup_321/i/x.tar")).size == 6
    assert [o.key for o in await loc.list()] == ["backup_321/i/x.tar"]
    await loc.delete("backup_321/i/x.tar")
    assert await loc.stat("backup_321/i/x.tar") is None
    await loc.delete("backup_321/i/x.tar")  # deleting twice is fine


async def test_interrupted_put_leaves_nothing_visible(tmp_path):
    loc = FolderLocation("USB", tmp_path)
    with pytest.raises(SourceError):
        await loc.put("a/b.tar", chunks(b"x" * 1000, b"y", fail_after=1))
    assert not (tmp_path / "a/b.tar").exists()
    assert [p.name for p in (tmp_path / "a").iterdir()] == []
    assert await loc.list() == []


async def test_cleanup_removes_leftovers_of_a_crash(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/.b.tar.partial-123").write_bytes(b"half")
    (tmp_path / "a/c.tar").write_bytes(b"whole")
    loc = FolderLocation("USB", tmp_path)
    assert await loc.cleanup_incomplete() == 1
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["c.tar"]


async def test_missing_folder_is_not_created(tmp_path):
    loc = FolderLocation("NAS", tmp_path / "unplugged")
    with pytest.raises(LocationUnreachable, match="does not exist"):
        await loc.put("a.tar", chunks(b"x"))
    assert not (tmp_path / "unplugged").exists()


async def test_read_only_folder_gives_read_only_error(tmpfs):
    folder = tmpfs(size_mib=1, read_only=True)
    with pytest.raises(LocationReadOnly, match="cannot be written"):
        await FolderLocation("RO", folder).put("a.tar", chunks(b"x"))


async def test_full_folder_gives_full_error_and_no_partial_file(tmpfs):
    folder = tmpfs(size_mib=2)
    block = b"z" * (1 << 20)
    with pytest.raises(LocationFull, match="is full"):
        await FolderLocation("Small", folder).put("a/big.tar", chunks(block, block, block, block))
    assert list((folder / "a").iterdir()) == []


@pytest.mark.parametrize("key", ["../escape.tar", "/abs.tar", "a/../../b", ".hidden", "a//b", ""])
async def test_hostile_keys_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="key"):
        await FolderLocation("USB", tmp_path).put(key, chunks(b"x"))


async def test_unicode_and_spaces_in_names(tmp_path):
    loc = FolderLocation("Zuhause Sicherung ü", tmp_path / "Dateien mit Leerzeichen")
    (tmp_path / "Dateien mit Leerzeichen").mkdir()
    await loc.put("ordner/Sicherung über Nacht.tar", chunks(b"1"))
    assert [o.key for o in await loc.list()] == ["ordner/Sicherung über Nacht.tar"]


async def test_large_object_streams_in_constant_memory(tmp_path):
    block = os.urandom(1 << 20)

    async def many():
        for _ in range(256):
            yield block

    stored = await FolderLocation("USB", tmp_path).put("big.tar", many())
    assert stored.size == 256 << 20
    digest = hashlib.sha256()
    with open(tmp_path / "big.tar", "rb") as f:
        while data := f.read(1 << 20):
            digest.update(data)
    expected = hashlib.sha256()
    for _ in range(256):
        expected.update(block)
    assert digest.hexdigest() == expected.hexdigest()


async def test_concurrent_puts_do_not_mix(tmp_path):
    loc = FolderLocation("USB", tmp_path)
    await asyncio.gather(*(loc.put(f"k{i}.tar", chunks(bytes([i]) * 5000, bytes([i]) * 5000)) for i in range(8)))
    for i in range(8):
        assert (tmp_path / f"k{i}.tar").read_bytes() == bytes([i]) * 10000
