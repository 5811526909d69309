"""Route options and responses shared by every domain's routers."""

from __future__ import annotations

from typing import Any

from fastapi import Response, status
from pydantic import BaseModel

# `@router.delete(path, **NO_CONTENT)` on a handler returning None: 204, no body.
NO_CONTENT: dict[str, Any] = {
    "status_code": status.HTTP_204_NO_CONTENT,
    "response_class": Response,
    "response_model": None,
}


class ModelResponse(Response):
    """A validated model encoded to JSON in one pass by pydantic (the route keeps documenting
    it with `response_model`; FastAPI sends a returned `Response` as it is, without
    validating and converting the model a second time)."""

    media_type = "application/json"

    def __init__(self, model: BaseModel, *, status_code: int = 200) -> None:
        super().__init__(model.model_dump_json(), status_code=status_code)
