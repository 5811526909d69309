"""The no_data sweep over 10,000 devices: how long one beat run takes, against its interval.

Seeds 10,000 devices of one product with a no_data rule (after_s 300) straight into MongoDB,
then times three sweeps (the worker's code, `app.alerts.sweep.Sweeper`, with the clock
injected): every device alive (reads only), every device silent for the first time (raises
10,000 alarms: the worst case), and every device silent and already alarmed (the steady
state of an outage). Starts its own embedded MongoDB (or uses MONGODB_URL) and redis-server.
Prints the times last, with ALERTS_SWEEP_INTERVAL_S for comparison.
"""

from __future__ import annotations

import argparse
import time

from _stack import local_stack

from app.alerts.models import AlertRule, ConditionType, Severity
from app.alerts.sweep import Sweeper
from app.core.config import Settings
from app.core.models import epoch_ms, utcnow
from app.worker.context import WorkerContext


def main() -> None:
    """Seed, sweep three times, print the times."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args()
    with local_stack() as stack:
        devices = stack.seed(args.devices)
        now = utcnow()
        with stack.mongo() as client:
            db = client[stack.db_name]
            product_id = db["devices"].find_one()["product_id"]
            db["devices"].update_many({}, {"$set": {"presence": {"last_seen_at": now}}})
            db["devices"].create_index("product_id")
            db["alarms"].create_index("active_key", unique=True)
            rule = AlertRule(
                name="offline",
                scope_type="product",
                scope_id=product_id,
                severity=Severity.MAJOR,
                condition_type=ConditionType.NO_DATA,
                condition={"type": "no_data", "after_s": 300},
                created_by="bench",
            )
            db["alert_rules"].insert_one(rule.model_dump_doc())
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="development",
            mongodb_url=stack.mongodb_url,
            mongodb_db=stack.db_name,
            redis_url=stack.redis_url,
        )
        ctx = WorkerContext(settings)
        times = {}
        for label, offset_s in (
            ("all alive", 60),
            ("all silent, first sweep (raises every alarm)", 600),
            ("all silent, already alarmed", 615),
        ):
            sweeper = Sweeper(ctx, now_ms=epoch_ms(now) + offset_s * 1000, enqueue=lambda _: None)
            started = time.perf_counter()
            counts = sweeper.run()
            times[label] = time.perf_counter() - started
            print(f"{label}: {times[label]:.2f} s {counts}")
        ctx.close()
    interval = settings.alerts_sweep_interval_s
    print(f"devices: {len(devices):,}; ALERTS_SWEEP_INTERVAL_S = {interval:g} s")
    for label, seconds in times.items():
        verdict = "within" if seconds < interval else "OVER"
        print(f"no_data sweep, {label}: {seconds:.2f} s ({verdict} the interval)")


if __name__ == "__main__":
    main()
