"""Who may do what with a device's commands: the access matrix over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.db import MongoDatabase
from tests.commands.conftest import Commanded, MakeCommanded, poll, send
from tests.fixtures.catalog import grant
from tests.fixtures.catalog_http import principal_of, signed_in
from tests.fixtures.identities import MakeUser


@pytest.fixture
async def world(
    client: httpx.AsyncClient, make_user: MakeUser, make_commanded: MakeCommanded, engine: Any
) -> dict[str, Any]:
    """An owner's device with one queued command; an editor, a viewer, a stranger, and
    another device with its own key."""
    owner, editor, viewer, stranger = [await signed_in(make_user, client) for _ in range(4)]
    target = await make_commanded(owner=principal_of(owner))
    other = await make_commanded(owner=principal_of(owner))
    await grant(engine, principal=principal_of(editor), resource=target.device, role="editor")
    await grant(engine, principal=principal_of(viewer), resource=target.device, role="viewer")
    command = (await send(client, target, owner.headers)).json()
    return {
        "target": target,
        "other": other,
        "command": command["id"],
        "owner": owner.headers,
        "editor": editor.headers,
        "viewer": viewer.headers,
        "stranger": stranger.headers,
        "device": target.headers,
        "other_device": other.headers,
    }


# caller -> expected status of: send, list, get, cancel
MATRIX = {
    "owner": (201, 200, 200, 200),
    "editor": (201, 200, 200, 200),
    "viewer": (403, 200, 200, 403),
    "stranger": (404, 404, 404, 404),
    "device": (403, 200, 200, 403),
    "other_device": (404, 404, 404, 404),
}


class TestUserSide:
    @pytest.mark.parametrize("caller", list(MATRIX))
    async def test_matrix(
        self,
        caller: str,
        world: dict[str, Any],
        client: httpx.AsyncClient,
        mongo_db: MongoDatabase,
    ) -> None:
        target: Commanded = world["target"]
        headers = world[caller]
        before = await mongo_db.commands.count_documents({"device_id": target.id})
        codes = (
            (await send(client, target, headers)).status_code,
            (await client.get(target.url, headers=headers)).status_code,
            (await client.get(f"{target.url}/{world['command']}", headers=headers)).status_code,
            (
                await client.post(f"{target.url}/{world['command']}/cancel", headers=headers)
            ).status_code,
        )
        assert codes == MATRIX[caller]
        if codes[0] != 201:
            after = await mongo_db.commands.count_documents({"device_id": target.id})
            assert after == before
        if codes[3] != 200:
            doc = await client.get(f"{target.url}/{world['command']}", headers=world["owner"])
            assert doc.json()["state"] == "queued"


class TestDeviceSide:
    async def test_only_the_device_itself_polls_and_answers(
        self, world: dict[str, Any], client: httpx.AsyncClient
    ) -> None:
        target: Commanded = world["target"]
        other: Commanded = world["other"]
        url = f"{target.url}/next"
        for caller, expected in (("owner", 403), ("viewer", 403), ("other_device", 404)):
            resp = await client.get(url, headers=world[caller])
            assert resp.status_code == expected, caller
        # Another device's key never takes this device's command.
        assert (await poll(client, target, key=other.key)).status_code == 404
        delivery = (await poll(client, target)).json()
        assert delivery["id"] == world["command"]
        result_url = f"{target.url}/{delivery['id']}/result"
        body = {"delivery_id": delivery["delivery_id"], "status": "successful"}
        for caller, expected in (("owner", 403), ("other_device", 404)):
            resp = await client.post(result_url, json=body, headers=world[caller])
            assert resp.status_code == expected, caller
        assert (await client.post(result_url, json=body, headers=target.headers)).status_code == 200

    async def test_a_device_cannot_answer_another_devices_command_through_its_own_url(
        self, world: dict[str, Any], client: httpx.AsyncClient
    ) -> None:
        target: Commanded = world["target"]
        other: Commanded = world["other"]
        delivery = (await poll(client, target)).json()
        body = {"delivery_id": delivery["delivery_id"], "status": "failed"}
        resp = await client.post(
            f"{other.url}/{delivery['id']}/result", json=body, headers=other.headers
        )
        assert resp.status_code == 404
        assert resp.json()["type"] == "/problems/command-not-found"
