"""Where the API lives: every domain router's prefix starts with `API_PREFIX`.

Routers carry the full prefix themselves (`APIRouter(prefix=f"{API_PREFIX}/folders")`)
rather than getting `/api/v1` from an enclosing router: FastAPI includes routers lazily, so a
route only knows the prefixes of its own router, and the route template that logs and
metrics record (`scope["route"].path`) must be the whole one.
"""

from __future__ import annotations

API_PREFIX = "/api/v1"
