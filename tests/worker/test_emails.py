"""Outbox emails through the real worker: delivery, retries, give-up, re-enqueue, once only."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from email.message import Message
from typing import Any

from bson import ObjectId
from celery import Celery
from fastapi import FastAPI

from app.core import db
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.models import utcnow
from app.core.services import services_of
from app.emails import outbox
from app.emails.models import EmailOutbox, OutboxStatus
from app.worker.factory import create_celery
from tests.fixtures.servers import ManagedProcess, SentryEndpoint, SmtpSink, free_port
from tests.fixtures.worker import eventually


def new_address() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def received(sink: SmtpSink, to: str) -> list[Message]:
    return [m for m in sink.messages if m["To"] == to]


def parts(msg: Message) -> dict[str, str]:
    found = {}
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_content_type()] = payload.decode(part.get_content_charset() or "utf-8")
    return found


async def queue(app: FastAPI, *, to: str, template: str = "welcome", **context: Any) -> ObjectId:
    entry = await outbox.queue_email(
        services_of(app).engine, services_of(app).celery, to=to, template=template, context=context
    )
    assert entry is not None
    return entry.id


async def status_of(mongo_db: MongoDatabase, oid: ObjectId) -> dict[str, Any]:
    doc = await mongo_db.email_outbox.find_one({"_id": oid})
    assert doc is not None
    return doc


async def worker_caught_up(app: FastAPI, smtp_sink: SmtpSink) -> None:
    """Wait until the worker has handled every task queued before now.

    The worker runs one task at a time (`--pool solo`) in queue order, so once an email queued
    now has arrived, every task queued earlier has been handled too.
    """
    marker = new_address()
    await queue(app, to=marker)
    await eventually(lambda: received(smtp_sink, marker), what="a marker email queued after")


async def beat_passed(app: FastAPI, smtp_sink: SmtpSink) -> None:
    """Wait until the beat's re-enqueue pass has run at least once after now.

    The marker is written to the outbox without a task, so only the beat can send it.
    """
    marker = EmailOutbox(to=new_address(), template="welcome", context={"name": "Mo"})
    await db.insert(services_of(app).engine, marker)
    await eventually(lambda: received(smtp_sink, marker.to), what="a marker only the beat sends")


def sentry_events_for(endpoint: SentryEndpoint, oid: ObjectId) -> list[dict[str, Any]]:
    return [
        event
        for envelope in endpoint.envelopes
        for event in envelope.events()
        if (event.get("tags") or {}).get("outbox_id") == str(oid)
    ]


class TestDelivery:
    async def test_queued_email_arrives_with_both_parts_and_subject(
        self, app: FastAPI, celery_worker: ManagedProcess, smtp_sink: SmtpSink, mongo_db: Any
    ) -> None:
        to = new_address()
        oid = await queue(app, to=to, name="Ada <Lovelace>")
        [msg] = await eventually(lambda: received(smtp_sink, to), what="the email")
        assert msg["Subject"] == "Welcome to Sensorhub, Ada <Lovelace>"
        body = parts(msg)
        assert "Hello Ada <Lovelace>," in body["text/plain"]
        assert "Hello Ada &lt;Lovelace&gt;," in body["text/html"]
        assert msg["Message-ID"] == f"<{oid}@sensorhub>"
        doc = await eventually(lambda: _sent(mongo_db, oid), what="status sent")
        assert doc["attempts"] == 1
        assert doc["sent_at"].tzinfo is not None  # a real date, not a string

    async def test_each_template_renders_its_subject(
        self, app: FastAPI, celery_worker: ManagedProcess, smtp_sink: SmtpSink
    ) -> None:
        invite, alert = new_address(), new_address()
        await queue(
            app,
            to=invite,
            template="share_invite",
            inviter_name="Grace",
            resource_kind="folder",
            resource_name="Plant 1",
            role="editor",
        )
        await queue(
            app,
            to=alert,
            template="alert_notification",
            rule_name="Too hot",
            device_name="Boiler",
            metric="temp",
            value=97.5,
            threshold=90,
        )
        [msg] = await eventually(lambda: received(smtp_sink, invite), what="invite")
        assert msg["Subject"] == "Grace shared Plant 1 with you on Sensorhub"
        assert "editor access to the folder" in parts(msg)["text/plain"]
        [msg] = await eventually(lambda: received(smtp_sink, alert), what="alert")
        assert msg["Subject"] == "[Sensorhub] Too hot: Boiler temp"
        assert "temp = 97.5 (threshold 90)" in parts(msg)["text/plain"]


async def _sent(mongo_db: Any, oid: ObjectId) -> dict[str, Any] | None:
    doc = await mongo_db.email_outbox.find_one({"_id": oid})
    return doc if doc and doc["status"] == OutboxStatus.SENT else None


class TestDuplicateDelivery:
    async def test_same_task_delivered_three_times_sends_once(
        self,
        app: FastAPI,
        worker_celery: Celery,
        smtp_sink: SmtpSink,
        mongo_db: Any,
    ) -> None:
        to = new_address()
        oid = await queue(app, to=to)
        for _ in range(3):
            worker_celery.send_task("emails.send", args=[str(oid)])
        await eventually(lambda: received(smtp_sink, to), what="the email")
        await eventually(lambda: _sent(mongo_db, oid), what="status sent")
        await worker_caught_up(app, smtp_sink)  # the duplicates have been handled by now
        assert len(received(smtp_sink, to)) == 1
        assert (await status_of(mongo_db, oid))["attempts"] == 1


class TestSmtpDown:
    async def test_retried_and_delivered_when_the_relay_is_back(
        self,
        app: FastAPI,
        celery_worker: ManagedProcess,
        worker_settings: Settings,
        smtp_sink: SmtpSink,
        mongo_db: Any,
    ) -> None:
        to = new_address()
        smtp_sink.stop()
        try:
            oid = await queue(app, to=to)

            async def deferred() -> bool:
                doc = await status_of(mongo_db, oid)
                return doc["attempts"] >= 1 and doc["last_error"] is not None

            await eventually(deferred, what="a failed first attempt")
            doc = await status_of(mongo_db, oid)
            assert doc["status"] in (OutboxStatus.PENDING, OutboxStatus.SENDING)
        finally:
            smtp_sink.start()
        await eventually(lambda: received(smtp_sink, to), what="the retried email")
        doc = await eventually(lambda: _sent(mongo_db, oid), what="status sent")
        # The worker allows several attempts so that a slow machine cannot use them all up
        # before the relay is back.
        assert 2 <= doc["attempts"] < worker_settings.email_max_attempts
        assert doc["last_error"] is None
        assert len(received(smtp_sink, to)) == 1

    async def test_gives_up_after_max_attempts_and_reports_to_sentry(
        self,
        app: FastAPI,
        celery_worker: ManagedProcess,
        worker_settings: Settings,
        smtp_sink: SmtpSink,
        worker_sentry_endpoint: SentryEndpoint,
        make_settings: Any,
        mongo_db: Any,
    ) -> None:
        to = new_address()
        smtp_sink.stop()
        try:
            oid = await queue(app, to=to)

            async def failed() -> dict[str, Any] | None:
                doc = await status_of(mongo_db, oid)
                return doc if doc["status"] == OutboxStatus.FAILED else None

            doc = await eventually(failed, timeout=60, what="status failed")
        finally:
            smtp_sink.start()
        assert doc["attempts"] == worker_settings.email_max_attempts
        assert doc["last_error"] == "ConnectionRefusedError"
        [event] = await eventually(
            lambda: sentry_events_for(worker_sentry_endpoint, oid), what="the Sentry event"
        )
        assert event["level"] == "error"
        assert to not in json.dumps(event)
        await beat_passed(app, smtp_sink)  # nor does the beat send it again
        assert received(smtp_sink, to) == []
        assert (await status_of(mongo_db, oid))["status"] == OutboxStatus.FAILED

    async def test_permanent_error_fails_at_once(
        self,
        app: FastAPI,
        celery_worker: ManagedProcess,
        worker_sentry_endpoint: SentryEndpoint,
        mongo_db: Any,
    ) -> None:
        oid = await queue(app, to=new_address(), template="no_such_template")

        async def failed() -> dict[str, Any] | None:
            doc = await status_of(mongo_db, oid)
            return doc if doc["status"] == OutboxStatus.FAILED else None

        doc = await eventually(failed, what="status failed")
        assert doc["attempts"] == 1
        assert "unknown email template" in doc["last_error"]
        await eventually(
            lambda: sentry_events_for(worker_sentry_endpoint, oid), what="Sentry event"
        )


class TestBrokerDown:
    async def test_email_arrives_once_after_the_broker_returns(
        self,
        app: FastAPI,
        make_settings: Any,
        celery_worker: ManagedProcess,
        smtp_sink: SmtpSink,
        mongo_db: Any,
    ) -> None:
        # The API's broker is unreachable when it queues (nothing listens on that port); the
        # worker's beat finds the pending entry and enqueues it on the working broker.
        away = create_celery(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
        to = new_address()
        entry = await outbox.queue_email(
            services_of(app).engine, away, to=to, template="welcome", context={"name": "Bo"}
        )
        assert entry is not None
        assert await outbox.enqueue(away, str(entry.id)) is False  # the broker really is away
        await eventually(lambda: received(smtp_sink, to), what="the re-enqueued email")
        await eventually(lambda: _sent(mongo_db, entry.id), what="status sent")
        await beat_passed(app, smtp_sink)  # a later beat run sent nothing again
        assert len(received(smtp_sink, to)) == 1


class TestStuckSending:
    async def test_expired_claim_is_sent_again(
        self, app: FastAPI, celery_worker: ManagedProcess, smtp_sink: SmtpSink, mongo_db: Any
    ) -> None:
        # A worker died after claiming: the entry is `sending` with a claim past its lease.
        to = new_address()
        oid = ObjectId()
        long_ago = utcnow() - timedelta(minutes=10)
        await mongo_db.email_outbox.insert_one(
            {
                "_id": oid,
                "to": to,
                "template": "welcome",
                "context": {},
                "status": "sending",
                "attempts": 1,
                "claim": "dead-worker",
                "last_error": None,
                "dedupe_key": None,
                "created_at": long_ago,
                "updated_at": long_ago,
                "sent_at": None,
            }
        )
        await eventually(lambda: received(smtp_sink, to), what="the email")
        doc = await eventually(lambda: _sent(mongo_db, oid), what="status sent")
        assert doc["attempts"] == 2

    async def test_claim_within_its_lease_is_left_alone(
        self,
        app: FastAPI,
        make_settings: Any,
        celery_worker: ManagedProcess,
        smtp_sink: SmtpSink,
        mongo_db: Any,
    ) -> None:
        to = new_address()
        oid = ObjectId()
        now = utcnow()
        await mongo_db.email_outbox.insert_one(
            {
                "_id": oid,
                "to": to,
                "template": "welcome",
                "context": {},
                "status": "sending",
                "attempts": 1,
                "claim": "busy-worker",
                "created_at": now,
                "updated_at": now,
            }
        )
        await beat_passed(app, smtp_sink)
        assert received(smtp_sink, to) == []
        assert (await status_of(mongo_db, oid))["claim"] == "busy-worker"
