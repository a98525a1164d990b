"""Every location kind against its real server: providers are found in tests/locations/kinds/."""

import importlib
import pkgutil
import tempfile
from pathlib import Path

import pytest

from tests.locations import kinds

PROVIDERS = [
    provider
    for module in sorted(pkgutil.iter_modules(kinds.__path__), key=lambda m: m.name)
    for provider in importlib.import_module(f"{kinds.__name__}.{module.name}").PROVIDERS
]
SERVER_PROVIDERS = [p for p in PROVIDERS if p.has_server]

_started: dict[str, object] = {}


@pytest.fixture(scope="session")
def provider_workdir():
    with tempfile.TemporaryDirectory(prefix="location-servers-") as path:
        yield Path(path)
        for provider in PROVIDERS:
            if provider.id in _started:
                provider.stop()


def _start(provider, workdir):
    if provider.id not in _started:
        folder = workdir / provider.id
        folder.mkdir()
        provider.start(folder)
        _started[provider.id] = provider
    return provider


@pytest.fixture(params=PROVIDERS, ids=[p.id for p in PROVIDERS])
def provider(request, provider_workdir):
    return _start(request.param, provider_workdir)


@pytest.fixture(params=SERVER_PROVIDERS, ids=[p.id for p in SERVER_PROVIDERS])
def server_provider(request, provider_workdir):
    started = _start(request.param, provider_workdir)
    yield started
    started.resume_server()


@pytest.fixture
def location(provider, request):
    return provider.location(f"{provider.id} {request.node.name[:40]}")
