"""The trace API in-process: an incoming ``traceparent`` is honoured, a tenant reads only its own
traces (and only its own part of one), and what a span shows a tenant is cut down."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from novacron.db.base import Database
from novacron.monitoring import tracing
from novacron.monitoring.tracestore import TraceStore
from tests.conftest import TENANT_PASSWORD, in_process_app


class App:
    def __init__(self, client: TestClient, password: str, db: Database) -> None:
        self.client = client
        self.db = db
        self.admin = self.login("admin", password)

    def login(self, username: str, password: str, tenant: str | None = None) -> dict[str, str]:
        body = {"username": username, "password": password, **({"tenant": tenant} if tenant else {})}
        r = self.client.post("/v1/tokens", json=body)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def tenant(self, name: str) -> dict[str, str]:
        tenant = self.client.post("/v1/tenants", json={"name": name}, headers=self.admin).json()
        user = {
            "username": f"{name}-user",
            "password": TENANT_PASSWORD,
            "role": "member",
            "tenant_id": tenant["id"],
        }
        assert self.client.post("/v1/users", json=user, headers=self.admin).status_code == 201
        return self.login(f"{name}-user", TENANT_PASSWORD, name)


@contextlib.contextmanager
def traced_app(tmp_path: Path, **settings: Any) -> Iterator[App]:
    with in_process_app(tmp_path, **settings) as (client, password, db):
        tracing.setup(tracing.API, "test-host", local=TraceStore(db, timedelta(hours=1), 10_000))
        try:
            yield App(client, password, db)
        finally:
            tracing.shutdown()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with traced_app(tmp_path) as traced:
        yield traced


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def test_the_trace_id_a_client_sends_is_the_one_stored(app: App) -> None:
    trace_id, parent_id, header = traceparent()
    r = app.client.get("/v1/flavors", headers={**app.admin, "traceparent": header})
    assert r.status_code == 200
    assert r.headers["x-trace-id"] == trace_id
    tracing.flush()
    trace = app.client.get(f"/v1/traces/{trace_id}", headers=app.admin).json()
    (span,) = trace["spans"]
    assert span["name"] == "GET /v1/flavors"
    assert span["parent_id"] == parent_id  # the client's span is its parent
    assert span["service"] == "novacron-api" and span["kind"] == "server"
    assert span["attributes"]["http.response.status_code"] == 200
    listed = app.client.get("/v1/traces", headers=app.admin).json()["items"]
    assert trace_id in [t["trace_id"] for t in listed]
    named = app.client.get("/v1/traces", params={"name": "GET /v1/flavors"}, headers=app.admin).json()
    assert [t["trace_id"] for t in named["items"]] == [trace_id]
    # reading traces makes none (the list would be full of its own reads)
    tracing.flush()
    names = {t["name"] for t in app.client.get("/v1/traces", headers=app.admin).json()["items"]}
    assert names == {"GET /v1/flavors", "POST /v1/tokens"}  # the admin's login, then the request


def test_a_request_without_traceparent_starts_a_trace_named_in_its_answer(app: App) -> None:
    r = app.client.get("/v1/flavors", headers=app.admin)
    tracing.flush()
    trace = app.client.get(f"/v1/traces/{r.headers['x-trace-id']}", headers=app.admin).json()
    assert [s["parent_id"] for s in trace["spans"]] == [None]


def test_a_tenant_reads_only_its_own_traces(app: App) -> None:
    acme, globex = app.tenant("acme"), app.tenant("globex")
    trace_id, _, header = traceparent()
    assert app.client.get("/v1/vms", headers={**acme, "traceparent": header}).status_code == 200
    admin_trace_id = app.client.get("/v1/flavors", headers=app.admin).headers["x-trace-id"]
    tracing.flush()

    own = app.client.get(f"/v1/traces/{trace_id}", headers=acme)
    assert own.status_code == 200
    (span,) = own.json()["spans"]
    assert span["host"] == "" and set(span["attributes"]) <= {
        "http.request.method", "http.route", "http.response.status_code"
    }  # fmt: skip
    for url in (f"/v1/traces/{trace_id}", f"/v1/traces/{admin_trace_id}"):
        r = app.client.get(url, headers=globex)
        assert r.status_code == 404, r.text
    assert app.client.get(f"/v1/traces/{admin_trace_id}", headers=acme).status_code == 404
    assert [t["trace_id"] for t in app.client.get("/v1/traces", headers=acme).json()["items"]] == [trace_id]
    assert app.client.get("/v1/traces", headers=globex).json()["items"] == []
    # the admin sees every trace, whole
    admin_view = app.client.get(f"/v1/traces/{trace_id}", headers=app.admin).json()
    assert admin_view["spans"][0]["host"] == "test-host"


def test_a_tenant_continuing_another_tenants_trace_id_sees_only_its_own_span(app: App) -> None:
    acme, globex = app.tenant("acme"), app.tenant("globex")
    trace_id, _, header = traceparent()
    app.client.get("/v1/vms", headers={**acme, "traceparent": header})
    app.client.get("/v1/images", headers={**globex, "traceparent": header})  # the same trace id
    tracing.flush()
    assert len(app.client.get(f"/v1/traces/{trace_id}", headers=app.admin).json()["spans"]) == 2
    for who, route in ((acme, "/v1/vms"), (globex, "/v1/images")):
        spans = app.client.get(f"/v1/traces/{trace_id}", headers=who).json()["spans"]
        assert [s["attributes"]["http.route"] for s in spans] == [route]


def test_a_malformed_trace_id_is_a_422_and_an_unknown_one_a_404(app: App) -> None:
    assert app.client.get("/v1/traces/not-hex", headers=app.admin).status_code == 422
    assert app.client.get(f"/v1/traces/{'0' * 31}1", headers=app.admin).status_code == 404


def test_traces_are_stored_read_and_pruned_on_postgresql(postgres: Any, tmp_path: Path) -> None:
    with traced_app(tmp_path, database_url=postgres.create_database("traces_pg")) as pg:
        acme = pg.tenant("acme")
        trace_id, _, header = traceparent()
        assert pg.client.get("/v1/vms", headers={**acme, "traceparent": header}).status_code == 200
        tracing.flush()
        listed = pg.client.get("/v1/traces", headers=acme).json()["items"]
        assert [t["trace_id"] for t in listed] == [trace_id]
        spans = pg.client.get(f"/v1/traces/{trace_id}", headers=acme).json()["spans"]
        assert [s["name"] for s in spans] == ["GET /v1/vms"]
        store = TraceStore(pg.db, timedelta(hours=1), max_spans=1)
        assert store.prune() >= 1  # all but the newest span
        assert len(pg.client.get("/v1/traces", headers=pg.admin).json()["items"]) == 1
