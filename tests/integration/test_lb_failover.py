"""Load balancers survive the loss of a host, in process: the HA monitor fences a silent host and
its load-balancer legs fail over (Octavia's amphora failover).

Three hosts; the HA monitor's real pass (``HAMonitor.check_once``) marks a silent one down and
fenced; the ``loadbalancer.failover`` task then runs with a stand-in agent on the hosts still up
that takes the host operations from the real queue and answers as the real one does (applied, or
refused with HAProxy's words for failure injection). What a user sees: the load balancer's status
(never ``PENDING_*`` once the task ended), where its legs run, the task with its reason, events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select

from novacron.compute import hostops
from novacron.compute.agentcalls import record_report
from novacron.compute.ha import HAMonitor
from novacron.db.base import utcnow
from novacron.db.models import Event, Host, HostOperation, Port, Task
from novacron.lbaas import failover
from novacron.lbaas.tasks import HANDLERS
from novacron.tasks.runner import TaskRunner
from tests.conftest import TENANT_PASSWORD
from tests.integration.metrics_engines import login
from tests.integration.test_lb_resources import Answer, World, create_lb, get_lb, healthy, lb_world, refusing

HOSTS = ("h-1", "h-2", "h-3")


@pytest.fixture
def world(tmp_path: Any) -> Iterator[World]:
    with lb_world(tmp_path, hosts=HOSTS) as made:
        yield made


def run_tasks(world: World, answer: Answer = healthy) -> None:
    """Run the tasks to their end; the hosts that are up (not fenced) answer with ``answer``."""

    def live() -> list[str]:
        with world.db.session() as s:
            return list(s.scalars(select(Host.id).where(Host.state == "up", Host.fenced_at.is_(None))))

    async def agent() -> None:
        while True:
            for host in await asyncio.to_thread(live):
                for op in await asyncio.to_thread(hostops.claim, world.ctx, host):
                    world.ops.append(f"{host}:{op['op']}")
                    result, error = answer(op)
                    await asyncio.to_thread(hostops.complete, world.ctx, host, op["id"], result, error)
            await asyncio.sleep(0.02)

    async def main() -> None:
        runner = TaskRunner(world.ctx, [*HANDLERS, *failover.HANDLERS])
        runner.bind_loop(asyncio.get_running_loop())
        loops = [asyncio.create_task(runner.run_forever(0.05)), asyncio.create_task(agent())]
        try:
            await runner.drain(60)
        finally:
            await runner.stop()
            for loop in loops:
                loop.cancel()

    asyncio.run(main())


def fail(world: World, *host_ids: str) -> None:
    """The hosts' agents went silent long ago: one HA pass marks them down and fences them."""
    with world.db.session() as s:
        for host_id in host_ids:
            host = s.get(Host, host_id)
            assert host is not None
            host.last_heartbeat = utcnow() - timedelta(hours=1)
    HAMonitor(world.ctx).check_once()


def legs(world: World, lb_id: str) -> list[tuple[str, str | None]]:
    r = world.client.get(f"/v1/loadbalancers/{lb_id}", headers=world.admin)
    return [(a["role"], a["host_id"]) for a in r.json()["amphorae"]]


def failovers(world: World, lb_id: str) -> list[Task]:
    with world.db.session() as s:
        stmt = select(Task).where(Task.kind == "loadbalancer.failover", Task.resource_id == lb_id)
        rows = list(s.scalars(stmt.order_by(Task.created_at)))
        s.expunge_all()
        return rows


def events_of(world: World, lb_id: str) -> list[tuple[str, dict[str, Any]]]:
    with world.db.session() as s:
        stmt = select(Event).where(Event.resource_id == lb_id, Event.type.like("loadbalancer.failover.%"))
        return [(e.type, dict(e.data or {})) for e in s.scalars(stmt.order_by(Event.seq))]


def test_a_single_load_balancer_moves_to_another_host(world: World) -> None:
    lb = create_lb(world, world.alpha, "web")
    run_tasks(world)
    [(_, first)] = legs(world, lb["id"])
    fail(world, cast(str, first))
    # lost with its host: nothing serves it until the failover ran, which is queued with its reason
    seen = get_lb(world, world.alpha, lb["id"])
    assert (seen["provisioning_status"], seen["operating_status"]) == ("PENDING_UPDATE", "ERROR")
    [task] = failovers(world, lb["id"])
    assert task.params["reason"] == f"host node-{HOSTS.index(cast(str, first)) + 1} failed and was fenced"
    world.ops.clear()
    run_tasks(world)
    [(role, now)] = legs(world, lb["id"])
    assert role == "SINGLE" and now not in (None, first)
    done = get_lb(world, world.alpha, lb["id"])
    assert (done["provisioning_status"], done["operating_status"]) == ("ACTIVE", "ONLINE")
    assert f"{now}:lb_apply" in world.ops and not any(op.startswith(f"{first}:") for op in world.ops)
    with world.db.session() as s:
        vip = s.get(Port, lb["vip_port_id"])
        assert vip is not None and vip.host_id == now  # the VIP's port is bound to the new host
        sync = s.scalar(
            select(HostOperation)
            .where(HostOperation.op == "network_sync", HostOperation.host_id == now)
            .order_by(HostOperation.created_at.desc())
            .limit(1)
        )
        assert sync is not None
        assert [leg["id"] for leg in sync.payload["state"]["loadbalancers"]] == [lb["id"]]
    assert [t for t, _ in events_of(world, lb["id"])] == [
        "loadbalancer.failover.started",
        "loadbalancer.failover.completed",
    ]
    # recovered: further passes of the monitor queue nothing more
    HAMonitor(world.ctx).check_once()
    assert len(failovers(world, lb["id"])) == 1
    # the old host was only cut off: it comes back still running the load balancer, and is told
    # (once) to stop it; the new host's report of it is its own
    for host in (first, now, first):
        record_report(world.ctx, cast(str, host), {}, {}, 0.0, None, {"lb_health": {lb["id"]: {}}})
    with world.db.session() as s:
        removes = s.execute(
            select(HostOperation.host_id, HostOperation.instance_id).where(HostOperation.op == "lb_remove")
        ).all()
    assert [tuple(r) for r in removes] == [(first, lb["id"])]
    assert get_lb(world, world.alpha, lb["id"])["operating_status"] == "ONLINE"


def test_active_standby_recreates_the_lost_side_on_a_third_host(world: World) -> None:
    lb = create_lb(world, world.alpha, "pair", topology="ACTIVE_STANDBY")
    run_tasks(world)
    before = dict(legs(world, lb["id"]))
    fail(world, cast(str, before["MASTER"]))
    # the standby serves (keepalived moved the VIP): it is the MASTER now, degraded
    assert get_lb(world, world.alpha, lb["id"])["operating_status"] == "DEGRADED"
    run_tasks(world)
    after = dict(legs(world, lb["id"]))
    third = (set(HOSTS) - set(before.values())).pop()
    assert after == {"MASTER": before["BACKUP"], "BACKUP": third}
    done = get_lb(world, world.alpha, lb["id"])
    assert (done["provisioning_status"], done["operating_status"]) == ("ACTIVE", "ONLINE")
    assert {f"{before['BACKUP']}:lb_apply", f"{third}:lb_apply"} <= set(world.ops)


def test_without_a_host_it_stays_degraded_and_retries_when_one_comes_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lb = create_lb(world, world.alpha, "pair", topology="ACTIVE_STANDBY")
    run_tasks(world)
    before = dict(legs(world, lb["id"]))
    spare = (set(HOSTS) - set(before.values())).pop()
    fail(world, cast(str, before["BACKUP"]), spare)
    run_tasks(world)
    seen = get_lb(world, world.alpha, lb["id"])
    assert (seen["provisioning_status"], seen["operating_status"]) == ("ACTIVE", "DEGRADED")
    assert dict(legs(world, lb["id"])) == {"MASTER": before["MASTER"], "BACKUP": None}
    [task] = failovers(world, lb["id"])
    assert task.state == "failed" and "needs 2 distinct hosts" in (task.error or "")
    kinds = events_of(world, lb["id"])
    assert [t for t, _ in kinds] == ["loadbalancer.failover.started", "loadbalancer.failover.failed"]
    assert "needs 2 distinct hosts" in kinds[-1][1]["error"]
    # no host yet: the monitor does not try again (nor say it again)
    monkeypatch.setattr(failover, "RETRY_AFTER_S", 0.0)
    HAMonitor(world.ctx).check_once()
    assert len(failovers(world, lb["id"])) == 1
    # the spare host reports again: the next pass re-creates the lost side there
    with world.db.session() as s:
        host = s.get(Host, spare)
        assert host is not None
        host.state, host.fenced_at, host.last_heartbeat = "up", None, utcnow()
    HAMonitor(world.ctx).check_once()
    assert len(failovers(world, lb["id"])) == 2
    run_tasks(world)
    assert dict(legs(world, lb["id"])) == {"MASTER": before["MASTER"], "BACKUP": spare}
    done = get_lb(world, world.alpha, lb["id"])
    assert (done["provisioning_status"], done["operating_status"]) == ("ACTIVE", "ONLINE")


def test_a_refused_failover_ends_active_with_the_leg_unplaced(world: World) -> None:
    lb = create_lb(world, world.alpha, "web")
    run_tasks(world)
    [(_, first)] = legs(world, lb["id"])
    fail(world, cast(str, first))
    world.ops.clear()
    run_tasks(world, refusing)
    seen = get_lb(world, world.alpha, lb["id"])
    assert (seen["provisioning_status"], seen["operating_status"]) == ("ACTIVE", "ERROR")
    assert legs(world, lb["id"]) == [("SINGLE", None)]
    [task] = failovers(world, lb["id"])
    assert task.state == "failed" and "unknown keyword" in (task.error or "")
    # what the refusing host may have started is stopped there
    tried = next(op.split(":")[0] for op in world.ops if op.endswith(":lb_apply"))
    assert f"{tried}:lb_remove" in world.ops
    assert events_of(world, lb["id"])[-1][0] == "loadbalancer.failover.failed"


def test_explicit_failover_is_idempotent_and_the_tenants_own(world: World) -> None:
    c, alpha = world.client, world.alpha
    lb = create_lb(world, alpha, "web")
    run_tasks(world)
    url = f"/v1/loadbalancers/{lb['id']}/failover"
    assert c.post(url, headers=world.beta.headers).status_code == 404
    user = {"username": "looker", "password": TENANT_PASSWORD, "role": "viewer", "tenant_id": lb["tenant_id"]}
    assert c.post("/v1/users", json=user, headers=world.admin).status_code == 201
    assert c.post(url, headers=login(c, "looker@alpha", TENANT_PASSWORD)).status_code == 403
    r = c.post(url, headers=alpha.headers)
    assert r.status_code == 202, r.text
    task_id = r.json()["task_id"]
    assert r.json()["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    again = c.post(url, headers=alpha.headers)  # while it runs: the same failover
    assert (again.status_code, again.json()["task_id"]) == (202, task_id)
    world.ops.clear()
    run_tasks(world)
    # nothing was lost: the load balancer is applied again where it runs
    [(_, host)] = legs(world, lb["id"])
    assert f"{host}:lb_apply" in world.ops
    assert get_lb(world, alpha, lb["id"])["provisioning_status"] == "ACTIVE"
    [task] = failovers(world, lb["id"])
    assert (task.id, task.state, task.params["reason"]) == (task_id, "succeeded", "requested")
    # an administrator may too; a second one is a new failover, and a retry with its key the same
    keyed = {**world.admin, "Idempotency-Key": "fo-1"}
    r = c.post(url, headers=keyed)
    assert r.status_code == 202 and r.json()["task_id"] != task_id
    run_tasks(world)
    replay = c.post(url, headers=keyed)
    assert (replay.status_code, replay.json()["task_id"]) == (202, r.json()["task_id"])
    assert get_lb(world, alpha, lb["id"])["provisioning_status"] == "ACTIVE"
    audit = c.get("/v1/audit", params={"limit": 100}, headers=world.admin).json()["items"]
    assert [a["status_code"] for a in audit if a["path"] == url and a["method"] == "POST"].count(202) >= 3
