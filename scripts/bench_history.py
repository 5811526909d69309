"""History and export cost the same deep in a long range as at its start.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server and the API on 127.0.0.1;
fills one device's history with up to 1,000,000 readings (one a second, `insert_many`
batches, stopping early if `--max-fill-s` runs out, and saying so), then in alternating rounds
times `GET .../readings` for the first page of the whole range and for a page deep in it (a
cursor near its oldest end), and `GET .../readings/export` of the newest and of the oldest
day. Prints the medians and the ratios last (targets: deep page <= 1.5x the first page; the
oldest day's export <= 1.5x the newest's).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
from _stack import MASTER_TOKEN, local_stack
from bench_latest import fill


def cursor_at(ts: datetime) -> str:
    """A history cursor (newest first) positioned just after the reading at `ts`."""
    raw = json.dumps(
        {"t": int(ts.timestamp() * 1000), "i": "f" * 24, "d": True}, separators=(",", ":")
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
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--max-fill-s", type=float, default=240.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    with local_stack() as stack:
        [device] = stack.seed(1)
        with stack.mongo() as client:
            product_id = client[stack.db_name]["devices"].find_one()["product_id"]
        url = stack.start_api(
            READINGS_HISTORY_MAX_SPAN_DAYS="366", READINGS_EXPORT_MAX_SPAN_DAYS="366"
        )
        started = time.monotonic()
        stored = fill(
            stack, device, product_id, start=0, stop=args.total, deadline=started + args.max_fill_s
        )
        print(f"filled {stored:,} readings in {time.monotonic() - started:.0f} s")
        # `fill` stores reading i at origin + i seconds, ending an hour ago.
        origin = datetime.now(UTC) - timedelta(hours=1) - timedelta(seconds=1_000_000)
        start, end = origin, origin + timedelta(seconds=stored)
        whole = {"start": start.isoformat(), "end": end.isoformat(), "limit": str(args.limit)}
        deep = {**whole, "cursor": cursor_at(origin + timedelta(seconds=2 * args.limit))}
        oldest_day = {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}
        newest_day = {"start": (end - timedelta(days=1)).isoformat(), "end": end.isoformat()}
        history = f"/api/v1/devices/{device.id}/readings"
        export = f"/api/v1/devices/{device.id}/readings/export"
        samples: dict[str, list[float]] = {"first": [], "deep": [], "newest": [], "oldest": []}
        headers = {"Authorization": f"Bearer {MASTER_TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            deep_page = client.get(history, params=deep).json()["items"]
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
