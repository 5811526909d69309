"""Cursor pagination shared by list endpoints: ordered by `_id`, cursor = the last `_id`."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from odmantic import AIOEngine, Model
from pydantic import BaseModel

from app.core import db
from app.core.config import Settings
from app.core.errors import Unprocessable
from app.core.models import HEX24, parse_object_id
from app.core.openapi import raises
from app.core.services import Services, ServicesDep

ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")
ModelT = TypeVar("ModelT", bound=Model)
FiltersT = TypeVar("FiltersT", bound=BaseModel)


class InvalidCursor(Unprocessable):
    """The cursor is not one this API handed out."""

    type = "invalid-cursor"
    title = "Invalid cursor"


class LimitTooLarge(Unprocessable):
    """`limit` is over the configured page size cap."""

    type = "limit-too-large"
    title = "Limit too large"


class Page(BaseModel, Generic[ItemT]):
    """One page of a list: its items and the cursor of the next page (null on the last)."""

    items: list[ItemT]
    next_cursor: str | None

    @classmethod
    def of(
        cls, rows: Iterable[RowT], cursor: str | None, read: Callable[[RowT], ItemT]
    ) -> Page[ItemT]:
        """The page of `rows` (each shown through `read`) with the next page's cursor."""
        return cls(items=[read(row) for row in rows], next_cursor=cursor)


@dataclass(frozen=True, slots=True)
class PageParams:
    """A validated `limit` and `cursor`."""

    limit: int
    cursor: str | None = None

    def filter(self) -> dict[str, Any]:
        """The query part that starts the page after the cursor."""
        if self.cursor is None:
            return {}
        oid = parse_object_id(self.cursor)
        if oid is None:
            raise InvalidCursor("cursor must be the next_cursor of a previous page")
        return {"_id": {"$gt": oid}}


def page_params(settings: Settings, *, limit: int | None, cursor: str | None) -> PageParams:
    """Check `limit` against the settings' cap; default it when absent."""
    if limit is None:
        limit = min(settings.page_size_default, settings.page_size_max)
    if limit > settings.page_size_max:
        raise LimitTooLarge(f"limit must be at most {settings.page_size_max}")
    params = PageParams(limit=limit, cursor=cursor or None)
    params.filter()  # reject a malformed cursor before any query runs
    return params


@raises(InvalidCursor, LimitTooLarge)
async def _page_params_dep(
    services: ServicesDep,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            description="items per page",
            json_schema_extra={"x-settings": {"maximum": "page_size_max"}},
        ),
    ] = None,
    cursor: Annotated[
        str | None, Query(pattern=HEX24, description="`next_cursor` of the previous page")
    ] = None,
) -> PageParams:
    return page_params(services.settings, limit=limit, cursor=cursor)


PageParamsDep = Annotated[PageParams, Depends(_page_params_dep)]


def and_filters(*parts: dict[str, Any]) -> dict[str, Any]:
    """AND query parts together, dropping empty ones."""
    kept = [p for p in parts if p]
    if not kept:
        return {}
    if len(kept) == 1:
        return kept[0]
    return {"$and": kept}


def next_cursor(rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
    """Trim a `limit + 1` fetch to `limit` rows and say where the next page starts."""
    if len(rows) > limit:
        kept = list(rows[:limit])
        return kept, str(kept[-1].id)
    return list(rows), None


async def find_page(
    engine: AIOEngine, model: type[ModelT], page: PageParams, *filters: dict[str, Any]
) -> tuple[list[ModelT], str | None]:
    """One page (by `_id`) of the documents of `model` matching every filter (empty ones are
    dropped), and the cursor of the next page."""
    query = and_filters(*filters, page.filter())
    rows = await db.find_many(engine, model, query, sort=[("_id", 1)], limit=page.limit + 1)
    return next_cursor(rows, page.limit)


Fetch = Callable[..., Awaitable[tuple[Sequence[RowT], str | None]]]
"""A service's `list_(engine, *, <scope>=..., page=..., filters_in=..., **options)`."""


@dataclass(frozen=True, slots=True)
class Listing(Generic[FiltersT]):
    """What every list route takes: the clients, whose list it is, the page and the filters."""

    services: Services
    scope: dict[str, Any]
    page: PageParams
    filters: FiltersT

    async def page_of(
        self,
        page_type: type[Page[ItemT]],
        fetch: Fetch[RowT],
        read: Callable[[RowT], ItemT],
        **options: Any,
    ) -> Page[ItemT]:
        """The page `fetch` finds for this request, each row shown through `read`."""
        rows, cursor = await fetch(
            self.services.engine, **self.scope, page=self.page, filters_in=self.filters, **options
        )
        return page_type.of(rows, cursor, read)


def listing(
    filters: type[FiltersT], *, scope: str, scope_dep: Any
) -> Callable[..., Awaitable[Listing[FiltersT]]]:
    """A dependency gathering a list route's input: `filters` from the query string, the page,
    and the `scope` parameter (`principal`, `device`...) resolved by `scope_dep`."""

    async def gather(
        services: Services, page: PageParams, filters: FiltersT, **scoped: Any
    ) -> Listing[FiltersT]:
        return Listing(services=services, scope=scoped, page=page, filters=filters)

    # FastAPI reads a dependency's parameters from its signature: name the scope parameter.
    gather.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(scope, inspect.Parameter.KEYWORD_ONLY, annotation=scope_dep),
            inspect.Parameter("services", inspect.Parameter.KEYWORD_ONLY, annotation=ServicesDep),
            inspect.Parameter("page", inspect.Parameter.KEYWORD_ONLY, annotation=PageParamsDep),
            inspect.Parameter(
                "filters", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[filters, Query()]
            ),
        ],
        return_annotation=Listing[filters],  # type: ignore[valid-type]
    )
    return gather
