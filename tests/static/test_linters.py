"""hadolint, shellcheck and yamllint over the add-on's files; any finding fails the test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ._helpers import REPO, load_yaml, tool

# Directories that are not part of the project's own files.
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "artifacts",
    "demo-data",
}


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def _project_files() -> list[str]:
    """Every file of the project, relative to the root, without virtualenvs, caches and git."""
    found = []
    for directory, subdirs, files in os.walk(REPO):
        subdirs[:] = [d for d in subdirs if d not in SKIP_DIRS]
        base = Path(directory).relative_to(REPO)
        found.extend((base / name).as_posix() for name in files)
    return sorted(found)


def test_hadolint_passes_on_the_dockerfile() -> None:
    config = load_yaml(".hadolint.yaml")
    assert config["failure-threshold"] == "style", "every hadolint finding must fail the build"
    result = _run([tool("hadolint"), "--no-color", "--config", ".hadolint.yaml", "Dockerfile"])
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def _shell_scripts() -> list[str]:
    scripts = []
    for relative in _project_files():
        if relative.startswith("rootfs/"):
            with (REPO / relative).open("rb") as handle:
                if handle.read(2) == b"#!":
                    scripts.append(relative)
    return scripts


def test_shellcheck_passes_on_every_script_in_rootfs() -> None:
    scripts = _shell_scripts()
    service = "rootfs/etc/s6-overlay/s6-rc.d/backup_321"
    assert {f"{service}/run", f"{service}/finish"} <= set(scripts), scripts
    result = _run([tool("shellcheck"), "--severity=style", "--format=gcc", *scripts])
    assert result.returncode == 0, f"shellcheck:\n{result.stdout}{result.stderr}"


def test_yamllint_passes_on_every_yaml_file() -> None:
    config = load_yaml(".yamllint")
    assert config["extends"] == "default"
    assert config["rules"]["document-start"] == "disable"
    assert config["rules"]["line-length"]["max"] == 120
    files = [f for f in _project_files() if f.endswith((".yaml", ".yml")) or f == ".yamllint"]
    assert {"config.yaml", "build.yaml", "repository.yaml", "translations/en.yaml"} <= set(files)
    result = _run([tool("yamllint"), "--strict", "--format", "parsable", "-c", ".yamllint", *files])
    assert result.returncode == 0, f"yamllint:\n{result.stdout}{result.stderr}"
