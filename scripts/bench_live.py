"""Live fan-out: 500 sockets on 50 devices while 200 readings/s are posted.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server and two API processes (run
as production runs them, `python -m app`) on
127.0.0.1: devices post to A, half the sockets listen on A and half on B (so events cross
Redis between processes). Phases, each bounded:

1. latency: 500 sockets subscribe to `device.readings` (10 per device); 200 readings/s are
   posted (each device every 250 ms) for `--seconds`: latency from the 202 to the event at
   each socket, and events lost by sockets that stayed open;
2. ingest: single-reading posts as fast as CONCURRENCY clients go, alone and then with the
   500 sockets open, alternated in `--rounds` short windows (`--seconds` in all for each) so
   that the shared machine's changing load falls on both alike.

Prints p50/p99 latency (target p99 <= 250 ms), events lost (target 0) and the ingest rate
with sockets against without (target >= 0.85x), last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from multiprocessing.connection import Connection

import httpx
from _stack import MASTER_TOKEN, Device, local_stack
from websockets.asyncio.client import ClientConnection, connect

DEVICES = 50
SOCKETS = 500
RATE = 200
CONCURRENCY = 32


def now_ms_iso() -> tuple[int, str]:
    """The current time in whole milliseconds, and as RFC 3339."""
    ms = time.time_ns() // 1_000_000
    return ms, datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def ts_ms(iso: str) -> int:
    """Whole milliseconds of an RFC 3339 time."""
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


async def saturate(url: str, devices: list[Device], seconds: float) -> float:
    """Single-reading posts per second at CONCURRENCY, for `seconds`."""
    done = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def worker(i: int) -> None:
            nonlocal done
            device = devices[i % len(devices)]
            while time.monotonic() < deadline:
                try:
                    resp = await http.post(
                        f"/api/v1/devices/{device.id}/readings",
                        json={"metrics": {"temperature": 21.0}},
                        headers={"X-Device-Key": device.key},
                    )
                except httpx.TransportError:
                    continue  # a dropped connection on a loaded machine: not a reading
                if resp.status_code == 202:
                    done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        return done / (time.monotonic() - started)


class Listener:
    """One socket following one device; arrival times of its events' readings."""

    def __init__(self, ws: ClientConnection, device_id: str) -> None:
        self.ws = ws
        self.device_id = device_id
        self.arrived: dict[int, float] = {}
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Read until closed."""
        try:
            async for raw in self.ws:
                now = time.monotonic()
                message = json.loads(raw)
                if message.get("type") == "event":
                    for reading in message["data"]["readings"]:
                        self.arrived.setdefault(ts_ms(reading["ts"]), now)
        except Exception:
            pass
        self.closed = True


async def open_listener(url: str, device_id: str) -> Listener:
    """A socket authenticated with the master token, subscribed to one device."""
    ws = await connect(url, max_size=None, open_timeout=30)
    await ws.send(json.dumps({"type": "auth", "token": MASTER_TOKEN}))
    assert json.loads(await ws.recv())["type"] == "authenticated"
    await ws.send(
        json.dumps(
            {"type": "subscribe", "id": "r", "channel": "device.readings", "device_id": device_id}
        )
    )
    answer = json.loads(await ws.recv())
    assert answer["type"] == "subscribed", answer
    return Listener(ws, device_id)


async def paced(url: str, devices: list[Device], seconds: float) -> dict[str, dict[int, float]]:
    """RATE readings/s spread over the devices; per device, reading ms -> time of its 202."""
    acked: dict[str, dict[int, float]] = defaultdict(dict)
    period = len(devices) / RATE
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def device_loop(i: int, device: Device) -> None:
            await asyncio.sleep(period * i / len(devices))
            next_at = time.monotonic()
            while next_at < deadline:
                ms, iso = now_ms_iso()
                try:
                    resp = await http.post(
                        f"/api/v1/devices/{device.id}/readings",
                        json={"ts": iso, "metrics": {"temperature": 21.0}},
                        headers={"X-Device-Key": device.key},
                    )
                except httpx.TransportError:
                    resp = None  # not acknowledged: no event is expected for it
                if resp is not None and resp.status_code == 202:
                    acked[device.id][ms] = time.monotonic()
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        await asyncio.gather(*(device_loop(i, d) for i, d in enumerate(devices)))
    return acked


async def open_listeners(urls: tuple[str, str], device_ids: list[str]) -> list[Listener]:
    """SOCKETS sockets, 10 per device, alternately on A and B, each reading in a task."""
    listeners: list[Listener] = []
    for i in range(SOCKETS):
        ws_url = urls[i % 2].replace("http://", "ws://") + "/api/v1/ws"
        listeners.append(await open_listener(ws_url, device_ids[i % DEVICES]))
    for listener in listeners:
        listener.task = asyncio.create_task(listener.run())
    return listeners


async def close_listeners(listeners: list[Listener]) -> None:
    """Close every socket and stop its reader."""
    for listener in listeners:
        await listener.ws.close()
        if listener.task is not None:
            listener.task.cancel()


Arrivals = list[tuple[str, dict[int, float], bool]]


async def _serve_listeners(pipe: Connection, urls: tuple[str, str], device_ids: list[str]) -> None:
    listeners: list[Listener] = []
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command == "open":
            listeners = await open_listeners(urls, device_ids)
            pipe.send("opened")
        elif command == "close":
            report = [(x.device_id, x.arrived, x.closed) for x in listeners]  # before closing
            await close_listeners(listeners)
            pipe.send(report)
            listeners = []
        else:
            return


def listener_process(pipe: Connection, urls: tuple[str, str], device_ids: list[str]) -> None:
    """The sockets live in a process of their own: like real clients, they do not share the
    load generator's event loop (arrival times use the system-wide monotonic clock)."""
    asyncio.run(_serve_listeners(pipe, urls, device_ids))


class Sockets:
    """The 500 sockets, opened and closed on command in the listener process."""

    def __init__(self, urls: tuple[str, str], device_ids: list[str]) -> None:
        self.pipe, child = multiprocessing.get_context("spawn").Pipe()
        self.proc = multiprocessing.get_context("spawn").Process(
            target=listener_process, args=(child, urls, device_ids), daemon=True
        )
        self.proc.start()

    async def ask(self, command: str) -> object:
        """Send a command, wait for its answer."""
        await asyncio.to_thread(self.pipe.send, command)
        return await asyncio.to_thread(self.pipe.recv)

    async def open(self) -> None:
        """Open, authenticate and subscribe every socket."""
        assert await self.ask("open") == "opened"

    async def close(self) -> Arrivals:
        """Close every socket; per socket its device, arrivals and whether it was cut."""
        arrivals = await self.ask("close")
        assert isinstance(arrivals, list)
        return arrivals

    def stop(self) -> None:
        """End the listener process."""
        self.pipe.send("exit")
        self.proc.join(timeout=10)


async def main(seconds: float, rounds: int) -> None:
    """Run the phases and print the figures."""
    with local_stack() as stack:
        devices = stack.seed(DEVICES)
        env = {
            "RATE_LIMIT_DEVICE_LIMIT": "10000000",
            "WS_MAX_CONNECTIONS_PER_USER": str(SOCKETS * 2),
            "INGEST_FLUSH_INTERVAL_MS": "5",
        }
        url_a = stack.start_api(as_module=True, **env)
        url_b = stack.start_api(as_module=True, **env)
        print(f"latency: {SOCKETS} sockets, {RATE} readings/s for {seconds:g} s", flush=True)
        sockets = Sockets((url_a, url_b), [d.id for d in devices])
        await sockets.open()
        acked = await paced(url_a, devices, seconds)
        await asyncio.sleep(1.0)  # the last events in flight
        latencies: list[float] = []
        lost = 0
        cut = 0
        for device_id, arrivals, closed in await sockets.close():
            if closed:
                cut += 1
                continue
            for ms, acked_at in acked[device_id].items():
                arrived = arrivals.get(ms)
                if arrived is None:
                    lost += 1
                else:
                    latencies.append(max(0.0, arrived - acked_at) * 1000)
        # The machine is shared: the two conditions alternate in short windows, so a change
        # in background load falls on both alike.
        window = seconds / rounds
        alone = [0.0, 0.0]
        with_sockets = [0.0, 0.0]
        for r in range(rounds):
            print(f"ingest round {r + 1}/{rounds}: alone, then with {SOCKETS} sockets", flush=True)
            rate = await saturate(url_a, devices, window)
            alone = [alone[0] + rate * window, alone[1] + window]
            await sockets.open()
            rate = await saturate(url_a, devices, window)
            with_sockets = [with_sockets[0] + rate * window, with_sockets[1] + window]
            await sockets.close()
        sockets.stop()
        alone_rate = alone[0] / alone[1]
        with_rate = with_sockets[0] / with_sockets[1]
        latencies.sort()
        posted = sum(len(v) for v in acked.values())
        p50 = statistics.median(latencies) if latencies else float("nan")
        p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
        print(f"readings posted in the latency phase: {posted} ({posted / seconds:.0f}/s)")
        print(f"events expected at open sockets: {len(latencies) + lost}; sockets cut off: {cut}")
        print(
            f"ingest alone: {alone_rate:.0f} readings/s; with sockets: {with_rate:.0f} readings/s"
        )
        print(f"202 -> event latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 <= 250)")
        print(f"events lost by clients that keep up: {lost} (target 0)")
        print(f"ingest with sockets / without: {with_rate / alone_rate:.2f}x (target >= 0.85)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the ingest phase")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
