"""A scaling group of real test guests (QEMU under TCG) on a real node, driven by the CLI.

A group of 2 grows to 3 when its desired count is raised (the new VM runs); shrinking it to 1
deletes by the termination policy (oldest) and never the protected VM; a VM deleted behind the
group's back is replaced by the autoscaling controller; deleting the group deletes its VMs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Guest, Server, import_guest_image, wait_task
from tests.integration.test_cli import Cli

BOOT_S = 240.0


def _members(c: httpx.Client, group: str) -> list[dict[str, Any]]:
    r = c.get(f"/v1/scaling-groups/{group}/members")
    assert r.status_code == 200, r.text
    return list(r.json())


def _running(c: httpx.Client, vm_ids: list[str]) -> bool:
    return all(c.get(f"/v1/vms/{v}").json().get("state") == "running" for v in vm_ids)


def _gone(c: httpx.Client, vm_ids: list[str]) -> bool:
    return all(c.get(f"/v1/vms/{v}").status_code == 404 for v in vm_ids)


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
    with server.client() as c:
        import_guest_image(c, guest)
        created = cli.ok(
            "scaling-group", "create", "web", "--image", "test-guest", "--flavor", "tiny", "--max", "4",
            "--desired", "2", "--termination-policy", "oldest", "--project", "default", "--wait", "--json",
        ).json()  # fmt: skip
        first = [m["vm_id"] for m in created["member_list"]]
        assert len(first) == 2 and created["members"]["in_service"] == 2, created
        assert _running(c, first)
        sg = c.get(f"/v1/server-groups/{created['server_group_id']}").json()
        assert sg["policy"] == "anti-affinity" and sorted(sg["members"]) == sorted(first)

        grown = cli.ok(
            "scaling-group", "set-desired", "web", "3", "--reason", "more load", "--wait", "--json"
        )
        members = [m["vm_id"] for m in grown.json()["member_list"]]
        assert len(members) == 3 and set(first) < set(members)
        assert _running(c, members)

        oldest = _members(c, "web")[0]["vm_id"]
        cli.ok("scaling-group", "protect", "web", oldest)
        cli.ok("scaling-group", "set-desired", "web", "1", "--wait")
        assert [m["vm_id"] for m in _members(c, "web")] == [oldest]
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
        assert c.get("/v1/scaling-groups/web/activities").json()["items"][0]["action"] in (
            "replace",
            "converge",
        )

        deleted = c.delete("/v1/scaling-groups/web")
        assert deleted.status_code == 202, deleted.text
        assert wait_task(c, deleted.json()["task_id"], timeout_s=BOOT_S)["state"] == "succeeded"
        assert c.get("/v1/scaling-groups/web").status_code == 404
        assert _gone(c, [replacement])
