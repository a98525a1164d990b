"""Every runtime requirement, with its dependencies, installs from wheels on the add-on's base
image (Alpine = musl libc, Python 3.13) for both architectures. The image has no compiler, so a
missing wheel would break the add-on's build on the user's machine.

Both musllinux tags are passed: pip on a real Alpine accepts musllinux_1_1 and _1_2, and some
packages (pydantic-core) publish only musllinux_1_1 wheels. Needs network access to PyPI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._helpers import REPO

ARCHES = {"aarch64": "aarch64", "amd64": "x86_64"}  # add-on arch -> wheel platform arch
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;#]+)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for raw in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"requirements.txt: {line!r} is not pinned with =="
        pins[_normalize(match["name"])] = match["version"]
    assert pins, "requirements.txt lists no requirement"
    return pins


def wheel_fits(filename: str, arch: str) -> bool:
    """py3-none-any, or abi3 / cp313 built for musllinux on `arch`."""
    python_tags, abi_tags, platform_tags = filename.removesuffix(".whl").split("-")[-3:]
    pythons, abis, platforms = python_tags.split("."), abi_tags.split("."), platform_tags.split(".")
    if platforms == ["any"]:
        return "none" in abis and any(p.startswith("py3") for p in pythons)
    musl = any(re.fullmatch(rf"musllinux_1_[12]_{arch}", p) for p in platforms)
    return musl and ("abi3" in abis or "cp313" in abis)


def test_wheel_rule_examples() -> None:
    assert wheel_fits("securetar-2026.10.0-py3-none-any.whl", "x86_64")
    assert wheel_fits("aiohttp-3.14.5-cp313-cp313-musllinux_1_2_aarch64.whl", "aarch64")
    assert wheel_fits("cryptography-50.0.2-cp311-abi3-musllinux_1_2_x86_64.whl", "x86_64")
    assert not wheel_fits("aiohttp-3.14.5-cp313-cp313-manylinux_2_17_x86_64.whl", "x86_64")
    assert not wheel_fits("aiohttp-3.14.5-cp312-cp312-musllinux_1_2_x86_64.whl", "x86_64")
    assert not wheel_fits("aiohttp-3.14.5-cp313-cp313-musllinux_1_2_aarch64.whl", "x86_64")


def test_every_requirement_has_alpine_wheels(tmp_path: Path) -> None:
    pins = _pins()
    runs = {}
    for arch in ARCHES.values():
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
        command += ["--only-binary=:all:", "--python-version", "3.13", "--implementation", "cp"]
        command += ["--platform", f"musllinux_1_2_{arch}", "--platform", f"musllinux_1_1_{arch}"]
        command += ["-r", str(REPO / "requirements.txt"), "-d", str(tmp_path / arch)]
        runs[arch] = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    problems = []
    for arch, process in runs.items():
        try:
            output, _ = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"pip download for {arch} took more than 300 s")
        if process.returncode != 0:
            problems.append(f"pip download for {arch} failed:\n{output}")
            continue
        wheels = sorted(p.name for p in (tmp_path / arch).iterdir())
        problems += [f"{arch}: {w} is not a musl/pure wheel" for w in wheels if not wheel_fits(w, arch)]
        downloaded = {_normalize(w.split("-")[0]): w.split("-")[1] for w in wheels}
        for name, version in pins.items():
            if downloaded.get(name) != version:
                problems.append(f"{arch}: {name}=={version} missing, got {downloaded.get(name)}")
    assert not problems, "\n".join(problems)
