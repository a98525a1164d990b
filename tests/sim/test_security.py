"""Token check and ``hassio_role: backup`` rules answer like the Supervisor's middleware."""

from __future__ import annotations

import uuid

import pytest
from aiohasupervisor import SupervisorClient
from aiohasupervisor.exceptions import SupervisorAuthenticationError, SupervisorForbiddenError
from aiohttp.test_utils import TestClient, TestServer

from tests.sim.helpers import AUTH, TOKEN


async def test_missing_token_is_401_plain_text(http: TestClient) -> None:
    resp = await http.get("/backups")
    assert resp.status == 401
    assert resp.content_type == "text/plain"
    assert await resp.text() == "401: Unauthorized"


async def test_unknown_token_is_403_like_the_supervisor(http: TestClient) -> None:
    # The Supervisor rejects a token it does not know with "Invalid token for access": 403.
    resp = await http.get("/backups", headers={"Authorization": "Bearer nope"})
    assert resp.status == 403
    assert await resp.text() == "403: Forbidden"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {TOKEN}"},
        {"X-Supervisor-Token": TOKEN},
        {"X-Hassio-Key": TOKEN},
    ],
)
async def test_every_token_header_is_accepted(http: TestClient, headers: dict[str, str]) -> None:
    resp = await http.get("/backups", headers=headers)
    assert resp.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/info",
        "/supervisor/info",
        "/core/info",
        "/os/info",
        "/addons/self/info",
        "/addons/core_ssh/info",
        "/addons/self/options/config",
        "/jobs/info",
        "/backups",
        "/backups/info",
    ],
)
async def test_backup_role_reaches_info_and_backups(http: TestClient, path: str) -> None:
    resp = await http.get(path, headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["result"] == "ok"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/jobs/{uuid.uuid4().hex}"),
        ("DELETE", f"/jobs/{uuid.uuid4().hex}"),
        ("GET", "/mounts"),
        ("POST", "/mounts/options"),
        ("GET", "/addons"),
        ("POST", "/addons/core_ssh/restart"),
        ("POST", "/core/restart"),
        ("GET", "/addons/self/security"),
    ],
)
async def test_backup_role_is_refused_elsewhere_with_plain_403(
    http: TestClient, method: str, path: str
) -> None:
    resp = await http.request(method, path, headers=AUTH)
    assert resp.status == 403
    assert resp.content_type == "text/plain"
    assert await resp.text() == "403: Forbidden"


async def test_aiohasupervisor_sees_forbidden_for_jobs_and_mounts(supervisor: SupervisorClient) -> None:
    with pytest.raises(SupervisorForbiddenError):
        await supervisor.jobs.get_job(uuid.uuid4())
    with pytest.raises(SupervisorForbiddenError):
        await supervisor.mounts.info()


async def test_aiohasupervisor_with_a_wrong_token_is_forbidden(server: TestServer) -> None:
    client = SupervisorClient(str(server.make_url("")), "wrong")
    try:
        with pytest.raises(SupervisorForbiddenError):
            await client.backups.list()
    finally:
        await client.close()


async def test_core_api_checks_the_token_itself(http: TestClient) -> None:
    assert (await http.get("/core/api/")).status == 401
    assert (await http.get("/core/api/", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await http.get("/core/api/", headers=AUTH)).status == 200
    assert (await http.get("/core/api/", headers={"X-Ha-Access": TOKEN})).status == 200
    # The Core proxy does not read X-Supervisor-Token.
    assert (await http.get("/core/api/", headers={"X-Supervisor-Token": TOKEN})).status == 401


async def test_core_api_hassio_paths_are_blacklisted(http: TestClient) -> None:
    resp = await http.get("/core/api/hassio/backups", headers=AUTH)
    assert resp.status == 403


async def test_core_api_401_maps_to_authentication_error(server: TestServer) -> None:
    # aiohasupervisor has no Core client; its error mapping still shows what the add-on sees.
    client = SupervisorClient(str(server.make_url("/core/api")), "wrong")
    try:
        with pytest.raises(SupervisorAuthenticationError):
            await client.info()
    finally:
        await client.close()


async def test_control_endpoints_need_no_token(http: TestClient) -> None:
    assert (await http.get("/_sim/faults")).status == 200
    assert (await http.get("/_sim/calls")).status == 200
