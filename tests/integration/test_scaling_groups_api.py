"""/v1/scaling-groups in process: validation, tenancy, idempotency, and the scale task end to end.

A tenant names only its own images, networks and pools (another tenant's are absent, and so is
another tenant's group); a create is idempotent. The ``scalinggroup.scale`` task runs with every
task handler and a stand-in agent that takes the host operations from the real queue and answers
as a healthy host does (VMs run, load balancers apply and report their members UP): a group grows
and its new VMs join the pool; it shrinks by its termination policy, draining the pool first and
never taking a protected VM; a drain waits for the leaving members' sessions (as ``lb_status``
reports them) to end, or for the group's ``drain_timeout_s``; a VM deleted behind its back is
replaced by the reconcile; a scale-out past the ``vms`` quota ends with the quota's words in the activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from novacron.autoscaling.groups import scale_to
from novacron.autoscaling.members import choose_victims
from novacron.autoscaling.reconcile import AutoscalingController
from novacron.autoscaling.tasks import HANDLERS as SCALING_HANDLERS
from novacron.compute import hostops, storage
from novacron.compute.tasks import HANDLERS as VM_HANDLERS
from novacron.db.base import utcnow
from novacron.db.models import (
    VM,
    Event,
    Flavor,
    Host,
    Image,
    LbMember,
    ScalingGroup,
    ScalingGroupMember,
    Task,
)
from novacron.lbaas.tasks import HANDLERS as LB_HANDLERS
from novacron.tasks.runner import TaskRunner
from tests.integration.test_lb_resources import HOSTS, World, healthy, lb_world, problem_fields

BASE = "/v1/scaling-groups"


@dataclass
class Scaling:
    world: World
    pool_id: str
    image: str = "img-alpha"


def _answer(op: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A healthy host: VMs run, load balancers apply with every member UP."""
    if op["op"] == "observe":
        return {"power_state": "running"}, None
    return healthy(op)


Answer = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, str | None]]


def run_all(world: World, timeout_s: float = 60, answer: Answer = _answer) -> None:
    """Run every task to its end, the hosts' operations answered by a stand-in agent (a healthy
    one unless ``answer`` says otherwise)."""

    async def agent() -> None:
        while True:
            with world.db.session() as s:
                s.execute(update(Host).values(last_heartbeat=utcnow()))
            for host in HOSTS:
                for op in await asyncio.to_thread(hostops.claim, world.ctx, host):
                    result, error = answer(op)
                    await asyncio.to_thread(hostops.complete, world.ctx, host, op["id"], result, error)
            await asyncio.sleep(0.02)

    async def main() -> None:
        runner = TaskRunner(world.ctx, [*VM_HANDLERS, *LB_HANDLERS, *SCALING_HANDLERS])
        runner.bind_loop(asyncio.get_running_loop())
        loops = [asyncio.create_task(runner.run_forever(0.05)), asyncio.create_task(agent())]
        try:
            await runner.drain(timeout_s)
        finally:
            await runner.stop()
            for loop in loops:
                loop.cancel()

    asyncio.run(main())


@pytest.fixture(scope="module")
def scaling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaling]:
    with lb_world(tmp_path_factory.mktemp("asg")) as world:
        c, alpha = world.client, world.alpha
        with world.db.session() as s:
            s.add(Flavor(id="fl-tiny", name="tiny", vcpus=1, ram_mb=128, disk_gb=1))
            for tenant, who in (("alpha", alpha), ("beta", world.beta)):
                tenant_id = c.get(f"/v1/projects/{who.project_id}", headers=who.headers).json()["tenant_id"]
                s.add(Image(id=f"img-{tenant}", name=f"app-{tenant}", project_id=who.project_id,
                            tenant_id=tenant_id, status="active", disk_format="qcow2"))  # fmt: skip
                s.add(Image(id=f"img-big-{tenant}", name=f"big-{tenant}", project_id=who.project_id,
                            tenant_id=tenant_id, status="active", disk_format="qcow2",
                            virtual_size_bytes=2 * 2**30))  # fmt: skip
                disk = storage.image_disk(world.ctx.settings, f"img-{tenant}")
                disk.parent.mkdir(parents=True, exist_ok=True)
                disk.write_bytes(b"")
        lb = c.post("/v1/loadbalancers", json={"name": "front", "vip_subnet_id": alpha.subnet_id},
                    headers=alpha.headers)  # fmt: skip
        assert lb.status_code == 201, lb.text
        run_all(world)
        pool = c.post("/v1/loadbalancers/front/pools", json={"name": "app", "protocol": "HTTP"},
                      headers=alpha.headers)  # fmt: skip
        assert pool.status_code == 201, pool.text
        run_all(world)
        yield Scaling(world, pool.json()["id"])


def _body(sc: Scaling, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": sc.image,
        "flavor": "tiny",
        "networks": [{"network": "web"}],
        "min_size": 0,
        "max_size": 4,
        "desired": 2,
        "lb_pools": [{"pool_id": sc.pool_id, "protocol_port": 80}],
        **extra,
    }


def _members(sc: Scaling, group: str) -> list[dict[str, Any]]:
    r = sc.world.client.get(f"{BASE}/{group}/members", headers=sc.world.alpha.headers)
    assert r.status_code == 200, r.text
    return list(r.json())


def _activities(sc: Scaling, group: str) -> list[dict[str, Any]]:
    r = sc.world.client.get(f"{BASE}/{group}/activities", headers=sc.world.alpha.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _pool_vms(sc: Scaling) -> set[str]:
    with sc.world.db.session() as s:
        return {m for m in s.scalars(select(LbMember.vm_id).where(LbMember.pool_id == sc.pool_id)) if m}


def test_create_refuses_what_the_tenant_does_not_own(scaling: Scaling) -> None:
    c, alpha, beta = scaling.world.client, scaling.world.alpha, scaling.world.beta
    cases: list[tuple[dict[str, Any], str]] = [
        ({"desired": 5}, "body.desired"),
        ({"min_size": 3, "desired": 2}, "body.desired"),
        ({"min_size": 5, "max_size": 4}, "body.min_size"),
        ({"image": "img-beta"}, "body.image"),
        ({"image": "app-beta"}, "body.image"),
        ({"flavor": "huge"}, "body.flavor"),
        ({"image": "big-alpha"}, "body.flavor"),  # a 2 GiB image does not fit the 1 GiB disk
        ({"user_data": "é" * 40_000}, "body.user_data"),  # 80,000 bytes
        ({"networks": [{"network": beta.network_id}]}, "body.networks.0.network"),
        (
            {"networks": [{"network": "web", "security_groups": ["nope"]}]},
            "body.networks.0.security_groups.0",
        ),
        ({"networks": []}, "body.lb_pools"),
    ]
    for extra, field in cases:
        r = c.post(BASE, json=_body(scaling, "bad", **extra), headers=alpha.headers)
        assert r.status_code == 422 and field in problem_fields(r), (extra, r.text)
    # beta cannot put alpha's pool behind its group
    beta_body = {**_body(scaling, "spy", image="img-beta"), "networks": [{"network": "web"}]}
    r = c.post(BASE, json=beta_body, headers=beta.headers)
    assert r.status_code == 422 and "body.lb_pools.0.pool_id" in problem_fields(r), r.text
    assert c.get(BASE, headers=alpha.headers).json()["items"] == []


def test_create_is_idempotent_and_another_tenant_sees_nothing(scaling: Scaling) -> None:
    c, alpha, beta = scaling.world.client, scaling.world.alpha, scaling.world.beta
    key = {**alpha.headers, "Idempotency-Key": "asg-idem"}
    body = _body(scaling, "idem", desired=0, lb_pools=[])
    first = c.post(BASE, json=body, headers=key)
    assert first.status_code == 201, first.text
    again = c.post(BASE, json=body, headers=key)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert c.post(BASE, json=body, headers=alpha.headers).status_code == 409  # name taken
    group = first.json()
    assert group["server_group_id"] and group["task_id"]
    for path in ("", "/members", "/activities"):
        assert c.get(f"{BASE}/{group['id']}{path}", headers=beta.headers).status_code == 404
    assert c.patch(f"{BASE}/{group['id']}", json={"desired": 1}, headers=beta.headers).status_code == 404
    assert c.delete(f"{BASE}/{group['id']}", headers=beta.headers).status_code == 404
    assert c.get(BASE, headers=beta.headers).json()["items"] == []
    run_all(scaling.world)
    r = c.delete(f"{BASE}/idem", headers=alpha.headers)
    assert r.status_code == 202 and r.json()["action"] == "delete", r.text
    run_all(scaling.world)
    assert c.get(f"{BASE}/idem", headers=alpha.headers).status_code == 404


def test_a_group_grows_into_its_pool_shrinks_by_policy_and_replaces_a_lost_vm(scaling: Scaling) -> None:
    c, alpha, world = scaling.world.client, scaling.world.alpha, scaling.world
    r = c.post(BASE, json=_body(scaling, "web", termination_policy="newest"), headers=alpha.headers)
    assert r.status_code == 201, r.text
    run_all(world)
    members = _members(scaling, "web")
    assert [m["state"] for m in members] == ["in_service", "in_service"]
    assert _pool_vms(scaling) == {m["vm_id"] for m in members}
    # grow to 3: the new VM runs and joins the pool
    r = c.patch(f"{BASE}/web", json={"desired": 3, "reason": "load test"}, headers=alpha.headers)
    assert r.status_code == 200 and r.json()["desired"] == 3, r.text
    run_all(world)
    members = _members(scaling, "web")
    assert len(members) == 3 and _pool_vms(scaling) == {m["vm_id"] for m in members}
    latest = _activities(scaling, "web")[0]
    assert (latest["action"], latest["reason"], latest["outcome"]) == ("scale_out", "load test", "succeeded")
    assert len(latest["numbers"]["launched"]) == 1
    # the load balancer had the new member serving (a pool without a monitor: NO_MONITOR) at the end
    assert list(latest["numbers"]["pool_status"].values()) == [["NO_MONITOR"]], latest["numbers"]
    # the newest is protected: shrinking to 1 takes the next newest, then the oldest... never it
    newest = members[-1]["vm_id"]
    r = c.put(f"{BASE}/web/members/{newest}/protection", json={"protected": True}, headers=alpha.headers)
    assert r.status_code == 200 and r.json()["protected_from_scale_in"], r.text
    with world.db.session() as s:
        since = s.scalar(select(func.max(Event.seq)))
    assert c.patch(f"{BASE}/web", json={"desired": 1}, headers=alpha.headers).status_code == 200
    run_all(world)
    with world.db.session() as s:  # drained (one change for both), then removed, then deleted
        kinds = list(s.scalars(select(Event.type).where(Event.seq > since).order_by(Event.seq)))
    pool_changes = [k for k in kinds if k.startswith("loadbalancer.member.")]
    assert pool_changes == ["loadbalancer.member.updated", "loadbalancer.member.deleted"], kinds
    assert kinds.index("loadbalancer.member.deleted") < kinds.index("vm.deleted"), kinds
    left = _members(scaling, "web")
    assert [m["vm_id"] for m in left] == [newest]
    assert _pool_vms(scaling) == {newest}
    latest = _activities(scaling, "web")[0]
    assert latest["action"] == "scale_in" and sorted(latest["numbers"]["removing"]) == sorted(
        m["vm_id"] for m in members[:2]
    )
    with world.db.session() as s:
        assert s.scalar(select(VM.id).where(VM.id.in_([m["vm_id"] for m in members[:2]]))) is None
    # its VM deleted behind the group's back: the reconcile replaces it
    r = c.delete(f"/v1/vms/{newest}", headers=alpha.headers)
    assert r.status_code == 202, r.text
    run_all(world)
    AutoscalingController(world.ctx).reconcile()
    run_all(world)
    now = _members(scaling, "web")
    assert len(now) == 1 and now[0]["vm_id"] != newest and now[0]["state"] == "in_service"
    assert _pool_vms(scaling) == {now[0]["vm_id"]}
    actions = [a["action"] for a in _activities(scaling, "web")]
    assert actions[0] in ("replace", "converge"), actions


def test_a_scale_out_past_the_vms_quota_is_refused_in_the_activity(scaling: Scaling) -> None:
    c, alpha, world = scaling.world.client, scaling.world.alpha, scaling.world
    node = c.get("/v1/quota", params={"project_id": alpha.project_id}, headers=world.admin)
    assert node.status_code == 200, node.text
    with world.db.session() as s:
        used = len(list(s.scalars(select(VM.id).where(VM.project_id == alpha.project_id))))
    r = c.patch(f"/v1/quota/nodes/{node.json()['id']}", json={"limits": {"vms": used + 1}},
                headers={**world.admin, "If-Match": node.headers["ETag"]})  # fmt: skip
    assert r.status_code == 200, r.text
    r = c.post(BASE, json=_body(scaling, "capped", desired=3, lb_pools=[]), headers=alpha.headers)
    assert r.status_code == 201, r.text
    run_all(world)
    activity = _activities(scaling, "capped")[0]
    assert activity["outcome"] == "failed", activity
    assert "Quota exceeded" in activity["detail"] and "vms" in activity["detail"], activity
    assert len(activity["numbers"]["launched"]) == 1
    with world.db.session() as s:
        task = s.get(Task, activity["task_id"])
        assert task is not None and task.state == "failed" and "Quota exceeded" in (task.error or "")
    assert len(_members(scaling, "capped")) == 1
    node = c.get("/v1/quota", params={"project_id": alpha.project_id}, headers=world.admin)
    r = c.patch(f"/v1/quota/nodes/{node.json()['id']}", json={"limits": {"vms": None}},
                headers={**world.admin, "If-Match": node.headers["ETag"]})  # fmt: skip
    assert r.status_code == 200, r.text  # the next tests launch again


def test_spread_takes_from_the_busiest_host_and_never_a_protected_member(scaling: Scaling) -> None:
    world, alpha = scaling.world, scaling.world.alpha
    tenant_id = world.client.get(f"/v1/projects/{alpha.project_id}", headers=alpha.headers).json()[
        "tenant_id"
    ]
    start = utcnow()
    placed = {"sp-1": HOSTS[0], "sp-2": HOSTS[0], "sp-3": HOSTS[0], "sp-4": HOSTS[1]}
    members = [
        ScalingGroupMember(vm_id=vm_id, group_id="g", launched_at=start + timedelta(seconds=n),
                           protected_from_scale_in=vm_id == "sp-1")
        for n, vm_id in enumerate(placed)
    ]  # fmt: skip
    with world.db.session() as s:
        for vm_id, host in placed.items():
            s.add(VM(id=vm_id, name=vm_id, project_id=alpha.project_id, tenant_id=tenant_id, host_id=host,
                     vcpus=1, ram_mb=128, disk_gb=1))  # fmt: skip
        s.flush()
        # h-1 has three (sp-1 protected), h-2 one: h-1 loses its free ones first, oldest first
        assert [m.vm_id for m in choose_victims(s, members, 1, "spread")] == ["sp-2"]
        assert [m.vm_id for m in choose_victims(s, members, 2, "spread")] == ["sp-2", "sp-3"]
        assert [m.vm_id for m in choose_victims(s, members, 9, "oldest")] == ["sp-2", "sp-3", "sp-4"]
        assert [m.vm_id for m in choose_victims(s, members, 1, "newest")] == ["sp-4"]
        s.rollback()


def test_a_member_down_in_its_pool_past_the_warmup_is_replaced(scaling: Scaling) -> None:
    c, alpha, world = scaling.world.client, scaling.world.alpha, scaling.world
    body = _body(scaling, "flaky", desired=1, warmup_s=0, cooldown_s=0)
    assert c.post(BASE, json=body, headers=alpha.headers).status_code == 201
    run_all(world)
    [sick] = [m["vm_id"] for m in _members(scaling, "flaky")]
    with world.db.session() as s:  # its host's health checks now fail
        s.execute(update(LbMember).where(LbMember.vm_id == sick).values(operating_status="OFFLINE"))
    controller = AutoscalingController(world.ctx)
    controller.reconcile()  # first seen down: the grace period starts
    assert _members(scaling, "flaky")[0]["health"] == "healthy"
    controller.reconcile()
    run_all(world)
    [fresh] = _members(scaling, "flaky")
    assert fresh["vm_id"] != sick and fresh["state"] == "in_service" and fresh["health"] == "healthy"
    with world.db.session() as s:
        assert s.get(VM, sick) is None
        in_pool = set(s.scalars(select(LbMember.vm_id).where(LbMember.pool_id == scaling.pool_id)))
    assert sick not in in_pool and fresh["vm_id"] in in_pool
    replace = _activities(scaling, "flaky")[0]
    assert replace["action"] == "replace" and replace["outcome"] == "succeeded", replace
    assert "down in its pool" in replace["numbers"]["replacing"][sick], replace


def test_a_policy_decision_is_held_to_the_bounds_and_recorded(scaling: Scaling) -> None:
    c, alpha, world = scaling.world.client, scaling.world.alpha, scaling.world
    body = _body(scaling, "policed", desired=0, max_size=2, lb_pools=[], networks=[])
    assert c.post(BASE, json=body, headers=alpha.headers).status_code == 201
    run_all(world)
    with world.db.session() as s:
        group = s.scalar(select(ScalingGroup).where(ScalingGroup.name == "policed"))
        assert group is not None
        numbers = {"avg_cpu": 0.93, "target": 0.6}
        activity = scale_to(s, group, 5, "average CPU 93 % above 60 %", "target-tracking", numbers)
        assert activity is not None and group.desired == 2
        assert scale_to(s, group, 2, "again", "target-tracking") is None  # already there
    latest = _activities(scaling, "policed")[0]
    assert (latest["action"], latest["policy"], latest["reason"]) == (
        "scale_out",
        "target-tracking",
        "average CPU 93 % above 60 %",
    )
    assert latest["numbers"] | numbers == latest["numbers"] and latest["numbers"]["asked"] == 5
    run_all(world)
    assert len(_members(scaling, "policed")) == 2


def _with_sessions(world: World, reads_busy: int | None) -> Answer:
    """A healthy host whose HAProxy reports one session on each drained member for the first
    ``reads_busy`` ``lb_status`` reads (None: for ever)."""
    reads = [0]

    def answer(op: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        if op["op"] != "lb_status":
            return _answer(op)
        reads[0] += 1
        with world.db.session() as s:
            drained = s.scalars(select(LbMember).where(LbMember.drain.is_(True)))
            keys = [f"{m.pool_id}/{m.id}" for m in drained]
        busy = reads_busy is None or reads[0] <= reads_busy
        return {"members": {}, "sessions": {k: 1 if busy else 0 for k in keys}, "vrrp_state": None}, None

    return answer


def test_a_scale_in_waits_for_the_leaving_members_sessions_up_to_the_drain_timeout(scaling: Scaling) -> None:
    c, alpha, world = scaling.world.client, scaling.world.alpha, scaling.world
    r = c.post(BASE, json=_body(scaling, "sticky", drain_timeout_s=3601), headers=alpha.headers)
    assert r.status_code == 422 and "body.drain_timeout_s" in problem_fields(r), r.text
    r = c.post(BASE, json=_body(scaling, "sticky", drain_timeout_s=3), headers=alpha.headers)
    assert r.status_code == 201 and r.json()["drain_timeout_s"] == 3, r.text
    run_all(world)
    # the sessions end after two reads: the drain stops then, before the timeout
    assert c.patch(f"{BASE}/sticky", json={"desired": 1}, headers=alpha.headers).status_code == 200
    run_all(world, answer=_with_sessions(world, 2))
    drain = _activities(scaling, "sticky")[0]["numbers"]["drain"]
    assert drain["stopped"] == "no active sessions" and 1 <= drain["waited_s"] < 3, drain
    assert drain["sessions_left"] == 0
    # they never end: the member leaves its pool when the group's timeout passes, as it says
    assert c.patch(f"{BASE}/sticky", json={"desired": 0}, headers=alpha.headers).status_code == 200
    run_all(world, answer=_with_sessions(world, None))
    latest = _activities(scaling, "sticky")[0]
    drain = latest["numbers"]["drain"]
    assert drain["stopped"] == "drain timeout of 3 s: sessions still open: 1" and drain["waited_s"] >= 3, (
        drain
    )
    assert latest["outcome"] == "succeeded" and _members(scaling, "sticky") == []
    assert not _pool_vms(scaling) & set(latest["numbers"]["removing"])
