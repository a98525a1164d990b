"""Commands for people: print the emergency kit, encrypt and decrypt copies by hand."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .catalog import Catalog
from .crypto.age import AgeError, Recipient, decrypt_stream, encrypt_stream
from .crypto.keys import KEYS_FILE, InvalidKey, KeyStore, identity_for
from .crypto.kit import identities_from_kit, render_kit

CHUNK = 1 << 20


class ToolError(Exception):
    """A problem the user can fix; printed without a traceback."""


def print_kit(data_dir: Path) -> str:
    if not (data_dir / KEYS_FILE).exists():
        raise ToolError(f"no keys in {data_dir}: start the add-on once, or pass --data with its data folder")
    store = KeyStore.open(data_dir)
    catalog = Catalog(data_dir / "catalog.sqlite3")
    try:
        instance = catalog.instance_id()
    finally:
        catalog.close()
    return render_kit(store, instance=instance, now=datetime.now(UTC).astimezone())


def _read_kit(kit: Path | None, key: str | None) -> str:
    if key is not None:
        return key
    if kit is None:
        raise ToolError("give --kit FILE (the emergency kit) or --key KEY")
    try:
        return kit.read_text(encoding="utf-8")
    except OSError as err:
        raise ToolError(f"cannot read the kit {kit}: {err.strerror}") from None


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    while block := await asyncio.to_thread(handle.read, CHUNK):
        yield block


def _open_in(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return Path(path).open("rb")
    except OSError as err:
        raise ToolError(f"cannot read {path}: {err.strerror}") from None


async def _write_all(stream: AsyncIterator[bytes], out: str) -> None:
    """Write to a temp name and rename at the end, so a failed run leaves no OUT behind."""
    if out == "-":
        async for block in stream:
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
        return
    target = Path(out)
    temp = target.with_name(f".{target.name}.partial")
    try:
        with temp.open("wb") as handle:
            async for block in stream:
                await asyncio.to_thread(handle.write, block)
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)


async def decrypt_file(source: str, out: str, *, kit: Path | None, key: str | None) -> None:
    material = _read_kit(kit, key)
    try:
        identities = [identity_for(material)] if key is not None else identities_from_kit(material)
    except (InvalidKey, ValueError) as err:
        raise ToolError(str(err)) from None
    handle = _open_in(source)
    try:
        await _write_all(decrypt_stream(_chunks(handle), identities), out)
    except AgeError as err:
        raise ToolError(str(err)) from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


async def encrypt_file(source: str, out: str, *, kit: Path | None, key: str | None) -> None:
    material = _read_kit(kit, key)
    try:
        identities = [identity_for(material)] if key is not None else identities_from_kit(material)
    except (InvalidKey, ValueError) as err:
        raise ToolError(str(err)) from None
    recipients: list[Recipient] = [identities[0].recipient()]
    handle = _open_in(source)
    try:
        await _write_all(encrypt_stream(_chunks(handle), recipients), out)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
