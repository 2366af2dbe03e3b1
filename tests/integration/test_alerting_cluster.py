"""Two replicas' alerting on one database and one metrics store: their Alertmanagers gossip as one
cluster (mutual TLS under the platform CA), so a firing alert that both replicas' vmalert evaluate
reaches the tenant's webhook once, not once per replica, and a silence made through one replica
holds on the other's Alertmanager too.

Real VictoriaMetrics, two vmalert and two Alertmanager processes, the signed webhook in its own
network namespace (as tests/integration/test_alerting.py, whose helpers this reuses).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from novacron.identity.encryption import encryption_for
from novacron.identity.pki import ensure_server_tls
from novacron.monitoring.alerting.cluster import ClusterSpec, live_peers
from novacron.monitoring.alerting.engines import AlertingStack, start_alerting
from tests.conftest import free_port, in_process_app, require
from tests.integration import egresslab
from tests.integration.alertlab import SECRET, verified, wait_for, webhook_posts
from tests.integration.metrics_engines import tenant_admin
from tests.integration.test_alerting import SeriesWriter, _victoria, cpu_rule

#: how long the second Alertmanager would wait for the first before notifying itself (its
#: ``--cluster.peer-timeout``, 15 s by default), with a margin: no second notification by then
PEER_TIMEOUT_S = 15.0


def _members(stack: AlertingStack) -> tuple[str, int]:
    status = httpx.get(f"{stack.alertmanager_url}/api/v2/status", timeout=5).json()["cluster"]
    return status["status"], len(status.get("peers") or [])


def _hook(client: Any, origin: egresslab.Origin) -> list[str]:
    hook = {
        "name": "hook",
        "kind": "webhook",
        "url": origin.url("/cluster"),
        "signing_secret": SECRET,
        "group_wait_s": 0,
        "group_interval_s": 1,
        "repeat_interval_s": 3600,
    }
    r = client.post("/v1/alert-receivers", json=hook)
    assert r.status_code == 201, r.text
    return [r.json()["id"]]


def test_two_replicas_notify_once_and_share_silences(tmp_path: Path) -> None:
    require(shutil.which("vmalert") is not None, "vmalert is not installed (scripts/setup.sh)")
    require(shutil.which("prometheus-alertmanager") is not None, "prometheus-alertmanager is not installed")
    victoria = _victoria(tmp_path)
    victoria.start()
    site = tmp_path / "site"
    site.mkdir()
    stacks: list[AlertingStack] = []
    try:
        with (
            egresslab.origin(site) as origin,
            in_process_app(tmp_path / "a", egress_allow=(ipaddress.ip_network(origin.network),)) as (
                admin,
                password,
                db,
            ),
        ):
            r = admin.post("/v1/tokens", json={"username": "admin", "password": password})
            admin.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            ctx = admin.app.state.ctx  # type: ignore[attr-defined]
            query_url = victoria.ready_url.removesuffix("/health")
            # replica B: its own state directory, the same database and key-encryption keys
            kek = ("dir", str(tmp_path / "a" / "kek"))
            settings_b = dataclasses.replace(
                ctx.settings, state_dir=tmp_path / "b", host_name="replica-b", kek_options=(kek,)
            )
            settings_b.ensure_dirs()
            specs = []
            keys = encryption_for(ctx.settings)
            for name, settings in (("replica-a", ctx.settings), ("replica-b", settings_b)):
                tls = ensure_server_tls(db, settings.state_dir, ["127.0.0.1"], keys)
                specs.append(ClusterSpec(f"127.0.0.1:{free_port()}", name, tls))
            stacks.append(start_alerting(ctx, query_url=query_url, cluster_spec=specs[0]))
            assert live_peers(db, specs[1].address) == [specs[0].address]
            second = AlertingStack(settings_b, db, query_url, cluster=specs[1])
            second.start()
            stacks.append(second)
            for stack in stacks:  # each sees both members, over TLS with the platform CA
                wait_for("the cluster of two", lambda s=stack: _members(s) == ("ready", 2), 30)  # type: ignore[misc]

            alpha, alpha_id = tenant_admin(admin, "alpha")
            writer = SeriesWriter(
                query_url, {"vm_id": "vm-busy", "tenant_id": alpha_id, "project_id": "p", "host_id": "h"}
            )
            writer.start()
            try:
                cpu_rule(alpha, _hook(alpha, origin))
                writer.cpu_rate = 0.95
                posts = wait_for("the firing webhook", lambda: webhook_posts(site / "posts", "/cluster"), 90)
                assert verified(posts[0])["status"] == "firing"
                time.sleep(PEER_TIMEOUT_S + 5)  # both replicas' alert is in; only one may notify
                firing = [
                    p for p in webhook_posts(site / "posts", "/cluster") if verified(p)["status"] == "firing"
                ]
                assert len(firing) == 1, firing

                # a silence made through this replica's API reaches the other's Alertmanager
                silence = {
                    "matchers": [{"name": "alertname", "value": "cpu-busy"}],
                    "duration_s": 600,
                    "comment": "upgrade",
                }
                r = alpha.post("/v1/silences", json=silence)
                assert r.status_code == 201, r.text
                silence_id = r.json()["id"]
                wait_for(
                    "the silence on the other replica",
                    lambda: any(
                        s["id"] == silence_id and s["status"]["state"] == "active" for s in second.silences()
                    ),
                    30,
                )
            finally:
                writer.stopping.set()
                writer.join()
    finally:
        for stack in reversed(stacks):
            stack.stop()
        victoria.stop()
