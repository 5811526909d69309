"""The outbox seam records emails before they are enqueued, at most once per dedupe key."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.core import db
from app.core.services import services_of
from app.emails import outbox
from app.emails.models import EmailOutbox, OutboxStatus


class TestQueueEmail:
    async def test_entry_is_pending_with_its_context(self, app: FastAPI) -> None:
        entry = await outbox.queue_email(
            services_of(app).engine,
            services_of(app).celery,
            to="a@example.com",
            template="welcome",
            context={"name": "Ada"},
        )
        assert entry is not None
        stored = await db.find_one(services_of(app).engine, EmailOutbox, {"_id": entry.id})
        assert stored is not None
        # A Celery worker of the suite may already be delivering it.
        assert stored.status in (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.SENT)
        assert (stored.to, stored.template, stored.context) == (
            "a@example.com",
            "welcome",
            {"name": "Ada"},
        )

    async def test_dedupe_key_queues_once(self, app: FastAPI, mongo_db: Any) -> None:
        engine, celery = services_of(app).engine, services_of(app).celery
        kwargs: dict[str, Any] = {"to": "b@example.com", "template": "welcome", "context": {}}
        first = await outbox.queue_email(engine, celery, dedupe_key="welcome:uid-b", **kwargs)
        second = await outbox.queue_email(engine, celery, dedupe_key="welcome:uid-b", **kwargs)
        assert first is not None
        assert second is None
        assert await mongo_db.email_outbox.count_documents({"dedupe_key": "welcome:uid-b"}) == 1

    async def test_entries_without_dedupe_key_do_not_clash(self, app: FastAPI) -> None:
        engine, celery = services_of(app).engine, services_of(app).celery
        for _ in range(2):
            entry = await outbox.queue_email(
                engine, celery, to="c@example.com", template="welcome", context={}
            )
            assert entry is not None
