"""Scaling policies on an in-process app and a real VictoriaMetrics: the API (validation with
field names, idempotency, tenancy), and the evaluation loop deciding from CPU samples written into
the store: target tracking scales out on high CPU and in (after the cooldown) on low CPU, and on
the requests per member of the load balancer's statistics (another tenant's series claiming the
same pool not counted), a budget stops a scale-out with the reason recorded, a scheduled action
sets the size at its time.

Groups and their members are rows here (no QEMU): what is under test is the decision and its
activity, the scale task itself is ``test_scaling_groups_api.py``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner, Result

from novacron.autoscaling.evaluate import Evaluator, StoreMetrics, evaluate_all
from novacron.cli import scaling
from novacron.cli.client import Client, CliError
from novacron.context import Context
from novacron.db.base import Database
from novacron.db.models import VM, Flavor, Host, ScalingActivity, ScalingGroup, ScalingGroupMember
from tests.conftest import in_process_app
from tests.integration.metrics_engines import Series, attach, login, tenant_admin, victoriametrics
from tests.integration.test_lb_resources import problem_fields

PRICES = {"vcpus": 0.01, "ram_mb": 0.005, "disk_gb": 0.0001, "vms": 0.002}
#: the CPU samples: busy (90 % of one vCPU) from an hour ago to half an hour ago, then idle (10 %)
HIGH, LOW = 0.9, 0.1


@dataclass
class World:
    admin: TestClient
    tenants: dict[str, TestClient]
    db: Database
    ctx: Context
    #: when the busy half hour ended
    turn: float


def _cpu(vm_id: str, tenant_id: str, start: float) -> Series:
    stamps = [start + 30 * i for i in range(121)]
    turn = start + 1800

    def busy(t: float) -> float:
        return HIGH * min(t, turn) - HIGH * start + LOW * max(0.0, t - turn)

    labels = {"tenant_id": tenant_id, "vm_id": vm_id, "project_id": "p", "host_id": "h-1"}
    return Series("novacron_vm_cpu_seconds_total", labels, [(t, busy(t)) for t in stamps])


def _responses(pool_id: str, tenant_id: str, start: float, per_s: float) -> Series:
    labels = {"tenant_id": tenant_id, "pool_id": pool_id, "member_id": "m-1", "loadbalancer_id": "lb-1"}
    return Series(
        "novacron_lb_member_responses_total", labels, [(start + 30 * i, per_s * 30 * i) for i in range(121)]
    )


def _group(db: Database, name: str, tenant_id: str, project_id: str, size: int) -> None:
    """A group of ``size`` running members (rows), min 1, max 10, cooldown 300 s."""
    with db.session() as s:
        s.add(ScalingGroup(
            id=f"asg-{name}", project_id=project_id, tenant_id=tenant_id, name=name,
            template={"flavor_id": "fl-one", "image_id": "img", "networks": [], "labels": {}},
            min_size=1, max_size=10, desired=size, status="active",
            lb_pools=[{"pool_id": f"pool-{name}", "loadbalancer_id": "lb-1", "protocol_port": 80}],
        ))  # fmt: skip
        s.flush()
        for i in range(size):
            vm_id = f"{name}-{i}"
            s.add(VM(id=vm_id, name=vm_id, project_id=project_id, tenant_id=tenant_id, host_id="h-1",
                     vcpus=1, ram_mb=1024, disk_gb=10, state="running"))  # fmt: skip
            s.add(ScalingGroupMember(vm_id=vm_id, group_id=f"asg-{name}", state="in_service"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("policies")
    start = time.time() - 3600
    with ExitStack() as stack:
        client, password, db = stack.enter_context(in_process_app(tmp / "state"))
        admin = TestClient(client.app, headers=login(client, "admin", password))
        for resource, price in PRICES.items():
            assert admin.put(f"/v1/prices/{resource}", json={"per_hour": price}).status_code == 200
        with db.session() as s:
            s.add(Host(id="h-1", name="node-1", driver="simulated", accelerator="tcg", cpus=32, ram_mb=65536))
            s.add(Flavor(id="fl-one", name="one", vcpus=1, ram_mb=1024, disk_gb=10))
        tenants: dict[str, TestClient] = {}
        history = []
        for name, groups in (("alpha", ("web", "night")), ("beta", ("api",)), ("gamma", ("costly",))):
            tenants[name], tenant_id = tenant_admin(admin, name)
            r = admin.post("/v1/projects", json={"name": "main", "tenant_id": tenant_id})
            assert r.status_code == 201, r.text
            for group in groups:
                _group(db, group, tenant_id, r.json()["id"], 2)
                history += [_cpu(f"{group}-{i}", tenant_id, start) for i in range(2)]
            # what the load balancer answered for pool-web: 60 requests/s; beta's series claiming
            # the same pool is not alpha's (the store reads a group's tenant's series only)
            history.append(_responses("pool-web", tenant_id, start, 60.0 if name == "alpha" else 6000.0))
        (tmp / "vm").mkdir()
        store = stack.enter_context(victoriametrics(tmp / "vm", history))
        ctx = cast(FastAPI, client.app).state.ctx
        attach(ctx, store)
        yield World(admin, tenants, db, ctx, start + 1800)


def _policy(c: TestClient, group: str, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post(f"/v1/scaling-groups/{group}/policies", json=body)
    assert r.status_code == 201, r.text
    return cast(dict[str, Any], r.json())


def _activities(c: TestClient, group: str) -> list[dict[str, Any]]:
    r = c.get(f"/v1/scaling-groups/{group}/activities")
    assert r.status_code == 200, r.text
    return cast(list[dict[str, Any]], r.json()["items"])


def _desired(c: TestClient, group: str) -> int:
    return int(c.get(f"/v1/scaling-groups/{group}").json()["desired"])


def test_policies_are_validated_by_field_idempotent_and_the_tenants_own(world: World) -> None:
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    base = "/v1/scaling-groups/web/policies"
    r = alpha.post(base, json={"name": "x", "kind": "target_tracking", "params": {"target": 50}})
    assert r.status_code == 422 and problem_fields(r) == ["body.params.metric"]
    for steps, field in (
        ([{"lower": 80, "upper": None}], "body.params.steps.0.change"),
        ([{"lower": 80, "change": 2}, {"lower": "x", "change": 1}], "body.params.steps.1.lower"),
    ):
        r = alpha.post(base, json={"name": "x", "kind": "step", "params": {"metric": "cpu", "steps": steps}})
        assert r.status_code == 422 and problem_fields(r) == [field]
    r = alpha.post(
        base, json={"name": "x", "kind": "scheduled", "params": {"actions": [{"at": "25:00", "desired": 1}]}}
    )
    assert r.status_code == 422 and problem_fields(r) == ["body.params.actions.0.at"]
    for action, field in (
        ({"at": "08:00"}, "body.params.actions.0.desired"),
        ({"at": "08:00", "min_size": 5, "max_size": 2}, "body.params.actions.0.min_size"),
        ({"at": "08:00", "min_size": 2, "desired": 1}, "body.params.actions.0.desired"),
    ):
        r = alpha.post(base, json={"name": "x", "kind": "scheduled", "params": {"actions": [action]}})
        assert r.status_code == 422 and problem_fields(r) == [field], r.text
    body = {
        "name": "cpu-2",
        "kind": "target_tracking",
        "params": {"metric": "cpu", "target": 50},
        "enabled": False,
    }
    first = alpha.post(base, json=body, headers={"Idempotency-Key": "cpu-2"})
    again = alpha.post(base, json=body, headers={"Idempotency-Key": "cpu-2"})
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    assert alpha.post(base, json=body).status_code == 409
    policy_id = first.json()["id"]
    # another tenant sees neither the group nor its policies, and cannot change or add them
    assert beta.get(base).status_code == 404
    assert beta.get(f"{base}/{policy_id}").status_code == 404
    assert beta.delete(f"{base}/{policy_id}").status_code == 404
    assert beta.post(base, json={**body, "name": "evil"}).status_code == 404
    assert beta.get("/v1/scaling-groups/api/policies").json() == []
    assert [p["name"] for p in alpha.get(base).json()] == ["cpu-2"]
    assert alpha.delete(f"{base}/{policy_id}").status_code == 204
    assert alpha.get(base).json() == []


def test_target_tracking_scales_out_on_high_cpu_and_in_after_the_cooldown(world: World) -> None:
    alpha = world.tenants["alpha"]
    _policy(
        alpha, "web", {"name": "cpu-50", "kind": "target_tracking", "params": {"metric": "cpu", "target": 50}}
    )
    evaluator = Evaluator(StoreMetrics(world.ctx))
    # busy: 2 VMs at 90 % carry 180 %: 4 VMs at 50 %
    evaluate_all(world.ctx, evaluator, now=world.turn - 60)
    assert _desired(alpha, "web") == 4
    out = _activities(alpha, "web")[0]
    assert out["action"] == "scale_out" and out["policy"] == "cpu-50", out
    assert "load needs 4 VMs" in out["reason"] and out["numbers"]["desired_before"] == 2
    assert out["numbers"]["load"] == pytest.approx(180, rel=0.05)
    # idle now (10 %): 1 VM would do, but the scale-out was just now
    evaluate_all(world.ctx, evaluator)
    assert _desired(alpha, "web") == 4 and len(_activities(alpha, "web")) == 1
    with world.db.session() as s:  # the cooldown has passed
        s.execute(update(ScalingActivity).where(ScalingActivity.group_id == "asg-web")
                  .values(started_at=datetime.now(UTC) - timedelta(seconds=400)))  # fmt: skip
    evaluate_all(world.ctx, evaluator)
    assert _desired(alpha, "web") == 1
    scale_in = _activities(alpha, "web")[0]
    assert scale_in["action"] == "scale_in" and scale_in["policy"] == "cpu-50"
    assert scale_in["numbers"]["votes"] == {"cpu-50": 1}


def test_requests_per_member_from_the_load_balancers_statistics(world: World) -> None:
    alpha = world.tenants["alpha"]
    _policy(alpha, "web", {"name": "rps-10", "kind": "target_tracking",
                           "params": {"metric": "requests_per_member", "target": 10}})  # fmt: skip
    with world.db.session() as s:  # past any cooldown: the CPU policy asks for 1 VM, requests for 6
        s.execute(update(ScalingActivity).where(ScalingActivity.group_id == "asg-web")
                  .values(started_at=datetime.now(UTC) - timedelta(seconds=900)))  # fmt: skip
    evaluate_all(world.ctx, Evaluator(StoreMetrics(world.ctx)))
    assert _desired(alpha, "web") == 6
    out = _activities(alpha, "web")[0]
    assert out["policy"] == "rps-10" and out["numbers"]["load"] == pytest.approx(60, rel=0.05)
    assert out["numbers"]["votes"] == {"cpu-50": 1, "rps-10": 6}


def test_a_budget_stops_scale_out_with_the_reason(world: World) -> None:
    gamma = world.tenants["gamma"]
    tenant_id = gamma.get("/v1/scaling-groups/costly").json()["tenant_id"]
    assert world.admin.put("/v1/budgets", json={"tenant_id": tenant_id, "amount": 1.0}).status_code == 200
    _policy(
        gamma, "costly", {"name": "cpu", "kind": "target_tracking", "params": {"metric": "cpu", "target": 50}}
    )
    evaluate_all(world.ctx, Evaluator(StoreMetrics(world.ctx)), now=world.turn - 60)
    assert _desired(gamma, "costly") == 2
    refused = _activities(gamma, "costly")[0]
    assert refused["action"] == "scale_out" and refused["outcome"] == "failed" and refused["policy"] == "cpu"
    assert refused["detail"].startswith("over budget: ") and "of the budget 1.00" in refused["detail"]
    assert refused["numbers"]["asked"] == 4 and refused["numbers"]["budget"] == 1.0


def test_a_scheduled_action_sets_desired_and_limits_at_its_time(world: World) -> None:
    alpha = world.tenants["alpha"]
    at = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M")
    _policy(
        alpha,
        "night",
        {"name": "evening", "kind": "scheduled", "params": {"actions": [{"at": at, "desired": 5}]}},
    )
    evaluator = Evaluator(StoreMetrics(world.ctx))
    evaluate_all(world.ctx, evaluator)
    assert _desired(alpha, "night") == 5
    fired = _activities(alpha, "night")[0]
    assert fired["policy"] == "evening" and f"scheduled at {at}" in fired["reason"]
    alpha.patch("/v1/scaling-groups/night", json={"desired": 2})
    evaluate_all(world.ctx, evaluator)  # an action fires once: the person's 2 stands
    assert _desired(alpha, "night") == 2
    # an action may set the group's limits too: the size is held to them, the change recorded
    _policy(
        alpha,
        "night",
        {
            "name": "floor",
            "kind": "scheduled",
            "params": {"actions": [{"at": at, "min_size": 3, "max_size": 4}]},
        },
    )
    evaluate_all(world.ctx, evaluator)
    group = alpha.get("/v1/scaling-groups/night").json()
    assert (group["min_size"], group["max_size"], group["desired"]) == (3, 4, 3)
    limits = next(a for a in _activities(alpha, "night") if a["action"] == "limits")
    assert limits["policy"] == "floor" and limits["numbers"]["was_min_size"] == 1, limits


@pytest.fixture
def beta_cli(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], Result]:
    """``novacron scaling-group ...`` as tenant beta, in process against the world's server."""
    beta = world.tenants["beta"]
    token = beta.headers["Authorization"].removeprefix("Bearer ")
    client = Client(
        "http://testserver", token=token, credentials_path=tmp_path / "c.json", transport=beta._transport
    )
    monkeypatch.setattr(scaling, "client_of", lambda _ctx: client)
    return lambda args: CliRunner().invoke(scaling.app, args)


def test_the_cli_creates_lists_and_deletes_policies(
    world: World, beta_cli: Callable[[list[str]], Result]
) -> None:
    beta, run = world.tenants["beta"], beta_cli
    steps = ["--step", "80::2", "--step", "0:20:-1", "--cooldown", "120", "--json"]
    made = run(["policy", "create", "api", "steps", "--kind", "step", "--metric", "cpu", *steps])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["params"]["steps"][0] == {"lower": 80.0, "upper": None, "change": 2}
    listed = run(["policy", "list", "api"])
    assert listed.exit_code == 0 and "steps" in listed.output and "step" in listed.output
    assert run(["policy", "delete", "api", "steps"]).exit_code == 0
    assert beta.get("/v1/scaling-groups/api/policies").json() == []


def test_the_cli_sets_a_groups_limits_and_settings(
    world: World, beta_cli: Callable[[list[str]], Result]
) -> None:
    beta, run = world.tenants["beta"], beta_cli
    settings = ["--max", "6", "--drain-timeout", "45", "--cooldown", "30", "--json"]
    changed = run(["set", "api", *settings])
    assert changed.exit_code == 0, changed.output
    group = beta.get("/v1/scaling-groups/api").json()
    assert (group["max_size"], group["drain_timeout_s"], group["cooldown_s"]) == (6, 45, 30), group
    nothing = run(["set", "api"])
    assert isinstance(nothing.exception, CliError) and "nothing to change" in nothing.exception.message
    refused = run(["set", "api", "--min", "7"])  # above max: the API's words
    assert isinstance(refused.exception, CliError) and "min_size" in str(refused.exception), refused.output
    assert beta.get("/v1/scaling-groups/api").json()["min_size"] == group["min_size"]
