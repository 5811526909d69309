"""One function decides access: roles, inheritance down the tree, admins, devices."""

from __future__ import annotations

import pytest
from odmantic import AIOEngine

from app.catalog.exceptions import DeviceNotFound, FolderNotFound, ProductNotFound
from app.catalog.models import Device, Folder
from app.catalog.permissions import service as permissions_service
from app.catalog.permissions.exceptions import NotAllowed
from app.catalog.permissions.models import Role
from app.core import db
from tests.fixtures.catalog import (
    MASTER,
    device_principal,
    grant,
    new_device,
    new_folder,
    new_product,
    revoke,
    user_principal,
)


class TestRequire:
    async def test_creator_is_owner(self, engine: AIOEngine) -> None:
        alice = user_principal()
        folder = await new_folder(engine, owner=alice)
        assert (
            await permissions_service.require(
                engine, principal=alice, resource=folder, role=Role.OWNER
            )
            is Role.OWNER
        )

    async def test_stranger_gets_not_found_of_the_resource_type(self, engine: AIOEngine) -> None:
        alice, eve = user_principal(), user_principal()
        folder = await new_folder(engine, owner=alice)
        product = await new_product(engine, owner=alice, folder=folder)
        device, _ = await new_device(engine, owner=alice, product=product, folder=folder)
        for resource, error in (
            (folder, FolderNotFound),
            (product, ProductNotFound),
            (device, DeviceNotFound),
        ):
            with pytest.raises(error):
                await permissions_service.require(
                    engine, principal=eve, resource=resource, role=Role.VIEWER
                )

    async def test_viewer_sees_but_cannot_edit(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        folder = await new_folder(engine, owner=alice)
        await grant(engine, principal=bob, resource=folder, role="viewer")
        assert (
            await permissions_service.require(
                engine, principal=bob, resource=folder, role=Role.VIEWER
            )
            is Role.VIEWER
        )
        with pytest.raises(NotAllowed):
            await permissions_service.require(
                engine, principal=bob, resource=folder, role=Role.EDITOR
            )

    async def test_highest_of_direct_and_inherited_role_wins(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        folder = await new_folder(engine, owner=alice)
        product = await new_product(engine, owner=alice, folder=folder)
        await grant(engine, principal=bob, resource=folder, role="editor")
        await grant(engine, principal=bob, resource=product, role="viewer")
        assert (
            await permissions_service.role_of(engine, principal=bob, resource=product)
            is Role.EDITOR
        )

    @pytest.mark.parametrize("who", ["admin", "master"])
    async def test_admin_and_master_own_everything(self, engine: AIOEngine, who: str) -> None:
        folder = await new_folder(engine, owner=user_principal())
        principal = MASTER if who == "master" else user_principal(admin=True)
        assert await permissions_service.require(
            engine, principal=principal, resource=folder, role=Role.OWNER
        )

    async def test_device_reads_only_itself(self, engine: AIOEngine) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        mine, _ = await new_device(engine, owner=alice, product=product)
        other, _ = await new_device(engine, owner=alice, product=product)
        me = device_principal(mine)
        assert (
            await permissions_service.require(engine, principal=me, resource=mine, role=Role.VIEWER)
            is Role.VIEWER
        )
        with pytest.raises(NotAllowed):
            await permissions_service.require(engine, principal=me, resource=mine, role=Role.EDITOR)
        with pytest.raises(DeviceNotFound):
            await permissions_service.require(
                engine, principal=me, resource=other, role=Role.VIEWER
            )
        with pytest.raises(ProductNotFound):
            await permissions_service.require(
                engine, principal=me, resource=product, role=Role.VIEWER
            )


class TestInheritance:
    async def test_folder_grant_reaches_device_two_levels_down_until_removed(
        self, engine: AIOEngine
    ) -> None:
        alice, bob = user_principal(), user_principal()
        top = await new_folder(engine, owner=alice)
        middle = await new_folder(engine, owner=alice, parent=top)
        bottom = await new_folder(engine, owner=alice, parent=middle)
        product = await new_product(engine, owner=alice)
        device, _ = await new_device(engine, owner=alice, product=product, folder=bottom)
        await grant(engine, principal=bob, resource=top, role="editor")
        assert await permissions_service.require(
            engine, principal=bob, resource=device, role=Role.EDITOR
        )
        await revoke(engine, principal=bob, resource=top)
        with pytest.raises(DeviceNotFound):
            await permissions_service.require(
                engine, principal=bob, resource=device, role=Role.VIEWER
            )

    async def test_grant_on_child_does_not_reach_parent(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        top = await new_folder(engine, owner=alice)
        child = await new_folder(engine, owner=alice, parent=top)
        await grant(engine, principal=bob, resource=child, role="owner")
        with pytest.raises(FolderNotFound):
            await permissions_service.require(engine, principal=bob, resource=top, role=Role.VIEWER)


class TestReadableFilter:
    async def test_direct_and_inherited_resources_only(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        shared = await new_folder(engine, owner=alice)
        private = await new_folder(engine, owner=alice)
        product = await new_product(engine, owner=alice)
        inside, _ = await new_device(engine, owner=alice, product=product, folder=shared)
        direct, _ = await new_device(engine, owner=alice, product=product, folder=private)
        hidden, _ = await new_device(engine, owner=alice, product=product, folder=private)
        await grant(engine, principal=bob, resource=shared, role="viewer")
        await grant(engine, principal=bob, resource=direct, role="viewer")
        query = await permissions_service.readable_filter(engine, principal=bob, model=Device)
        found = {d.id for d in await db.find_many(engine, Device, query)}
        assert found == {inside.id, direct.id}
        assert hidden.id not in found

    async def test_stranger_and_device_filters(self, engine: AIOEngine) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        device, _ = await new_device(engine, owner=alice, product=product)
        stranger = await permissions_service.readable_filter(
            engine, principal=user_principal(), model=Device
        )
        assert await db.find_many(engine, Device, stranger) == []
        own = await permissions_service.readable_filter(
            engine, principal=device_principal(device), model=Device
        )
        assert [d.id for d in await db.find_many(engine, Device, own)] == [device.id]
        folders = await permissions_service.readable_filter(
            engine, principal=device_principal(device), model=Folder
        )
        assert await db.find_many(engine, Folder, folders) == []
