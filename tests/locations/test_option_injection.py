"""Hosts, URLs and paths with control characters, spaces or shell syntax in the options of the s3,
webdav and folder kinds: refused with one sentence naming the field, or turned into a form the
client can use; what slips through anyway fails as a LocationError, never a bare ValueError."""

import logging

import pytest
from yarl import URL

from backup_addon.errors import InvalidOptions, LocationError
from backup_addon.locations.s3 import S3Location
from backup_addon.locations.s3_options import normalize_endpoint
from backup_addon.locations.webdav import WebdavLocation
from backup_addon.locations.webdav_options import check_url
from backup_addon.options import parse_options

S3 = {
    "name": "Cloud",
    "kind": "s3",
    "bucket": "my-backups",
    "access_key_id": "AKIA1",
    "secret_access_key": "s3cr3t",
}
WEBDAV = {"name": "Cloud", "kind": "webdav", "username": "alice", "password": "app-pw-123"}
FOLDER = {"name": "USB", "kind": "folder"}


def problems(entry: dict[str, object]) -> list[str]:
    with pytest.raises(InvalidOptions) as caught:
        parse_options({"locations": [entry]})
    return caught.value.problems


def one_problem(entry: dict[str, object], field: str) -> str:
    [problem] = problems(entry)
    assert problem.startswith(f"locations.0.{entry['kind']}.{field}: "), problem
    assert "\n" not in problem and "\r" not in problem and len(problem) <= 300, problem
    return problem


# --- s3 endpoint -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("https://nas.local\nHost: evil.example", "must not contain control characters"),
        ("https://nas\x00.local", "must not contain control characters"),
        ("nas\t.local", "must not contain control characters"),
        ("https://nas local", "'nas local' is not a host name or IP address"),
        ("https://nas;rm -rf /", "is not a host name or IP address"),
        ("https://$(reboot)", "'$(reboot)' is not a host name or IP address"),
        ("https://`id`", "is not a host name or IP address"),
        ("https://-oProxyCommand=sh", "'-oProxyCommand=sh' is not a host name"),
        ("https://../../etc/passwd", "'..' is not a host name"),
        ("https://%0d%0aHost:evil", "is not a host name"),
        ("https://a..b.example.com", "is not a host name"),
        ("https://" + "x" * 64 + ".example.com", "is not a host name"),
        ("https://minio_1:9000", "S3 clients take no '_' in a host name"),
        ("https://300.1.2.3:9000", "'300.1.2.3:9000' is not an IP address"),
        ("https://[nas.local]", "an IPv6 address goes in brackets"),
        ("https://[::1", "an IPv6 address goes in brackets"),
        ("https://@s3.example.com", "must not hold a user name or password"),
        ("https://s3.example.com#x", "must be only the server's address"),
    ],
)
def test_hostile_s3_endpoints_are_refused_with_a_sentence(endpoint, message):
    problem = one_problem({**S3, "endpoint": endpoint}, "endpoint")
    assert message in problem
    assert "https://s3.eu-central-003.backblazeb2.com" in problem or "must not hold" in problem


@pytest.mark.parametrize(
    ("endpoint", "normalized"),
    [
        ("nás.lokal", "https://xn--ns-mia.lokal"),
        ("https://straße.example:9000", "https://xn--strae-oqa.example:9000"),
        ("https://S3.Example.com.", "https://S3.Example.com."),
        ("http://[fd00::10]:9000", "http://[fd00::10]:9000"),
        ("http://192.168.1.20:9000", "http://192.168.1.20:9000"),
    ],
)
def test_s3_endpoints_in_other_scripts_are_idna_encoded(endpoint, normalized):
    [location] = parse_options({"locations": [{**S3, "endpoint": endpoint}]}).locations
    assert location.endpoint == normalized
    assert normalize_endpoint(normalized) == normalized  # the location normalizes it again


async def test_a_region_botocore_refuses_is_a_location_error():
    location = S3Location(
        "Cloud",
        bucket="my-backups",
        access_key_id="AKIA1",
        secret_access_key="s3cr3t",
        endpoint="http://127.0.0.1:9",
        region="eu central",
    )
    with pytest.raises(LocationError, match="region 'eu central' is not a region code") as caught:
        await location.list()
    assert "s3cr3t" not in str(caught.value)


async def test_an_endpoint_botocore_refuses_is_a_location_error():
    location = S3Location("Cloud", bucket="my-backups", access_key_id="AKIA1", secret_access_key="s3cr3t")
    location.endpoint = "https://nas local"  # past the options' check, as an older version allowed
    with pytest.raises(LocationError, match=r"is not a web address it can use; correct it, e\.g\. https://"):
        await location.usage()


@pytest.mark.parametrize("endpoint", [None, "https://s3.example.com"])
def test_s3_with_tls_verification_off_warns_without_secrets(endpoint, caplog):
    with caplog.at_level(logging.WARNING):
        S3Location(
            "Cloud",
            bucket="my-backups",
            access_key_id="AKIA1",
            secret_access_key="s3cr3t",
            endpoint=endpoint,
            verify_tls=False,
        )
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert message.startswith("location 'Cloud': verify_tls is off")
    assert "s3cr3t" not in message and "AKIA1" not in message


def test_s3_over_plain_http_warns_only_about_http(caplog):
    with caplog.at_level(logging.WARNING):
        S3Location(
            "Cloud",
            bucket="my-backups",
            access_key_id="AKIA1",
            secret_access_key="s3cr3t",
            endpoint="http://nas.local:9000",
            verify_tls=False,
        )
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1 and "uses http://" in messages[0]


def test_s3_with_tls_verified_is_quiet(caplog):
    with caplog.at_level(logging.WARNING):
        S3Location(
            "Cloud",
            bucket="my-backups",
            access_key_id="AKIA1",
            secret_access_key="s3cr3t",
            endpoint="https://s3.example.com",
        )
    assert caplog.records == []


# --- webdav url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("nas.local\nHost: evil.example", "must not contain control characters"),
        ("nas.local\r\nX: y", "must not contain control characters"),
        ("nas\x00.local", "must not contain control characters"),
        ("nas local", "'nas local' is not a host name or IP address"),
        ("nas && reboot", "is not a host name or IP address"),
        ("nas;rm -rf /", "is not a host name or IP address"),
        ("$(reboot)", "'$(reboot)' is not a host name or IP address"),
        ("-oProxyCommand=sh", "is not a host name or IP address"),
        ("../../etc/passwd", "'..' is not a host name or IP address"),
        ("a..b", "'a..b' is not a host name or IP address"),
        ("x" * 64 + ".example.com", "is not a host name or IP address"),
        ("300.1.2.3", "'300.1.2.3' is not a host name or IP address"),
        ("%0d%0aHost:evil", "is not a web address"),
    ],
)
def test_hostile_webdav_hosts_are_refused_with_a_sentence(host, message):
    problem = one_problem({**WEBDAV, "url": f"https://{host}/dav/backups"}, "url")
    assert message in problem
    assert "https://cloud.example.com/remote.php/dav/files/alice/Backups" in problem


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://nás.lokal/dav/backups", "xn--ns-mia.lokal"),
        ("https://[::1]:8443/dav", "::1"),
        ("http://nextcloud_app/remote.php/dav/files/alice/Backups", "nextcloud_app"),
        ("https://cloud.example.com/remote.php/dav/files/alice/Home Assistant Backups", "cloud.example.com"),
    ],
)
def test_webdav_hosts_that_can_be_looked_up_are_accepted(url, host):
    assert check_url(url).raw_host == host
    [location] = parse_options({"locations": [{**WEBDAV, "url": url}]}).locations
    assert location.url == url


async def test_a_webdav_host_that_cannot_be_encoded_is_a_location_error():
    location = WebdavLocation(name="Cloud", url="https://cloud.example.com/dav")
    location._origin = URL("https://a..b")  # past the options' check, as an older version allowed
    with pytest.raises(LocationError, match=r"the server name 'a\.\.b' in the url cannot be looked up"):
        await location.usage()


# --- folder path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/media/usb\nHost: x", "/media/usb\r\n", "/media/us\x00b", "/media/\tusb", "/media/usb\x7f"]
)
def test_folder_paths_with_control_characters_are_refused(path):
    problem = one_problem({**FOLDER, "path": path}, "path")
    assert "must not contain control characters" in problem and "e.g. /media/usb" in problem


def test_folder_paths_with_spaces_and_other_scripts_are_accepted():
    [location] = parse_options(
        {"locations": [{**FOLDER, "path": "/media/USB Stick/Sicherungen ä"}]}
    ).locations
    assert location.path == "/media/USB Stick/Sicherungen ä"
