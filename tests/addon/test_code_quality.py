"""The add-on's code stays lint-clean and fully typed."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean():
    result = run("ruff", "check", "backup_addon", "supervisor_sim", "tests", "bench", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean():
    result = run("mypy", "--strict", "backup_addon")
    assert result.returncode == 0, result.stdout + result.stderr
