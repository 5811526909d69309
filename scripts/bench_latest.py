"""Latest values cost the same with 10 thousand and 1 million readings stored.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server and the API on
127.0.0.1; stores 10,000 readings for one device, times `GET /readings/latest`, then fills the
same device's history up to 1,000,000 readings with `insert_many` batches (stopping early if
`--max-fill-s` runs out, and saying so) and times it again. Prints the ratio last (target
<= 1.2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
from _stack import MASTER_TOKEN, Device, Stack, local_stack

CHUNK = 10_000


def fill(
    stack: Stack, device: Device, product_id: str, *, start: int, stop: int, deadline: float
) -> int:
    """Insert readings number `start`..`stop` (one a second, ending an hour ago); the count."""
    meta = {"device_id": device.id, "product_id": product_id}
    origin = datetime.now(UTC) - timedelta(hours=1) - timedelta(seconds=1_000_000)
    done = start
    with stack.mongo() as client:
        coll = client[stack.db_name]["readings"]
        while done < stop and time.monotonic() < deadline:
            n = min(CHUNK, stop - done)
            coll.insert_many(
                [
                    {
                        "ts": origin + timedelta(seconds=done + i),
                        "meta": meta,
                        "m": {"temperature": 20.0 + (i % 100) / 10, "humidity": 50.0},
                    }
                    for i in range(n)
                ],
                ordered=False,
            )
            done += n
    return done


def time_latest(url: str, device: Device, requests: int) -> float:
    """Median seconds of GET /readings/latest (sequential, after a warm-up)."""
    headers = {"Authorization": f"Bearer {MASTER_TOKEN}"}
    path = f"/api/v1/devices/{device.id}/readings/latest"
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(20):
            client.get(path).raise_for_status()
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            resp = client.get(path)
            samples.append(time.perf_counter() - started)
            resp.raise_for_status()
        assert resp.json()["metrics"]["temperature"]["value"] == 21.5
    return statistics.median(samples)


def main() -> None:
    """Measure at 10k, fill to 1M, measure again, print the ratio last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--max-fill-s", type=float, default=240.0)
    args = parser.parse_args()
    with local_stack() as stack:
        [device] = stack.seed(1)
        with stack.mongo() as client:
            product_id = client[stack.db_name]["devices"].find_one()["product_id"]
        url = stack.start_api()
        deadline = time.monotonic() + args.max_fill_s
        stored = fill(stack, device, product_id, start=0, stop=10_000, deadline=deadline)
        # One reading through the API so that device_latest holds the newest values.
        httpx.post(
            f"{url}/api/v1/devices/{device.id}/readings",
            content=json.dumps({"metrics": {"temperature": 21.5, "humidity": 45}}),
            headers={"X-Device-Key": device.key, "Content-Type": "application/json"},
        ).raise_for_status()
        small = time_latest(url, device, args.requests)
        print(f"{stored + 1:>9,} readings: latest in {small * 1000:.2f} ms (median)")
        started = time.monotonic()
        stored = fill(stack, device, product_id, start=stored, stop=args.total, deadline=deadline)
        print(f"filled to {stored + 1:,} readings in {time.monotonic() - started:.0f} s")
        large = time_latest(url, device, args.requests)
        print(f"{stored + 1:>9,} readings: latest in {large * 1000:.2f} ms (median)")
    note = "" if stored >= args.total else f" (fill stopped at {stored + 1:,} by --max-fill-s)"
    print(
        f"latest ratio {large / small:.2f} at {stored + 1:,} vs 10,001 readings{note}"
        " (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
