"""Fleet statistics cost at most 2x one device-listing page, with 10,000 devices.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server and the API on
127.0.0.1; seeds 10,000 devices of one product (a third seen recently, a tenth of those in
error), then times `GET /stats` against `GET /devices` (one page of the default size) as the
master token, alternating the two. The per-scope device counters are built first by a
recount, as the worker's beat does (the seeding bypasses the API). Prints both medians and
the ratio last (target <= 2.0).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

import httpx
from _stack import MASTER_TOKEN, local_stack
from bson import ObjectId
from redis import Redis

from app.catalog.presence import document
from app.core.models import utcnow
from app.stats import devices as stats_devices


def timed(client: httpx.Client, path: str) -> float:
    """Seconds one GET takes (it must answer 200)."""
    started = time.perf_counter()
    resp = client.get(path)
    elapsed = time.perf_counter() - started
    resp.raise_for_status()
    return elapsed


def main() -> None:
    """Seed, warm up, time both and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with local_stack() as stack:
        devices = stack.seed(args.devices)
        now = utcnow()
        with stack.mongo() as client:
            coll = client[stack.db_name]["devices"]
            for i, device in enumerate(devices[: len(devices) // 3]):
                presence = document(
                    now=now - timedelta(seconds=i % 200),
                    reported_status="error" if i % 10 == 0 else "ok",
                    detail={},
                )
                coll.update_one({"_id": ObjectId(device.id)}, {"$set": {"presence": presence}})
            # The seeding bypassed the API: build the per-scope counters as the beat's
            # stats.recount_devices does (the API counts with queries until then).
            with Redis.from_url(stack.redis_url) as redis:
                started = time.perf_counter()
                recount = stats_devices.recount(client[stack.db_name], redis)
                took = time.perf_counter() - started
            print(f"recount of {recount['devices']} devices: {took:.2f} s")
        headers = {"Authorization": f"Bearer {MASTER_TOKEN}"}
        figures = {}
        for label, cache_s in (("uncached (STATS_CACHE_S=0)", "0"), ("STATS_CACHE_S=5", "5")):
            url = stack.start_api(STATS_CACHE_S=cache_s)
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                stats = client.get("/api/v1/stats").json()
                assert stats["devices_total"] == args.devices, stats
                for _ in range(3):
                    timed(client, "/api/v1/stats")
                    timed(client, "/api/v1/devices")
                stats_s, page_s = [], []
                for _ in range(args.requests):
                    stats_s.append(timed(client, "/api/v1/stats"))
                    page_s.append(timed(client, "/api/v1/devices"))
            stack.stop_last()
            stats_ms = statistics.median(stats_s) * 1000
            page_ms = statistics.median(page_s) * 1000
            figures[label] = stats_ms / page_ms
            print(f"{label}: GET /devices (page of 50) median {page_ms:.1f} ms, ", end="")
            print(f"GET /stats ({args.devices} devices) median {stats_ms:.1f} ms")
        print(f"stats: {stats['devices_total']} devices, {stats['devices_by_status']}")
        for label, ratio in figures.items():
            print(f"stats / device page, {label} = {ratio:.2f}x (target <= 2.0)")


if __name__ == "__main__":
    main()
