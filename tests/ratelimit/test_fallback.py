"""Fail-open: Redis killed or hung mid-test; local decisions, one warning, a metric, recovery."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI
from prometheus_client import REGISTRY

from app.ratelimit.backends import RedisBackend, UpstashBackend
from app.ratelimit.fallback import CircuitBreaker
from app.ratelimit.policies import Policy
from app.ratelimit.service import RateLimiter
from tests.fixtures.servers import ManagedProcess, free_port, start_redis, wait_until
from tests.fixtures.upstash import UpstashRestServer

WARNING_TEXT = "rate limiter store unavailable"


def fallbacks() -> float:
    return REGISTRY.get_sample_value("sensorhub_rate_limit_fallbacks_total") or 0.0


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and WARNING_TEXT in r.message]


class ManualClock:
    """A monotonic clock the test moves by hand: cool-downs pass without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def settle_accepts(hole: Blackhole, at_least: int) -> None:
    """Wait for the accept thread to see `at_least` connections, then a moment for any more."""
    await asyncio.to_thread(
        wait_until, lambda: hole.accepted >= at_least, timeout=2, what="connections"
    )
    await asyncio.sleep(0.1)  # a further connection, if the code made one, is accepted by now


@pytest.fixture
def own_redis(workdir: Path) -> Iterator[ManagedProcess]:
    """A redis-server this test may kill and restart on the same port."""
    server = start_redis(workdir)
    yield server
    server.stop()


class Blackhole:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.conns: list[socket.socket] = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.conns.append(conn)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        for conn in self.conns:
            conn.close()
        self.sock.close()


class TestRedisKilled:
    async def test_local_fallback_then_shared_again(
        self, own_redis: ManagedProcess, workdir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        url = f"redis://127.0.0.1:{own_redis.port}/0"
        clock = ManualClock()
        limiter = RateLimiter(
            RedisBackend(url, timeout_s=0.2),
            prefix="kill",
            breaker=CircuitBreaker(failure_threshold=1, cooldown_s=30, clock=clock),
        )
        policy = Policy("user", 5, 60_000)
        inspect = redis.Redis(port=own_redis.port)
        try:
            assert (await limiter.hit(policy, "before")).allowed
            assert inspect.keys("kill:*")
            own_redis.stop()
            before = fallbacks()
            caplog.set_level(logging.WARNING, logger="app.ratelimit.service")

            decisions = [await limiter.hit(policy, "during") for _ in range(8)]

            # Still decided, by the same policy, in this process.
            assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
            assert fallbacks() - before == 8
            assert len(outage_warnings(caplog)) == 1
            assert limiter.degraded

            restarted = start_redis(workdir, port=own_redis.port)
            try:
                clock.advance(30)  # the breaker's cool-down
                caplog.set_level(logging.INFO, logger="app.ratelimit.service")
                assert (await limiter.hit(policy, "after")).allowed
                assert not limiter.degraded
                assert fallbacks() - before == 8
                assert redis.Redis(port=restarted.port).keys("kill:{user:after}:*")
                assert any("store is back" in r.message for r in caplog.records)
            finally:
                restarted.stop()
        finally:
            inspect.close()
            await limiter.aclose()

    async def test_requests_keep_succeeding(
        self,
        own_redis: ManagedProcess,
        probe_app: Callable[..., AbstractAsyncContextManager[FastAPI]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        async with probe_app(
            redis_url=f"redis://127.0.0.1:{own_redis.port}/0",
            rate_limit_anonymous_limit=50,
            rate_limit_timeout_s=0.2,
            rate_limit_breaker_failures=1,
        ) as app:
            # create_app replaced the root handlers (and with them caplog's): put it back.
            logging.getLogger().addHandler(caplog.handler)
            transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                assert (
                    (await http.get("/api/v1/_probe"))
                    .headers["RateLimit"]
                    .startswith('"anonymous";r=49;')
                )
                own_redis.stop()
                before = fallbacks()
                caplog.set_level(logging.WARNING, logger="app.ratelimit.service")
                answers = [await http.get("/api/v1/_probe") for _ in range(5)]
                assert [a.status_code for a in answers] == [200] * 5
                assert all("X-RateLimit-Remaining" in a.headers for a in answers)
                assert fallbacks() - before == 5
                assert len(outage_warnings(caplog)) == 1
            logging.getLogger().removeHandler(caplog.handler)


class TestCircuitBreaker:
    async def test_hung_store_is_not_called_while_open(self) -> None:
        hole = Blackhole()
        clock = ManualClock()
        limiter = RateLimiter(
            RedisBackend(f"redis://127.0.0.1:{hole.port}/0", timeout_s=0.1),
            prefix=uuid.uuid4().hex,
            breaker=CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=clock),
        )
        policy = Policy("user", 100, 60_000)
        try:
            decisions = [await limiter.hit(policy, "k") for _ in range(20)]
            assert all(d.allowed for d in decisions)
            # Two calls timed out; the other 18 were decided without calling the store.
            await settle_accepts(hole, 2)
            assert hole.accepted == 2

            clock.advance(30)
            # After the cool-down exactly one probe goes out, even with concurrent requests.
            await asyncio.gather(*(limiter.hit(policy, "k") for _ in range(5)))
            await settle_accepts(hole, 3)
            assert hole.accepted == 3
        finally:
            await limiter.aclose()
            hole.close()


class TestUpstashUnavailable:
    async def test_local_fallback_then_shared_again(
        self, own_redis: ManagedProcess, workdir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        rest = UpstashRestServer(redis_port=own_redis.port)
        rest.start()
        clock = ManualClock()
        limiter = RateLimiter(
            UpstashBackend(rest.url, rest.token, timeout_s=0.5),
            prefix="up",
            breaker=CircuitBreaker(failure_threshold=1, cooldown_s=30, clock=clock),
        )
        policy = Policy("user", 2, 60_000)
        caplog.set_level(logging.INFO, logger="app.ratelimit.service")
        try:
            assert (await limiter.hit(policy, "k")).allowed
            own_redis.stop()
            before = fallbacks()
            decisions = [await limiter.hit(policy, "during") for _ in range(3)]
            assert [d.allowed for d in decisions] == [True, True, False]
            assert fallbacks() - before == 3
            assert len(outage_warnings(caplog)) == 1
            restarted = start_redis(workdir, port=own_redis.port)
            try:
                clock.advance(30)
                assert (await limiter.hit(policy, "after")).allowed
                assert not limiter.degraded
                assert redis.Redis(port=restarted.port).keys("up:{user:after}:*")
            finally:
                restarted.stop()
        finally:
            await limiter.aclose()
            rest.stop()
