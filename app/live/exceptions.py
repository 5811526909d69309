"""Errors of the live streams' HTTP side (rendered as problem+json)."""

from __future__ import annotations

from app.core.errors import Unprocessable


class BadLastEventId(Unprocessable):
    """`Last-Event-ID` is not an id this stream sends."""

    type = "live-bad-last-event-id"
    title = "Bad Last-Event-ID"
