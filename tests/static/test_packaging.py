"""The other packaging files agree with config.yaml and with each other: build.yaml and the
Dockerfile, repository.yaml, the AppArmor profile, the images, DOCS.md and CHANGELOG.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

import backup_addon
from backup_addon.options import AddonOptions

from ._helpers import REPO, SLUG, load_yaml

BASE_IMAGE = "ghcr.io/home-assistant/base-python"
BASE_TAG = "3.13-alpine3.24"
INGRESS_PORT = 8099  # the Supervisor's default; config.yaml must not repeat it

# The legacy build file, trimmed from the add-on linter's build schema.
IMAGE = r"^([a-zA-Z\-\.:\d{}]+/)*?(([\-\w{}]+)/)?([\-\w{}]+)(:[\.\-\w{}]+)?$"
BUILD_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["build_from"],
    "properties": {
        "build_from": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                arch: {"type": "string", "pattern": IMAGE}
                for arch in ("aarch64", "amd64", "armhf", "armv7", "i386")
            },
        },
        "args": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
        "labels": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
    },
}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml("config.yaml")
    return data


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def _arg_default(dockerfile: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile, re.MULTILINE)
    assert match, f"Dockerfile: no `ARG {name}=<default>`"
    return match.group(1)


# --- build.yaml and Dockerfile ---------------------------------------------------------------


def test_build_yaml_is_valid_and_matches_the_dockerfile(config: dict[str, Any], dockerfile: str) -> None:
    build = load_yaml("build.yaml")
    errors = sorted(jsonschema.Draft7Validator(BUILD_SCHEMA).iter_errors(build), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    assert set(build["build_from"]) == set(config["arch"])
    for arch, image in build["build_from"].items():
        assert image == f"ghcr.io/home-assistant/{arch}-base-python:{BASE_TAG}", image


def test_dockerfile_builds_from_the_python_base(dockerfile: str) -> None:
    assert _arg_default(dockerfile, "BUILD_FROM") == f"{BASE_IMAGE}:{BASE_TAG}"
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert froms == ["${BUILD_FROM}"], froms


def test_dockerfile_installs_requirements_and_copies_the_addon(dockerfile: str) -> None:
    assert re.search(r"^COPY requirements\.txt ", dockerfile, re.MULTILINE)
    assert re.search(r"pip install --no-cache-dir .*-r \S*requirements\.txt", dockerfile)
    assert re.search(r"^COPY backup_addon/ ", dockerfile, re.MULTILINE)
    assert re.search(r"^COPY rootfs/ /$", dockerfile, re.MULTILINE)
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {"!requirements.txt", "!backup_addon/", "!rootfs/"} <= set(ignored)


def test_dockerfile_main_command_relays_stdin_to_the_service(dockerfile: str) -> None:
    # s6-overlay gives supervised services /dev/null as stdin; only CMD sees hassio.addon_stdin.
    assert re.search(r'^CMD \["python3", "-m", "backup_addon", "relay-stdin"\]$', dockerfile, re.MULTILINE)


def test_dockerfile_healthcheck_probes_the_ingress_server(config: dict[str, Any], dockerfile: str) -> None:
    assert "ingress_port" not in config  # so the web server listens on the default port
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (.*)$", dockerfile, re.MULTILINE | re.DOTALL)
    assert healthcheck, "Dockerfile: no HEALTHCHECK"
    assert f"http://127.0.0.1:{INGRESS_PORT}/health" in healthcheck.group(1)
    assert "curl --fail" in healthcheck.group(1)


def test_dockerfile_labels_and_version(config: dict[str, Any], dockerfile: str) -> None:
    assert _arg_default(dockerfile, "BUILD_VERSION") == config["version"] == backup_addon.__version__
    for label in ("io.hass.version", "io.hass.type", "io.hass.arch"):
        assert f"{label}=" in dockerfile, f"Dockerfile: no {label} label"


def test_s6_grace_time_fits_in_the_docker_stop_timeout(config: dict[str, Any], dockerfile: str) -> None:
    grace = re.search(r"S6_SERVICES_GRACETIME=(\d+)", dockerfile)
    assert grace, "Dockerfile: set S6_SERVICES_GRACETIME so a running copy can stop cleanly"
    assert 3000 < int(grace.group(1)) < config["timeout"] * 1000


def test_repository_yaml() -> None:
    repository = load_yaml("repository.yaml")
    assert set(repository) <= {"name", "url", "maintainer"}
    assert all(isinstance(repository.get(k), str) and repository[k] for k in ("name", "url", "maintainer"))


# --- AppArmor --------------------------------------------------------------------------------


def test_apparmor_profile_is_named_after_the_slug() -> None:
    text = (REPO / "apparmor.txt").read_text(encoding="utf-8")
    # The Supervisor renames the one top-level profile (a line starting with "profile").
    assert re.findall(r"^profile (\S+)", text, re.MULTILINE) == [SLUG]
    assert text.count("{") == text.count("}")
    assert "#include <tunables/global>" in text


def test_apparmor_allows_what_the_addon_needs(config: dict[str, Any]) -> None:
    text = (REPO / "apparmor.txt").read_text(encoding="utf-8")
    python = BASE_TAG.split("-")[0]
    assert f"/usr/local/bin/python{python} cx -> python," in text, "run python in its profile"
    folders = {"backup": "/backup", "share": "/share", "media": "/media", "addon_config": "/config"}
    for entry in config["map"]:
        folder = folders[entry.split(":")[0]]
        assert f"{folder}/** rw" in text, f"apparmor.txt: no access to {folder}"
    assert "/data/** rw" in text
    assert "/run/backup_321/** rw" in text, "the stdin relay's FIFO"
    for rule in ("network inet stream,", "network inet6 stream,", "network unix stream,"):
        assert rule in text


# --- Images ----------------------------------------------------------------------------------


def test_icon_and_logo() -> None:
    with Image.open(REPO / "icon.png") as icon:
        assert icon.format == "PNG"
        assert icon.size == (128, 128)
        assert icon.mode == "RGBA"
    with Image.open(REPO / "logo.png") as logo:
        assert logo.format == "PNG"
        width, height = logo.size
        assert 200 <= width <= 300 and 80 <= height <= 120, logo.size


def test_images_are_what_the_generator_draws(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_images.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in ("icon.png", "logo.png"):
        with Image.open(REPO / name) as committed, Image.open(tmp_path / name) as drawn:
            same = committed.size == drawn.size and committed.tobytes() == drawn.tobytes()
            assert same, f"{name} is stale: run `.venv/bin/python scripts/make_images.py`"


# --- Documentation ---------------------------------------------------------------------------


def test_docs_describe_every_option() -> None:
    docs = (REPO / "DOCS.md").read_text(encoding="utf-8")
    for name in AddonOptions.model_fields:
        assert f"### `{name}`" in docs, f"DOCS.md: no section for option {name}"


def test_changelog_has_the_current_version(config: dict[str, Any]) -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(config['version'])}\]", changelog, re.MULTILINE)
    assert "## [Unreleased]" in changelog
