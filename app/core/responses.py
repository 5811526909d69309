"""Route options shared by every domain's routers."""

from __future__ import annotations

from typing import Any

from fastapi import Response, status

# `@router.delete(path, **NO_CONTENT)` on a handler returning None: 204, no body.
NO_CONTENT: dict[str, Any] = {
    "status_code": status.HTTP_204_NO_CONTENT,
    "response_class": Response,
    "response_model": None,
}
