"""A light HTTP/1.1 load generator and a `/proc` CPU meter for the benchmarks.

httpx spends more CPU per request than the server under test on this 2-core machine, so a
benchmark driven by it measures the client. This client keeps one keep-alive connection per
worker, sends prepared request bytes and reads `Content-Length` answers: a few microseconds per
request, so the figures are the server's.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def request_bytes(method: str, url: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one HTTP/1.1 request with a JSON body, keep-alive."""
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    """What a load run measured: completed requests, wall time and each request's latency."""

    requests: int
    elapsed_s: float
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.elapsed_s

    def percentile(self, q: float) -> float:
        """The latency at quantile `q` (0..1), in seconds."""
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding":
            raise RuntimeError("chunked answers are not supported by this load generator")
    body = await reader.readexactly(length) if length else b""
    return status, body


async def run(
    url: str,
    requests: Sequence[bytes],
    *,
    concurrency: int,
    expect: int = 202,
    check: Callable[[bytes], None] | None = None,
) -> Result:
    """Send every request over `concurrency` keep-alive connections; all must answer `expect`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    position = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal position
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while position < len(requests):
                raw = requests[position]
                position += 1
                started = time.perf_counter()
                writer.write(raw)
                status, body = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != expect:
                    raise RuntimeError(f"{status}: {body[:200]!r}")
                if check is not None:
                    check(body)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(len(requests), time.perf_counter() - started, latencies)


@dataclass
class Measured:
    """A load run, and the CPU time its server (a process group) spent meanwhile."""

    result: Result
    cpu_s: float

    @property
    def cpu_ms_per_request(self) -> float:
        """The server's CPU per request, in milliseconds."""
        return self.cpu_s / self.result.requests * 1000


async def measure(
    url: str, requests: Sequence[bytes], *, pid: int, concurrency: int, expect: int
) -> Measured:
    """`run`, with the server's CPU time over it read from /proc (`pid` leads its group)."""
    before = cpu_seconds(pid)
    result = await run(url, requests, concurrency=concurrency, expect=expect)
    return Measured(result, cpu_seconds(pid) - before)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the process group led by `pid`: a server and its workers."""
    return cpu_of_groups({"server": pid})["server"]


def cpu_of_groups(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each named process group, from one pass over `/proc`.

    Each value sums the processes whose group leader is the given pid (the servers are started
    in their own sessions, so a group is a server and its workers).
    """
    by_pgrp = {pid: name for name, pid in groups.items()}
    ticks = dict.fromkeys(groups, 0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        name = by_pgrp.get(int(fields[2]))  # pgrp
        if name is not None:
            ticks[name] += int(fields[11]) + int(fields[12])  # utime, stime
    return {name: n / _CLOCK_TICKS for name, n in ticks.items()}
