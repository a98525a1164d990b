"""The simulated Supervisor's /addons/self/options and /addons/self/restart, which the setup saves through."""

import asyncio
import json

import aiohttp
import pytest

from supervisor_sim import SimConfig, SupervisorSim
from supervisor_sim.addon_self import OptionsValidator, addon_self, load_schema
from supervisor_sim.envelope import ApiError

from .conftest import TOKEN, serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCHEMA = {
    "name": "str",
    "alias": "str?",
    "port": "port",
    "level": "list(low|high)",
    "ratio": "float(0.5,2)?",
    "tags": ["match(^[a-z]+$)"],
    "servers": [{"host": "str", "password": "password?", "verify": "bool?"}],
}
VALID = {"name": "x", "port": 22, "level": "low", "tags": [], "servers": [{"host": "nas", "verify": "on"}]}


def check(options):
    return OptionsValidator(SCHEMA, "3-2-1 Backup", "local_backup_321")(options)


async def test_options_are_checked_like_the_supervisor_checks_them():
    assert check(VALID) == {**VALID, "servers": [{"host": "nas", "verify": True}]}
    assert check({**VALID, "unknown": 1}) == check(VALID)  # dropped with a warning, as the Supervisor does
    cases = {
        "Missing option 'port' in root in 3-2-1 Backup (local_backup_321)": {
            k: v for k, v in VALID.items() if k != "port"
        },
        "Missing option 'host' in servers in 3-2-1 Backup (local_backup_321)": {**VALID, "servers": [{}]},
        "Missing required option 'alias' in 3-2-1 Backup (local_backup_321)": {**VALID, "alias": None},
        "Invalid list for option 'tags' in 3-2-1 Backup (local_backup_321)": {**VALID, "tags": "a"},
        "Invalid dict for option 'servers' in 3-2-1 Backup (local_backup_321)": {**VALID, "servers": ["nas"]},
        "expected port for option 'port' in 3-2-1 Backup (local_backup_321)": {**VALID, "port": 70000},
        "value must be in range for option 'ratio' in 3-2-1 Backup (local_backup_321)": {**VALID, "ratio": 3},
    }
    for message, options in cases.items():
        with pytest.raises(ApiError) as caught:
            check(options)
        assert caught.value.message == message
    with pytest.raises(ApiError, match="value must be one of low, high"):
        check({**VALID, "level": "mid"})
    with pytest.raises(ApiError, match="does not match regular expression"):
        check({**VALID, "tags": ["A"]})


async def test_the_repository_config_yaml_is_the_schema():
    name, schema = load_schema()
    assert name == "3-2-1 Backup"
    assert isinstance(schema, dict) and "locations" in schema


async def test_saved_options_are_written_and_a_restart_runs_the_hook_after_answering(tmp_path):
    sim = SupervisorSim(SimConfig(root=tmp_path / "sim", token=TOKEN))
    runner, url = await serve(sim.app)
    own = addon_self(sim)
    own.options_file = tmp_path / "data" / "options.json"
    restarted = asyncio.Event()
    own.on_restart = restarted.set
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(
                f"{url}/addons/self/options", json={"options": {"log_level": "loud"}}
            ) as answer:
                assert answer.status == 400
                body = await answer.json()
                assert body["result"] == "error"
            async with session.post(f"{url}/addons/self/options", json={"colour": "red"}) as answer:
                assert (await answer.json())["message"] == "extra keys not allowed @ data['colour']"
            assert own.options is None and not own.options_file.exists()

            async with session.post(f"{url}/addons/self/restart") as answer:
                assert await answer.json() == {"result": "ok", "data": {}}
                assert not restarted.is_set()  # the add-on hears back before it is stopped
            await asyncio.wait_for(restarted.wait(), 2)
            async with session.get(f"{url}/_sim/addon_self") as answer:
                assert len((await answer.json())["restarts"]) == 1
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.post(f"{url}/addons/self/restart") as answer,
        ):
            assert answer.status == 401
    finally:
        await runner.cleanup()


async def test_valid_options_are_stored_and_written(make_stack):
    stack = await make_stack()
    own = addon_self(stack.sim)
    options = stack.addon.options.model_dump(mode="json", exclude_none=True)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session,
        session.post(f"{stack.sim_url}/addons/self/options", json={"options": options}) as answer,
    ):
        assert await answer.json() == {"result": "ok", "data": {}}
    assert own.options["locations"][0]["name"] == "USB disk"
    assert json.loads(own.options_file.read_text()) == own.options
