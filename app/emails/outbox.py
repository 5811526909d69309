"""The outbox seam: domains queue emails here; Celery delivers them.

The document is written first and the task enqueued after, so an email is never lost: if the
broker is down the entry stays `pending` and the beat re-enqueues it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import Celery
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.core import db
from app.emails.models import EmailOutbox

logger = logging.getLogger(__name__)

SEND_TASK = "emails.send"  # app.worker.tasks.SEND_EMAIL; not imported: the API stays light


async def queue_email(
    engine: AIOEngine,
    celery: Celery,
    *,
    to: str,
    template: str,
    context: dict[str, Any],
    dedupe_key: str | None = None,
) -> EmailOutbox | None:
    """Record an email in the outbox and enqueue its delivery.

    With a `dedupe_key`, the same email is queued at most once (None when it already was).
    """
    entry = EmailOutbox(to=to, template=template, context=context, dedupe_key=dedupe_key)
    try:
        await db.insert(engine, entry)
    except DuplicateKeyError:
        return None
    await enqueue(celery, str(entry.id))
    return entry


async def enqueue(celery: Celery, outbox_id: str) -> bool:
    """Send the delivery task to the broker; False (entry stays pending) if it is away."""
    try:
        await asyncio.to_thread(celery.send_task, SEND_TASK, args=[outbox_id], retry=False)
    except Exception as exc:  # broker down: the beat's re-enqueue picks the entry up later
        logger.warning(
            "email not enqueued", extra={"outbox_id": outbox_id, "error": type(exc).__name__}
        )
        return False
    return True
