"""Ingest throughput: the API (device auth, rate limiting, validation, group commit) against
the store itself, in one run on one store.

1. Batches of 1,000 readings: POST through the API vs the raw driver `insert_many` of the
   same documents (target ratio >= 0.9).
2. Single-reading requests at concurrency 32: the API vs a bare FastAPI endpoint doing one
   `insert_one` per request (target ratio >= 1.5), with both servers' CPU per request read
   from `/proc` (target: the API's <= 1.0 ms) and both p99 latencies (target: the API's <= 2x
   the bare endpoint's). Requests are sent by a light keep-alive client (`_loadgen.py`), so
   the client's own CPU does not cap what is measured.
3. The CPU map: for each of the four modes (API and bare single, API and raw batch), the CPU
   per request (single) or per reading (batch) of every process on the machine's two cores:
   the server under test, the embedded MongoDB, redis-server and this process (the load
   generator, or the raw client). Throughput on a shared machine is set by their total.

Starts its own embedded MongoDB (or uses MONGODB_URL), redis-server and two API processes on
127.0.0.1; runs for about two minutes. Prints the figures last.

With `--processes N` it compares single-reading ingest of an API started with
`WEB_CONCURRENCY=N` against one process (target with N=2: >= 1.6x).

With `--rules N` it measures alert evaluation instead: the same API process ingests batches
for devices of a product without rules and of a product with N threshold and anomaly rules
(none of which fire), alternating; a run with rules counts until its readings are evaluated
(the API's `sensorhub_alert_evaluations_total`). Target: >= 0.9x the rate without rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import _loadgen
import httpx
from _stack import Device, Stack, local_stack
from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorClient

BATCH = 1000
CONCURRENCY_BATCH = 4
CONCURRENCY_SINGLE = 32


# The processes of the CPU map: the server under test (API or bare app), the stack's servers,
# and this process (the load generator or the raw driver client).
PROCESSES = ("server", "mongodb", "redis", "client")


class CpuMeter:
    """CPU of every process of a run, per request or reading, read from `/proc`."""

    def __init__(self, stack: Stack, server: str | None) -> None:
        self.stack = stack
        self.server = server
        self._before: dict[str, float] = {}
        self.per_ms: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        groups = self.stack.service_pids()
        if self.server is not None:
            groups["server"] = self.stack.pids[self.server]
        seconds = _loadgen.cpu_of_groups(groups)
        times = os.times()  # this process, all its threads
        seconds["client"] = times.user + times.system
        return seconds

    def start(self) -> None:
        """Note every process's CPU time so far."""
        self._before = self._now()

    def stop(self, count: int) -> dict[str, float]:
        """Milliseconds of CPU per unit (of `count`) of each process since `start`."""
        after = self._now()
        self.per_ms = {
            name: (after[name] - self._before[name]) / count * 1000 if name in after else 0.0
            for name in PROCESSES
        }
        return self.per_ms


def batch_readings(start: datetime, n: int) -> list[dict[str, Any]]:
    """`n` readings a second apart."""
    return [
        {
            "ts": (start + timedelta(seconds=i)).isoformat(),
            "metrics": {"temperature": 20 + (i % 50) / 10, "humidity": 40 + (i % 20)},
        }
        for i in range(n)
    ]


async def gather_limited(concurrency: int, jobs: list[Any]) -> None:
    """Run coroutine factories with at most `concurrency` at once."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            await job()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def raw_batches(
    stack: Stack, device: Device, product_id: str, batches: int, meter: CpuMeter | None = None
) -> float:
    """Readings per second of `insert_many` of ready documents, straight to the store."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        stack.mongodb_url, tz_aware=True
    )
    coll = client[stack.db_name]["readings"]
    meta = {"device_id": device.id, "product_id": product_id}
    base = datetime.now(UTC) - timedelta(days=2)
    docs = [
        [
            {"ts": datetime.fromisoformat(r["ts"]), "meta": meta, "m": r["metrics"]}
            for r in batch_readings(base + timedelta(hours=b), BATCH)
        ]
        for b in range(batches)
    ]
    if meter is not None:
        meter.start()
    started = time.perf_counter()
    await gather_limited(
        CONCURRENCY_BATCH,
        [lambda d=d: coll.insert_many(d, ordered=False) for d in docs],
    )
    elapsed = time.perf_counter() - started
    if meter is not None:
        meter.stop(batches * BATCH)
    client.close()
    return batches * BATCH / elapsed


async def api_batches(
    url: str, devices: list[Device], batches: int, meter: CpuMeter | None = None
) -> float:
    """Readings per second of POSTed batches, answered 202 (written)."""
    base = datetime.now(UTC) - timedelta(days=1)
    bodies = [
        json.dumps({"readings": batch_readings(base + timedelta(hours=b), BATCH)}).encode()
        for b in range(batches)
    ]
    accepted = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def post(b: int) -> None:
            nonlocal accepted
            device = devices[b % len(devices)]
            resp = await client.post(
                f"/api/v1/devices/{device.id}/readings",
                content=bodies[b],
                headers={"X-Device-Key": device.key, "Content-Type": "application/json"},
            )
            resp.raise_for_status()
            accepted += resp.json()["accepted"]

        if meter is not None:
            meter.start()
        started = time.perf_counter()
        await gather_limited(CONCURRENCY_BATCH, [lambda b=b: post(b) for b in range(batches)])
        elapsed = time.perf_counter() - started
        if meter is not None:
            meter.stop(batches * BATCH)
    assert accepted == batches * BATCH, accepted
    return accepted / elapsed


def single_requests(url: str, devices: list[Device], requests: int, *, prefix: str) -> list[bytes]:
    """Prepared single-reading POSTs, cycling over the devices."""
    body = json.dumps({"metrics": {"temperature": 21.5, "humidity": 40}}).encode()
    return [
        _loadgen.request_bytes(
            "POST",
            url,
            f"{prefix}/devices/{devices[i % len(devices)].id}/readings",
            body,
            {"X-Device-Key": devices[i % len(devices)].key, "Content-Type": "application/json"},
        )
        for i in range(requests)
    ]


@dataclass
class Singles:
    """One run of single-reading requests: rate, latencies and each process's CPU per request."""

    rate: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]

    @property
    def cpu_ms(self) -> float:
        """The server's CPU per request, in milliseconds."""
        return self.cpu["server"]


def singles(
    stack: Stack, url: str, devices: list[Device], requests: int, *, prefix: str
) -> Singles:
    """Single-reading POSTs at concurrency 32 (all must be 202), with the server's CPU."""
    warm = single_requests(url, devices, CONCURRENCY_SINGLE * 2, prefix=prefix)
    asyncio.run(_loadgen.run(url, warm, concurrency=CONCURRENCY_SINGLE))
    prepared = single_requests(url, devices, requests, prefix=prefix)
    meter = CpuMeter(stack, url)
    meter.start()
    result = asyncio.run(_loadgen.run(url, prepared, concurrency=CONCURRENCY_SINGLE))
    return Singles(
        rate=result.rate,
        p50_ms=result.percentile(0.5) * 1000,
        p99_ms=result.percentile(0.99) * 1000,
        cpu=meter.stop(requests),
    )


def evaluations(url: str) -> float:
    """The API's `sensorhub_alert_evaluations_total`, summed over condition types."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("sensorhub_alert_evaluations_total{")
    )


def seed_rules(stack: Stack, product_id: str, count: int) -> None:
    """`count` rules on the product, half thresholds and half anomaly rules, that never fire."""
    from app.alerts.models import AlertRule, ConditionType, Severity

    docs = []
    for i in range(count):
        metric = ("temperature", "humidity")[i % 2]
        condition: dict[str, Any]
        if i % 4 < 2:
            condition = {"type": "threshold", "metric": metric, "op": ">", "value": 1000 + i}
        else:
            condition = {
                "type": "anomaly",
                "metric": metric,
                "k": 50,
                "window": 100,
                "min_samples": 10,
            }
        rule = AlertRule(
            name=f"bench-{i}",
            scope_type="product",
            scope_id=product_id,
            severity=Severity.MINOR,
            condition_type=ConditionType(condition["type"]),
            condition=condition,
            created_by="bench",
        )
        docs.append(rule.model_dump_doc())
    with stack.mongo() as client:
        client[stack.db_name]["alert_rules"].insert_many(docs)


async def evaluated_batches(
    url: str, devices: list[Device], batches: int, per_reading: int
) -> float:
    """Readings per second of POSTed batches, counted until the API has evaluated them."""
    before = evaluations(url)
    started = time.perf_counter()
    await api_batches(url, devices, batches)
    expected = before + batches * BATCH * per_reading
    while evaluations(url) < expected:
        await asyncio.sleep(0.05)
    return batches * BATCH / (time.perf_counter() - started)


def rules_main(args: argparse.Namespace) -> None:
    """Batch ingest with and without `args.rules` rules on the device's product."""
    with local_stack() as stack:
        plain = stack.seed(32, ingest_limit_per_minute=1_000_000)
        ruled = stack.seed(32, ingest_limit_per_minute=1_000_000)
        with stack.mongo() as client:
            product_id = client[stack.db_name]["devices"].find_one({"_id": ObjectId(ruled[0].id)})[
                "product_id"
            ]
        seed_rules(stack, product_id, args.rules)
        api = stack.start_api()
        asyncio.run(evaluated_batches(api, ruled, 2, args.rules))  # warm caches and states
        asyncio.run(api_batches(api, plain, 2))
        ratios = []
        for round_ in range(args.rounds):

            def without() -> float:
                return asyncio.run(api_batches(api, plain, args.batches))

            def with_rules() -> float:
                return asyncio.run(evaluated_batches(api, ruled, args.batches, args.rules))

            if round_ % 2 == 0:
                base, ruled_rate = without(), with_rules()
            else:
                ruled_rate, base = with_rules(), without()
            ratios.append(ruled_rate / base)
            print(
                f"round {round_ + 1}: without rules {base:,.0f}/s, with {args.rules} rules "
                f"{ruled_rate:,.0f}/s ({ratios[-1]:.2f})"
            )
    print(
        f"rules ratio {statistics.median(ratios):.2f} (median of {args.rounds} rounds, "
        f"{args.rules} rules; target >= 0.9)"
    )


def flush_sizes(url: str) -> tuple[float, float]:
    """The API's `sensorhub_ingest_flush_readings` histogram: (sum, count) so far."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for name in ("sum", "count"):
            if line.startswith(f"sensorhub_ingest_flush_readings_{name} "):
                values[name] = float(line.split()[1])
    return values.get("sum", 0.0), values.get("count", 0.0)


def print_cpu_map(title: str, rows: dict[str, list[dict[str, float]]], unit: str) -> None:
    """One line per mode: the median CPU per `unit` of each process over the rounds, and the
    total (what the machine spends on one `unit`)."""
    print(f"CPU map, ms per {unit} ({title}):")
    print(f"  {'mode':<22}" + "".join(f"{name:>9}" for name in (*PROCESSES, "total")))
    for mode, runs in rows.items():
        medians = [statistics.median(run[name] for run in runs) for name in PROCESSES]
        total = statistics.median(sum(run[name] for name in PROCESSES) for run in runs)
        print(f"  {mode:<22}" + "".join(f"{v:9.3f}" for v in (*medians, total)))


def processes_main(args: argparse.Namespace) -> None:
    """Single-reading rate of an API with WEB_CONCURRENCY=N against one process."""
    with local_stack() as stack:
        devices = stack.seed(64, ingest_limit_per_minute=1_000_000)
        one = stack.start_api()
        many = stack.start_api(WEB_CONCURRENCY=str(args.processes))
        ratios = []
        cpu: dict[str, list[dict[str, float]]] = {
            "one process": [],
            f"{args.processes} processes": [],
        }
        for round_ in range(args.rounds):
            if round_ % 2 == 0:
                single = singles(stack, one, devices, args.requests, prefix="/api/v1")
                multi = singles(stack, many, devices, args.requests, prefix="/api/v1")
            else:
                multi = singles(stack, many, devices, args.requests, prefix="/api/v1")
                single = singles(stack, one, devices, args.requests, prefix="/api/v1")
            ratios.append(multi.rate / single.rate)
            cpu["one process"].append(single.cpu)
            cpu[f"{args.processes} processes"].append(multi.cpu)
            print(
                f"round {round_ + 1}: {args.processes} processes {multi.rate:,.0f}/s "
                f"(p99 {multi.p99_ms:.1f} ms), one process {single.rate:,.0f}/s "
                f"(p99 {single.p99_ms:.1f} ms) ({ratios[-1]:.2f})"
            )
    print_cpu_map(
        f"single-reading requests, median of {args.rounds} rounds; server = all API processes",
        cpu,
        "request",
    )
    print(
        f"processes ratio {statistics.median(ratios):.2f} (WEB_CONCURRENCY={args.processes} vs 1, "
        f"median of {args.rounds} rounds; target >= 1.6)"
    )


def main() -> None:
    """Alternate both comparisons for `--rounds` rounds; print the median ratios last.

    Each round measures the API and its baseline back to back (in alternating order), so the
    ratio of a round compares two runs under the same machine conditions; the median of the
    rounds' ratios is what this noisy, shared machine can tell.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 per round")
    parser.add_argument("--requests", type=int, default=3000, help="single requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--rules", type=int, default=0, help="measure N alert rules on the product instead"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="measure an API with WEB_CONCURRENCY=N against one process instead",
    )
    args = parser.parse_args()
    if args.rules:
        rules_main(args)
        return
    if args.processes:
        processes_main(args)
        return
    with local_stack() as stack:
        devices = stack.seed(32, ingest_limit_per_minute=1_000_000)
        with stack.mongo() as client:
            product_id = client[stack.db_name]["devices"].find_one()["product_id"]
        api = stack.start_api()
        bare = stack.start_api("scripts._bare_app:create_bare_app")
        batch_ratios, single_ratios, api_runs, bare_runs = [], [], [], []
        batch_cpu: dict[str, list[dict[str, float]]] = {"API batch": [], "raw insert_many": []}
        flushed, flushes = 0.0, 0.0
        for round_ in range(args.rounds):
            raw_first = round_ % 2 == 0

            def raw() -> float:
                meter = CpuMeter(stack, None)
                rate = asyncio.run(raw_batches(stack, devices[0], product_id, args.batches, meter))
                batch_cpu["raw insert_many"].append(meter.per_ms)
                return rate

            def api_batch() -> float:
                meter = CpuMeter(stack, api)
                rate = asyncio.run(api_batches(api, devices, args.batches, meter))
                batch_cpu["API batch"].append(meter.per_ms)
                return rate

            def bare_single() -> Singles:
                return singles(stack, bare, devices, args.requests, prefix="")

            def api_single() -> Singles:
                nonlocal flushed, flushes
                before = flush_sizes(api)
                run = singles(stack, api, devices, args.requests, prefix="/api/v1")
                after = flush_sizes(api)
                flushed, flushes = flushed + after[0] - before[0], flushes + after[1] - before[1]
                return run

            if raw_first:
                raw_rate, api_rate = raw(), api_batch()
                bare_run, api_run = bare_single(), api_single()
            else:
                api_rate, raw_rate = api_batch(), raw()
                api_run, bare_run = api_single(), bare_single()
            batch_ratios.append(api_rate / raw_rate)
            single_ratios.append(api_run.rate / bare_run.rate)
            api_runs.append(api_run)
            bare_runs.append(bare_run)
            print(
                f"round {round_ + 1}: batch api {api_rate:,.0f}/s raw {raw_rate:,.0f}/s "
                f"({batch_ratios[-1]:.2f}); single api {api_run.rate:,.0f}/s "
                f"bare {bare_run.rate:,.0f}/s ({single_ratios[-1]:.2f}); "
                f"cpu/req api {api_run.cpu_ms:.2f} ms bare {bare_run.cpu_ms:.2f} ms; "
                f"p99 api {api_run.p99_ms:.1f} ms bare {bare_run.p99_ms:.1f} ms"
            )
    if flushes:
        print(f"single ingest: {flushed / flushes:.1f} readings per group-commit flush on average")
    print_cpu_map(
        f"median of {args.rounds} rounds; server = the API or the bare app",
        {"API single": [r.cpu for r in api_runs], "bare single": [r.cpu for r in bare_runs]},
        "request",
    )
    print_cpu_map(f"median of {args.rounds} rounds", batch_cpu, "reading")

    def median(runs: list[Singles], name: str) -> float:
        return statistics.median(getattr(run, name) for run in runs)

    print(
        f"single p99   api {median(api_runs, 'p99_ms'):.1f} ms, bare "
        f"{median(bare_runs, 'p99_ms'):.1f} ms (median of {args.rounds} rounds; "
        "target: api <= 2x bare)"
    )
    print(
        f"API CPU per single-reading request {median(api_runs, 'cpu_ms'):.2f} ms, bare endpoint "
        f"{median(bare_runs, 'cpu_ms'):.2f} ms (from /proc, median of {args.rounds} rounds; "
        "target: api <= 1.0 ms)"
    )
    print(
        f"batch ratio  {statistics.median(batch_ratios):.2f} (median of {args.rounds} rounds; "
        "target >= 0.9)"
    )
    print(
        f"single ratio {statistics.median(single_ratios):.2f} (median of {args.rounds} rounds, "
        f"concurrency {CONCURRENCY_SINGLE}; target >= 1.5)"
    )


if __name__ == "__main__":
    main()
