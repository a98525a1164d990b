"""Helpers shared by the simulator tests."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

TOKEN = "test-supervisor-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NONE = type(None)


async def wait_job_done(http: TestClient, job_id: str, timeout: float = 10) -> dict[str, Any]:
    """Poll GET /jobs/info like the add-on until the root job is done; return it."""
    async with asyncio.timeout(timeout):
        while True:
            resp = await http.get("/jobs/info", headers=AUTH)
            jobs = (await resp.json())["data"]["jobs"]
            job = next(j for j in jobs if j["uuid"] == job_id)
            if job["done"]:
                return job
            await asyncio.sleep(0.01)


async def make_backup(http: TestClient, body: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    """Create a backup in the foreground and return the response data (job_id, slug)."""
    kind = "full" if full else "partial"
    resp = await http.post(f"/backups/new/{kind}", json=body, headers=AUTH)
    payload = await resp.json()
    assert resp.status == 200, payload
    return payload["data"]


def assert_shape(obj: Any, spec: dict[str, Any]) -> None:
    """Exactly the keys of ``spec``, each value an instance of the type(s) given."""
    assert isinstance(obj, dict), obj
    assert set(obj) == set(spec), f"keys differ: extra {set(obj) - set(spec)}, missing {set(spec) - set(obj)}"
    for key, types in spec.items():
        assert isinstance(obj[key], types), f"{key}: {obj[key]!r} is not {types}"
