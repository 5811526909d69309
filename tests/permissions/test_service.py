"""One function decides access: roles, inheritance down the tree, admins, devices."""

from __future__ import annotations

import pytest
from odmantic import AIOEngine

from app.core import db
from app.devices.exceptions import DeviceNotFound
from app.devices.models import Device
from app.folders.exceptions import FolderNotFound
from app.folders.models import Folder
from app.permissions import service as permissions_service
from app.permissions.exceptions import NotAllowed
from app.permissions.models import ResourceType, Role
from app.products.exceptions import ProductNotFound
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
        assert await permissions_service.require(engine, alice, folder, Role.OWNER) is Role.OWNER

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
                await permissions_service.require(engine, eve, resource, Role.VIEWER)

    async def test_viewer_sees_but_cannot_edit(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        folder = await new_folder(engine, owner=alice)
        await grant(engine, principal=bob, resource=folder, role="viewer")
        assert await permissions_service.require(engine, bob, folder, Role.VIEWER) is Role.VIEWER
        with pytest.raises(NotAllowed):
            await permissions_service.require(engine, bob, folder, Role.EDITOR)

    async def test_highest_of_direct_and_inherited_role_wins(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        folder = await new_folder(engine, owner=alice)
        product = await new_product(engine, owner=alice, folder=folder)
        await grant(engine, principal=bob, resource=folder, role="editor")
        await grant(engine, principal=bob, resource=product, role="viewer")
        assert await permissions_service.role_of(engine, bob, product) is Role.EDITOR

    @pytest.mark.parametrize("who", ["admin", "master"])
    async def test_admin_and_master_own_everything(self, engine: AIOEngine, who: str) -> None:
        folder = await new_folder(engine, owner=user_principal())
        principal = MASTER if who == "master" else user_principal(admin=True)
        assert await permissions_service.require(engine, principal, folder, Role.OWNER)

    async def test_device_reads_only_itself(self, engine: AIOEngine) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        mine, _ = await new_device(engine, owner=alice, product=product)
        other, _ = await new_device(engine, owner=alice, product=product)
        me = device_principal(mine)
        assert await permissions_service.require(engine, me, mine, Role.VIEWER) is Role.VIEWER
        with pytest.raises(NotAllowed):
            await permissions_service.require(engine, me, mine, Role.EDITOR)
        with pytest.raises(DeviceNotFound):
            await permissions_service.require(engine, me, other, Role.VIEWER)
        with pytest.raises(ProductNotFound):
            await permissions_service.require(engine, me, product, Role.VIEWER)


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
        assert await permissions_service.require(engine, bob, device, Role.EDITOR)
        await revoke(engine, principal=bob, resource=top)
        with pytest.raises(DeviceNotFound):
            await permissions_service.require(engine, bob, device, Role.VIEWER)

    async def test_grant_on_child_does_not_reach_parent(self, engine: AIOEngine) -> None:
        alice, bob = user_principal(), user_principal()
        top = await new_folder(engine, owner=alice)
        child = await new_folder(engine, owner=alice, parent=top)
        await grant(engine, principal=bob, resource=child, role="owner")
        with pytest.raises(FolderNotFound):
            await permissions_service.require(engine, bob, top, Role.VIEWER)


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
        query = await permissions_service.readable_filter(engine, bob, ResourceType.DEVICE)
        found = {d.id for d in await db.find_many(engine, Device, query)}
        assert found == {inside.id, direct.id}
        assert hidden.id not in found

    async def test_stranger_and_device_filters(self, engine: AIOEngine) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        device, _ = await new_device(engine, owner=alice, product=product)
        stranger = await permissions_service.readable_filter(
            engine, user_principal(), ResourceType.DEVICE
        )
        assert await db.find_many(engine, Device, stranger) == []
        own = await permissions_service.readable_filter(
            engine, device_principal(device), ResourceType.DEVICE
        )
        assert [d.id for d in await db.find_many(engine, Device, own)] == [device.id]
        folders = await permissions_service.readable_filter(
            engine, device_principal(device), ResourceType.FOLDER
        )
        assert await db.find_many(engine, Folder, folders) == []
