"""A rolling instance refresh of real test guests (QEMU under TCG) behind a real load balancer, on
a real node, through the CLI.

A group of 2 serving busybox httpd behind HAProxy (the setup of ``test_scaling_groups.py``) gets
new user-data and is refreshed with ``--max-unavailable 1 --max-surge 0``: every VM is replaced by
one of the new template version, the new members are ONLINE in the pool, and at every moment
sampled while the refresh ran at least one member was ONLINE and not draining.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.conftest import Guest, Server, import_guest_image, wait_task
from tests.integration.test_scaling_groups import (
    USER_DATA,
    _load_balancer,
    _members,
    _pool,
    _until,
    admin_cli,
)


def _serving(c: httpx.Client, lb_id: str, pool_id: str) -> int:
    """How many of the pool's members HAProxy reports ONLINE and that are not being drained."""
    items = c.get(f"/v1/loadbalancers/{lb_id}/pools/{pool_id}/members").json()["items"]
    return sum(1 for m in items if m["operating_status"] == "ONLINE" and not m["drain"])


def test_a_refresh_replaces_every_vm_with_one_always_serving(
    server: Server, guest: Guest, tmp_path: Path
) -> None:
    cli, user_data = admin_cli(server, tmp_path)
    with server.client() as c:
        import_guest_image(c, guest)
        lb_id, pool_id, _ = _load_balancer(c)
        created = cli.ok(
            "scaling-group", "create", "web", "--image", "test-guest", "--flavor", "tiny", "--max", "2",
            "--desired", "2", "--project", "default", "--network", "lbnet", "--security-group", "web",
            "--lb-pool", f"{pool_id}:80", "--user-data", str(user_data), "--wait", "--json",
        ).json()  # fmt: skip
        first = [m["vm_id"] for m in created["member_list"]]
        assert len(first) == 2 and created["template_version"] == 1, created
        _until("HAProxy to mark the members ONLINE", lambda: _serving(c, lb_id, pool_id) == 2, 90)

        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            with server.client() as watcher:
                while not stop.is_set():
                    samples.append(_serving(watcher, lb_id, pool_id))
                    stop.wait(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        v2 = tmp_path / "user-data-v2"
        v2.write_text(USER_DATA.replace("echo member", "echo member-v2"))
        try:
            done = cli.ok(
                "scaling-group", "refresh", "web", "--user-data", str(v2), "--max-surge", "0",
                "--max-unavailable", "1", "--wait", "--json",
            ).json()  # fmt: skip
        finally:
            stop.set()
            sampler.join()
        assert done["outcome"] == "succeeded", done
        assert (done["numbers"]["replaced"], done["numbers"]["remaining"]) == (2, 0), done
        now = _members(c, "web")
        assert len(now) == 2 and not {m["vm_id"] for m in now} & set(first), now
        assert all(m["template_version"] == 2 and m["state"] == "in_service" for m in now), now
        assert _pool(c, lb_id, pool_id) == {m["vm_id"]: "ONLINE" for m in now}
        assert len(samples) > 10 and min(samples) >= 1, samples
        shown = cli.ok("scaling-group", "show", "web").out
        assert "v2" in shown
        # the shared node's later tests should not share its 2 cores with these guests
        deleted = c.delete("/v1/scaling-groups/web")
        assert deleted.status_code == 202, deleted.text
        assert wait_task(c, deleted.json()["task_id"], timeout_s=240)["state"] == "succeeded"
