"""Shared helpers of the static checks: the repository root, tools, YAML loading."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SLUG = "backup_321"
SERVICE_DIR = REPO / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"


def tool(name: str, hint: str = "run `bash scripts/setup.sh`") -> str:
    """Path of a command-line tool: the venv's copy first, then PATH. Fails loudly if missing."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"required tool {name!r} is not installed; {hint}", pytrace=False)
    return found


def load_yaml(relative: str) -> Any:
    """Parse a YAML file of the repository the way the Supervisor does (PyYAML safe loader)."""
    path = REPO / relative
    assert path.is_file(), f"{relative} is missing"
    return yaml.safe_load(path.read_text(encoding="utf-8"))
