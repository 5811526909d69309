"""Latency the rate limiter adds per request, and Redis round trips per request.

Starts its own redis-server on a free 127.0.0.1 port, serves the same trivial endpoint with
and without the router-wide limiter (same app, same run, requests interleaved), and reads the
round trips from Redis itself (`INFO commandstats` before and after). Bounded: at most
REQUESTS requests per variant and ~40 s in total. Prints its figures last.

    .venv/bin/python scripts/bench_ratelimit.py [REQUESTS]
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis
from fastapi import APIRouter, Depends

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth.dependencies import get_optional_principal  # noqa: E402
from app.auth.quotas import enforce_rate_limit  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.core.services import SensorhubApp, Services, services_of  # noqa: E402
from app.ratelimit.middleware import RateLimitHeadersMiddleware  # noqa: E402
from app.ratelimit.service import create_limiter  # noqa: E402

REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
BATCH = 100
MONITOR_REQUESTS = 500
TIME_BUDGET_S = 40.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (make install installs it)")
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", workdir]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def calls(client: redis.Redis) -> dict[str, int]:
    """Commands Redis has executed so far, by name (including those run inside scripts)."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}


class Monitor:
    """Redis MONITOR in a thread: commands sent by clients, apart from those run by scripts."""

    SENTINEL = "bench-monitor-end"

    def __init__(self, port: int) -> None:
        self.port = port
        self.by_client: dict[str, dict[str, int]] = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Monitor:
        self.thread.start()
        self.ready.wait(5)
        return self

    def _watch(self) -> None:
        client = redis.Redis(port=self.port)
        with client.monitor() as monitor:
            self.ready.set()
            while True:
                seen = monitor.next_command()
                if self.SENTINEL in seen["command"]:
                    break
                if seen["client_type"] != "lua":
                    name = seen["command"].split(" ", 1)[0].lower()
                    source = f"{seen['client_address']}:{seen.get('client_port')}"
                    sent = self.by_client.setdefault(source, {})
                    sent[name] = sent.get(name, 0) + 1
        client.close()

    def __exit__(self, *exc: object) -> None:
        with redis.Redis(port=self.port) as client:
            client.echo(self.SENTINEL)
        self.thread.join(10)

    @property
    def sent(self) -> dict[str, int]:
        """Commands from the API's connections (those that ran the limiter script)."""
        total: dict[str, int] = {}
        for sent in self.by_client.values():
            if "evalsha" in sent or "eval" in sent:
                for name, n in sent.items():
                    total[name] = total.get(name, 0) + n
        return total


def build_app(settings: Settings) -> SensorhubApp:
    app = SensorhubApp(settings=settings)
    # Anonymous requests resolve no credentials, so only the limiter is a real client here.
    app.services = Services(  # type: ignore[arg-type]
        settings=settings,
        limiter=create_limiter(settings),
        **dict.fromkeys(
            (
                "mongo_client",
                "engine",
                "redis",
                "celery",
                "firebase",
                "device_keys",
                "principals",
                "access",
                "seen",
                "latest_values",
                "auth_failures",
                "device_contexts",
                "batcher",
                "command_waker",
                "on_sign_in",
                "refresh_metrics",
            )
        ),
    )
    limited = APIRouter(prefix="/on", dependencies=[Depends(enforce_rate_limit)])
    # The same caller resolution without the limiter, so the difference is the limiter alone.
    plain = APIRouter(prefix="/off", dependencies=[Depends(get_optional_principal)])

    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    limited.add_api_route("/ping", ping, response_model=dict[str, str])
    plain.add_api_route("/ping", ping, response_model=dict[str, str])
    app.include_router(limited)
    app.include_router(plain)
    app.add_middleware(RateLimitHeadersMiddleware)
    return app


async def timed_batch(http: httpx.AsyncClient, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        answer = await http.get(path)
        out.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"{path} answered {answer.status_code}")
    return out


async def run(port: int) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        redis_url=f"redis://127.0.0.1:{port}/0",
        rate_limit_anonymous_limit=10**9,
        rate_limit_timeout_s=1.0,
    )
    app = build_app(settings)
    inspect = redis.Redis(port=port)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 1234))
    on: list[float] = []
    off: list[float] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        await timed_batch(http, "/on/ping", 50)  # warm-up: connection, script cache
        await timed_batch(http, "/off/ping", 50)
        limiter = services_of(app).limiter
        started = time.monotonic()
        before = calls(inspect)
        while len(on) < REQUESTS and time.monotonic() - started < TIME_BUDGET_S:
            off += await timed_batch(http, "/off/ping", BATCH)
            on += await timed_batch(http, "/on/ping", BATCH)
        after = calls(inspect)
        # Round trips counted by Redis: every command a client sent during MONITOR_REQUESTS
        # limited requests (MONITOR slows Redis, so this pass is not timed).
        with Monitor(port) as monitor:
            await timed_batch(http, "/on/ping", MONITOR_REQUESTS)
        degraded = limiter.degraded
    await services_of(app).limiter.aclose()
    inspect.close()

    med_on, med_off = statistics.median(on) * 1e6, statistics.median(off) * 1e6
    mean_on, mean_off = statistics.fmean(on) * 1e6, statistics.fmean(off) * 1e6
    print(f"requests per variant: {len(on)} (interleaved in batches of {BATCH})")
    print(f"limiter off: median {med_off:.0f} us, mean {mean_off:.0f} us")
    print(f"limiter on:  median {med_on:.0f} us, mean {mean_on:.0f} us")
    print(f"fallback used during the run: {degraded}")
    print(
        f"added latency per request: median {med_on - med_off:.0f} us, "
        f"mean {mean_on - mean_off:.0f} us"
    )
    delta = {name: n - before.get(name, 0) for name, n in after.items()}
    delta = {name: n for name, n in delta.items() if n}
    print(f"commandstats during the timed run (script internals included): {delta}")
    print(f"commands sent by the API during {MONITOR_REQUESTS} requests (MONITOR): {monitor.sent}")
    print(f"redis round trips per request: {sum(monitor.sent.values()) / MONITOR_REQUESTS:.2f}")


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        proc = start_redis(port, workdir)
        try:
            asyncio.run(run(port))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
