"""Device commands: wake-up latency, memory per waiting long-poll, cost of a round trip.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server and TWO API processes on
127.0.0.1. Prints, each from one run:

* wake latency: a device long-polls API process A; a command is sent through process B;
  time from the send to the poll's answer (so it includes the send's own writes), p50/p99
  (target p99 <= 100 ms);
* memory: resident memory of process A with N devices long-polling it at once, per poll;
* round trip: send + next + result, sequentially, in ms and in API CPU ms per round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import httpx
from _stack import MASTER_TOKEN, Device, local_stack
from redis.asyncio import Redis

from app.commands import events

SEND = {"Authorization": f"Bearer {MASTER_TOKEN}"}
API_ENV = {
    "RATE_LIMIT_ENABLED": "false",
    "COMMANDS_MAX_WAITERS": "100000",
    # Long enough that the first polls still wait when the last one arrives.
    "COMMANDS_POLL_MAX_WAIT_S": "300",
}


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples: list[float], p: float) -> float:
    """The p-quantile of samples, in ms."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def wake_latency(
    a: str, b: str, redis_url: str, device: Device, rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds from the `queued` event (the command is stored; B publishes it) to the answer
    of a poll waiting on A; and from the start of the send to that answer."""
    url = f"/api/v1/devices/{device.id}/commands"
    headers = {"X-Device-Key": device.key}
    samples, end_to_end = [], []
    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(events.CHANNEL)
    queued_at: list[float] = []

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message" and json.loads(message["data"])["state"] == "queued":
                queued_at.append(time.perf_counter())

    listener = asyncio.create_task(listen())
    async with (
        httpx.AsyncClient(base_url=a, timeout=30) as pa,
        httpx.AsyncClient(base_url=b, timeout=30) as pb,
    ):
        for _ in range(rounds):
            waiting = asyncio.create_task(pa.get(f"{url}/next?wait=20", headers=headers))
            await asyncio.sleep(0.05)  # the poll is waiting by now (it answers 204 otherwise)
            started = time.perf_counter()
            (await pb.post(url, json={"name": "reboot"}, headers=SEND)).raise_for_status()
            delivery = await waiting
            answered = time.perf_counter()
            end_to_end.append(answered - started)
            while not queued_at:
                await asyncio.sleep(0.001)
            samples.append(answered - queued_at.pop())
            assert delivery.status_code == 200, delivery.status_code
            body = {"delivery_id": delivery.json()["delivery_id"], "status": "successful"}
            done = await pa.post(
                f"{url}/{delivery.json()['id']}/result", json=body, headers=headers
            )
            done.raise_for_status()
    listener.cancel()
    await pubsub.aclose()
    await redis.aclose()
    return samples, end_to_end


async def hold_polls(
    host: str, port: int, devices: list[Device], wait: int
) -> list[asyncio.StreamWriter]:
    """Open one waiting long-poll per device (raw sockets: the client stays small)."""
    writers = []
    for device in devices:
        _, writer = await asyncio.open_connection(host, port)
        writer.write(
            (
                f"GET /api/v1/devices/{device.id}/commands/next?wait={wait} HTTP/1.1\r\n"
                f"Host: {host}\r\nX-Device-Key: {device.key}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        writers.append(writer)
    return writers


async def waiting_count(base: str) -> float:
    """The API's own count of waiting polls (from /metrics)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("sensorhub_command_polls_waiting "):
            return float(line.split()[1])
    return 0.0


async def memory_per_poll(base: str, pid: int, devices: list[Device]) -> tuple[int, int, float]:
    """RSS before and with every device waiting (KiB), and the waiting count reached."""
    port = int(base.rsplit(":", 1)[1])
    before = rss_kib(pid)
    writers = await hold_polls("127.0.0.1", port, devices, wait=290)
    deadline = time.monotonic() + 240
    count = 0.0
    while time.monotonic() < deadline:
        count = await waiting_count(base)
        if count >= len(devices):
            break
        await asyncio.sleep(0.5)
    during = rss_kib(pid)
    if count < len(devices):
        print(f"warning: only {count:.0f} of {len(devices)} polls were waiting at once")
    for writer in writers:
        writer.close()
    return before, during, count


async def round_trips(base: str, device: Device, rounds: int) -> list[float]:
    """Seconds per send + next + result, one after another."""
    url = f"/api/v1/devices/{device.id}/commands"
    headers = {"X-Device-Key": device.key}
    samples = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(rounds):
            started = time.perf_counter()
            (await client.post(url, json={"name": "reboot"}, headers=SEND)).raise_for_status()
            delivery = (await client.get(f"{url}/next", headers=headers)).json()
            body = {"delivery_id": delivery["delivery_id"], "status": "successful"}
            done = await client.post(f"{url}/{delivery['id']}/result", json=body, headers=headers)
            done.raise_for_status()
            samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    """Run the three measurements and print the figures, the summary last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="wake-ups and round trips")
    parser.add_argument("--pollers", type=int, default=2000, help="devices waiting at once")
    args = parser.parse_args()
    with local_stack() as stack:
        devices = stack.seed(args.pollers + 2)
        a = stack.start_api(**API_ENV)
        b = stack.start_api(**API_ENV)
        proc_a = stack.processes[-2].proc
        assert proc_a is not None
        wake, sends = asyncio.run(wake_latency(a, b, stack.redis_url, devices[0], args.rounds))
        print(
            f"wake latency (stored and announced by B -> poll on A answered), {len(wake)} "
            f"rounds: p50 {pct(wake, 0.5):.1f} ms  p99 {pct(wake, 0.99):.1f} ms"
        )
        print(
            f"send on B -> poll on A answered (includes the send's writes): "
            f"p50 {pct(sends, 0.5):.1f} ms  p99 {pct(sends, 0.99):.1f} ms"
        )
        cpu_before = cpu_s(proc_a.pid)
        trips = asyncio.run(round_trips(a, devices[1], args.rounds))
        cpu_per_trip = (cpu_s(proc_a.pid) - cpu_before) / len(trips) * 1000
        print(
            f"round trip (send + next + result), {len(trips)} rounds: "
            f"median {statistics.median(trips) * 1000:.1f} ms, API CPU {cpu_per_trip:.2f} ms"
        )
        before, during, count = asyncio.run(memory_per_poll(a, proc_a.pid, devices[2:]))
        per_poll = (during - before) / max(count, 1)
        print(
            f"memory: {before / 1024:.1f} MiB idle, {during / 1024:.1f} MiB with "
            f"{count:.0f} polls waiting: {per_poll:.1f} KiB per waiting poll"
        )
    print(
        f"commands: wake p50 {pct(wake, 0.5):.1f} ms p99 {pct(wake, 0.99):.1f} ms "
        f"(target <= 100); {per_poll:.1f} KiB per waiting poll at {count:.0f}; "
        f"round trip {statistics.median(trips) * 1000:.1f} ms, {cpu_per_trip:.2f} ms API CPU"
    )


if __name__ == "__main__":
    main()
