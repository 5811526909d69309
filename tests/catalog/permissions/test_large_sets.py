"""Sets of unbounded size never become one `$in` list (a command is at most 16 MB)."""

from __future__ import annotations

from bson import ObjectId
from odmantic import AIOEngine

from app.catalog.models import Device
from app.catalog.permissions import service as permissions_service
from app.catalog.permissions.models import Grant, ResourceType, Role
from app.core import db
from app.core.db import IN_CHUNK, in_chunks
from tests.fixtures.catalog import MASTER, new_device, new_product, user_principal


class TestInChunks:
    def test_short_lists_stay_one_clause(self) -> None:
        assert in_chunks("f", [1, 2]) == {"f": {"$in": [1, 2]}}

    def test_long_lists_become_an_or_of_chunks(self) -> None:
        query = in_chunks("f", list(range(2 * IN_CHUNK + 1)))
        sizes = [len(part["f"]["$in"]) for part in query["$or"]]
        assert sizes == [IN_CHUNK, IN_CHUNK, 1]


class TestManyDirectGrants:
    async def test_a_user_with_thousands_of_grants_sees_exactly_their_devices(
        self, engine: AIOEngine
    ) -> None:
        user = user_principal()
        product = await new_product(engine, owner=MASTER)
        mine = [await new_device(engine, owner=MASTER, product=product) for _ in range(3)]
        others = [str(ObjectId()) for _ in range(IN_CHUNK + 500)]  # grants on deleted devices
        grants = [
            Grant(
                resource_type=ResourceType.DEVICE,
                resource_id=rid,
                user_uid=user.uid,
                role=Role.VIEWER,
            )
            for rid in [*others, *(str(d.id) for d, _ in mine)]
        ]
        await db.collection(engine, Grant).insert_many([g.model_dump_doc() for g in grants])
        query = await permissions_service.readable_filter(engine, principal=user, model=Device)
        assert all(len(p["_id"]["$in"]) <= IN_CHUNK for p in query["$or"])
        found = {str(d["_id"]) async for d in db.collection(engine, Device).find(query, {"_id": 1})}
        assert found == {str(d.id) for d, _ in mine}
