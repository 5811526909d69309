"""History and export cost the same deep in a long range as at its start.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server and the API on 127.0.0.1;
fills one device's history with `--total` readings (one a minute, `insert_many` batches,
stopping early if `--max-fill-s` runs out, and saying so), then in alternating rounds
times `GET .../readings` for the first page of the whole range and for a page deep in it (a
cursor near its oldest end), and `GET .../readings/export` of the newest and of the oldest
day. Prints the medians and the ratios last (targets: deep page <= 1.5x the first page; the
oldest day's export <= 1.5x the newest's).

The embedded server reads a device's whole history for every query (it has no time-series
buckets), so each page costs about 1.5 s per 20,000 readings there whatever its depth; the
default `--total` is sized for it. Against a real MongoDB (`MONGODB_URL=...`) use
`--total 1000000`.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
from _stack import MASTER_TOKEN, Device, Stack, local_stack
from bson import ObjectId

CHUNK = 10_000
STEP = timedelta(minutes=1)


def fill(stack: Stack, device: Device, product_id: str, *, total: int, deadline: float) -> int:
    """Insert `total` readings one a minute, ending an hour ago; the count stored."""
    meta = {"device_id": device.id, "product_id": product_id}
    done = 0
    with stack.mongo() as client:
        coll = client[stack.db_name]["readings"]
        while done < total and time.monotonic() < deadline:
            n = min(CHUNK, total - done)
            docs = [
                {
                    "_id": ObjectId(),
                    "ts": ORIGIN + (done + i) * STEP,
                    "meta": meta,
                    "m": {"temperature": 20.0 + (i % 100) / 10},
                }
                for i in range(n)
            ]
            coll.insert_many(docs, ordered=False)
            done += n
    return done


ORIGIN = datetime.now(UTC).replace(microsecond=0) - timedelta(days=800)  # 1M minutes fit


def cursor_at(ts: datetime) -> str:
    """A history cursor (newest first) just after the reading at `ts`, as the API makes it
    after a page whose last time no other reading shares."""
    raw = json.dumps(
        {"t": int(ts.timestamp() * 1000), "i": "f" * 24, "d": True, "w": 1},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def timed(client: httpx.Client, path: str, params: dict[str, str]) -> float:
    """Seconds to read the whole answer."""
    started = time.perf_counter()
    resp = client.get(path, params=params)
    resp.raise_for_status()
    _ = resp.content
    return time.perf_counter() - started


def main() -> None:
    """Fill, then time first and deep pages and exports in alternating rounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=20_000)
    parser.add_argument("--max-fill-s", type=float, default=240.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    with local_stack() as stack:
        [device] = stack.seed(1)
        with stack.mongo() as client:
            product_id = client[stack.db_name]["devices"].find_one()["product_id"]
        url = stack.start_api(
            READINGS_HISTORY_MAX_SPAN_DAYS="3660",
            READINGS_EXPORT_MAX_SPAN_DAYS="3660",
            READINGS_RETENTION_DAYS="3660",
        )
        started = time.monotonic()
        stored = fill(
            stack, device, product_id, total=args.total, deadline=started + args.max_fill_s
        )
        print(f"filled {stored:,} readings in {time.monotonic() - started:.0f} s")
        start, end = ORIGIN, ORIGIN + stored * STEP
        whole = {"start": start.isoformat(), "end": end.isoformat(), "limit": str(args.limit)}
        deep = {**whole, "cursor": cursor_at(ORIGIN + 2 * args.limit * STEP)}
        oldest_day = {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}
        newest_day = {"start": (end - timedelta(days=1)).isoformat(), "end": end.isoformat()}
        history = f"/api/v1/devices/{device.id}/readings"
        export = f"/api/v1/devices/{device.id}/readings/export"
        samples: dict[str, list[float]] = {"first": [], "deep": [], "newest": [], "oldest": []}
        headers = {"Authorization": f"Bearer {MASTER_TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            answer = client.get(history, params=deep)
            assert answer.status_code == 200, answer.text
            deep_page = answer.json()["items"]
            assert deep_page, "the deep cursor found nothing"
            for _ in range(2):  # warm-up
                timed(client, history, whole)
                timed(client, history, deep)
            for i in range(args.rounds):
                pair = [("first", whole), ("deep", deep)]
                for name, params in pair if i % 2 == 0 else pair[::-1]:
                    samples[name].append(timed(client, history, params))
            for i in range(max(3, args.rounds // 3)):
                pair = [("newest", newest_day), ("oldest", oldest_day)]
                for name, params in pair if i % 2 == 0 else pair[::-1]:
                    samples[name].append(timed(client, export, params))
    med = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in med.items():
        print(f"{name:>7}: {value * 1000:9.1f} ms (median of {len(samples[name])})")
    note = "" if stored >= args.total else f" (fill stopped at {stored:,} by --max-fill-s)"
    print(f"export oldest/newest day ratio {med['oldest'] / med['newest']:.2f} (target <= 1.5)")
    print(
        f"history deep/first page ratio {med['deep'] / med['first']:.2f} at {stored:,} "
        f"readings{note} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
