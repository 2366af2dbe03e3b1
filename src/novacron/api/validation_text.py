"""Sentences for people from pydantic's validation errors (issue 17, item 4).

pydantic says "String should match pattern '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'"; a user needs
"use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit". The
API's one validation-error handler (``api/errors.py``) asks ``reason`` for each error, so every route
answers in the same words and no route writes its own. Where a sentence comes from, first match wins:

1. the field's own ``json_schema_extra={"x-error": "..."}`` (a field whose rule no generic text says);
2. the error's type and its context (lengths, bounds, allowed values), per pydantic error type;
3. for a pattern: a known pattern's sentence (months, durations, emails...), else the pattern read
   as "[start]([middle]{0,n}[end])?" and its character classes named, else the field's description.

The machine-readable part stays: ``errors[].field`` still names the field (``body.name``), the HTTP
status and the problem's shape do not change; only ``reason`` (and the ``detail`` built from it) do.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

MONTH_TEXT = "use YYYY-MM, e.g. 2026-12"
#: patterns whose shape no generic reading says well
KNOWN_PATTERNS: dict[str, str] = {
    r"^(19|2\d)\d{2}-(0[1-9]|1[0-2])$": MONTH_TEXT,
    r"^\d{4}-\d{2}$": MONTH_TEXT,
    r"^(\d+(ms|s|m|h|d|w))+$": "use a duration such as 30s, 5m or 1h30m (units ms, s, m, h, d, w)",
    r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$": "use an email address such as ops@example.com",
    r"^https?://": "use an http:// or https:// URL",
    r"^[a-z0-9]([a-z0-9-]{0,62})$": (
        "use 1-63 lowercase letters, digits and hyphens, starting with a letter or digit"
    ),
    r"^/[\x21-\x7e]{0,255}$": "use a path starting with / (at most 256 printable characters, no spaces)",
    r"^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$": (
        "use letters, digits, dots and hyphens (or a leading * wildcard), starting and ending "
        "with a letter or digit"
    ),
}

#: character-class parts, in the order they are named: (class text, plural, singular)
_CLASS_PARTS: list[tuple[str, str, str]] = [
    ("a-zA-Z", "letters", "letter"),
    ("A-Za-z", "letters", "letter"),
    ("a-z", "lowercase letters", "letter"),
    ("A-Z", "uppercase letters", "letter"),
    ("0-9", "digits", "digit"),
    (r"\d", "digits", "digit"),
    (".", "dots", "dot"),
    ("_", "underscores", "underscore"),
    (":", "colons", "colon"),
    ("/", "slashes", "slash"),
    ("@", "@ signs", "@ sign"),
    (" ", "spaces", "space"),
    ("*", "asterisks", "asterisk"),
    ("-", "hyphens", "hyphen"),
]
_HEX = {"0-9a-f", "0-9a-fA-F", "0-9A-Fa-f", "a-f0-9"}
_CLASS = r"\[([^\]]+)\]"
_REPEAT = r"(\{(\d+),(\d+)\}|\*|\+)"
#: ^[s]([m]{0,n}[e])?$ , ^[s][m]{0,n}$ , ^([s][m]{0,n})?$ , ^[c]{a,b}$
_SHAPED_END = re.compile(rf"^\^{_CLASS}\({_CLASS}{_REPEAT}{_CLASS}\)\?\$$")
_SHAPED_OPEN = re.compile(rf"^\^(\()?{_CLASS}{_CLASS}{_REPEAT}(\)\?)?\$$")
_FIXED = re.compile(rf"^\^{_CLASS}\{{(\d+)(?:,(\d+))?\}}\$$")


def _parts(cls: str) -> list[tuple[str, str]] | None:
    """The named parts of a character class's text, or None when some part has no name."""
    found: list[tuple[str, str]] = []
    rest = cls
    for text, plural, singular in _CLASS_PARTS:
        if text in rest:
            rest = rest.replace(text, "", 1)
            if (plural, singular) not in found:
                found.append((plural, singular))
    if rest.replace("\\", ""):
        return None
    if ("letters", "letter") in found:  # "letters" says both cases
        found = [p for p in found if p[0] not in ("lowercase letters", "uppercase letters")]
    return found


def _join(words: Sequence[str], last: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _bounds(repeat: str, low: str | None, high: str | None, extra: int) -> tuple[int, int | None]:
    """Total length bounds of a name whose middle repeats ``repeat`` and that has ``extra`` fixed chars."""
    if repeat == "*":
        return extra, None
    if repeat == "+":
        return extra + 1, None
    return int(low or 0) + extra, int(high or 0) + extra


def _length(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{lo} or more" if lo > 1 else ""
    return f"{lo}-{hi}" if lo != hi else str(lo)


def _describe(lo: int, hi: int | None, middle: str, start: str | None, end: str | None) -> str | None:
    mid = _parts(middle)
    if mid is None:
        return None
    words = f"{_length(lo, hi)} {_join([p[0] for p in mid])}".strip()
    edges: list[str] = []
    for edge, cls in (("starting", start), ("ending", end)):
        if cls is None or cls == middle:
            continue
        named = _parts(cls)
        if named is None:
            return None
        edges.append(f"{edge}:{_join([p[1] for p in named], 'or')}")
    if len(edges) == 2 and edges[0].split(":")[1] == edges[1].split(":")[1]:
        return f"use {words}, starting and ending with a {edges[0].split(':')[1]}"
    tail = "".join(f", {e.split(':')[0]} with a {e.split(':')[1]}" for e in edges)
    return f"use {words}{tail}"


def describe_pattern(pattern: str) -> str | None:
    """A sentence for the strings ``pattern`` accepts, or None when it cannot be read."""
    if pattern in KNOWN_PATTERNS:
        return KNOWN_PATTERNS[pattern]
    if m := _FIXED.match(pattern):
        cls, low, high = m.group(1), m.group(2), m.group(3)
        size = low if high is None else _length(int(low), int(high))
        if cls in _HEX:
            return f"use {size} hexadecimal digits"
        named = _parts(cls)
        return f"use {size} {_join([p[0] for p in named])}" if named else None
    if m := _SHAPED_END.match(pattern):
        start, middle, repeat, low, high, end = m.groups()
        lo, hi = _bounds(repeat, low, high, 2)
        return _describe(1, hi, middle, start, end) if lo == 2 else None
    if m := _SHAPED_OPEN.match(pattern):
        opt, start, middle, repeat, low, high, close = m.groups()
        if bool(opt) != bool(close):
            return None
        lo, hi = _bounds(repeat, low, high, 1)
        text = _describe(lo, hi, middle, start, None)
        return f"{text}, or leave it empty" if text and opt else text
    return None


def _bound_text(ctx: Mapping[str, Any], key: str) -> str:
    value = ctx.get(key)
    return str(value) if value is not None else "?"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _by_type(kind: str, ctx: Mapping[str, Any], msg: str) -> str | None:
    """The sentence for one pydantic error type; None: not one of these."""
    simple = {
        "missing": "required",
        "extra_forbidden": "not a setting of this request: remove it",
        "int_parsing": "use a whole number",
        "int_type": "use a whole number",
        "int_from_float": "use a whole number",
        "float_parsing": "use a number",
        "float_type": "use a number",
        "finite_number": "use a finite number",
        "bool_parsing": "use true or false",
        "bool_type": "use true or false",
        "string_type": "use text",
        "dict_type": "use an object of settings",
        "model_type": "use an object",
        "model_attributes_type": "use an object",
        "list_type": "use a list",
        "datetime_parsing": "use a date and time in ISO 8601, e.g. 2026-12-07T06:00:00Z",
        "datetime_type": "use a date and time in ISO 8601, e.g. 2026-12-07T06:00:00Z",
        "datetime_from_date_parsing": "use a date and time in ISO 8601, e.g. 2026-12-07T06:00:00Z",
        "date_parsing": "use a date as YYYY-MM-DD, e.g. 2026-12-07",
        "date_from_datetime_parsing": "use a date as YYYY-MM-DD, e.g. 2026-12-07",
        "ip_v4_address": "use an IPv4 address, e.g. 10.0.0.5",
        "ip_v6_address": "use an IPv6 address",
        "ip_any_address": "use an IP address, e.g. 10.0.0.5",
        "ip_any_network": "use a network in CIDR form, e.g. 10.0.0.0/24",
        "ip_v4_network": "use an IPv4 network in CIDR form, e.g. 10.0.0.0/24",
        "ip_any_interface": "use an address with its prefix length, e.g. 10.0.0.5/24",
        "url_parsing": "use a URL such as https://example.com/path",
        "url_scheme": "use an http:// or https:// URL",
        "uuid_parsing": "use a UUID",
    }
    if kind in simple:
        return simple[kind]
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "required: it must not be empty" if n == 1 else f"use at least {n} characters"
    if kind == "string_too_long":
        return f"use at most {_plural(ctx.get('max_length'), 'character')}"
    if kind == "too_short":
        return f"give at least {_plural(ctx.get('min_length'), 'item')}"
    if kind == "too_long":
        return f"give at most {_plural(ctx.get('max_length'), 'item')}"
    bounds = {
        "greater_than_equal": ("of at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("of at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"use a number {words} {_bound_text(ctx, key)}"
    if kind in ("literal_error", "enum"):
        return f"use one of {ctx.get('expected', '').replace(chr(39), '')}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "assertion_error":
        return msg.removeprefix("Assertion failed, ")
    if kind == "json_invalid":
        return f"the body is not valid JSON ({ctx.get('error', 'parse error')})"
    return None


def reason(error: Mapping[str, Any], field: FieldInfo | None = None) -> str:
    """The sentence for one pydantic error (``RequestValidationError.errors()`` item)."""
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict) and isinstance(extra.get("x-error"), str):
        return str(extra["x-error"])
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    msg = str(error.get("msg", ""))
    if kind == "string_pattern_mismatch":
        text = describe_pattern(str(ctx.get("pattern", "")))
        if text is None and field is not None and field.description:
            text = f"use {field.description}"
        return text or "does not have the expected form"
    return _by_type(kind, ctx, msg) or msg


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class behind an annotation (``Model``, ``Model | None``, ``Annotated[Model, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            if (found := _model_of(arg)) is not None:
                return found
    return None


def _walk(model: type[BaseModel] | None, path: Sequence[Any]) -> FieldInfo | None:
    """The field of ``model`` at ``path`` (nested models followed; list indexes skipped)."""
    info: FieldInfo | None = None
    for part in path:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        model = _model_of(info.annotation)
    return info


def field_info(route: Any, loc: Sequence[Any]) -> FieldInfo | None:
    """The declared field an error's ``loc`` names on a FastAPI route, when it can be found."""
    if not loc or route is None:
        return None
    where, rest = loc[0], list(loc[1:])
    dependant = getattr(route, "dependant", None)
    if where == "body":
        body = getattr(route, "body_field", None)
        if body is None:
            return None
        model = _model_of(body.field_info.annotation)
        if model is not None and rest and str(rest[0]) not in model.model_fields:
            rest = rest[1:]  # an embedded body names its parameter first
        return _walk(model, rest) if rest else None
    params = {"query": "query_params", "path": "path_params", "header": "header_params"}.get(str(where))
    if params is None or dependant is None or not rest:
        return None
    for param in _all_params(dependant, params):
        if str(rest[0]) in (param.name, param.alias):
            info: FieldInfo = param.field_info
            return info
    return None


def _all_params(dependant: Any, attr: str) -> list[Any]:
    found = list(getattr(dependant, attr, []))
    for sub in getattr(dependant, "dependencies", []):
        found += _all_params(sub, attr)
    return found


def field_of(error: Mapping[str, Any]) -> str:
    """The field an error names: ``body.name``; a body that is not JSON is ``body`` (pydantic adds
    the character position, which is no field)."""
    loc = list(error.get("loc") or ())
    if error.get("type") == "json_invalid":
        loc = loc[:1]
    return ".".join(str(p) for p in loc)


def short_field(field: str) -> str:
    """A field as people read it: ``body.name`` -> ``name``, ``query.month`` -> ``month``."""
    for prefix in ("body.", "query.", "path.", "header."):
        if field.startswith(prefix):
            return field[len(prefix) :]
    return "request body" if field == "body" else field
