"""The access matrix: every catalog endpoint × every kind of caller, one table.

Each case builds a fresh world owned by Alice — folder F holding product P (used by device
D), an unused product P2 and device D — grants the caller its role on F only (so every
product and device access below is inherited), then calls one endpoint. A new endpoint
joins by adding one row to ENDPOINTS.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.auth.principal import Principal, PrincipalKind
from app.catalog.models import Device, Folder, Product
from app.core import db
from app.core.services import services_of
from tests.fixtures.catalog import grant, new_device, new_folder, new_product, unique
from tests.fixtures.identities import MakeUser, TestUser

ROLES = ("none", "viewer", "editor", "owner", "admin", "other_device", "own_device", "master")


@dataclass
class World:
    """What one case works on; `ids` fill the path templates."""

    folder: Folder
    product: Product
    spare_product: Product
    device: Device
    device_key: str
    bystander_uid: str

    @property
    def ids(self) -> dict[str, str]:
        return {
            "F": str(self.folder.id),
            "P": str(self.product.id),
            "P2": str(self.spare_product.id),
            "D": str(self.device.id),
            "U": self.bystander_uid,
        }


Body = Callable[[World], dict[str, Any]] | None
LISTED, HIDDEN = "listed", "hidden"
# Expected outcome per role, in ROLES order: a status code, or LISTED / HIDDEN for list
# endpoints (200, and whether the world's resource is among the items).
Expect = tuple[int | str, ...]


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    expect: Expect
    body: Body = None
    listed_key: str = ""


SEE = (404, 200, 200, 200, 200, 404, 404, 200)
EDIT = (404, 403, 200, 200, 200, 404, 404, 200)
OWN = (404, 403, 403, 200, 200, 404, 404, 200)
OWN_204 = (404, 403, 403, 204, 204, 404, 404, 204)
CREATE_IN_F = (404, 403, 201, 201, 201, 403, 403, 201)
LIST_F = (HIDDEN, LISTED, LISTED, LISTED, LISTED, HIDDEN, HIDDEN, LISTED)
LIST_D = (HIDDEN, LISTED, LISTED, LISTED, LISTED, HIDDEN, LISTED, LISTED)
SEE_D = (404, 200, 200, 200, 200, 404, 200, 200)
EDIT_D = (404, 403, 200, 200, 200, 404, 403, 200)
ROTATE_D = (404, 403, 201, 201, 201, 404, 403, 201)
OWN_D = (404, 403, 403, 200, 200, 404, 403, 200)
OWN_D_204 = (404, 403, 403, 204, 204, 404, 403, 204)


def _share(w: World) -> dict[str, Any]:
    return {"role": "viewer"}


def _permission_rows(collection: str, ref: str, *, device: bool = False) -> list[Endpoint]:
    own, own_204 = (OWN_D, OWN_D_204) if device else (OWN, OWN_204)
    base = f"/{collection}/{{{ref}}}/permissions"
    return [
        Endpoint(f"list {collection} permissions", "GET", base, own),
        Endpoint(f"share {collection}", "PUT", base + "/{U}", own, _share),
        Endpoint(f"unshare {collection}", "DELETE", base + "/{U}", own_204),
    ]


ENDPOINTS: list[Endpoint] = [
    # --- folders
    Endpoint(
        "create top-level folder",
        "POST",
        "/folders",
        (201, 201, 201, 201, 201, 403, 403, 201),
        lambda w: {"name": unique("top")},
    ),
    Endpoint(
        "create sub-folder",
        "POST",
        "/folders",
        CREATE_IN_F,
        lambda w: {"name": unique("sub"), "parent_id": w.ids["F"]},
    ),
    Endpoint("list folders", "GET", "/folders", LIST_F, listed_key="F"),
    Endpoint("get folder", "GET", "/folders/{F}", SEE),
    Endpoint("rename folder", "PATCH", "/folders/{F}", EDIT, lambda w: {"name": unique("r")}),
    Endpoint("delete folder", "DELETE", "/folders/{F}?recursive=true", OWN_204),
    *_permission_rows("folders", "F"),
    # --- products
    Endpoint(
        "create product",
        "POST",
        "/products",
        CREATE_IN_F,
        lambda w: {"name": unique("p"), "sku": unique("SKU"), "folder_id": w.ids["F"]},
    ),
    Endpoint("list products", "GET", "/products", LIST_F, listed_key="P"),
    Endpoint("get product", "GET", "/products/{P}", SEE),
    Endpoint("update product", "PATCH", "/products/{P}", EDIT, lambda w: {"name": unique("p")}),
    Endpoint("delete product", "DELETE", "/products/{P2}", OWN_204),
    *_permission_rows("products", "P"),
    # --- devices
    Endpoint(
        "create device",
        "POST",
        "/devices",
        CREATE_IN_F,
        lambda w: {
            "name": unique("d"),
            "serial": unique("SN"),
            "product_id": w.ids["P"],
            "folder_id": w.ids["F"],
        },
    ),
    Endpoint("list devices", "GET", "/devices", LIST_D, listed_key="D"),
    Endpoint("get device", "GET", "/devices/{D}", SEE_D),
    Endpoint("update device", "PATCH", "/devices/{D}", EDIT_D, lambda w: {"name": unique("d")}),
    Endpoint("delete device", "DELETE", "/devices/{D}", OWN_D_204),
    Endpoint("rotate device key", "POST", "/devices/{D}/keys", ROTATE_D),
    Endpoint("device status", "GET", "/devices/{D}/status", SEE_D),
    *_permission_rows("devices", "D", device=True),
]

CASES = [
    pytest.param(endpoint, role, expected, id=f"{endpoint.name} | {role}")
    for endpoint in ENDPOINTS
    for role, expected in zip(ROLES, endpoint.expect, strict=True)
]

_people: dict[str, TestUser] = {}


async def _person(name: str, make_user: MakeUser, client: httpx.AsyncClient, **kw: Any) -> TestUser:
    """One emulator account per name for the whole module, signed in once."""
    if name not in _people:
        user = await make_user(**kw)
        resp = await client.get("/api/v1/auth/me", headers=user.headers)
        assert resp.status_code == 200, resp.text
        _people[name] = user
    return _people[name]


def _principal(user: TestUser) -> Principal:
    return Principal(kind=PrincipalKind.USER, uid=user.uid, email=user.email)


async def _world(app: FastAPI, alice: TestUser, bystander: TestUser) -> World:
    engine = services_of(app).engine
    owner = _principal(alice)
    folder = await new_folder(engine, owner=owner)
    product = await new_product(engine, owner=owner, folder=folder)
    spare = await new_product(engine, owner=owner, folder=folder)
    device, key = await new_device(engine, owner=owner, product=product, folder=folder)
    world = World(folder, product, spare, device, key, bystander.uid)
    for resource in (folder, product, device):
        await grant(engine, principal=_principal(bystander), resource=resource, role="viewer")
    return world


async def _headers(
    role: str,
    world: World,
    *,
    app: FastAPI,
    make_user: MakeUser,
    client: httpx.AsyncClient,
    master_headers: dict[str, str],
) -> dict[str, str]:
    engine = services_of(app).engine
    if role == "master":
        return master_headers
    if role == "own_device":
        return {"X-Device-Key": world.device_key}
    if role == "other_device":
        outsider = _principal(await _person("outsider", make_user, client))
        product = await new_product(engine, owner=outsider)
        _, key = await new_device(engine, owner=outsider, product=product)
        return {"X-Device-Key": key}
    if role == "admin":
        return (await _person("admin", make_user, client, admin=True)).headers
    person = await _person(role, make_user, client)
    if role != "none":
        await grant(engine, principal=_principal(person), resource=world.folder, role=role)
    return person.headers


@pytest.mark.parametrize(("endpoint", "role", "expected"), CASES)
async def test_access_matrix(
    endpoint: Endpoint,
    role: str,
    expected: int | str,
    app: FastAPI,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    master_headers: dict[str, str],
) -> None:
    alice = await _person("alice", make_user, client)
    bystander = await _person("bystander", make_user, client)
    world = await _world(app, alice, bystander)
    headers = await _headers(
        role, world, app=app, make_user=make_user, client=client, master_headers=master_headers
    )
    url = "/api/v1" + endpoint.path.format(**world.ids)
    body = endpoint.body(world) if endpoint.body else None
    if endpoint.listed_key:
        # Start the page just before the resource: if visible, it is the first item.
        before = format(int(world.ids[endpoint.listed_key], 16) - 1, "024x")
        url += f"?limit=5&cursor={before}"
    resp = await client.request(endpoint.method, url, json=body, headers=headers)
    if isinstance(expected, int):
        assert resp.status_code == expected, resp.text
        if expected >= 400:
            assert resp.headers["content-type"].startswith("application/problem+json")
        return
    assert resp.status_code == 200, resp.text
    ids = {item["id"] for item in resp.json()["items"]}
    assert (world.ids[endpoint.listed_key] in ids) is (expected == LISTED)


async def test_rejected_writes_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """A 403 or 404 from the matrix leaves the stored documents as they were."""
    alice = await _person("alice", make_user, client)
    bystander = await _person("bystander", make_user, client)
    world = await _world(app, alice, bystander)
    engine = services_of(app).engine
    before = [
        await db.collection(engine, model).find_one({"_id": oid})
        for model, oid in (
            (Folder, world.folder.id),
            (Product, world.product.id),
            (Device, world.device.id),
        )
    ]
    stranger = await make_user()
    viewer = await make_user()
    await client.get("/api/v1/auth/me", headers=viewer.headers)
    await grant(engine, principal=_principal(viewer), resource=world.folder, role="viewer")
    for user in (stranger, viewer):
        for method, path, body in (
            ("PATCH", "/folders/{F}", {"name": "x" + uuid.uuid4().hex}),
            ("DELETE", "/folders/{F}?recursive=true", None),
            ("PATCH", "/products/{P}", {"name": "changed"}),
            ("PATCH", "/devices/{D}", {"name": "changed"}),
            ("DELETE", "/devices/{D}", None),
            ("POST", "/devices/{D}/keys", None),
        ):
            url = "/api/v1" + path.format(**world.ids)
            resp = await client.request(method, url, json=body, headers=user.headers)
            assert resp.status_code in (403, 404), resp.text
    after = [
        await db.collection(engine, model).find_one({"_id": oid})
        for model, oid in (
            (Folder, world.folder.id),
            (Product, world.product.id),
            (Device, world.device.id),
        )
    ]
    assert after == before
