"""The OpenAPI document: valid OpenAPI 3.1, committed as generated, every answer declared."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends
from openapi_spec_validator import validate

from novacron.api.deps import service
from novacron.errors import Unavailable
from novacron.service import Service

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("openapi_script", ROOT / "scripts" / "openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return dict(_script().generate())


def _statuses(doc: dict[str, Any], method: str, path: str) -> set[str]:
    return set(doc["paths"][path][method]["responses"])


def test_document_is_valid_openapi_31_and_deterministic(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    script = _script()
    assert script.render(doc) == script.render(script.generate())


def test_committed_document_is_current(doc: dict[str, Any]) -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == _script().render(doc), "run: python scripts/openapi.py --write"


def test_every_error_is_a_problem(doc: dict[str, Any]) -> None:
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status >= "400":
                    assert list(response["content"]) == [PROBLEM], (method, path, status)
                    assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    problem = doc["components"]["schemas"]["Problem"]
    assert problem["additionalProperties"] is True
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        # a path parameter: 404; a caller: 401, 403; a write: 409
        ("delete", "/v1/aggregates/{aggregate_id}", {"204", "401", "403", "404", "409"}),
        ("delete", "/v1/backup-policies/{policy_id}", {"204", "401", "403", "404", "409"}),
        ("delete", "/v1/dr/runbooks/{runbook_id}", {"204", "401", "403", "404", "409"}),
        # a list: the cursor's 400, the parameters' 422
        ("get", "/v1/flavors", {"200", "400", "401", "403", "422"}),
        # a create with a body and an Idempotency-Key
        ("post", "/v1/flavors", {"201", "400", "401", "403", "409", "413", "415", "422"}),
        # an update with If-Match
        ("patch", "/v1/aggregates/{aggregate_id}", {"200", "404", "409", "412", "413", "415", "422"}),
        # the login: throttled (429) and bounded (503); no caller, so no 403
        ("post", "/v1/tokens", {"200", "401", "413", "415", "422", "429", "503"}),
    ],
)
def test_operations_declare_what_they_answer(
    doc: dict[str, Any], method: str, path: str, expected: set[str]
) -> None:
    assert expected <= _statuses(doc, method, path)


def test_login_declares_no_caller_and_retry_after(doc: dict[str, Any]) -> None:
    login = doc["paths"]["/v1/tokens"]["post"]
    assert "403" not in login["responses"] and "security" not in login
    assert "Retry-After" in login["responses"]["429"]["headers"]
    assert doc["paths"]["/v1/flavors"]["get"]["security"] == [{"bearer": []}]


def test_headers_and_streaming_types(doc: dict[str, Any]) -> None:
    create = doc["paths"]["/v1/flavors"]["post"]
    assert "ETag" in create["responses"]["201"]["headers"]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    update = doc["paths"]["/v1/aggregates/{aggregate_id}"]["patch"]
    assert any(p["name"] == "If-Match" for p in update["parameters"])
    assert "Location" in doc["paths"]["/v1/vms"]["post"]["responses"]["202"]["headers"]
    console = doc["paths"]["/v1/vms/{vm_id}/console-log"]["get"]["responses"]["200"]
    assert "X-Next-Offset" in console["headers"] and list(console["content"]) == ["text/plain"]
    stream = doc["paths"]["/v1/events/stream"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]
    download = doc["paths"]["/v1/images/{image_id}/{part}"]["get"]["responses"]["200"]
    assert list(download["content"]) == ["application/octet-stream"]
    ws = doc["paths"]["/v1/events/ws"]["get"]
    assert ws["x-websocket"] is True and "101" in ws["responses"]


def test_creates_link_to_their_item(doc: dict[str, Any]) -> None:
    links = doc["paths"]["/v1/flavors"]["post"]["responses"]["201"]["links"]
    assert links["GetItem"]["parameters"] == {"flavor_id": "$response.body#/id"}
    assert links["GetItem"]["operationId"] == doc["paths"]["/v1/flavors/{flavor_id}"]["get"]["operationId"]
    assert "DeleteItem" in links


def test_a_declared_dependency_adds_its_statuses() -> None:
    from fastapi import Depends, FastAPI

    from novacron.api.openapi import document, raises

    @raises(503)
    def backend() -> str:
        return "up"

    app = FastAPI()

    @app.get("/things")
    def things(_: str = Depends(backend)) -> list[str]:
        return []

    responses = document(app)["paths"]["/things"]["get"]["responses"]
    assert set(responses) == {"200", "503"}
    assert "Retry-After" in responses["503"]["headers"]


class _Pool(Service):
    """A service whose method refuses with a domain error the route's inputs do not imply."""

    def start(self) -> None:
        raise Unavailable("the pool is draining", retry_after=5)


PoolDep = Annotated[_Pool, Depends(service(_Pool, "host:write"))]


def test_a_service_method_the_endpoint_calls_adds_its_errors() -> None:
    from fastapi import FastAPI

    from novacron.api.openapi import document

    app = FastAPI()

    @app.post("/pool/start", status_code=204)
    def start(pool: PoolDep) -> None:
        pool.start()

    responses = document(app)["paths"]["/pool/start"]["post"]["responses"]
    assert {"401", "403", "409", "503"} <= set(responses)
