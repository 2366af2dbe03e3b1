"""List endpoints: the query parameters every list takes, and the page it answers with.

A list route takes ``ListQuery(sortable, default_sort)`` as a dependency and hands the resulting
``ListParams`` to its service, which pages with ``novacron.db.listing.paginate``; the route's own
filters are ordinary query parameters next to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from novacron.db.listing import MAX_LIMIT, ListParams

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    #: pass as ``cursor`` to get the next page; absent on the last page
    next_cursor: str | None = None


def list_query(sortable: tuple[str, ...], default_sort: str = "created_at") -> Callable[..., ListParams]:
    """The dependency that reads ``limit``, ``cursor`` and ``sort`` for a list of these sort fields."""
    orders = ", ".join(sortable)

    def params(
        limit: int = Query(50, ge=1, le=MAX_LIMIT, description="items per page"),
        cursor: str | None = Query(None, description="next_cursor of the previous page"),
        sort: str = Query(default_sort, description=f"one of {orders}; '-' for descending"),
    ) -> ListParams:
        return ListParams(limit, cursor, sort, sortable)

    return params
