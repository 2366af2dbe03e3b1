"""Lists: keyset pagination, sorting and equality filters, the same for every resource."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from novacron.api.errors import invalid

T = TypeVar("T")
M = TypeVar("M")
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    #: pass as ``cursor`` to get the next page; absent on the last page
    next_cursor: str | None = None


@dataclass
class ListParams:
    limit: int = 50
    cursor: str | None = None
    sort: str = "created_at"


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
        raise invalid("query.cursor", "not a cursor this API returned", 400) from exc


def paginate(
    session: Session,
    stmt: Select[Any],
    model: type[M],
    params: ListParams,
    sortable: Sequence[str],
    *,
    as_rows: bool = False,
) -> tuple[list[M], str | None]:
    """Run ``stmt`` one page at a time, ordered by the sort field then id (stable, index-friendly)."""
    if not 1 <= params.limit <= MAX_LIMIT:
        raise invalid("query.limit", f"must be between 1 and {MAX_LIMIT}", 400)
    desc = params.sort.startswith("-")
    field = params.sort.lstrip("-")
    if field not in sortable:
        raise invalid("query.sort", f"must be one of {', '.join(sortable)} (prefix '-' for descending)", 400)
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
