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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from novacron.autoscaling.groups import scale_to
from novacron.autoscaling.members import choose_victims
from novacron.autoscaling.reconcile import AutoscalingController
from novacron.autoscaling.refresh import HANDLERS as REFRESH_HANDLERS
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


def run_all(  # noqa: PLR0913  (how long, when to stop, what to watch, how the agent answers)
    world: World,
    timeout_s: float = 60,
    until: Callable[[], bool] | None = None,
    sample: Callable[[], None] | None = None,
    answer: Answer = _answer,
) -> None:
    """Run every task to its end, the hosts' operations answered by a stand-in agent (a healthy
    one unless ``answer`` says otherwise; ``sample`` called at each of its rounds, every few tens of
    milliseconds); with ``until``, only until it holds: the runner then stops as a killed server
    does (its tasks stay running, and the next ``run_all`` resumes them at the step they were in)."""

    async def agent() -> None:
        while True:
            with world.db.session() as s:
                s.execute(update(Host).values(last_heartbeat=utcnow()))
            for host in HOSTS:
                for op in await asyncio.to_thread(hostops.claim, world.ctx, host):
                    result, error = answer(op)
                    await asyncio.to_thread(hostops.complete, world.ctx, host, op["id"], result, error)
            if sample is not None:
                sample()
            await asyncio.sleep(0.02)

    async def main() -> None:
        runner = TaskRunner(world.ctx, [*VM_HANDLERS, *LB_HANDLERS, *SCALING_HANDLERS, *REFRESH_HANDLERS])
        runner.exclusive = True  # the tasks a stopped runner left are this one's to resume
        runner.bind_loop(asyncio.get_running_loop())
        loops = [asyncio.create_task(runner.run_forever(0.05)), asyncio.create_task(agent())]
        try:
            if until is not None:
                async with asyncio.timeout(timeout_s):
                    while not await asyncio.to_thread(until):
                        await asyncio.sleep(0.05)
                return
            await runner.drain(timeout_s)
        finally:
            await runner.stop()
            for loop in loops:
                loop.cancel()

    asyncio.run(main())


@contextmanager
def scaling_world(tmp: Path, **overrides: Any) -> Iterator[Scaling]:
    """Two tenants, a tiny flavor, an image each, and alpha's load balancer with a pool
    (``overrides``: Settings fields)."""
    with lb_world(tmp, **overrides) as world:
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


@pytest.fixture(scope="module")
def scaling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaling]:
    with scaling_world(tmp_path_factory.mktemp("asg")) as made:
        yield made


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


@dataclass
class Sampled:
    """What a refresh looked like at each sampled moment: members in service, VMs of the group."""

    in_service: list[int]
    vms: list[int]


def _sampler(sc: Scaling, group_id: str) -> tuple[Sampled, Callable[[], None]]:
    """Count, as a client would see it, the members serving (in service, VM running, in the pool
    serving and not draining) and the group's VMs (a VM being deleted still counts)."""
    seen = Sampled([], [])

    def sample() -> None:
        with sc.world.db.session() as s:
            group = s.get(ScalingGroup, group_id)
            assert group is not None
            vms = list(s.scalars(select(VM).where(VM.server_group_id == group.server_group_id)))
            members = {m.vm_id: m for m in s.scalars(select(ScalingGroupMember).where(
                ScalingGroupMember.group_id == group_id))}  # fmt: skip
            serving = 0
            for vm in vms:
                member = members.get(vm.id)
                pooled = s.scalar(
                    select(LbMember).where(LbMember.vm_id == vm.id, LbMember.pool_id == sc.pool_id)
                )
                if (member is not None and member.state == "in_service" and vm.state == "running"
                        and pooled is not None and not pooled.drain
                        and pooled.operating_status in ("ONLINE", "NO_MONITOR")):  # fmt: skip
                    serving += 1
            seen.in_service.append(serving)
            seen.vms.append(len(vms))

    return seen, sample


def _refresh_and_watch(sc: Scaling, name: str, **body: Any) -> tuple[dict[str, Any], Sampled]:
    c, alpha = sc.world.client, sc.world.alpha
    r = c.post(BASE, json=_body(sc, name, desired=3), headers=alpha.headers)
    assert r.status_code == 201, r.text
    run_all(sc.world)
    group = r.json()
    before = {m["vm_id"] for m in _members(sc, name)}
    assert len(before) == 3, [(a["outcome"], a["detail"], a["numbers"]) for a in _activities(sc, name)]
    assert all(m["template_version"] == 1 for m in _members(sc, name))
    r = c.post(f"{BASE}/{name}/refresh", json={"labels": {"tier": "web"}, **body}, headers=alpha.headers)
    assert r.status_code == 202 and r.json()["action"] == "refresh", r.text
    seen, sample = _sampler(sc, group["id"])
    run_all(sc.world, sample=sample)
    after = _members(sc, name)
    assert len(after) == 3 and not before & {m["vm_id"] for m in after}, (before, after)
    assert all(m["template_version"] == 2 and m["state"] == "in_service" for m in after), after
    assert _pool_vms(sc) >= {m["vm_id"] for m in after}
    shown = c.get(f"{BASE}/{name}", headers=alpha.headers).json()
    assert shown["template_version"] == 2 and shown["template"]["labels"] == {"tier": "web"}
    activity = _activities(sc, name)[0]
    assert activity["action"] == "refresh" and activity["outcome"] == "succeeded", activity
    assert (activity["numbers"]["replaced"], activity["numbers"]["remaining"]) == (3, 0)
    with sc.world.db.session() as s:
        task = s.get(Task, activity["task_id"])
        assert task is not None and task.state == "succeeded" and task.progress == 100
        for vm_id in (m["vm_id"] for m in after):
            vm = s.get(VM, vm_id)
            assert vm is not None and vm.labels == {"tier": "web"}
    assert seen.in_service, "the sampler never ran"
    assert c.delete(f"{BASE}/{name}", headers=alpha.headers).status_code == 202  # the tenant's quota: 10 VMs
    run_all(sc.world)
    return activity, seen


def test_a_refresh_within_max_unavailable_replaces_every_vm_never_below_two(scaling: Scaling) -> None:
    activity, seen = _refresh_and_watch(scaling, "roll", max_surge=0, max_unavailable=1)
    assert min(seen.in_service) == 2 and max(seen.vms) <= 3, (seen, activity["numbers"]["batches"])
    assert min(b["in_service"] for b in activity["numbers"]["batches"]) == 2


def test_a_refresh_with_one_surge_stays_at_three_in_service_and_at_most_four_vms(scaling: Scaling) -> None:
    activity, seen = _refresh_and_watch(scaling, "surge", max_surge=1, max_unavailable=0)
    assert min(seen.in_service) == 3 and max(seen.vms) == 4, (seen, activity["numbers"]["batches"])
    assert max(b["vms"] for b in activity["numbers"]["batches"]) == 4


def test_a_refresh_is_refused_by_field_while_busy_and_to_another_tenant(scaling: Scaling) -> None:
    c, alpha, beta, world = scaling.world.client, scaling.world.alpha, scaling.world.beta, scaling.world
    body = _body(scaling, "checked", desired=1, lb_pools=[])
    assert c.post(BASE, json=body, headers=alpha.headers).status_code == 201
    run_all(world)
    url = f"{BASE}/checked/refresh"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_surge": 0, "max_unavailable": 0}, "body.max_unavailable"),
        ({"max_surge": -1}, "body.max_surge"),
        ({"image": "img-beta"}, "body.image"),
        ({"flavor": "huge"}, "body.flavor"),
        ({"image": "big-alpha"}, "body.flavor"),
        ({"user_data": "é" * 40_000}, "body.user_data"),
        ({"networks": [{"network": beta.network_id}]}, "body.networks.0.network"),
        (
            {"networks": [{"network": "web", "security_groups": ["nope"]}]},
            "body.networks.0.security_groups.0",
        ),
    ]
    for extra, field in cases:
        r = c.post(url, json=extra, headers=alpha.headers)
        assert r.status_code == 422 and field in problem_fields(r), (extra, r.text)
        p = c.patch(f"{BASE}/checked", json=extra, headers=alpha.headers)
        if field != "body.max_unavailable" and "max_surge" not in extra:
            assert p.status_code == 422 and field in problem_fields(p), (extra, p.text)
    shown = c.get(f"{BASE}/checked", headers=alpha.headers).json()
    assert shown["template_version"] == 1 and shown["template"]["image_id"] == "img-alpha"
    # another tenant's group is absent
    assert c.post(url, json={}, headers=beta.headers).status_code == 404
    # a PATCH of the template raises the version; members keep theirs until a refresh
    r = c.patch(f"{BASE}/checked", json={"user_data": "#!/bin/sh\necho v2\n"}, headers=alpha.headers)
    assert r.status_code == 200 and r.json()["template_version"] == 2, r.text
    assert [m["template_version"] for m in _members(scaling, "checked")] == [1]
    key = {**alpha.headers, "Idempotency-Key": "refresh-once"}
    first = c.post(url, json={"max_surge": 1}, headers=key)
    assert first.status_code == 202, first.text
    assert c.post(url, json={"max_surge": 1}, headers=key).json()["id"] == first.json()["id"]
    busy = c.post(url, json={}, headers=alpha.headers)
    assert busy.status_code == 409 and "refresh" in busy.json()["detail"], busy.text
    run_all(world)
    [member] = _members(scaling, "checked")
    assert member["template_version"] == 2
    # a refresh cancelled before its first batch replaces nothing and says so
    r = c.post(url, json={"labels": {"v": "3"}}, headers=alpha.headers)
    assert r.status_code == 202 and r.json()["numbers"]["template_version"] == 3, r.text
    assert c.post(f"/v1/tasks/{r.json()['task_id']}/cancel", headers=alpha.headers).status_code == 202
    run_all(world)
    cancelled = _activities(scaling, "checked")[0]
    assert (cancelled["action"], cancelled["outcome"]) == ("refresh", "cancelled"), cancelled
    assert [m["vm_id"] for m in _members(scaling, "checked")] == [member["vm_id"]]
    # deleted while a refresh runs: the delete is handed to it, and the group goes at its end
    assert c.post(url, json={"labels": {"v": "4"}}, headers=alpha.headers).status_code == 202
    deleted = c.delete(f"{BASE}/checked", headers=alpha.headers)
    assert deleted.status_code == 202, deleted.text
    assert "handed to the scalinggroup.refresh task" in deleted.json()["detail"]
    run_all(world)
    assert c.get(f"{BASE}/checked", headers=alpha.headers).status_code == 404
    with world.db.session() as s:
        assert s.get(VM, member["vm_id"]) is None


def test_a_scale_asked_during_a_refresh_is_planned_into_its_batches(scaling: Scaling) -> None:
    c, alpha, world = scaling.world.client, scaling.world.alpha, scaling.world
    r = c.post(BASE, json=_body(scaling, "grown", desired=2, lb_pools=[]), headers=alpha.headers)
    assert r.status_code == 201, r.text
    run_all(world)
    before = {m["vm_id"] for m in _members(scaling, "grown")}
    refresh = c.post(
        f"{BASE}/grown/refresh", json={"labels": {"v": "2"}, "max_surge": 1}, headers=alpha.headers
    )
    assert refresh.status_code == 202, refresh.text
    scaled = c.patch(f"{BASE}/grown", json={"desired": 3, "reason": "policy"}, headers=alpha.headers)
    assert scaled.status_code == 200, scaled.text
    assert "handed to the scalinggroup.refresh task" in (_activities(scaling, "grown")[0]["detail"] or "")
    seen, sample = _sampler(scaling, r.json()["id"])
    run_all(world, sample=sample)
    after = _members(scaling, "grown")
    assert len(after) == 3 and not before & {m["vm_id"] for m in after}, after
    assert all(m["template_version"] == 2 for m in after)
    done = next(a for a in _activities(scaling, "grown") if a["action"] == "refresh")
    assert done["outcome"] == "succeeded" and done["numbers"]["desired"] == 3, done
    assert max(seen.vms) <= 4, seen  # the desired of the moment (3) + the surge
    assert c.delete(f"{BASE}/grown", headers=alpha.headers).status_code == 202
    run_all(world)


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
