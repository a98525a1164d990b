"""Benchmark payloads: big, incompressible, written in constant memory."""

from __future__ import annotations

import tarfile
import tracemalloc
import zlib
from collections.abc import Callable

from supervisor_sim import Faults, SupervisorSim

MIB = 1 << 20


async def test_64_mib_payload_archive_is_written_in_constant_memory(
    make_sim: Callable[..., SupervisorSim],
) -> None:
    sim = make_sim(payload_bytes=64 * MIB, faults=Faults(stage_delay=0))
    tracemalloc.start()
    try:
        backup = await sim.create_backup({"name": "Big", "compressed": False, "folders": ["share"]})
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert backup is not None
    # A handful of 1 MiB copy buffers, nothing proportional to the 64 MiB written.
    assert peak < 12 * MIB, f"peak {peak / MIB:.1f} MiB"
    path = sim.archive_path(backup.slug)
    assert path.stat().st_size > 64 * MIB
    with tarfile.open(path, "r:") as outer:
        share = outer.extractfile("share.tar")
        assert share is not None
        with tarfile.open(fileobj=share, mode="r:") as inner:
            member = inner.getmember("./sim-payload.bin")
            assert member.size == 64 * MIB
            payload = inner.extractfile(member)
            assert payload is not None
            sample = payload.read(MIB)
    assert len(zlib.compress(sample)) > 0.99 * len(sample)


async def test_payload_goes_only_into_the_share_part(make_sim: Callable[..., SupervisorSim]) -> None:
    sim = make_sim(payload_bytes=MIB, faults=Faults(stage_delay=0))
    backup = await sim.create_backup({"folders": ["ssl", "share"]})
    assert backup is not None
    with tarfile.open(sim.archive_path(backup.slug), "r:") as outer:
        sizes = {m.name: m.size for m in outer.getmembers()}
    assert sizes["share.tar.gz"] > MIB
    assert sizes["ssl.tar.gz"] < 10_000


async def test_payloads_differ_between_backups(make_sim: Callable[..., SupervisorSim]) -> None:
    sim = make_sim(payload_bytes=MIB, faults=Faults(stage_delay=0))
    samples = []
    for name in ("one", "two"):
        backup = await sim.create_backup({"name": name, "compressed": False, "folders": ["share"]})
        assert backup is not None
        with tarfile.open(sim.archive_path(backup.slug), "r:") as outer:
            share = outer.extractfile("share.tar")
            assert share is not None
            with tarfile.open(fileobj=share, mode="r:") as inner:
                payload = inner.extractfile("./sim-payload.bin")
                assert payload is not None
                samples.append(payload.read(4096))
    assert samples[0] != samples[1]
