"""Moving a folder: one consistent step, even with concurrent moves, crashes and deep trees.

A move rewrites the folder, every folder below it (`ancestors`) and every product and device
they hold (`folder_path`). Moves hold one lease (`app.core.leases`), so two never interleave:
of two crossing moves (A under B, B under A) the second sees the first and is refused as a
cycle. Where the server supports transactions (a replica set, as in production and
docker-compose) all of a move commits or none does. Without them (a standalone server) the
same writes run in order, folders before what they hold, and the beat's `catalog.repair_tree`
job (`app.catalog.repair`) mends what a crash left behind, as it does for a product or device
created while its folder was moving.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorClientSession
from odmantic import AIOEngine
from pymongo import UpdateMany, UpdateOne
from pymongo.errors import DuplicateKeyError, OperationFailure

from app.catalog.exceptions import FolderCycle, FolderNameTaken, FolderTooDeep
from app.catalog.models import Device, Folder, Product
from app.core import db, leases

# "Transaction numbers are only allowed on a replica set member or mongos".
NO_TRANSACTIONS = 20
TRANSACTIONAL_TOPOLOGIES = frozenset({"ReplicaSetWithPrimary", "Sharded"})
MOVE_LEASE = "catalog.folder-moves"
# A move of a very large subtree may take long; a crashed holder's lease runs out after this.
MOVE_HOLD_S = 300.0
MOVE_WAIT_S = 10.0

Session = AsyncIOMotorClientSession | None


def check_depth(*, ancestors: list[str], height: int, max_depth: int) -> None:
    """A folder under `ancestors` whose subtree is `height` levels deep must fit the cap."""
    depth = len(ancestors) + 1 + height
    if depth > max_depth:
        raise FolderTooDeep(
            f"the folder tree would be {depth} levels deep; at most {max_depth} are allowed "
            "(FOLDER_MAX_DEPTH)"
        )


async def subtree_height(engine: AIOEngine, folder: Folder, *, session: Session = None) -> int:
    """How many levels lie below the folder (0 for a leaf)."""
    level = len(folder.ancestors) + 1
    deepest = level
    cursor = db.collection(engine, Folder).find(
        {"ancestors": {"$in": [str(folder.id)]}}, {"ancestors": 1}, session=session
    )
    async for doc in cursor:
        deepest = max(deepest, len(doc["ancestors"]) + 1)
    return deepest - level


async def in_transaction(
    engine: AIOEngine, work: Callable[[Session], Coroutine[Any, Any, None]]
) -> None:
    """Run `work` in a transaction (retried on transient errors), or without one on a server
    that has none.

    MongoDB has transactions on replica sets and sharded clusters only; a standalone server
    (including the embedded one, whose transactions are not isolated from other sessions'
    writes) runs the writes in order and relies on the repair job.
    """
    client = engine.client
    if client.delegate.topology_description.topology_type_name == "Unknown":
        await client.admin.command("ping")  # learn what the deployment is
    topology = client.delegate.topology_description.topology_type_name
    if topology not in TRANSACTIONAL_TOPOLOGIES:
        await work(None)
        return
    try:
        async with await client.start_session() as session:
            await session.with_transaction(work)
    except OperationFailure as exc:
        if exc.code != NO_TRANSACTIONS:
            raise
        await work(None)


async def move(
    engine: AIOEngine,
    *,
    folder: Folder,
    parent_id: str | None,
    changes: dict[str, Any],
    scope_of: Callable[[Folder | None], str],
    max_depth: int,
) -> None:
    """Move `folder` under `parent_id` (None: the top level), applying `changes` with it."""

    async def work(session: Session) -> None:
        folders = db.collection(engine, Folder)
        parent = None
        if parent_id is not None:
            # Read inside the transaction: the destination as it is now, not as loaded.
            doc = await folders.find_one({"_id": ObjectId(parent_id)}, session=session)
            if doc is None:
                raise Folder.kind.not_found()
            parent = Folder.model_validate_doc(doc)
            if parent.id == folder.id or str(folder.id) in parent.ancestors:
                raise FolderCycle()
        ancestors = parent.path if parent else []
        check_depth(
            ancestors=ancestors,
            height=await subtree_height(engine, folder, session=session),
            max_depth=max_depth,
        )
        update = {**changes, "parent_id": parent_id, "ancestors": ancestors}
        update["scope"] = scope_of(parent)
        try:
            await folders.update_one(
                {"_id": folder.id},
                {"$set": update, "$currentDate": {"updated_at": True}},
                session=session,
            )
        except DuplicateKeyError:
            raise FolderNameTaken() from None
        await _rewrite_below(engine, folder_id=str(folder.id), path=ancestors, session=session)

    async with leases.lease(engine, MOVE_LEASE, hold_s=MOVE_HOLD_S, wait_s=MOVE_WAIT_S):
        await in_transaction(engine, work)


async def _rewrite_below(
    engine: AIOEngine, *, folder_id: str, path: list[str], session: Session
) -> None:
    """New `ancestors` below the moved folder, then new `folder_path` of what they hold."""
    new_path = [*path, folder_id]
    paths: dict[str, list[str]] = {folder_id: new_path}
    folder_ops: list[UpdateOne] = []
    folders = db.collection(engine, Folder)
    async for doc in folders.find(
        {"ancestors": {"$in": [folder_id]}}, {"ancestors": 1}, session=session
    ):
        old: list[str] = doc["ancestors"]
        ancestors = new_path + old[old.index(folder_id) + 1 :]
        paths[str(doc["_id"])] = [*ancestors, str(doc["_id"])]
        folder_ops.append(
            UpdateOne(
                {"_id": doc["_id"]},
                # updated_at marks the folder for the repair job's check of what it holds.
                {"$set": {"ancestors": ancestors}, "$currentDate": {"updated_at": True}},
            )
        )
    if folder_ops:
        await folders.bulk_write(folder_ops, ordered=False, session=session)
    # Items in one folder share one path: one update per folder, not per item.
    held_ops = [
        UpdateMany({"folder_id": fid}, {"$set": {"folder_path": p}}) for fid, p in paths.items()
    ]
    for model in (Product, Device):
        await db.collection(engine, model).bulk_write(held_ops, ordered=False, session=session)
