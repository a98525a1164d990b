"""The add-on's code stays lint-clean and fully typed."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean():
    targets = [p for p in ("backup_addon", "supervisor_sim", "tests", "bench", "scripts") if (ROOT / p).exists()]
    result = run("ruff", "check", *targets)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean():
    result = run("mypy", "--strict", "backup_addon")
    assert result.returncode == 0, result.stdout + result.stderr
