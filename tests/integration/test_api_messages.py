"""Validation errors read as sentences for people (issue 17, item 4), with the field still named.

The API's one validation handler turns pydantic's "String should match pattern '^[a-z0-9]...'" into
what to type; these tests pin the exact words users see (CLI and dashboard show ``reason``/``detail``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from novacron.api.errors import install_handlers
from novacron.api.validation_text import describe_pattern

NAME_RULE = "use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"


def _errors(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in body["errors"]}


def test_vm_name_and_empty_image_are_sentences(in_process_admin: TestClient) -> None:
    r = in_process_admin.post("/v1/vms", json={"name": "Bad_Name", "image": "", "flavor": "tiny"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert _errors(body) == {"body.name": NAME_RULE, "body.image": "required: it must not be empty"}
    assert body["detail"] == f"name: {NAME_RULE}; image: required: it must not be empty"
    assert "pattern" not in r.text and "String should" not in r.text


def test_month_query_says_the_format(in_process_admin: TestClient) -> None:
    r = in_process_admin.get("/v1/usage", params={"month": "2026-13"})
    assert r.status_code == 422
    assert _errors(r.json()) == {"query.month": "use YYYY-MM, e.g. 2026-12"}
    assert r.json()["detail"] == "month: use YYYY-MM, e.g. 2026-12"


def test_choices_bounds_missing_and_unknown_fields(in_process_admin: TestClient) -> None:
    r = in_process_admin.post(
        "/v1/backup-targets",
        json={"name": "t1", "type": "nfs", "config": {}, "chunk_size": 100, "colour": "red"},
    )
    assert r.status_code == 422
    assert _errors(r.json()) == {
        "body.type": "use one of local, s3, azure or gcs",
        "body.chunk_size": "use a number of at least 65536",
        "body.colour": "not a setting of this request: remove it",
    }
    r = in_process_admin.post("/v1/backup-targets", json={"type": "local"})
    assert _errors(r.json()) == {"body.name": "required", "body.config": "required"}
    r = in_process_admin.get("/v1/vms", params={"limit": "many"})
    assert _errors(r.json()) == {"query.limit": "use a whole number"}
    r = in_process_admin.post("/v1/tenants", content=b"{bad", headers={"content-type": "application/json"})
    not_json = "the body is not valid JSON (Expecting property name enclosed in double quotes)"
    assert r.json()["errors"] == [{"field": "body", "reason": not_json}]
    assert r.json()["detail"].startswith("request body: the body is not valid JSON")


def test_patterns_in_use_read_as_rules() -> None:
    assert describe_pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$") == (
        "use 1-64 letters, digits, dots, underscores and hyphens, starting with a letter or digit"
    )
    assert describe_pattern(r"^[0-9a-fA-F]{32}$") == "use 32 hexadecimal digits"
    assert describe_pattern(r"^(\d+(ms|s|m|h|d|w))+$") == (
        "use a duration such as 30s, 5m or 1h30m (units ms, s, m, h, d, w)"
    )
    assert describe_pattern(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$") == (
        "use 1-64 letters, digits, dots, underscores and hyphens, starting with a letter or digit, "
        "or leave it empty"
    )


class _Body(BaseModel):
    code: str = Field(pattern=r"^(ab|cd)+$", json_schema_extra={"x-error": "use pairs of ab or cd"})
    tag: str = Field(default="x", pattern=r"^x(y|z)?$", description="x, xy or xz")


_Kind = Annotated[str, Query(pattern=r"^(on|off)$", description="on or off")]


def _app() -> FastAPI:
    app = FastAPI()
    install_handlers(app)

    @app.post("/t")
    def take(body: _Body, kind: _Kind) -> None:
        return None

    return app


def test_a_field_may_say_its_own_rule() -> None:
    """A route's field with ``json_schema_extra={"x-error": ...}`` gets its own sentence; a pattern no
    rule reads falls back to the field's description (body and query alike)."""
    r = TestClient(_app()).post("/t", params={"kind": "maybe"}, json={"code": "zz", "tag": "q"})
    assert _errors(r.json()) == {
        "body.code": "use pairs of ab or cd",
        "body.tag": "use x, xy or xz",
        "query.kind": "use on or off",
    }
