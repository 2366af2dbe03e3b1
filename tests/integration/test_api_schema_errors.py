"""The OpenAPI document carries the API's validation sentences per constraint (issue 17), so the
dashboard's check before sending (web/static/js/formcheck.js) says exactly what the API says.

Each test breaks one constraint for real and compares the API's 422 ``reason`` with the schema's
``x-errors`` entry for that constraint: one source, two readers.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from novacron.api.errors import install_handlers
from novacron.api.schema_errors import add_error_texts


class _Inner(BaseModel):
    iops: int = Field(ge=1, le=1000)


class _Body(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    label: str | None = Field(default=None, min_length=2, max_length=4)
    size: int = Field(default=1, ge=1, le=16384)
    ratio: float = Field(default=1.0, gt=0, lt=2.5)
    pool: Literal["file", "rbd"] = "file"
    code: str = Field(
        default="ab", pattern=r"^(ab|cd)+$", json_schema_extra={"x-error": "use pairs of ab or cd"}
    )
    tag: str = Field(default="x", pattern=r"^x[yz]?$", description="x, xy or xz")
    tags: list[str] = Field(default_factory=list, max_length=2)
    limits: _Inner | None = None


def _app() -> FastAPI:
    app = FastAPI()
    install_handlers(app)

    @app.post("/t")
    def take(body: _Body) -> None:
        return None

    return app


def _schema() -> dict[str, Any]:
    app = _app()
    doc = get_openapi(title="t", version="1", routes=app.routes)
    add_error_texts(doc)
    schemas: dict[str, Any] = doc["components"]["schemas"]
    return schemas


def _branch(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional property."""
    for b in prop.get("anyOf", [prop]):
        if b.get("type") != "null":
            return dict(b)
    return prop


#: (body fields, the field the API names, the property, the constraint the schema names)
CASES: list[tuple[dict[str, Any], str, str, str]] = [
    ({"name": "Bad_Name"}, "body.name", "name", "pattern"),
    ({"label": "x"}, "body.label", "label", "minLength"),
    ({"label": "xxxxx"}, "body.label", "label", "maxLength"),
    ({"size": 0}, "body.size", "size", "minimum"),
    ({"size": 20000}, "body.size", "size", "maximum"),
    ({"ratio": 0}, "body.ratio", "ratio", "exclusiveMinimum"),
    ({"ratio": 3}, "body.ratio", "ratio", "exclusiveMaximum"),
    ({"pool": "nfs"}, "body.pool", "pool", "enum"),
    ({"code": "zz"}, "body.code", "code", "pattern"),
    ({"tag": "q"}, "body.tag", "tag", "pattern"),
    ({"tags": ["a", "b", "c"]}, "body.tags", "tags", "maxItems"),
]


def test_each_constraint_says_what_the_api_says() -> None:
    client = TestClient(_app())
    props = _schema()["_Body"]["properties"]
    for fields, field, prop, keyword in CASES:
        r = client.post("/t", json={"name": "ok", **fields})
        assert r.status_code == 422, (fields, r.text)
        reasons = {e["field"]: e["reason"] for e in r.json()["errors"]}
        assert _branch(props[prop])["x-errors"][keyword] == reasons[field], (fields, reasons)


def test_missing_and_nested_fields() -> None:
    client = TestClient(_app())
    schemas = _schema()
    r = client.post("/t", json={"limits": {"iops": 0}})
    reasons = {e["field"]: e["reason"] for e in r.json()["errors"]}
    required = schemas["_Body"]["properties"]["name"]["x-errors"]["required"]
    assert required == reasons["body.name"] == "required"
    assert schemas["_Inner"]["properties"]["iops"]["x-errors"]["minimum"] == reasons["body.limits.iops"]
    # a bound is the declared int, as the API says it ("1", never "1.0")
    assert reasons["body.limits.iops"] == "use a number of at least 1"


def test_the_served_document_carries_the_vm_name_rule(in_process_admin: TestClient) -> None:
    doc = in_process_admin.get("/openapi.json").json()
    rule = doc["components"]["schemas"]["VMCreate"]["properties"]["name"]["x-errors"]["pattern"]
    r = in_process_admin.post("/v1/vms", json={"name": "Bad_Name", "image": "x", "flavor": "tiny"})
    assert {e["field"]: e["reason"] for e in r.json()["errors"]}["body.name"] == rule
    mtu = doc["components"]["schemas"]["NetworkCreate"]["properties"]["mtu"]["x-errors"]["minimum"]
    r = in_process_admin.post("/v1/networks", json={"name": "n", "mtu": 1})
    said = {e["field"]: e["reason"] for e in r.json()["errors"]}["body.mtu"]
    assert said == mtu == "use a number of at least 576"
