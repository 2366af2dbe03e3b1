"""A CPU alert from a real guest: a busy loop typed on its serial console makes its vCPU time rise
in the node's metrics store, the tenant's rule fires through the node's own vmalert and
Alertmanager to a signed webhook and an SMTP server and the event stream, and resolves when the
loop is killed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    free_port,
    import_guest_image,
    make_server,
    tenant_user,
    type_on_console,
    wait_console,
    wait_task,
)
from tests.integration import egresslab
from tests.integration.alertlab import SECRET, Inbox, verified, wait_for, webhook_posts


@dataclass
class Node:
    server: Server
    origin: egresslab.Origin
    posts_dir: Path
    inbox: Inbox

    def posts(self, path: str) -> list[dict[str, Any]]:
        return webhook_posts(self.posts_dir, path)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    site = tmp_path / "site"
    site.mkdir()
    try:
        with egresslab.origin(site) as origin:
            server = make_server(
                NOVACRON_EGRESS_ALLOW=str(ipaddress.ip_network(origin.network)),
                NOVACRON_SMTP_HOST="127.0.0.1",
                NOVACRON_SMTP_PORT=str(smtp.port),
            )
            server.start(timeout_s=180)
            try:
                yield Node(server, origin, site / "posts", inbox)
            finally:
                destroy_server(server)
    finally:
        smtp.stop()


def cpu_rate(server: Server, vm_id: str) -> Any:
    """What the node's store answers for the VM's vCPU rate (for a failure's message)."""
    import re

    found = re.findall(r"metrics store: \w+ at (http://127\.0\.0\.1:\d+)", server.log_path.read_text())
    promql = f'rate(novacron_vm_cpu_seconds_total{{vm_id="{vm_id}"}}[10s])'
    return httpx.get(f"{found[-1]}/api/v1/query", params={"query": promql}, timeout=10).json()


def test_a_busy_loop_in_a_guest_fires_notifies_and_resolves(node: Node, guest: Guest) -> None:
    server = node.server
    with server.client() as admin:
        admin.timeout = httpx.Timeout(60)
        import_guest_image(admin, guest)
        tenant, project_id = tenant_user(admin, server, "busy", role="tenant-admin")
    with tenant:
        tenant.timeout = httpx.Timeout(60)
        r = tenant.post(
            "/v1/vms",
            json={"name": "spin", "image": "test-guest", "flavor": "tiny", "project_id": project_id},
        )
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        assert wait_task(tenant, r.json()["task_id"], timeout_s=300)["state"] == "succeeded"
        hook = {
            "name": "hook",
            "kind": "webhook",
            "url": node.origin.url("/busy"),
            "signing_secret": SECRET,
            "group_wait_s": 0,
            "group_interval_s": 1,
            "repeat_interval_s": 3600,
        }
        mail = {"name": "mail", "kind": "email", "email_to": "ops@busy.example", "group_interval_s": 1}
        ids = [tenant.post("/v1/alert-receivers", json=body).json()["id"] for body in (hook, mail)]
        # under TCG on 2 shared cores a spinning vCPU gets a fraction of a core; an idle one ~0
        rule = {
            "name": "guest-busy",
            "kind": "threshold",
            "metric": "novacron_vm_cpu_seconds_total",
            "matchers": {"vm_id": vm_id},
            "function": "rate",
            "window": "10s",
            "op": ">",
            "value": 0.2,
            "for": "3s",
            "receivers": ids,
        }
        assert tenant.post("/v1/alert-rules", json=rule).status_code == 201
        wait_console(tenant, vm_id, "NOVACRON-GUEST-READY", timeout_s=240)
        type_on_console(server, tenant, vm_id, "echo READY-$((6*7))", "READY-42")

        type_on_console(server, tenant, vm_id, "while :; do :; done & echo SPIN-$((1+1))", "SPIN-2")
        try:
            post = wait_for("the firing webhook", lambda: node.posts("/busy"), 180)[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the store says: {cpu_rate(server, vm_id)}") from exc
        document = verified(post)
        assert document["status"] == "firing" and document["alerts"][0]["labels"]["vm_id"] == vm_id
        mail_seen = wait_for("the email", lambda: node.inbox.messages, 60)[0]
        assert "[FIRING] guest-busy" in mail_seen[2]
        events = tenant.get("/v1/events", params={"types": "alert.*"}).json()["items"]
        assert any(e["type"] == "alert.firing" and e["data"]["name"] == "guest-busy" for e in events)

        type_on_console(server, tenant, vm_id, "kill $!; echo STOPPED-$((2+1))", "STOPPED-3")
        wait_for(
            "the resolved webhook",
            lambda: any(verified(p)["status"] == "resolved" for p in node.posts("/busy")),
            180,
        )
