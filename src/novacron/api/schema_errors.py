"""The API's validation sentences written into its OpenAPI document, per schema constraint (issue 17).

The dashboard checks a form before sending it against the request body's schema in /openapi.json
(``web/static/js/formcheck.js``). So that it says exactly what the API would say, the sentence is
not written twice: each schema node with a constraint gets an ``x-errors`` object, keyword to
sentence (``{"pattern": "use 1-63 lowercase letters…", "maxLength": "use at most 40 characters"}``),
made by ``validation_text.reason`` from the same pydantic error the API would raise; a property's
``x-errors.required`` is the sentence when it is missing. A field's own ``x-error`` wins as it does
on the server (``reason`` returns it for any error of that field).
"""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo

from novacron.api.validation_text import reason

#: JSON-schema keyword -> (pydantic error type, its context key); strings and arrays differ
_STRING = {"minLength": ("string_too_short", "min_length"), "maxLength": ("string_too_long", "max_length")}
_ARRAY = {"minItems": ("too_short", "min_length"), "maxItems": ("too_long", "max_length")}
_NUMBER = {
    "minimum": ("greater_than_equal", "ge"),
    "exclusiveMinimum": ("greater_than", "gt"),
    "maximum": ("less_than_equal", "le"),
    "exclusiveMaximum": ("less_than", "lt"),
}


def _number(value: Any, kind: Any) -> Any:
    """A bound as pydantic's error context has it: the schema writes 576.0 for an int field's
    ``ge=576`` (the API says "576"), and pydantic makes a float field's ``gt=0`` 0.0 ("0.0")."""
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "number" and isinstance(value, int):
        return float(value)
    return value


def _expected(values: list[Any]) -> str:
    """pydantic's ``expected``: "'a', 'b' or 'c'"."""
    words = [repr(v) if isinstance(v, str) else str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _sentences(node: dict[str, Any], field: FieldInfo) -> dict[str, str]:
    """The sentence of each constraint of one schema node."""
    out: dict[str, str] = {}
    lengths = _ARRAY if node.get("type") == "array" else _STRING
    for keyword, (kind, key) in {**lengths, **_NUMBER}.items():
        if keyword in node:
            bound = _number(node[keyword], node.get("type"))
            out[keyword] = reason({"type": kind, "ctx": {key: bound}}, field)
    if "pattern" in node:
        error = {"type": "string_pattern_mismatch", "ctx": {"pattern": node["pattern"]}}
        out["pattern"] = reason(error, field)
    if "enum" in node:
        out["enum"] = reason({"type": "enum", "ctx": {"expected": _expected(node["enum"])}}, field)
    if "multipleOf" in node:
        n = _number(node["multipleOf"], node.get("type"))
        error = {"type": "multiple_of", "msg": f"Input should be a multiple of {n}"}
        out["multipleOf"] = reason(error, field)
    return out


def _annotate(node: Any, field: FieldInfo) -> None:
    """Add ``x-errors`` to ``node`` and to the inline schemas under it (``$ref``s are walked once,
    from ``components``); ``field`` is the property they belong to (its x-error, description)."""
    if not isinstance(node, dict):
        return
    texts = _sentences(node, field)
    if texts:
        node["x-errors"] = {**node.get("x-errors", {}), **texts}
    for branch in node.get("anyOf", []) + node.get("allOf", []) + node.get("oneOf", []):
        _annotate(branch, field)
    if "items" in node:
        _annotate(node["items"], field)
    for prop in (node.get("properties") or {}).values():
        if not isinstance(prop, dict):
            continue
        extra = {"x-error": prop["x-error"]} if isinstance(prop.get("x-error"), str) else None
        own = FieldInfo(description=prop.get("description"), json_schema_extra=extra)
        _annotate(prop, own)
        prop.setdefault("x-errors", {})["required"] = reason({"type": "missing"}, own)


def add_error_texts(doc: dict[str, Any]) -> None:
    """Write the sentences into every component schema and every inline request body."""
    for schema in (doc.get("components") or {}).get("schemas", {}).values():
        _annotate(schema, FieldInfo())
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            content = (operation.get("requestBody") or {}).get("content") or {}
            schema = (content.get("application/json") or {}).get("schema")
            if isinstance(schema, dict) and "$ref" not in schema:
                _annotate(schema, FieldInfo())
