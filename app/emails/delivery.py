"""Outbox delivery: claim an entry, render, send, record; and the beat's safety net.

Exactly once in practice: a task sends only after atomically moving the entry from `pending`
to `sending` (with its own claim token), so a duplicate delivery of the task, or a second
task enqueued by the beat, finds nothing to claim. The one window left is a worker dying
between the SMTP hand-off and recording `sent`: the entry then stays `sending` until its lease
runs out and is sent again (with the same Message-ID, so receivers may drop it).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import sentry_sdk
from odmantic import SyncEngine
from pymongo import ReturnDocument
from pymongo.collection import Collection

from app.core.config import Settings
from app.core.models import parse_object_id, utcnow
from app.emails import mailer
from app.emails.models import EmailOutbox, OutboxStatus

logger = logging.getLogger(__name__)

BATCH = 500

SyncCollection = Collection[dict[str, Any]]


class DeliveryContext(Protocol):
    """What delivery needs from the worker process: its settings and sync engine."""

    @property
    def settings(self) -> Settings:
        """The worker's settings."""

    @property
    def engine(self) -> SyncEngine:
        """The worker's ODMantic sync engine."""


def outbox_collection(ctx: DeliveryContext) -> SyncCollection:
    """The `email_outbox` collection through the worker's SyncEngine."""
    coll: SyncCollection = ctx.engine.get_collection(EmailOutbox)
    return coll


def claim(ctx: DeliveryContext, outbox_id: str) -> tuple[EmailOutbox, str] | None:
    """Move a pending entry to `sending` for this caller only; None if someone else has it."""
    oid = parse_object_id(outbox_id)
    if oid is None:
        return None
    token = secrets.token_hex(8)
    doc = outbox_collection(ctx).find_one_and_update(
        {
            "_id": oid,
            "status": OutboxStatus.PENDING.value,
            "attempts": {"$lt": ctx.settings.email_max_attempts},
        },
        {
            "$set": {"status": OutboxStatus.SENDING.value, "claim": token},
            "$inc": {"attempts": 1},
            # $currentDate, not $set of a datetime: the embedded server stores a $set
            # datetime as a string (README, "Portable MongoDB rules").
            "$currentDate": {"updated_at": True},
        },
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        return None
    return EmailOutbox.model_validate_doc(doc), token


def send_outbox_email(ctx: DeliveryContext, outbox_id: str) -> str:
    """Deliver one outbox entry: 'sent', 'skipped' (not ours to send) or 'failed'.

    Raises `mailer.TransientEmailError` after putting the entry back to `pending`, so the
    task's autoretry tries again later.
    """
    claimed = claim(ctx, outbox_id)
    if claimed is None:
        logger.info("email not claimed (already sent, sending or failed)", extra={"id": outbox_id})
        return "skipped"
    entry, token = claimed
    settings = ctx.settings
    coll = outbox_collection(ctx)
    try:
        rendered = mailer.render(entry.template, entry.context)
        msg = mailer.build_message(settings, to=entry.to, email=rendered, message_id=outbox_id)
        mailer.send(settings, msg)
    except mailer.PermanentEmailError as exc:
        mark_failed(ctx, entry.id, reason=str(exc), claim_token=token)
        return "failed"
    except mailer.TransientEmailError as exc:
        if entry.attempts >= settings.email_max_attempts:
            mark_failed(ctx, entry.id, reason=str(exc), claim_token=token)
            return "failed"
        coll.update_one(
            {"_id": entry.id, "claim": token},
            {
                "$set": {
                    "status": OutboxStatus.PENDING.value,
                    "claim": None,
                    "last_error": str(exc),
                },
                "$currentDate": {"updated_at": True},
            },
        )
        logger.warning(
            "email delivery deferred",
            extra={"id": outbox_id, "attempt": entry.attempts, "error": str(exc)},
        )
        raise
    coll.update_one(
        {"_id": entry.id, "claim": token},
        {
            "$set": {"status": OutboxStatus.SENT.value, "claim": None, "last_error": None},
            "$currentDate": {"updated_at": True, "sent_at": True},
        },
    )
    logger.info("email sent", extra={"id": outbox_id, "template": entry.template})
    return "sent"


def mark_failed(
    ctx: DeliveryContext, oid: Any, *, reason: str, claim_token: str | None = None
) -> bool:
    """Give up on an entry and report it to Sentry (without the recipient)."""
    query: dict[str, Any] = {"_id": oid}
    if claim_token is None:
        query["status"] = OutboxStatus.PENDING.value
    else:
        query["claim"] = claim_token
    result = outbox_collection(ctx).update_one(
        query,
        {
            "$set": {"status": OutboxStatus.FAILED.value, "claim": None, "last_error": reason},
            "$currentDate": {"updated_at": True},
        },
    )
    if not result.modified_count:
        return False
    logger.error("email delivery failed", extra={"id": str(oid), "reason": reason})
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("outbox_id", str(oid))
        scope.set_context("outbox", {"id": str(oid), "reason": reason})
        scope.fingerprint = ["email-delivery-failed"]
        sentry_sdk.capture_message("email delivery failed", level="error")
    return True


def requeue_stuck(ctx: DeliveryContext, enqueue: Callable[[str], None]) -> dict[str, int]:
    """The beat's safety net: free expired claims, fail exhausted entries, re-enqueue the rest.

    An entry never attempted is re-enqueued once it is older than EMAIL_PENDING_GRACE_S (the
    broker was away when the API queued it); one between retries only when its retry is
    overdue by that much (the retry message was lost), so the beat does not undercut the
    task's own backoff.
    """
    settings = ctx.settings
    coll = outbox_collection(ctx)
    now = utcnow()
    counts = {"released": 0, "failed": 0, "enqueued": 0}

    lease_cutoff = now - timedelta(seconds=settings.email_lease_s)
    for doc in coll.find(
        {"status": OutboxStatus.SENDING.value, "updated_at": {"$lt": lease_cutoff}}, {"_id": 1}
    ).limit(BATCH):
        # updated_at is left as is, so the entry is due for re-enqueueing below at once.
        result = coll.update_one(
            {"_id": doc["_id"], "status": OutboxStatus.SENDING.value},
            {"$set": {"status": OutboxStatus.PENDING.value, "claim": None}},
        )
        counts["released"] += result.modified_count

    for doc in coll.find(
        {
            "status": OutboxStatus.PENDING.value,
            "attempts": {"$gte": settings.email_max_attempts},
        },
        {"_id": 1},
    ).limit(BATCH):
        if mark_failed(ctx, doc["_id"], reason="gave up after the last attempt"):
            counts["failed"] += 1

    fresh_cutoff = now - timedelta(seconds=settings.email_pending_grace_s)
    retry_cutoff = fresh_cutoff - timedelta(seconds=settings.task_retry_backoff_max_s)
    # Two plain filters, not one `$or`: the embedded server applies an update whose filter
    # combines `_id` with `$or` to the wrong document (README, Portable MongoDB rules).
    for due in (
        {"status": OutboxStatus.PENDING.value, "attempts": 0, "updated_at": {"$lt": fresh_cutoff}},
        {
            "status": OutboxStatus.PENDING.value,
            "attempts": {"$gt": 0},
            "updated_at": {"$lt": retry_cutoff},
        },
    ):
        for doc in coll.find(due, {"_id": 1}).limit(BATCH):
            # Touch updated_at first so the next beat run does not enqueue it again at once.
            result = coll.update_one(
                {"_id": doc["_id"], **due}, {"$currentDate": {"updated_at": True}}
            )
            if result.modified_count:
                enqueue(str(doc["_id"]))
                counts["enqueued"] += 1
    if any(counts.values()):
        logger.info("outbox requeue", extra=counts)
    return counts
