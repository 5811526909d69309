"""Authorised reads against the store itself: `GET /readings/latest` with a session token of a
non-admin user whose right comes from a grant on a parent folder, against a bare FastAPI
endpoint returning the same document from the same store without auth.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server, the API and the bare
app on 127.0.0.1, then runs alternating rounds (API, bare, API, bare ...) at concurrency 32
in one run. Prints each round, then the median ratio of the API's rate to the bare rate
(target >= 0.8) and both p99 latencies, last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import timedelta

import httpx
from _stack import Stack, local_stack
from bson import ObjectId

from app.auth import tokens
from app.auth.models import Session, User
from app.catalog.permissions.models import Grant, ResourceType, Role
from app.core.config import Settings
from app.core.models import utcnow

CONCURRENCY = 32
JWT_SECRET = "bench-jwt-secret-" + "y" * 40


def seed_viewer(stack: Stack, device_id: str) -> str:
    """Put the device in folder child (below parent), give a new user viewer on parent, and
    return an API access token of a session of that user."""
    now = utcnow()
    uid = f"bench-{uuid.uuid4().hex[:12]}"
    parent, child = ObjectId(), ObjectId()
    with stack.mongo() as client:
        db = client[stack.db_name]
        for fid, ancestors, parent_id in ((parent, [], None), (child, [str(parent)], parent)):
            db["folders"].insert_one(
                {
                    "_id": fid,
                    "name": f"f-{fid}",
                    "name_key": f"f-{fid}",
                    "parent_id": None if parent_id is None else str(parent_id),
                    "ancestors": ancestors,
                    "scope": "user:owner" if parent_id is None else str(parent_id),
                    "created_by": "owner",
                    "created_at": now,
                    "updated_at": now,
                }
            )
        path = [str(parent), str(child)]
        db["devices"].update_one(
            {"_id": ObjectId(device_id)}, {"$set": {"folder_id": str(child), "folder_path": path}}
        )
        user = User(uid=uid, email=f"{uid}@example.com", email_verified=True)
        db["users"].insert_one(user.model_dump_doc())
        grant = Grant(
            resource_type=ResourceType.FOLDER,
            resource_id=str(parent),
            user_uid=uid,
            role=Role.VIEWER,
        )
        db["grants"].insert_one(grant.model_dump_doc())
        settings = Settings(_env_file=None, environment="development", jwt_secret=JWT_SECRET)  # type: ignore[call-arg]
        family = tokens.new_family_id()
        refresh = tokens.issue(
            settings, typ=tokens.REFRESH, uid=uid, family_id=family, session_started_at=now
        )
        session = Session(
            jti=refresh.jti, family_id=family, uid=uid, expires_at=now + timedelta(days=1)
        )
        db["sessions"].insert_one(session.model_dump_doc())
        access = tokens.issue(
            settings, typ=tokens.ACCESS, uid=uid, family_id=family, session_started_at=now
        )
    return access.token


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection: a GET costs the client far less CPU
    than a general-purpose client, so the servers, not the client, set the pace."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        """Connect to `http://host:port`."""
        host, _, port = base_url.removeprefix("http://").partition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def get(self, request: bytes) -> tuple[int, bytes]:
        """Send a ready GET request; the status and body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


def request_bytes(path: str, headers: dict[str, str]) -> bytes:
    """A GET request for `path` with `headers`, ready to send."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def one_round(
    base_url: str, path: str, headers: dict[str, str], requests: int
) -> tuple[float, list[float]]:
    """Requests per second and each request's latency, at concurrency 32 (all must be 200).

    Each round opens its own connections: the server closes idle keep-alive connections
    (uvicorn after 5 s) while the other side's round runs.
    """
    latencies: list[float] = []
    remaining = requests
    request = request_bytes(path, headers)
    connections = [await Connection.open(base_url) for _ in range(CONCURRENCY)]

    async def worker(conn: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status, body = await conn.get(request)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{status}: {body[:200]!r}")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for conn in connections:
            conn.close()
    return requests / (time.perf_counter() - started), latencies


def p99(samples: list[float]) -> float:
    """The 99th percentile, in milliseconds."""
    return statistics.quantiles(samples, n=100)[98] * 1000


async def run(
    api: str, bare: str, device_id: str, token: str, *, rounds: int, requests: int
) -> None:
    """Alternate rounds on the API and the bare endpoint; print the figures, ratio last."""
    path = f"/api/v1/devices/{device_id}/readings/latest"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        api_body = (await client.get(api + path, headers=auth)).json()
        bare_body = (await client.get(bare + path)).json()
    assert api_body["metrics"].keys() == bare_body["metrics"].keys(), (api_body, bare_body)
    await one_round(api, path, auth, requests // 4)  # warm both
    await one_round(bare, path, {}, requests // 4)
    ratios: list[float] = []
    api_lat: list[float] = []
    bare_lat: list[float] = []
    for r in range(rounds):
        api_rate, lat_a = await one_round(api, path, auth, requests)
        bare_rate, lat_b = await one_round(bare, path, {}, requests)
        api_lat += lat_a
        bare_lat += lat_b
        ratios.append(api_rate / bare_rate)
        print(
            f"round {r + 1}: api {api_rate:7.0f} req/s, bare {bare_rate:7.0f} req/s, "
            f"ratio {api_rate / bare_rate:.2f}"
        )
    print(f"p99 api {p99(api_lat):.1f} ms, bare {p99(bare_lat):.1f} ms")
    print(
        f"read ratio {statistics.median(ratios):.2f} (median of {rounds} rounds, "
        f"session-token viewer by inherited grant vs bare endpoint; target >= 0.8)"
    )


def main() -> None:
    """Start the stack, seed, run alternating rounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    with local_stack() as stack:
        [device] = stack.seed(1)
        token = seed_viewer(stack, device.id)
        api = stack.start_api(JWT_SECRET=JWT_SECRET, RATE_LIMIT_USER_LIMIT="100000000")
        bare = stack.start_api("scripts._bare_read_app:create_bare_read_app")
        httpx.post(
            f"{api}/api/v1/devices/{device.id}/readings",
            content=json.dumps({"metrics": {"temperature": 21.5, "humidity": 45}}),
            headers={"X-Device-Key": device.key, "Content-Type": "application/json"},
        ).raise_for_status()
        asyncio.run(run(api, bare, device.id, token, rounds=args.rounds, requests=args.requests))


if __name__ == "__main__":
    main()
