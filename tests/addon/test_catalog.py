"""The catalog survives restarts and marks interrupted work as failed."""

from datetime import UTC, datetime

from backup_addon.catalog import Catalog, CopyState, RunState


def test_runs_and_copies_are_kept_across_reopen(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    catalog = Catalog(path)
    run_id = catalog.start_run("panel")
    catalog.record_backup(slug="abc12345", run_id=run_id, name="n", type="full", created_at=datetime.now(UTC), size_bytes=10)
    catalog.copy_started("abc12345", "NAS", "folder", "k.tar")
    catalog.copy_committed("abc12345", "NAS", 10, "00" * 32)
    catalog.finish_run(run_id, RunState.SUCCEEDED)
    instance = catalog.instance_id()
    catalog.close()

    again = Catalog(path)
    assert again.run(run_id).state is RunState.SUCCEEDED
    assert [c.state for c in again.copies("abc12345")] == [CopyState.COMMITTED]
    assert again.instance_id() == instance
    assert again.repair().interrupted_runs == []
    again.close()


def test_repair_marks_interrupted_run_and_copy_failed(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    catalog = Catalog(path)
    run_id = catalog.start_run("schedule")
    catalog.copy_started("abc12345", "USB", "folder", "k.tar")
    catalog.close()  # as if the process died here

    again = Catalog(path)
    report = again.repair()
    assert report.interrupted_runs == [run_id]
    assert report.interrupted_copies == [("abc12345", "USB")]
    run = again.run(run_id)
    assert run.state is RunState.FAILED
    assert "interrupted" in run.error
    assert again.copies("abc12345")[0].state is CopyState.FAILED
    again.close()


async def test_upload_journal_survives_reopen_and_is_per_location(tmp_path):
    from backup_addon.catalog import CatalogJournal

    path = tmp_path / "catalog.sqlite3"
    catalog = Catalog(path)
    await CatalogJournal(catalog, "B2").save("k", {"upload_id": "u1", "parts": [1, 2]})
    await CatalogJournal(catalog, "R2").save("k", {"upload_id": "u9"})
    catalog.close()

    again = Catalog(path)
    assert await CatalogJournal(again, "B2").load("k") == {"upload_id": "u1", "parts": [1, 2]}
    await CatalogJournal(again, "B2").drop("k")
    assert await CatalogJournal(again, "B2").load("k") is None
    assert await CatalogJournal(again, "R2").load("k") == {"upload_id": "u9"}
    again.close()
