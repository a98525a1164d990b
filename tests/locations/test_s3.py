"""What only the s3 kind does: resuming uploads, tidying abandoned ones, Object Lock, options."""

import asyncio
import base64
import hashlib
import json
import os
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from backup_addon.errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
)
from backup_addon.locations.s3 import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    JsonFileJournal,
    MemoryJournal,
    S3Location,
    S3LocationOptions,
    build,
    part_size,
)
from tests.locations.kinds.s3 import PROVIDERS, RcloneS3Provider

MiB = 1 << 20
PART = 5 * MiB  # S3's smallest part, to keep the tests quick
KEY = "backup_321/abc/2026-01-01_000000_deadbeef.tar.age"
MOTO = next(p for p in PROVIDERS if p.id == "s3-moto")

on_both_servers = pytest.mark.parametrize("provider", PROVIDERS, indirect=True, ids=[p.id for p in PROVIDERS])
on_moto = pytest.mark.parametrize("provider", [MOTO], indirect=True, ids=[MOTO.id])


async def chunks_of(data: bytes, size: int = MiB):
    for offset in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[offset : offset + size]


async def read_all(location, key: str) -> bytes:
    return b"".join([chunk async for chunk in location.open(key)])


async def stalls_after(data: bytes):
    """Yields data, then waits forever: the add-on is stopped while the upload hangs here."""
    async for chunk in chunks_of(data):
        yield chunk
    await asyncio.Event().wait()


async def until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def journaled_parts(path) -> int:
    if not path.exists():
        return 0
    entries = json.loads(path.read_text())
    return sum(len(entry["parts"]) for entry in entries.values())


async def interrupt_after_three_parts(location, data: bytes, journal_file) -> None:
    task = asyncio.create_task(location.put(KEY, stalls_after(data[: 3 * PART])))
    await until(lambda: journaled_parts(journal_file) == 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def open_uploads(provider, bucket: str) -> list[str]:
    return [u["Key"] for u in provider.admin().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


# --- resuming after a restart --------------------------------------------------------------


@on_both_servers
async def test_an_interrupted_upload_resumes_after_a_restart(provider, tmp_path):
    journal_file = tmp_path / "journal.json"
    bucket = provider.make_bucket()
    data = os.urandom(5 * PART + 12345)
    before = provider.location(
        "before", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    await interrupt_after_three_parts(before, data, journal_file)
    assert await before.stat(KEY) is None

    after = provider.location(
        "after", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    stored = await after.put(KEY, chunks_of(data))

    assert stored.size == len(data)
    assert after.parts_sent == 3  # parts 4, 5 and 6 only
    assert after.bytes_sent == len(data) - 3 * PART
    assert await read_all(after, KEY) == data
    assert open_uploads(provider, bucket) == []
    assert json.loads(journal_file.read_text()) == {}


@on_both_servers
async def test_a_resumed_upload_with_other_bytes_starts_over(provider, tmp_path):
    journal_file = tmp_path / "journal.json"
    bucket = provider.make_bucket()
    before = provider.location(
        "before", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    await interrupt_after_three_parts(before, os.urandom(5 * PART), journal_file)

    other = os.urandom(4 * PART + 1)
    after = provider.location(
        "after", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    await after.put(KEY, chunks_of(other))

    assert after.parts_sent == 5
    assert await read_all(after, KEY) == other
    assert open_uploads(provider, bucket) == []


@on_both_servers
async def test_bytes_that_differ_after_the_first_part_discard_the_upload(provider, tmp_path):
    journal_file = tmp_path / "journal.json"
    bucket = provider.make_bucket()
    data = os.urandom(5 * PART)
    before = provider.location(
        "before", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    await interrupt_after_three_parts(before, data, journal_file)

    changed = data[:PART] + os.urandom(4 * PART)
    after = provider.location(
        "after", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    with pytest.raises(LocationError, match="differs from the interrupted upload after part 1"):
        await after.put(KEY, chunks_of(changed))
    assert open_uploads(provider, bucket) == []

    await after.put(KEY, chunks_of(changed))  # the next attempt starts over
    assert await read_all(after, KEY) == changed


@on_both_servers
async def test_a_journal_entry_whose_upload_is_gone_is_ignored(provider, tmp_path):
    journal_file = tmp_path / "journal.json"
    bucket = provider.make_bucket()
    data = os.urandom(4 * PART)
    before = provider.location(
        "before", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    await interrupt_after_three_parts(before, data, journal_file)
    admin = provider.admin()
    for upload in admin.list_multipart_uploads(Bucket=bucket)["Uploads"]:
        admin.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    after = provider.location(
        "after", bucket=bucket, journal=JsonFileJournal(journal_file), min_part_size=PART
    )
    await after.put(KEY, chunks_of(data))
    assert after.parts_sent == 4
    assert await read_all(after, KEY) == data


# --- tidying up ----------------------------------------------------------------------------


@on_both_servers
async def test_cleanup_aborts_abandoned_uploads_under_its_prefix_only(provider):
    bucket = provider.make_bucket()
    journal = MemoryJournal()
    location = provider.location("tidy", bucket=bucket, prefix="home-a", journal=journal, min_part_size=PART)
    admin = provider.admin()
    admin.create_multipart_upload(Bucket=bucket, Key="home-a/backup_321/x/abandoned.tar")
    admin.create_multipart_upload(Bucket=bucket, Key="home-b/backup_321/x/someone-elses.tar")
    task = asyncio.create_task(location.put(KEY, stalls_after(os.urandom(PART + 1))))
    await until(lambda: location.parts_sent == 1 and journal.entries)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await location.cleanup_incomplete() == 1
    assert sorted(open_uploads(provider, bucket)) == [
        f"home-a/{KEY}",
        "home-b/backup_321/x/someone-elses.tar",
    ]

    (entry,) = journal.entries.values()
    entry["started"] = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    assert await location.cleanup_incomplete() == 1
    assert open_uploads(provider, bucket) == ["home-b/backup_321/x/someone-elses.tar"]
    assert journal.entries == {}


@on_both_servers
async def test_locations_with_prefixes_see_only_their_own_objects(provider):
    bucket = provider.make_bucket()
    home_a = provider.location("a", bucket=bucket, prefix="/homes/a/")
    home_b = provider.location("b", bucket=bucket, prefix="homes/b")
    await home_a.put("backup_321/one.tar", chunks_of(b"a"))
    await home_b.put("backup_321/two.tar", chunks_of(b"bb"))
    assert [(o.key, o.size) for o in await home_a.list()] == [("backup_321/one.tar", 1)]
    assert [(o.key, o.size) for o in await home_b.list()] == [("backup_321/two.tar", 2)]
    assert provider.admin().head_object(Bucket=bucket, Key="homes/a/backup_321/one.tar")["ContentLength"] == 1


# --- errors --------------------------------------------------------------------------------


@on_both_servers
async def test_a_wrong_bucket_name_says_the_bucket_does_not_exist(provider):
    location = provider.location("typo", bucket="no-such-bucket-here")
    with pytest.raises(LocationUnreachable, match="bucket no-such-bucket-here does not exist"):
        await location.put(KEY, chunks_of(b"x" * 1000))
    with pytest.raises(LocationUnreachable, match="bucket no-such-bucket-here does not exist"):
        await location.list()
    with pytest.raises(LocationUnreachable, match="bucket no-such-bucket-here does not exist"):
        await location.stat(KEY)


@on_both_servers
async def test_wrong_credentials_never_show_the_secret(provider):
    location = provider.location_with_wrong_credentials("wrong")
    with pytest.raises(LocationAuthFailed) as caught:
        await location.list()
    assert "secret_access_key" in str(caught.value)
    assert provider.secret not in str(caught.value)


@on_moto
async def test_a_key_that_may_only_read_gives_read_only(provider):
    bucket = provider.make_bucket()
    writer = provider.location("writer", bucket=bucket)
    await writer.put(KEY, chunks_of(b"copy"))
    reader = provider.read_only_location("reader", bucket=bucket)
    with pytest.raises(LocationReadOnly, match="may read but not write"):
        await reader.put("backup_321/new.tar", chunks_of(b"x" * 1000))
    assert [o.key for o in await reader.list()] == [KEY]


@on_both_servers
async def test_a_stopped_server_times_out(provider):
    location = provider.location("paused", connect_timeout=1, read_timeout=1)
    provider.pause_server()
    try:
        started = time.monotonic()
        with pytest.raises(LocationTimeout, match="did not answer in time"):
            await location.put(KEY, chunks_of(b"x" * 1000))
        assert time.monotonic() - started < 10
    finally:
        provider.resume_server()


@on_both_servers
async def test_a_server_that_stops_taking_a_part_times_out(provider):
    location = provider.location("stalls", connect_timeout=1, read_timeout=1, min_part_size=PART)
    data = os.urandom(3 * PART)

    async def source():
        async for chunk in chunks_of(data[: 2 * PART]):
            yield chunk
        await until(lambda: location.parts_sent == 2)
        provider.pause_server()  # the connection stays open, but part 3 goes nowhere
        async for chunk in chunks_of(data[2 * PART :]):
            yield chunk

    try:
        started = time.monotonic()
        with pytest.raises(LocationTimeout, match="did not answer in time"):
            await location.put(KEY, source())
        assert time.monotonic() - started < 20
    finally:
        provider.resume_server()
    assert await location.stat(KEY) is None


async def test_a_closed_port_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    location = S3Location(
        "nobody home",
        endpoint=f"http://127.0.0.1:{port}",
        bucket="backups",
        access_key_id="k",
        secret_access_key="s",
    )
    with pytest.raises(LocationUnreachable, match=r"cannot reach bucket backups on 127\.0\.0\.1"):
        await location.list()


@pytest.fixture(scope="module")
def tls_provider(tmp_path_factory):
    provider = RcloneS3Provider(tls=True)
    provider.start(tmp_path_factory.mktemp("s3-tls"))
    yield provider
    provider.stop()


async def test_a_certificate_no_one_trusts_is_refused_with_a_hint(tls_provider):
    location = tls_provider.location("own certificate")
    with pytest.raises(LocationUnreachable, match="set verify_tls: false"):
        await location.put(KEY, chunks_of(b"x"))


async def test_verify_tls_false_accepts_the_servers_own_certificate(tls_provider):
    location = tls_provider.location("own certificate", verify_tls=False)
    await location.put(KEY, chunks_of(b"over https"))
    assert await read_all(location, KEY) == b"over https"


# --- integrity, storage class and Object Lock ----------------------------------------------


@on_moto
async def test_parts_and_small_objects_carry_their_sha256(provider):
    bucket = provider.make_bucket()
    location = provider.location("checksums", bucket=bucket, min_part_size=PART)
    small = os.urandom(1000)
    await location.put("small.tar", chunks_of(small))
    await location.put("large.tar", chunks_of(os.urandom(2 * PART + 1)))
    admin = provider.admin()
    head = admin.head_object(Bucket=bucket, Key="small.tar", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(small).digest()).decode()
    assert admin.head_object(Bucket=bucket, Key="large.tar", ChecksumMode="ENABLED")["ChecksumSHA256"]


@on_moto
async def test_the_storage_class_is_applied(provider):
    bucket = provider.make_bucket()
    location = provider.location("cold", bucket=bucket, storage_class="STANDARD_IA", min_part_size=PART)
    await location.put("small.tar", chunks_of(b"x"))
    await location.put("large.tar", chunks_of(os.urandom(PART + 1)))
    for key in ("small.tar", "large.tar"):
        assert provider.admin().head_object(Bucket=bucket, Key=key)["StorageClass"] == "STANDARD_IA"


@on_moto
async def test_object_lock_puts_every_copy_in_retention(provider):
    bucket = provider.make_bucket(object_lock=True)
    location = provider.location(
        "locked", bucket=bucket, object_lock_days=3, object_lock_mode="compliance", min_part_size=PART
    )
    await location.put("small.tar", chunks_of(b"x" * 100))
    await location.put("large.tar", chunks_of(os.urandom(2 * PART + 1)))
    expected = datetime.now(UTC) + timedelta(days=3)
    for key in ("small.tar", "large.tar"):
        head = provider.admin().head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert abs(head["ObjectLockRetainUntilDate"] - expected) < timedelta(minutes=5)


@on_moto
async def test_object_lock_on_a_bucket_without_it_is_a_clear_error(provider):
    location = provider.location("not lockable", object_lock_days=3)
    with pytest.raises(LocationError, match="does not have Object Lock turned on"):
        await location.put(KEY, chunks_of(b"x"))
    assert await location.list() == []


# --- part sizes ----------------------------------------------------------------------------


def test_ordinary_backups_use_8_mib_parts():
    assert part_size(1) == MIN_PART_SIZE == 8 * MiB
    assert part_size(1000) == 8 * MiB
    assert part_size(1, size_hint=20 << 30) == 8 * MiB


def test_parts_grow_for_a_declared_huge_size():
    huge = 200 << 30
    size = part_size(1, size_hint=huge)
    assert size > MIN_PART_SIZE and size % MiB == 0
    assert -(-huge // size) <= MAX_PARTS
    assert part_size(MAX_PARTS, size_hint=huge) >= size


def test_without_a_declared_size_10000_parts_reach_5_tib():
    sizes = [part_size(n) for n in range(1, MAX_PARTS + 1)]
    assert sum(sizes) >= 5 << 40
    assert sizes == sorted(sizes) and max(sizes) <= MAX_PART_SIZE
    assert sum(sizes[:1000]) == 1000 * 8 * MiB  # the first 8 GB need no more memory


def test_part_numbers_start_at_1():
    with pytest.raises(ValueError):
        part_size(0)


# --- options -------------------------------------------------------------------------------


def options(**changes):
    settings = {
        "name": "Offsite",
        "kind": "s3",
        "bucket": "my-backups",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "very-secret-value",
    }
    settings.update(changes)
    return S3LocationOptions.model_validate(settings)


def problem(**changes) -> str:
    with pytest.raises(ValidationError) as caught:
        options(**changes)
    return str(caught.value)


def test_minimal_options_mean_aws_in_us_east_1():
    parsed = options()
    assert parsed.endpoint is None and parsed.region == "us-east-1" and parsed.prefix == ""
    assert parsed.verify_tls and not parsed.unencrypted
    location = S3Location.from_options(parsed)
    assert location.offsite and location.kind == "s3"


def test_an_endpoint_without_scheme_gets_https():
    assert options(endpoint="s3.eu-central-003.backblazeb2.com/").endpoint == (
        "https://s3.eu-central-003.backblazeb2.com"
    )


def test_an_http_endpoint_is_allowed_and_marked_unencrypted():
    parsed = options(endpoint="http://nas.local:9000")
    assert parsed.endpoint == "http://nas.local:9000" and parsed.unencrypted


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("ftp://example.com", "must start with https://"),
        ("https://s3.example.com/my-backups", "put the bucket in bucket"),
        ("https://user:pw@s3.example.com", "must not hold a user name or password"),
        ("https://s3.example.com:99999", "invalid port"),
    ],
)
def test_bad_endpoints_are_explained(endpoint, message):
    assert message in problem(endpoint=endpoint)


@pytest.mark.parametrize("bucket", ["ab", "My_Backups", "-backups", "192.168.1.10", "a..b"])
def test_bad_bucket_names_are_explained(bucket):
    assert "3-63 lowercase letters" in problem(bucket=bucket)


def test_a_bucket_with_a_folder_points_to_prefix():
    assert "put a folder inside it in prefix" in problem(bucket="my-backups/home")


def test_the_prefix_is_tidied_and_checked():
    assert options(prefix="/homes/main/").prefix == "homes/main"
    assert "without '//', '.', '..'" in problem(prefix="homes/../other")


def test_archive_storage_classes_are_refused():
    assert options(storage_class="standard_ia").storage_class == "STANDARD_IA"
    assert "use GLACIER_IR" in problem(storage_class="DEEP_ARCHIVE")


def test_object_lock_days_are_checked():
    assert options(object_lock_days=30).object_lock_days == 30
    assert "from 1 to 36500" in problem(object_lock_days=0)
    assert "object_lock_mode needs object_lock_days" in problem(object_lock_mode="compliance")
    assert "'governance' or 'compliance'" in problem(object_lock_days=3, object_lock_mode="forever")


def test_the_secret_stays_out_of_reprs():
    parsed = options()
    assert "very-secret-value" not in repr(parsed)
    assert "very-secret-value" not in str(parsed)
    assert build(parsed)._secret_access_key == "very-secret-value"


def test_cleared_form_fields_count_as_unset():
    parsed = options(
        endpoint="", storage_class=" ", addressing_style="", object_lock_days="", object_lock_mode=""
    )
    assert parsed.endpoint is None and parsed.storage_class is None and parsed.addressing_style is None
    assert parsed.object_lock_days is None and parsed.object_lock_mode is None


def test_empty_credentials_are_explained():
    assert "access key ID" in problem(access_key_id=" ")
    assert "secret access key" in problem(secret_access_key="")


# --- what servers here cannot produce: the translation of other answers --------------------


def client_error(code: str, status: int, message: str = "", headers: dict | None = None):
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("code", "status", "message", "expected", "says"),
    [
        ("QuotaExceeded", 403, "", LocationFull, "no room"),
        ("EntityTooLarge", 400, "", LocationFull, "no room"),
        ("AccessDenied", 403, "Cannot upload files, storage cap exceeded.", LocationFull, "no room"),
        ("InvalidAccessKeyId", 403, "", LocationAuthFailed, "check access_key_id"),
        ("SignatureDoesNotMatch", 403, "", LocationAuthFailed, "check access_key_id"),
        ("RequestTimeTooSkewed", 403, "", LocationAuthFailed, "clock is wrong"),
        ("SlowDown", 503, "", LocationUnreachable, "try again later"),
        ("InternalError", 500, "", LocationUnreachable, "try again later"),
        ("RequestTimeout", 400, "", LocationTimeout, "timed out"),
        ("InvalidStorageClass", 400, "", LocationError, "does not offer storage class"),
        ("SomethingNew", 400, "odd", LocationError, "answered SomethingNew: odd"),
    ],
)
async def test_server_answers_become_errors_a_user_can_act_on(code, status, message, expected, says):
    location = S3Location("cloud", bucket="backups", access_key_id="k", secret_access_key="s")

    async def answer():
        raise client_error(code, status, message)

    with pytest.raises(expected, match=says) as caught:
        await location._call("writing x", answer)
    assert type(caught.value) is expected


async def test_a_bucket_in_another_region_names_the_region():
    location = S3Location("cloud", bucket="backups", access_key_id="k", secret_access_key="s")

    async def answer():
        raise client_error("PermanentRedirect", 301, headers={"x-amz-bucket-region": "eu-west-3"})

    with pytest.raises(LocationUnreachable, match="set region: eu-west-3"):
        await location._call("listing copies", answer)
