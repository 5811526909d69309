"""Notifications: signed webhooks, SSRF refusal, retries and their log, per-rule interval, and
emails through the outbox, once per transition (also when a crashed worker's tasks re-run, and
when the worker process is killed in the middle of sending)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from odmantic import AIOEngine

from app.alerts import events, notify, webhooks
from app.alerts.models import AlarmEvent, AlertRule
from app.core.config import Settings
from app.core.db import database
from app.core.models import utcnow
from app.core.services import services_of
from app.emails.models import EmailOutbox
from app.worker.context import WorkerContext
from tests.alerts.test_evaluation import post, product_of, settle
from tests.alerts.test_router import THRESHOLD, stored_alarm
from tests.fixtures.alerts import alarms_of, new_rule
from tests.fixtures.catalog import MASTER, new_device, new_product
from tests.fixtures.readings import MakeDevice, TestDevice
from tests.fixtures.servers import ManagedProcess, SmtpSink
from tests.fixtures.worker import ensure_running, eventually, kill, start
from tests.worker.test_emails import parts

SECRET = "webhook-secret-" + "x" * 16


class Receiver:
    """A local HTTP endpoint recording requests; answers with the queued status codes."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (reached as `localhost`)."""
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def worker_ctx(make_settings: Any) -> Iterator[WorkerContext]:
    """A worker context that may reach private addresses (the receiver is on localhost)."""
    ctx = WorkerContext(make_settings(alert_webhook_allow_private=True))
    yield ctx
    ctx.close()


async def raised_event(engine: AIOEngine, rule: AlertRule) -> str:
    """Raise an alarm of `rule` on a new device and record its event; the event id."""
    product = await new_product(engine, owner=MASTER)
    device, _ = await new_device(engine, owner=MASTER, product=product)
    alarm_id = await stored_alarm(engine, rule, device)
    doc = await database(engine)["alarms"].find_one({"_id": __import__("bson").ObjectId(alarm_id)})
    assert doc is not None
    event = events.event_doc(rule, doc, AlarmEvent.RAISED)
    await database(engine)["alert_events"].insert_one(event)
    return str(event["_id"])


def run_event(ctx: WorkerContext, event_id: str, emails: list[str] | None = None) -> str:
    """What the notify task does, with webhook deliveries attempted inline."""
    return notify.process_event(
        ctx,
        event_id,
        send_email=(emails if emails is not None else []).append,
        send_webhook=lambda did: webhooks.deliver(ctx, did) and None,
    )


async def log_of(engine: AIOEngine, notification_id: str) -> list[dict[str, Any]]:
    """The notification log lines of one notification, oldest first."""
    cursor = database(engine)["alert_notification_log"].find({"notification_id": notification_id})
    return sorted([doc async for doc in cursor], key=lambda d: (d["at_ms"], d.get("attempt", 0)))


class TestSignature:
    def test_hmac_over_timestamp_and_body(self) -> None:
        body = b'{"id":"x"}'
        expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
        assert webhooks.sign(SECRET, 1700000000, body) == expected
        header = webhooks.signature_header(SECRET, 1700000000, body)
        assert header == f"t=1700000000,v1={expected}"
        assert webhooks.sign(SECRET, 1700000001, body) != expected  # replays need a new stamp


class TestSsrf:
    @pytest.mark.parametrize(
        "url",
        [
            "http://localhost/hook",  # a name resolving to 127.0.0.1
            "http://127.0.0.1:8080/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.8/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
        ],
    )
    def test_private_targets_are_refused(self, url: str) -> None:
        with pytest.raises(webhooks.RefusedTarget):
            webhooks.resolve_target(url, allow_private=False)

    def test_allowed_when_the_operator_says_so(self) -> None:
        assert webhooks.resolve_target("http://127.0.0.1/", allow_private=True) == "127.0.0.1"

    async def test_delivery_to_localhost_is_refused_and_logged(
        self, settings: Settings, engine: AIOEngine, receiver: Receiver
    ) -> None:
        rule = await new_rule(
            engine,
            scope=await new_product(engine, owner=MASTER),
            condition=THRESHOLD,
            notify={"webhooks": [{"url": receiver.url, "secret": SECRET}]},
        )
        event_id = await raised_event(engine, rule)
        ctx = WorkerContext(settings)  # the default: private targets refused
        try:
            await asyncio.to_thread(run_event, ctx, event_id)
        finally:
            ctx.close()
        delivery = await database(engine)["webhook_deliveries"].find_one({"_id": f"{event_id}:0"})
        assert delivery is not None
        assert delivery["status"] == "refused"
        [line] = await log_of(engine, event_id)
        assert line["outcome"] == "refused"
        assert "127.0.0.1" in line["error"]
        assert receiver.requests == []


class TestWebhookDelivery:
    async def test_signed_request_with_a_stable_notification_id(
        self, engine: AIOEngine, receiver: Receiver, worker_ctx: WorkerContext
    ) -> None:
        rule = await new_rule(
            engine,
            scope=await new_product(engine, owner=MASTER),
            condition=THRESHOLD,
            notify={"webhooks": [{"url": receiver.url, "secret": SECRET}]},
        )
        event_id = await raised_event(engine, rule)
        receiver.statuses = [503]  # the first attempt fails: retried with the same id
        await asyncio.to_thread(run_event, worker_ctx, event_id)
        outcome, retry_in = await asyncio.to_thread(webhooks.deliver, worker_ctx, f"{event_id}:0")
        assert (outcome, retry_in) == ("delivered", None)
        # A crashed worker's redelivery of both tasks sends nothing more.
        await asyncio.to_thread(run_event, worker_ctx, event_id)
        assert await asyncio.to_thread(webhooks.deliver, worker_ctx, f"{event_id}:0") == (
            "skipped",
            None,
        )
        assert len(receiver.requests) == 2
        for headers, body in receiver.requests:
            assert headers["x-sensorhub-notification-id"] == event_id
            stamp = int(headers["x-sensorhub-timestamp"])
            mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
            assert headers["x-sensorhub-signature"] == f"t={stamp},v1={mac.hexdigest()}"
            payload = json.loads(body)
            assert payload["id"] == event_id
            assert payload["event"] == "alarm.raised"
            assert payload["rule"]["id"] == str(rule.id)
        delivery = await database(engine)["webhook_deliveries"].find_one({"_id": f"{event_id}:0"})
        assert delivery is not None
        assert delivery["status"] == "delivered"
        lines = await log_of(engine, event_id)
        assert [(e["outcome"], e["status_code"]) for e in lines] == [
            ("retry", 503),
            ("delivered", 204),
        ]

    async def test_min_interval_suppresses_and_records(
        self, engine: AIOEngine, receiver: Receiver, worker_ctx: WorkerContext
    ) -> None:
        rule = await new_rule(
            engine,
            scope=await new_product(engine, owner=MASTER),
            condition=THRESHOLD,
            notify={"webhooks": [{"url": receiver.url, "secret": SECRET}], "min_interval_s": 600},
        )
        first = await raised_event(engine, rule)
        second = await raised_event(engine, rule)
        assert await asyncio.to_thread(run_event, worker_ctx, first) == "done"
        assert await asyncio.to_thread(run_event, worker_ctx, second) == "suppressed"
        stored = await database(engine)["alert_events"].find_one({"_id": second})
        assert stored is not None
        assert stored["decision"] == "suppressed"
        assert len(receiver.requests) == 1


def received(sink: SmtpSink, to: str) -> list[Any]:
    """Messages the sink received for `to`."""
    return [m for m in sink.messages if m["To"] == to]


@dataclass
class MailStack:
    """The API, its store and device maker, the real worker and the SMTP sink."""

    app: FastAPI
    client: httpx.AsyncClient
    engine: AIOEngine
    make_device: MakeDevice
    worker_celery: Any
    smtp_sink: SmtpSink


@pytest.fixture
def stack(
    app: FastAPI,
    client: httpx.AsyncClient,
    engine: AIOEngine,
    make_device: MakeDevice,
    celery_worker: ManagedProcess,
    worker_celery: Any,
    smtp_sink: SmtpSink,
) -> MailStack:
    """Everything an email journey through the real worker needs."""
    return MailStack(app, client, engine, make_device, worker_celery, smtp_sink)


async def watched_device(stack: MailStack, notify: dict[str, Any]) -> TestDevice:
    """A new device whose product has a temperature > 30 rule notifying as `notify` says."""
    device = await stack.make_device()
    await new_rule(
        stack.engine,
        scope=await product_of(stack.engine, device),
        condition=THRESHOLD,
        notify=notify,
        name="Hot room",
    )
    await services_of(stack.app).alert_rules.changed()
    return device


async def send_marker(stack: MailStack, tag: str) -> None:
    """Send a marker email last and wait for it: the solo worker has run every task before."""
    marker = EmailOutbox(to=f"marker-{tag}@example.com", template="welcome", context={})
    await database(stack.engine)["email_outbox"].insert_one(marker.model_dump_doc())
    stack.worker_celery.send_task("emails.send", args=[str(marker.id)])
    await eventually(lambda: received(stack.smtp_sink, marker.to), what="the marker email")


class TestEmailOncePerTransition:
    async def test_raise_and_clear_each_send_one_email_also_after_a_rerun(
        self,
        stack: MailStack,
    ) -> None:
        to = f"ops-{id(self)}@example.com"
        device = await watched_device(stack, {"emails": [to]})
        await post(stack.client, device, [(1, 31), (2, 33)])
        await settle(stack.app)
        [first] = await eventually(lambda: received(stack.smtp_sink, to), what="the raise email")
        assert "raised" in first["Subject"]
        await post(stack.client, device, [(3, 20)])
        await settle(stack.app)
        await eventually(lambda: len(received(stack.smtp_sink, to)) == 2, what="the clear email")
        # A worker killed after sending re-runs its tasks (acks_late): same events, same
        # outbox entries, nothing new is sent.
        [alarm] = await alarms_of(stack.engine, device_id=device.id)
        outbox = database(stack.engine)["email_outbox"]
        for event in ("raised", "cleared"):
            event_id = f"{alarm['_id']}:{event}"
            stack.worker_celery.send_task("alerts.notify", args=[event_id])
            entry = await outbox.find_one({"dedupe_key": f"{event_id}:{to}"})
            assert entry is not None
            stack.worker_celery.send_task("emails.send", args=[str(entry["_id"])])
        await send_marker(stack, f"rerun-{id(self)}")
        messages = received(stack.smtp_sink, to)
        assert [("raised" in m["Subject"], "cleared" in m["Subject"]) for m in messages] == [
            (True, False),
            (False, True),
        ]

    async def test_a_worker_killed_inside_the_smtp_hand_off_sends_once_after_a_restart(
        self,
        stack: MailStack,
        celery_worker: ManagedProcess,
        worker_settings: Settings,
    ) -> None:
        """The real process is killed (SIGKILL) while the SMTP server holds its message: the
        email is not lost and, once the worker is back, arrives exactly once."""
        to = f"ops-killed-{id(self)}@example.com"
        device = await watched_device(stack, {"emails": [to]})
        outbox = database(stack.engine)["email_outbox"]
        stack.smtp_sink.held.add(to)
        try:
            await post(stack.client, device, [(1, 31)])
            await settle(stack.app)
            await eventually(
                lambda: to in stack.smtp_sink.waiting, what="the worker in the hand-off"
            )
            await asyncio.to_thread(kill, celery_worker)
            stack.smtp_sink.held.discard(to)
            entry = await outbox.find_one({"to": to})
            assert entry is not None
            assert entry["status"] == "sending"  # claimed by the dead worker
            # Its lease (EMAIL_LEASE_S, 30 s at least) is over: the claim's stamp is moved back
            # instead of waiting (a whole-document write: mongo-compat row 3).
            entry["updated_at"] = utcnow() - timedelta(seconds=worker_settings.email_lease_s + 1)
            await outbox.replace_one({"_id": entry["_id"]}, entry)
            await asyncio.to_thread(start, celery_worker, worker_settings)
        finally:
            stack.smtp_sink.held.discard(to)
            await asyncio.to_thread(ensure_running, celery_worker, worker_settings)
        [message] = await eventually(
            lambda: received(stack.smtp_sink, to), what="the email, resent"
        )
        assert "raised" in message["Subject"]
        await send_marker(stack, f"killed-{id(self)}")
        assert len(received(stack.smtp_sink, to)) == 1
        sent = await outbox.find_one({"to": to})
        assert sent is not None
        assert sent["status"] == "sent"


class TestDigest:
    async def test_what_the_interval_held_back_arrives_as_one_email(
        self,
        stack: MailStack,
    ) -> None:
        """A flapping value: the first raise is emailed at once, the three transitions after
        it within the rule's interval come as one digest when it ends, and nothing else."""
        to = f"ops-digest-{id(self)}@example.com"
        notify = {"emails": [to], "min_interval_s": 4, "digest": True}
        device = await watched_device(stack, notify)
        await post(stack.client, device, [(1, 31)])
        await settle(stack.app)
        [first] = await eventually(lambda: received(stack.smtp_sink, to), what="the raise email")
        assert "raised" in first["Subject"]
        for second, value in ((2, 20), (3, 35), (4, 20)):
            await post(stack.client, device, [(second, value)])
            await settle(stack.app)
        messages = await eventually(
            lambda: len(received(stack.smtp_sink, to)) == 2 and received(stack.smtp_sink, to),
            what="the digest email",
        )
        digest = messages[1]
        assert "digest" in digest["Subject"]
        assert "3 notifications" in digest["Subject"]
        text = parts(digest)["text/plain"]
        assert text.count("cleared for") == 2
        assert text.count("raised for") == 1
        await send_marker(stack, f"digest-{id(self)}")
        assert len(received(stack.smtp_sink, to)) == 2
