"""/v1/dashboards on a real VictoriaMetrics: a user's dashboards are theirs alone (another tenant's
user, another user of the same tenant and an administrator get 404), each panel's query is checked
by the store in the owner's scope, creates are idempotent, changes need If-Match and are audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import TENANT_PASSWORD, in_process_app
from tests.integration.metrics_engines import Series, attach, login, tenant_viewer, victoriametrics

CPU = "sum(rate(novacron_vm_cpu_seconds_total[1m]))"


@dataclass
class World:
    client: TestClient
    admin: dict[str, str]
    alpha: dict[str, str]
    alpha_other: dict[str, str]
    beta: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dashboards")
    with ExitStack() as stack:
        client, password, _db = stack.enter_context(in_process_app(tmp / "state"))
        admin = login(client, "admin", password)
        alpha_id, alpha = tenant_viewer(client, admin, "alpha")
        _, beta = tenant_viewer(client, admin, "beta")
        other = {"username": "ops", "password": TENANT_PASSWORD, "role": "member", "tenant_id": alpha_id}
        assert client.post("/v1/users", json=other, headers=admin).status_code == 201
        now = time.time()
        labels = {"tenant_id": alpha_id, "vm_id": "vm-a"}
        history = [
            Series("novacron_vm_cpu_seconds_total", labels, [(now - 60 + i, i / 2) for i in range(60)])
        ]
        (tmp / "vm").mkdir()
        store = stack.enter_context(victoriametrics(tmp / "vm", history))
        attach(cast(FastAPI, client.app).state.ctx, store)
        yield World(client, admin, alpha, login(client, "ops@alpha", TENANT_PASSWORD), beta)


def _body(name: str, *queries: str) -> dict[str, Any]:
    panels = [{"title": f"p{n}", "query": q, "unit": "cores", "chart": "line"} for n, q in enumerate(queries)]
    return {"name": name, "panels": panels}


def test_dashboard_is_its_owners_alone(world: World) -> None:
    c = world.client
    key = {"Idempotency-Key": "dash-one"}
    r = c.post("/v1/dashboards", json=_body("ops", CPU), headers={**world.alpha, **key})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["panels"] == [{"title": "p0", "query": CPU, "unit": "cores", "chart": "line"}]
    again = c.post("/v1/dashboards", json=_body("ops", CPU), headers={**world.alpha, **key})
    assert (again.status_code, again.json()["id"]) == (201, made["id"])
    assert [d["id"] for d in c.get("/v1/dashboards", headers=world.alpha).json()["items"]] == [made["id"]]
    for who in (world.beta, world.alpha_other, world.admin):
        assert c.get(f"/v1/dashboards/{made['id']}", headers=who).status_code == 404
        assert c.get("/v1/dashboards/ops", headers=who).status_code == 404
        assert c.get("/v1/dashboards", headers=who).json()["items"] == []
        put = c.put(f"/v1/dashboards/{made['id']}", json=_body("x", CPU), headers={**who, "If-Match": '"1"'})
        assert put.status_code == 404
        assert c.delete(f"/v1/dashboards/{made['id']}", headers={**who, "If-Match": '"1"'}).status_code == 404
    # the same name is another user's own business
    assert c.post("/v1/dashboards", json=_body("ops", CPU), headers=world.alpha_other).status_code == 201
    assert c.post("/v1/dashboards", json=_body("ops", CPU), headers=world.alpha).status_code == 409


def test_queries_are_checked_by_the_store(world: World) -> None:
    c = world.client
    r = c.post("/v1/dashboards", json=_body("bad", CPU, "sum(rate(x[1m])"), headers=world.alpha)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.panels.1.query"]
    assert c.get("/v1/dashboards", params={"name": "bad"}, headers=world.alpha).json()["items"] == []
    r = c.post("/v1/dashboards", json={**_body("bad", CPU), "panels": []}, headers=world.alpha)
    assert r.status_code == 422
    wrong = _body("bad", CPU)
    wrong["panels"][0]["chart"] = "pie"
    assert c.post("/v1/dashboards", json=wrong, headers=world.alpha).status_code == 422


def test_replace_needs_if_match_and_is_audited(world: World) -> None:
    c = world.client
    made = c.post("/v1/dashboards", json=_body("edit", CPU), headers=world.alpha).json()
    url = f"/v1/dashboards/{made['id']}"
    etag = c.get(url, headers=world.alpha).headers["etag"]
    body = _body("edit", CPU, "count(novacron_vm_cpu_seconds_total)")
    r = c.put(url, json=body, headers={**world.alpha, "If-Match": etag})
    assert r.status_code == 200, r.text
    assert len(r.json()["panels"]) == 2
    assert c.put(url, json=body, headers={**world.alpha, "If-Match": etag}).status_code == 412
    bad = _body("edit", "rate(")
    r = c.put(url, json=bad, headers={**world.alpha, "If-Match": r.headers["etag"]})
    assert r.status_code == 422
    assert len(c.get(url, headers=world.alpha).json()["panels"]) == 2
    actions = {a["action"] for a in c.get("/v1/audit", headers=world.admin).json()["items"]}
    assert {"dashboard.create", "dashboard.update"} <= actions, actions
