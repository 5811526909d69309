"""Simulate N devices of a product posting readings through the real HTTP API.

    .venv/bin/python scripts/simulate_devices.py --devices 20 --rate 2 --duration 30

Without `--url`, it starts its own stack (embedded MongoDB, redis-server, the API) on free
ports and seeds a product and the devices. With `--url`, pass the devices to simulate as
`--device <id>:<key>` (keys are shown once when a device is created or its key rotated).

Every request carries a fresh `Idempotency-Key`; a failed request (429, 503, network) is
retried with the same key, as a device should. Prints a progress bar and a summary last.

With `--commands`, every device also long-polls its commands (`GET .../commands/next?wait=`)
and answers each one (`POST .../commands/{id}/result`); on its own stack the script also
sends each device a `set_interval` command every `--command-every` seconds (master token),
which the device acknowledges with a result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from _stack import MASTER_TOKEN, Device, local_stack
from tqdm import tqdm


@dataclass
class Tally:
    """What happened, for the summary."""

    statuses: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    latencies: list[float] = field(default_factory=list)
    commands_sent: int = 0
    commands_answered: int = 0


def reading(state: dict[str, float]) -> dict[str, Any]:
    """A plausible reading: a random walk of temperature and humidity."""
    state["t"] = min(60.0, max(-20.0, state["t"] + random.gauss(0, 0.2)))
    state["h"] = min(100.0, max(0.0, state["h"] + random.gauss(0, 0.5)))
    return {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "metrics": {"temperature": round(state["t"], 2), "humidity": round(state["h"], 1)},
    }


async def run_device(
    client: httpx.AsyncClient,
    device: Device,
    *,
    rate: float,
    batch: int,
    until: float,
    tally: Tally,
    bar: tqdm,  # type: ignore[type-arg]
) -> None:
    """Post batches of readings at `rate` readings per second until `until`."""
    state = {"t": random.uniform(15, 25), "h": random.uniform(30, 60)}
    period = batch / rate
    next_at = time.monotonic() + random.uniform(0, period)
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += period
        readings = [reading(state) for _ in range(batch)]
        body = json.dumps(readings[0] if batch == 1 else {"readings": readings})
        headers = {"X-Device-Key": device.key, "Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(5):
            started = time.perf_counter()
            try:
                resp = await client.post(
                    f"/api/v1/devices/{device.id}/readings",
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
            except httpx.HTTPError as exc:
                tally.statuses[type(exc).__name__] += 1
            else:
                tally.latencies.append(time.perf_counter() - started)
                tally.statuses[str(resp.status_code)] += 1
                if resp.status_code == 202:
                    answer = resp.json()
                    tally.accepted += answer["accepted"]
                    tally.rejected += answer["rejected"]
                    break
                if resp.status_code not in (409, 429, 503):
                    break
                retry_after = float(resp.headers.get("Retry-After", "1"))
                await asyncio.sleep(min(retry_after, 5.0))
            tally.retries += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        bar.update(1)


async def answer_commands(
    client: httpx.AsyncClient, device: Device, *, until: float, tally: Tally
) -> None:
    """Long-poll the device's commands until `until` and answer each one."""
    url = f"/api/v1/devices/{device.id}/commands"
    headers = {"X-Device-Key": device.key}
    while time.monotonic() < until:
        wait = max(0.0, min(20.0, until - time.monotonic()))
        try:
            resp = await client.get(f"{url}/next", params={"wait": wait}, headers=headers)
        except httpx.HTTPError:
            await asyncio.sleep(1)
            continue
        if resp.status_code == 204:
            continue
        if resp.status_code != 200:
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
            continue
        command = resp.json()
        result: dict[str, Any] = {"done_at": datetime.now(UTC).isoformat()}
        if command["name"] == "set_interval":
            result["interval_s"] = command["params"]["seconds"]
        body = {"delivery_id": command["delivery_id"], "status": "successful", "result": result}
        # A lost answer is retried with the same delivery id: the API makes it a no-op.
        for _ in range(3):
            try:
                done = await client.post(
                    f"{url}/{command['id']}/result", json=body, headers=headers
                )
            except httpx.HTTPError:
                continue
            if done.status_code in (200, 409):
                tally.commands_answered += done.status_code == 200
                break


async def send_commands(
    client: httpx.AsyncClient, devices: list[Device], *, every: float, until: float, tally: Tally
) -> None:
    """Send each device a `set_interval` command every `every` seconds (master token)."""
    headers = {"Authorization": f"Bearer {MASTER_TOKEN}"}
    while time.monotonic() + every < until:
        await asyncio.sleep(every)
        for device in devices:
            body = {"name": "set_interval", "params": {"seconds": random.choice([1, 2, 5])}}
            resp = await client.post(
                f"/api/v1/devices/{device.id}/commands", json=body, headers=headers
            )
            tally.commands_sent += resp.status_code == 201


async def simulate(url: str, devices: list[Device], args: argparse.Namespace) -> Tally:
    """Run every device concurrently for the duration."""
    tally = Tally()
    total = int(len(devices) * args.rate * args.duration / args.batch)
    connections = min(len(devices), 100) + (len(devices) if args.commands else 0)
    limits = httpx.Limits(max_connections=connections)
    started = time.monotonic()
    until = started + args.duration
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        background: list[asyncio.Task[None]] = []
        if args.commands:
            background += [
                asyncio.create_task(answer_commands(client, d, until=until, tally=tally))
                for d in devices
            ]
            if not args.url:
                background.append(
                    asyncio.create_task(
                        send_commands(
                            client, devices, every=args.command_every, until=until, tally=tally
                        )
                    )
                )
        with tqdm(total=total, unit="req", desc="posting") as bar:
            await asyncio.gather(
                *(
                    run_device(
                        client,
                        d,
                        rate=args.rate,
                        batch=args.batch,
                        until=started + args.duration,
                        tally=tally,
                        bar=bar,
                    )
                    for d in devices
                )
            )
        await asyncio.gather(*background)
    tally.statuses["elapsed_s"] = int(time.monotonic() - started)
    return tally


def summary(tally: Tally, *, devices: int, duration: float) -> str:
    """The figures, one per line."""
    lat = sorted(tally.latencies) or [0.0]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    statuses = {k: v for k, v in tally.statuses.items() if k != "elapsed_s"}
    return "\n".join(
        [
            f"devices:            {devices}",
            f"requests by status: {dict(sorted(statuses.items()))}",
            f"retries:            {tally.retries}",
            f"readings accepted:  {tally.accepted}  rejected: {tally.rejected}",
            f"ingest rate:        {tally.accepted / duration:.1f} readings/s",
            f"latency ms:         p50 {pct(0.5):.1f}  p95 {pct(0.95):.1f}  p99 {pct(0.99):.1f}"
            f"  mean {statistics.fmean(lat) * 1000:.1f}",
            f"commands:           sent {tally.commands_sent}  answered {tally.commands_answered}",
        ]
    )


def main() -> None:
    """Parse arguments, run, print the summary last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10, help="simulated devices (own stack)")
    parser.add_argument("--rate", type=float, default=1.0, help="readings per second per device")
    parser.add_argument("--batch", type=int, default=1, help="readings per request")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run (max 170)")
    parser.add_argument("--url", help="an API that is already running (else start one)")
    parser.add_argument("--device", action="append", default=[], help="id:key (with --url)")
    parser.add_argument("--commands", action="store_true", help="devices answer commands")
    parser.add_argument(
        "--command-every", type=float, default=5.0, help="seconds between sent commands"
    )
    args = parser.parse_args()
    args.duration = min(args.duration, 170.0)
    if args.url:
        devices = [Device(*pair.split(":", 1)) for pair in args.device]
        if not devices:
            parser.error("--url needs at least one --device id:key")
        tally = asyncio.run(simulate(args.url, devices, args))
    else:
        with local_stack() as stack:
            devices = stack.seed(args.devices)
            url = stack.start_api()
            tally = asyncio.run(simulate(url, devices, args))
    print(summary(tally, devices=len(devices), duration=args.duration))


if __name__ == "__main__":
    main()
