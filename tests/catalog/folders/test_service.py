"""Folders: sibling names, moves that rewrite paths, cycles, deletes, the caller's top level."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from odmantic import AIOEngine

from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.exceptions import (
    FolderCycle,
    FolderNameTaken,
    FolderNotEmpty,
    FolderNotFound,
    ProductInUse,
)
from app.catalog.folders import service as folders_service
from app.catalog.folders.schemas import FolderCreate, FolderUpdate
from app.catalog.models import Device, Folder, Product
from app.catalog.permissions.exceptions import NotAllowed
from app.catalog.permissions.models import Grant
from app.core import db
from app.core.pagination import PageParams
from app.core.services import Services, services_of
from tests.fixtures.catalog import (
    grant,
    new_device,
    new_folder,
    new_product,
    unique,
    user_principal,
)

PAGE = PageParams(limit=100)


@pytest.fixture
def services(app: FastAPI) -> Services:
    """The test app's clients, as the routes get them."""
    return services_of(app)


async def create(
    services: Services, principal: Principal, *, parent: Folder | None = None, name: str = ""
) -> Folder:
    """Create a folder through the service (its rules are what these tests check)."""
    folder_in = FolderCreate(name=name or unique("f"), parent_id=str(parent.id) if parent else None)
    return await folders_service.create(services, principal=principal, folder_in=folder_in)


class TestCreate:
    async def test_sibling_names_are_unique_case_insensitively(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        await create(services, alice, parent=top, name="Plant A")
        with pytest.raises(FolderNameTaken):
            await create(services, alice, parent=top, name="plant a")
        other = await new_folder(engine, owner=alice)
        await create(services, alice, parent=other, name="Plant A")

    async def test_top_level_names_do_not_clash_between_users(
        self, engine: AIOEngine, services: Services
    ) -> None:
        await create(services, user_principal(), name="Home")
        await create(services, user_principal(), name="Home")

    async def test_parent_must_be_visible_and_editable(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice, bob = user_principal(), user_principal()
        top = await new_folder(engine, owner=alice)
        with pytest.raises(FolderNotFound):
            await create(services, bob, parent=top)
        await grant(engine, principal=bob, resource=top, role="viewer")
        with pytest.raises(NotAllowed):
            await create(services, bob, parent=top)

    async def test_child_records_its_ancestors(self, engine: AIOEngine, services: Services) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        mid = await create(services, alice, parent=top)
        leaf = await create(services, alice, parent=mid)
        assert leaf.ancestors == [str(top.id), str(mid.id)]


class TestMove:
    async def test_descendants_and_held_items_follow(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        a, b = await new_folder(engine, owner=alice), await new_folder(engine, owner=alice)
        moving = await new_folder(engine, owner=alice, parent=a)
        child = await new_folder(engine, owner=alice, parent=moving)
        product = await new_product(engine, owner=alice, folder=child)
        device, _ = await new_device(engine, owner=alice, product=product, folder=child)
        await folders_service.update(
            services,
            principal=alice,
            folder=moving,
            folder_in=FolderUpdate(parent_id=str(b.id)),
        )
        child_now = await crud.get(engine, Folder, str(child.id))
        assert child_now.ancestors == [str(b.id), str(moving.id)]
        expected = [str(b.id), str(moving.id), str(child.id)]
        assert (await crud.get(engine, Product, str(product.id))).folder_path == expected
        assert (await crud.get(engine, Device, str(device.id))).folder_path == expected

    async def test_move_below_itself_is_a_cycle_and_changes_nothing(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        child = await new_folder(engine, owner=alice, parent=top)
        for target in (top, child):
            with pytest.raises(FolderCycle):
                await folders_service.update(
                    services,
                    principal=alice,
                    folder=top,
                    folder_in=FolderUpdate(parent_id=str(target.id)),
                )
        assert (await crud.get(engine, Folder, str(top.id))).parent_id is None

    async def test_move_needs_owner_not_just_editor(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice, bob = user_principal(), user_principal()
        top, dest = await new_folder(engine, owner=alice), await new_folder(engine, owner=bob)
        await grant(engine, principal=bob, resource=top, role="editor")
        with pytest.raises(NotAllowed):
            await folders_service.update(
                services,
                principal=bob,
                folder=top,
                folder_in=FolderUpdate(parent_id=str(dest.id)),
            )

    async def test_rename_to_a_sibling_name_is_refused(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        await new_folder(engine, owner=alice, parent=top, name="one")
        two = await new_folder(engine, owner=alice, parent=top, name="two")
        with pytest.raises(FolderNameTaken):
            await folders_service.update(
                services,
                principal=alice,
                folder=two,
                folder_in=FolderUpdate(name="ONE"),
            )
        assert (await crud.get(engine, Folder, str(two.id))).name == "two"


class TestDelete:
    async def test_non_empty_is_refused_without_recursive(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        await new_folder(engine, owner=alice, parent=top)
        with pytest.raises(FolderNotEmpty):
            await folders_service.delete(services, folder=top, recursive=False)
        assert await crud.get(engine, Folder, str(top.id))

    async def test_recursive_removes_subtree_and_its_grants(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        child = await new_folder(engine, owner=alice, parent=top)
        product = await new_product(engine, owner=alice, folder=child)
        device, _ = await new_device(engine, owner=alice, product=product, folder=child)
        await folders_service.delete(services, folder=top, recursive=True)
        for model, oid in ((Folder, child.id), (Device, device.id)):
            assert await db.find_one(engine, model, {"_id": oid}) is None
        ids = [str(x.id) for x in (top, child, product, device)]
        assert await db.find_many(engine, Grant, {"resource_id": {"$in": ids}}) == []

    async def test_recursive_refuses_products_used_outside(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        product = await new_product(engine, owner=alice, folder=top)
        await new_device(engine, owner=alice, product=product)
        with pytest.raises(ProductInUse):
            await folders_service.delete(services, folder=top, recursive=True)
        assert await crud.get(engine, Product, str(product.id))


class TestList:
    async def test_top_level_is_the_highest_folder_the_caller_sees(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        top = await new_folder(engine, owner=alice)
        shared = await new_folder(engine, owner=alice, parent=top)
        below = await new_folder(engine, owner=alice, parent=shared)
        await grant(engine, principal=bob, resource=shared, role="viewer")
        await grant(engine, principal=bob, resource=below, role="editor")
        mine = await new_folder(engine, owner=bob)
        items, cursor = await folders_service.list_(
            engine, principal=bob, parent_id=None, page=PAGE
        )
        assert {f.id for f in items} == {shared.id, mine.id}
        assert cursor is None
        children, _ = await folders_service.list_(
            engine, principal=bob, parent_id=str(shared.id), page=PAGE
        )
        assert [f.id for f in children] == [below.id]

    async def test_children_of_an_invisible_folder_are_empty(self, engine: AIOEngine) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        await new_folder(engine, owner=alice, parent=top)
        items, _ = await folders_service.list_(
            engine, principal=user_principal(), parent_id=str(top.id), page=PAGE
        )
        assert items == []

    async def test_pages_follow_the_cursor(self, engine: AIOEngine) -> None:
        alice = user_principal()
        top = await new_folder(engine, owner=alice)
        made = [await new_folder(engine, owner=alice, parent=top) for _ in range(5)]
        seen, cursor = [], None
        while True:
            items, cursor = await folders_service.list_(
                engine,
                principal=alice,
                parent_id=str(top.id),
                page=PageParams(limit=2, cursor=cursor),
            )
            seen += [f.id for f in items]
            if cursor is None:
                break
        assert seen == [f.id for f in made]
