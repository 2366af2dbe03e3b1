"""Lists: keyset pagination and sorting, the same for every resource.

Services page their queries with ``paginate``; ``api/listing.py`` reads ``ListParams`` from the
query string and wraps a page in ``Page``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from novacron.errors import MalformedInput

M = TypeVar("M")
MAX_LIMIT = 500


@dataclass(frozen=True)
class ListParams:
    """One page's worth of a list: how many, from where, in which order, and the orders allowed."""

    limit: int = 50
    cursor: str | None = None
    sort: str = "created_at"
    #: the fields ``sort`` may name (each also with a leading ``-`` for descending)
    sortable: tuple[str, ...] = ("created_at",)


def _encode(value: Any, ident: str) -> str:
    if isinstance(value, datetime):
        value = {"dt": value.isoformat()}
    raw = json.dumps([value, ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, ident = json.loads(raw)
        if isinstance(value, dict) and "dt" in value:
            value = datetime.fromisoformat(value["dt"])
        if not isinstance(ident, str):
            raise ValueError
        return value, ident
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise MalformedInput("cursor", "not a cursor this API returned", part="query") from exc


def where_equal(stmt: Select[Any], *pairs: tuple[Any, Any]) -> Select[Any]:
    """``stmt`` narrowed to rows whose column equals its value, for each (column, value) given a
    value: a list's equality filters, where a filter left out (None) matches everything."""
    for column, value in pairs:
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt


def paginate(
    session: Session,
    stmt: Select[Any],
    model: type[M],
    params: ListParams,
    *,
    as_rows: bool = False,
) -> tuple[list[M], str | None]:
    """Run ``stmt`` one page at a time, ordered by the sort field then id (stable, index-friendly)."""
    if not 1 <= params.limit <= MAX_LIMIT:
        raise MalformedInput("limit", f"must be between 1 and {MAX_LIMIT}", part="query")
    desc = params.sort.startswith("-")
    field = params.sort.lstrip("-")
    if field not in params.sortable:
        allowed = ", ".join(params.sortable)
        raise MalformedInput("sort", f"must be one of {allowed} (prefix '-' for descending)", part="query")
    col: InstrumentedAttribute[Any] = getattr(model, field)
    id_col: InstrumentedAttribute[Any] = model.id  # type: ignore[attr-defined]
    if params.cursor:
        value, ident = _decode(params.cursor)
        if desc:
            stmt = stmt.where(or_(col < value, and_(col == value, id_col < ident)))
        else:
            stmt = stmt.where(or_(col > value, and_(col == value, id_col > ident)))
    order = (col.desc(), id_col.desc()) if desc else (col.asc(), id_col.asc())
    result = session.execute(stmt.order_by(*order).limit(params.limit + 1))
    # ``as_rows``: the statement selects columns of ``model``, and the rows come back as they are
    rows: list[M] = list(result.all() if as_rows else result.scalars())  # type: ignore[arg-type]
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        next_cursor = _encode(getattr(last, field), last.id)  # type: ignore[attr-defined]
    return rows, next_cursor
