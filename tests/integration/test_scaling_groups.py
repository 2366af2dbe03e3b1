"""A scaling group of real test guests (QEMU under TCG) behind a real load balancer, on a real
node, driven by the CLI.

The guests serve HTTP (busybox httpd from their user-data) on a tenant network; the group's VMs
join the load balancer's pool, whose HAProxy health checks mark them ONLINE. A group of 2 grows to
3 when its desired count is raised (the new VM runs and serves); shrinking it to 1 deletes by the
termination policy (oldest) and never the protected VM, taking the others out of the pool first; a
VM deleted behind the group's back is replaced by the autoscaling controller; deleting the group
deletes its VMs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Guest, Server, default_project, import_guest_image, require, wait_task
from tests.integration.test_cli import Cli
from tests.integration.test_lb_api import CIDR, tenant_network, wait_active

BOOT_S = 240.0
USER_DATA = "#!/bin/sh\nmkdir -p /tmp/www && echo member > /tmp/www/index.html && httpd -p 80 -h /tmp/www\n"


def _members(c: httpx.Client, group: str) -> list[dict[str, Any]]:
    r = c.get(f"/v1/scaling-groups/{group}/members")
    assert r.status_code == 200, r.text
    return list(r.json())


def _running(c: httpx.Client, vm_ids: list[str]) -> bool:
    return all(c.get(f"/v1/vms/{v}").json().get("state") == "running" for v in vm_ids)


def _gone(c: httpx.Client, vm_ids: list[str]) -> bool:
    return all(c.get(f"/v1/vms/{v}").status_code == 404 for v in vm_ids)


def _load_balancer(c: httpx.Client) -> tuple[str, str]:
    """A load balancer on a tenant network with an HTTP pool checked by HAProxy: (lb id, pool id);
    and a security group ``web`` letting the network reach port 80."""
    project = default_project(c)
    _, sub, _ = tenant_network(c, project)
    rules = [{"direction": "ingress", "protocol": "tcp", "port_min": 80, "port_max": 80, "remote_cidr": CIDR}]
    sg = c.post("/v1/security-groups", json={"name": "web", "project_id": project, "rules": rules})
    assert sg.status_code == 201, sg.text
    r = c.post(
        "/v1/loadbalancers", json={"name": "front", "vip_subnet_id": sub.json()["id"], "project_id": project}
    )
    assert r.status_code == 201, r.text
    lb_id = wait_active(c, r.json()["id"])["id"]
    monitor = {"type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2}
    pool = c.post(
        f"/v1/loadbalancers/{lb_id}/pools", json={"name": "app", "protocol": "HTTP", "healthmonitor": monitor}
    )
    assert pool.status_code == 201, pool.text
    wait_active(c, lb_id)
    listener = {"protocol": "HTTP", "protocol_port": 80, "default_pool_id": pool.json()["id"]}
    assert c.post(f"/v1/loadbalancers/{lb_id}/listeners", json=listener).status_code == 201
    wait_active(c, lb_id)
    return lb_id, pool.json()["id"]


def _pool(c: httpx.Client, lb_id: str, pool_id: str) -> dict[str, str]:
    """The pool's members: VM id -> operating status."""
    items = c.get(f"/v1/loadbalancers/{lb_id}/pools/{pool_id}/members").json()["items"]
    return {m["vm_id"]: m["operating_status"] for m in items}


def _until(what: str, check: Any, timeout_s: float = BOOT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


def test_a_group_scales_out_and_in_by_policy_and_replaces_a_lost_vm(
    server: Server, guest: Guest, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "novacron" / "credentials.json", server)
    cli.ok("login", "--server", server.url, "--username", "admin", "--password-stdin",
           stdin=server.admin_password + "\n")  # fmt: skip
    require(shutil.which("haproxy") is not None, "haproxy is not installed")
    user_data = tmp_path / "user-data"
    user_data.write_text(USER_DATA)
    with server.client() as c:
        import_guest_image(c, guest)
        lb_id, pool_id = _load_balancer(c)
        created = cli.ok(
            "scaling-group", "create", "web", "--image", "test-guest", "--flavor", "tiny", "--max", "4",
            "--desired", "2", "--termination-policy", "oldest", "--project", "default",
            "--network", "lbnet", "--security-group", "web", "--lb-pool", f"{pool_id}:80",
            "--user-data", str(user_data), "--wait", "--json",
        ).json()  # fmt: skip
        first = [m["vm_id"] for m in created["member_list"]]
        assert len(first) == 2 and created["members"]["in_service"] == 2, created
        assert _running(c, first)
        serving = {v: "ONLINE" for v in first}
        _until("HAProxy to mark the members ONLINE", lambda: _pool(c, lb_id, pool_id) == serving, 90)
        sg = c.get(f"/v1/server-groups/{created['server_group_id']}").json()
        assert sg["policy"] == "anti-affinity" and sorted(sg["members"]) == sorted(first)

        grown = cli.ok(
            "scaling-group", "set-desired", "web", "3", "--reason", "more load", "--wait", "--json"
        )
        members = [m["vm_id"] for m in grown.json()["member_list"]]
        assert len(members) == 3 and set(first) < set(members)
        assert _running(c, members)
        serving = {v: "ONLINE" for v in members}
        _until("the new member to serve", lambda: _pool(c, lb_id, pool_id) == serving, 90)

        oldest = _members(c, "web")[0]["vm_id"]
        cli.ok("scaling-group", "protect", "web", oldest)
        cli.ok("scaling-group", "set-desired", "web", "1", "--wait")
        assert [m["vm_id"] for m in _members(c, "web")] == [oldest]
        assert list(_pool(c, lb_id, pool_id)) == [oldest]  # out of the pool before their VMs went
        _until("the scaled-in VMs to be deleted", lambda: _gone(c, [v for v in members if v != oldest]))
        activities = cli.ok("scaling-group", "activities", "web", "--json").json()["items"]
        assert [a["action"] for a in activities[:3]] == ["scale_in", "scale_out", "create"], activities
        assert activities[1]["reason"] == "more load" and activities[0]["numbers"]["protected_kept"] == 0
        assert "more load" in cli.ok("scaling-group", "activities", "web").out

        # deleted behind the group's back: the controller's next round replaces it
        assert c.delete(f"/v1/vms/{oldest}").status_code == 202

        def replaced() -> bool:
            now = _members(c, "web")
            return len(now) == 1 and now[0]["vm_id"] != oldest and now[0]["state"] == "in_service"

        _until("the lost VM to be replaced", replaced)
        replacement = _members(c, "web")[0]["vm_id"]
        assert _running(c, [replacement])
        _until("the replacement to serve", lambda: _pool(c, lb_id, pool_id) == {replacement: "ONLINE"}, 90)
        assert c.get("/v1/scaling-groups/web/activities").json()["items"][0]["action"] in (
            "replace",
            "converge",
        )

        deleted = c.delete("/v1/scaling-groups/web")
        assert deleted.status_code == 202, deleted.text
        assert wait_task(c, deleted.json()["task_id"], timeout_s=BOOT_S)["state"] == "succeeded"
        assert c.get("/v1/scaling-groups/web").status_code == 404
        assert _gone(c, [replacement])
