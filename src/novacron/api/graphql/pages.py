"""A GraphQL list page, the by-id lookup and a node made from its row, shared by the query roots.

A list is a page (``first``, ``after``: the REST ``limit`` and ``cursor``); a single resource by id or
name is ``null`` when the caller may not see it, as if it did not exist (REST's 404).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.types import get_object_definition

from novacron.api.graphql.limits import MAX_FIRST
from novacron.db.listing import ListParams
from novacron.errors import InvalidInput, NotFound

T = TypeVar("T")
R = TypeVar("R")


def node_of(cls: type[T], row: Any) -> T:
    """``cls`` with each of its plain fields (not the relations it resolves) read from ``row``'s
    attribute of that name, ``id`` as a GraphQL ID: the type's own fields say what is copied."""
    fields = get_object_definition(cls, strict=True).fields
    values = {f.python_name: getattr(row, f.python_name) for f in fields if f.base_resolver is None}
    if "id" in values:
        values["id"] = strawberry.ID(values["id"])
    return cls(**values)


@strawberry.type(description="one page of a list; pass nextCursor as after for the next one")
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_params(first: int, after: str | None, sortable: tuple[str, ...], sort: str) -> ListParams:
    """The REST listing's parameters, refused the same way (a 422 naming the argument)."""
    if not 1 <= first <= MAX_FIRST:
        raise InvalidInput("first", f"must be 1 to {MAX_FIRST}", part="query")
    return ListParams(limit=first, cursor=after, sort=sort, sortable=sortable)


def absent(get: Callable[[], R]) -> R | None:
    """What ``get`` finds, or None where REST answers 404: another tenant's resource is absent."""
    try:
        return get()
    except NotFound:
        return None
