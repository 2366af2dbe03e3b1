"""A page of plain rows serialised exactly as ``Page[Model]`` would be, without a model per row.

The hottest lists (``GET /v1/vms``, up to 500 items) read their rows as dicts of columns. Building
one pydantic model per row just to serialise it cost more than the query itself: ``model_construct``
is Python, and for every field with a ``default_factory`` pydantic inspects the factory's signature
on each call. ``RowPage`` instead derives, once, a ``TypedDict`` with the model's fields and types,
and serialises the whole page in pydantic-core (Rust) from dicts whose keys are in the model's field
order: the same serialiser per field type, so the bytes are those of
``Page[Model].model_dump_json()`` (tests/unit/test_rowpage.py compares them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter
from typing_extensions import TypedDict


class RowPage:
    """Serialises ``{"items": [...], "next_cursor": ...}`` for rows of ``model``'s fields."""

    def __init__(self, model: type[BaseModel]) -> None:
        fields = model.model_fields
        # the model's own annotations: each field gets the serialiser it has in the model
        item: Any = TypedDict(f"{model.__name__}Row", {n: f.annotation for n, f in fields.items()})  # type: ignore[misc]
        page: Any = TypedDict(f"{model.__name__}RowPage", {"items": list[item], "next_cursor": str | None})  # type: ignore[misc]
        self._adapter: TypeAdapter[Any] = TypeAdapter(page)
        self._order = tuple(fields)
        # built once and shared by every row: they are only read, to be serialised
        self._defaults = {
            n: f.get_default(call_default_factory=True) for n, f in fields.items() if not f.is_required()
        }

    def item(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` with the model's fields in their order, a missing one as its default."""
        defaults = self._defaults
        return {n: row[n] if n in row else defaults[n] for n in self._order}

    def dump_json(self, rows: Iterable[Mapping[str, Any]], next_cursor: str | None) -> bytes:
        """The page's JSON; a required field missing from a row raises ``KeyError``."""
        return self._adapter.dump_json({"items": [self.item(r) for r in rows], "next_cursor": next_cursor})
