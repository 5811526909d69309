"""Authorised reads against the store itself: `GET /readings/latest` with a session token of a
non-admin user whose right comes from a grant on a parent folder, against a bare FastAPI
endpoint returning the same document from the same store without auth.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server, the API and the bare
app on 127.0.0.1, then runs alternating rounds (API then bare, bare then API, ...) of 2,000
requests at concurrency 32 in one run, sent by the light keep-alive client of `_loadgen.py`
(the same for both sides, so neither is capped by the client's CPU). Prints each round, both
p99 latencies, both servers' CPU per request, both rates (issue 15's read target is a rate),
and last the median ratio of the API's rate to the bare rate (target >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import _loadgen
import httpx
from _stack import Stack, local_stack
from bson import ObjectId

from app.auth import tokens
from app.auth.models import Session, User
from app.catalog.permissions.models import Grant, ResourceType, Role
from app.core.config import Settings
from app.core.models import utcnow

CONCURRENCY = 32
ISSUE_15_TARGET = 570  # twice the 250-285 requests/s of `GET .../readings/latest` in issue 15
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


@dataclass
class Side:
    """One server under test: its URL, the prepared request, and each round's measurement."""

    url: str
    request: bytes
    pid: int
    rounds: list[_loadgen.Measured] = field(default_factory=list)

    def measure(self, requests: int) -> _loadgen.Measured:
        """One round of `requests` GETs at concurrency 32 (all must be 200), recorded."""
        measured = asyncio.run(
            _loadgen.measure(
                self.url,
                [self.request] * requests,
                pid=self.pid,
                concurrency=CONCURRENCY,
                expect=200,
            )
        )
        self.rounds.append(measured)
        return measured

    def median(self, figure: Callable[[_loadgen.Measured], float]) -> float:
        """The median of a figure over the rounds."""
        return statistics.median(figure(m) for m in self.rounds)

    def p99_ms(self) -> float:
        """The 99th percentile latency over every round's requests, in milliseconds."""
        pooled = _loadgen.Result(0, 0.0, [s for m in self.rounds for s in m.result.latencies_s])
        return pooled.percentile(0.99) * 1000


def rate(measured: _loadgen.Measured) -> float:
    """Requests per second of a round."""
    return measured.result.rate


def run(api: Side, bare: Side, *, rounds: int, requests: int) -> None:
    """Alternate rounds on the API and the bare endpoint (each goes first in every other
    round); print each round, then the figures, the ratio last."""
    for side in (api, bare):  # warm both: caches, connections, the interpreter
        side.measure(requests // 4)
        side.rounds.clear()
    ratios: list[float] = []
    for r in range(rounds):
        order = (api, bare) if r % 2 == 0 else (bare, api)
        for side in order:
            side.measure(requests)
        a, b = api.rounds[-1], bare.rounds[-1]
        ratios.append(rate(a) / rate(b))
        print(
            f"round {r + 1}: api {rate(a):7.0f} req/s, bare {rate(b):7.0f} req/s, "
            f"ratio {ratios[-1]:.2f}; cpu/req api {a.cpu_ms_per_request:.2f} ms, "
            f"bare {b.cpu_ms_per_request:.2f} ms"
        )
    print(
        f"p99 api {api.p99_ms():.1f} ms, bare {bare.p99_ms():.1f} ms "
        f"(all {rounds} rounds' requests, concurrency {CONCURRENCY})"
    )
    print(
        f"CPU per request api {api.median(lambda m: m.cpu_ms_per_request):.2f} ms, bare "
        f"{bare.median(lambda m: m.cpu_ms_per_request):.2f} ms (from /proc, median of {rounds} "
        "rounds)"
    )
    print(
        f"latest rate  api {api.median(rate):.0f} req/s, bare {bare.median(rate):.0f} req/s "
        f"(median of {rounds} rounds; issue 15: api >= {ISSUE_15_TARGET} req/s)"
    )
    print(
        f"read ratio {statistics.median(ratios):.2f} (median of {rounds} rounds, "
        f"session-token viewer by inherited grant vs bare endpoint; target >= 0.8)"
    )


def main() -> None:
    """Start the stack, seed, run alternating rounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
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
        path = f"/api/v1/devices/{device.id}/readings/latest"
        auth = {"Authorization": f"Bearer {token}"}
        api_body = httpx.get(api + path, headers=auth).json()
        bare_body = httpx.get(bare + path).json()
        assert api_body == bare_body, (api_body, bare_body)
        run(
            Side(api, _loadgen.request_bytes("GET", api, path, b"", auth), stack.pids[api]),
            Side(bare, _loadgen.request_bytes("GET", bare, path, b"", {}), stack.pids[bare]),
            rounds=args.rounds,
            requests=args.requests,
        )


if __name__ == "__main__":
    main()
