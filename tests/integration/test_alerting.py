"""Alerts end to end on real engines: VictoriaMetrics holds the series, vmalert evaluates a tenant's
rule, Alertmanager routes it, the platform delivers it to a signed webhook (a receiver in its own
network namespace, reached through the egress guard), an SMTP server (aiosmtpd) and the event
stream; it resolves, a silence stops it, another tenant's identical rule never sees the series."""

from __future__ import annotations

import ipaddress
import shutil
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from novacron.identity.encryption import EncryptionService
from novacron.identity.sealing import rotate
from novacron.monitoring.alerting.engines import start_alerting
from novacron.monitoring.alerting.notify import load_delivery
from novacron.monitoring.process import SupervisedProcess
from tests.conftest import TENANT_PASSWORD, free_port, in_process_app, require
from tests.integration import egresslab
from tests.integration.alertlab import SECRET, Inbox, verified, wait_for, webhook_posts
from tests.integration.metrics_engines import login, tenant_admin

CPU = "novacron_vm_cpu_seconds_total"
MEMORY = "novacron_vm_guest_memory_available_bytes"


class SeriesWriter(threading.Thread):
    """Writes samples stamped now to VictoriaMetrics' import API every 0.25 s: a CPU counter that
    grows at ``cpu_rate`` cores, and a memory gauge at ``memory``."""

    def __init__(self, vm_url: str, labels: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url = f"{vm_url}/api/v1/import/prometheus"
        self.labels = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        self.cpu_rate = 0.02
        self.memory = 900e6
        self.cpu = 0.0
        self.stopping = threading.Event()
        #: when the memory gauge's current value was first written (a threshold crossing)
        self.memory_changed_at = 0.0
        self._written_memory = self.memory

    def run(self) -> None:
        last = time.time()
        while not self.stopping.is_set():
            now = time.time()
            self.cpu += self.cpu_rate * (now - last)
            last = now
            ms = int(now * 1000)
            memory = self.memory
            body = f"{CPU}{{{self.labels}}} {self.cpu} {ms}\n{MEMORY}{{{self.labels}}} {memory} {ms}\n"
            httpx.post(self.url, content=body, timeout=5).raise_for_status()
            if memory != self._written_memory:
                self.memory_changed_at, self._written_memory = now, memory
            self.stopping.wait(0.25)


@dataclass
class Env:
    admin: TestClient
    app: Any
    vm_url: str
    origin: egresslab.Origin
    posts_dir: Path
    inbox: Inbox

    def login(self, tenant: str) -> tuple[TestClient, str]:
        """A tenant-admin of a new tenant ``tenant``: its client and the tenant's id."""
        return tenant_admin(self.admin, tenant)

    def posts(self, path: str) -> list[dict[str, Any]]:
        """The webhook POSTs the receiver got on ``path``, oldest first."""
        return webhook_posts(self.posts_dir, path)


def _victoria(tmp_path: Path) -> SupervisedProcess:
    binary = shutil.which("victoria-metrics")
    require(binary is not None, "victoria-metrics is not installed (scripts/setup.sh installs it)")
    port = free_port()
    argv = [
        str(binary),
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={tmp_path / 'vmdata'}",
        "-search.latencyOffset=0s",
    ]
    return SupervisedProcess("victoria-metrics", argv, f"http://127.0.0.1:{port}/health", tmp_path / "vm.log")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One alerting stack for the module's tests (their tenants, rules and webhook paths are their
    own); its start costs a test several seconds."""
    tmp_path = tmp_path_factory.mktemp("alerting")
    require(shutil.which("vmalert") is not None, "vmalert is not installed (scripts/setup.sh)")
    require(shutil.which("prometheus-alertmanager") is not None, "prometheus-alertmanager is not installed")
    from aiosmtpd.controller import Controller

    victoria = _victoria(tmp_path)
    victoria.start()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    site = tmp_path / "site"
    site.mkdir()
    try:
        with egresslab.origin(site) as origin:
            overrides = {
                "egress_allow": (ipaddress.ip_network(origin.network),),
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
            }
            with in_process_app(tmp_path / "state", **overrides) as (client, password, _db):
                r = client.post("/v1/tokens", json={"username": "admin", "password": password})
                client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
                ctx = client.app.state.ctx  # type: ignore[attr-defined]
                stack = start_alerting(ctx, query_url=victoria.ready_url.removesuffix("/health"))
                try:
                    yield Env(client, client.app, stack.query_url, origin, site / "posts", inbox)
                finally:
                    stack.stop()
    finally:
        smtp.stop()
        victoria.stop()


def receivers(client: TestClient, env: Env, path: str, email: str | None = None) -> list[str]:
    hook = {
        "name": "hook",
        "kind": "webhook",
        "url": env.origin.url(path),
        "signing_secret": SECRET,
        "group_wait_s": 0,
        "group_interval_s": 1,
        "repeat_interval_s": 3600,
    }
    r = client.post("/v1/alert-receivers", json=hook, headers={"Idempotency-Key": f"hook-{path}"})
    assert r.status_code == 201, r.text
    assert r.json()["signing_secret_set"] is True and SECRET not in r.text  # write-only
    ids = [r.json()["id"]]
    if email is not None:
        mail = {
            "name": "mail",
            "kind": "email",
            "email_to": email,
            "group_interval_s": 1,
            "repeat_interval_s": 3600,
        }
        r = client.post("/v1/alert-receivers", json=mail)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def cpu_rule(client: TestClient, receiver_ids: list[str]) -> dict[str, Any]:
    rule = {
        "name": "cpu-busy",
        "kind": "threshold",
        "metric": CPU,
        "function": "rate",
        "window": "5s",
        "op": ">",
        "value": 0.5,
        "for": "2s",
        "severity": "warning",
        "receivers": receiver_ids,
        "annotations": {"summary": "CPU at {{ $value }} cores on {{ $labels.vm_id }}"},
    }
    r = client.post("/v1/alert-rules", json=rule)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def statuses(env: Env, path: str, after: int) -> list[str]:
    """The statuses of the signed webhooks ``path`` got after the first ``after``."""
    return [verified(p)["status"] for p in env.posts(path)[after:]]


def states(client: TestClient) -> set[str]:
    r = client.get("/v1/alerts")
    assert r.status_code == 200, r.text
    return {a["state"] for a in r.json()["items"] if a["name"] == "cpu-busy"}


def alert_events(client: TestClient) -> list[dict[str, Any]]:
    r = client.get("/v1/events", params={"types": "alert.*", "limit": 200})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_a_tenant_rule_fires_notifies_resolves_and_a_silence_stops_it(env: Env) -> None:
    alpha, alpha_id = env.login("alpha")
    beta, beta_id = env.login("beta")
    writer = SeriesWriter(
        env.vm_url, {"vm_id": "vm-busy", "tenant_id": alpha_id, "project_id": "p", "host_id": "h"}
    )
    writer.start()
    try:
        rule = cpu_rule(alpha, receivers(alpha, env, "/alpha", email="ops@alpha.example"))
        assert rule["tenant_id"] == alpha_id and f'tenant_id="{alpha_id}"' in rule["expr"]
        assert beta.get(f"/v1/alert-rules/{rule['id']}").status_code == 404
        # template functions would query outside the tenant's scope: only $value and $labels
        r = alpha.post(
            "/v1/alert-rules",
            json={"name": "q", "kind": "absence", "metric": CPU, "annotations": {"x": '{{ query "up" }}'}},
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.annotations.x", r.text
        # beta's identical rule, even one naming alpha's tenant and VM, reads only beta's series
        cpu_rule(beta, receivers(beta, env, "/beta"))
        sneaky = {
            "name": "sneaky",
            "kind": "threshold",
            "metric": CPU,
            "op": ">",
            "value": 0,
            "matchers": {"tenant_id": alpha_id, "vm_id": "vm-busy"},
        }
        assert beta.post("/v1/alert-rules", json=sneaky).status_code == 201
        # an administrator's platform rule reads every tenant's series; its alerts stay the admins'
        platform = {
            "name": "platform-cpu",
            "kind": "threshold",
            "metric": CPU,
            "function": "rate",
            "window": "5s",
            "op": ">",
            "value": 0.5,
        }
        r = env.admin.post("/v1/alert-rules", json=platform)
        assert r.status_code == 201 and r.json()["tenant_id"] is None, r.text

        writer.cpu_rate = 0.95  # a busy loop: pending, then firing after `for`
        seen = wait_for("pending", lambda: "pending" in states(alpha) and "pending")
        wait_for("firing", lambda: "firing" in states(alpha))
        post = wait_for("the firing webhook", lambda: env.posts("/alpha"))[0]
        document = verified(post)
        assert document["status"] == "firing" and document["tenant_id"] == alpha_id
        alert = document["alerts"][0]
        assert alert["name"] == "cpu-busy" and alert["labels"]["vm_id"] == "vm-busy"
        assert (
            alert["annotations"]["summary"].startswith("CPU at 0.")
            and "novacron_receivers" not in alert["labels"]
        )
        mail = wait_for("the email", lambda: env.inbox.messages)[0]
        assert mail[1] == ["ops@alpha.example"] and "[FIRING] cpu-busy" in mail[2] and "vm-busy" in mail[2]
        assert wait_for(
            "alert.firing", lambda: [e for e in alert_events(alpha) if e["type"] == "alert.firing"]
        )
        assert seen == "pending"

        writer.cpu_rate = 0.0  # the loop stops
        wait_for(
            "the resolved webhook",
            lambda: any(verified(p)["status"] == "resolved" for p in env.posts("/alpha")),
        )
        wait_for("resolved", lambda: states(alpha) == {"resolved"})
        assert wait_for(
            "alert.resolved", lambda: [e for e in alert_events(alpha) if e["type"] == "alert.resolved"]
        )

        # a silence: alpha tries to reach beta's alerts too; the platform confines it to alpha's
        silence = {
            "matchers": [{"name": "alertname", "value": "cpu-busy"}, {"name": "tenant_id", "value": beta_id}],
            "duration_s": 600,
            "comment": "maintenance",
        }
        r = alpha.post("/v1/silences", json=silence)
        assert r.status_code == 201, r.text
        silence_id = r.json()["id"]
        matchers = {(m["name"], m["value"]) for m in r.json()["matchers"]}
        assert ("tenant_id", alpha_id) in matchers and ("tenant_id", beta_id) not in matchers
        assert beta.get(f"/v1/silences/{silence_id}").status_code == 404
        assert [s["id"] for s in alpha.get("/v1/silences").json()["items"]] == [silence_id]
        before, mails = len(env.posts("/alpha")), len(env.inbox.messages)
        writer.cpu_rate = 0.95
        wait_for("firing again", lambda: "firing" in states(alpha))
        time.sleep(4)  # several group intervals: a notification would have come by now
        assert len(env.posts("/alpha")) == before and len(env.inbox.messages) == mails
        assert alpha.delete(f"/v1/silences/{silence_id}").status_code == 204
        wait_for("the firing webhook after the silence", lambda: len(env.posts("/alpha")) > before)

        assert env.posts("/beta") == [] and alert_events(beta) == []
        assert {a["name"] for a in beta.get("/v1/alerts").json()["items"]} == set()
        admin_view = {(a["name"], a["tenant_id"]) for a in env.admin.get("/v1/alerts").json()["items"]}
        assert ("platform-cpu", None) in admin_view and ("cpu-busy", alpha_id) in admin_view
        assert "platform-cpu" not in {a["name"] for a in alpha.get("/v1/alerts").json()["items"]}
        assert "platform-cpu" not in {e["data"]["name"] for e in alert_events(alpha)}
    finally:
        writer.stopping.set()
        writer.join()


def test_alert_latency_from_crossing_to_webhook(env: Env) -> None:
    """p50/p99 of the time from the first sample past a threshold to the signed webhook."""
    tenant, tenant_id = env.login("gamma")
    writer = SeriesWriter(
        env.vm_url, {"vm_id": "vm-mem", "tenant_id": tenant_id, "project_id": "p", "host_id": "h"}
    )
    writer.start()
    try:
        rule = {
            "name": "low-memory",
            "kind": "threshold",
            "metric": MEMORY,
            "op": "<",
            "value": 100e6,
            "receivers": receivers(tenant, env, "/gamma"),
        }
        assert tenant.post("/v1/alert-rules", json=rule).status_code == 201
        # a new series becomes queryable 7-10 s after its first sample
        query = {"query": f'{MEMORY}{{vm_id="vm-mem"}}'}
        wait_for(
            "the series",
            lambda: httpx.get(f"{env.vm_url}/api/v1/query", params=query).json()["data"]["result"],
        )
        latencies = []
        for _ in range(10):
            seen = len(env.posts("/gamma"))
            writer.memory = 50e6
            wait_for("firing", lambda: statuses(env, "/gamma", seen) == ["firing"], 30)  # noqa: B023
            latencies.append(env.posts("/gamma")[seen]["time"] - writer.memory_changed_at)
            writer.memory = 900e6
            wait_for("resolved", lambda: statuses(env, "/gamma", seen) == ["firing", "resolved"], 30)  # noqa: B023
        p50 = statistics.median(latencies)
        p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
        print(
            f"alert latency (sample -> signed webhook), n={len(latencies)}: p50 {p50:.2f} s, p99 {p99:.2f} s"
        )
        assert p99 < 5.0
    finally:
        writer.stopping.set()
        writer.join()


URL_TOKEN = "url-token-4f1c9e"


def test_a_receivers_secret_is_write_only_sealed_and_its_create_audited(tmp_path: Path) -> None:
    with in_process_app(tmp_path) as (client, password, _db):
        r = client.post("/v1/tokens", json={"username": "admin", "password": password})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        hook = {
            "name": "pager",
            "kind": "webhook",
            "url": f"https://robot:{URL_TOKEN}@93.184.216.34/hook?token={URL_TOKEN}",
            "signing_secret": SECRET,
        }
        first = client.post("/v1/alert-receivers", json=hook, headers={"Idempotency-Key": "k1"})
        again = client.post("/v1/alert-receivers", json=hook, headers={"Idempotency-Key": "k1"})
        assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert SECRET not in first.text and first.json()["signing_secret_set"] is True
        # the URL may carry credentials: shown without them, for the owner as for anyone
        assert first.json()["url"] == "https://93.184.216.34/hook?***" and URL_TOKEN not in first.text
        receiver_id = first.json()["id"]
        rows = client.get("/v1/audit", params={"action": "alert-receiver.create"}).json()["items"]
        assert {row["resource_id"] for row in rows} == {receiver_id}  # the create and its replay
        # what a copy of the database shows: the secret sealed, never in clear
        db_file = tmp_path / "nc.db"
        client.app.state.ctx.db.engine.dispose()  # type: ignore[attr-defined]  # WAL into the file
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("nc.db*"))
        assert SECRET.encode() not in raw and URL_TOKEN.encode() not in raw and db_file.exists()
        with sqlite3.connect(db_file) as conn:
            (sealed, sealed_url) = conn.execute("SELECT signing_secret, url FROM alert_receivers").fetchone()
        assert sealed.startswith("nce1:") and sealed_url.startswith("nce1:")
        # a KEK rotation re-wraps it, and the platform still opens it to sign
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        report = rotate(ctx.settings, ctx.db)
        assert report.rewrapped >= 1 and not report.errors
        delivery = load_delivery(ctx.db, ctx.settings, receiver_id)
        assert delivery is not None and delivery.secret == SECRET and delivery.url == hook["url"]
        with sqlite3.connect(db_file) as conn:
            (rewrapped,) = conn.execute("SELECT signing_secret FROM alert_receivers").fetchone()
        assert rewrapped != sealed and EncryptionService.kek_of(rewrapped) == report.new_kek


def test_bad_rules_and_receivers_are_refused_naming_the_field(tmp_path: Path) -> None:
    with in_process_app(tmp_path, smtp_host="127.0.0.1") as (client, password, _db):
        r = client.post("/v1/tokens", json={"username": "admin", "password": password})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        base = {"name": "r", "kind": "threshold", "metric": CPU, "op": ">", "value": 1}

        def refused(body: dict[str, Any], field: str, path: str = "/v1/alert-rules") -> None:
            r = client.post(path, json=body)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert field in {e["field"] for e in r.json()["errors"]}, r.text

        refused({**base, "metric": "cpu usage{"}, "body.metric")
        refused({**base, "for": "-5s"}, "body.for")
        refused({**base, "receivers": ["nope"]}, "body.receivers.0")
        refused({**base, "kind": "burn_rate", "expr": "sum(rate(x[5m]) >"}, "body.expr")
        refused({**base, "labels": {"tenant_id": "other"}}, "body.labels.tenant_id")
        refused({**base, "value": None}, "body.value")
        hook = {"name": "h", "kind": "webhook", "url": "http://127.0.0.1:9/", "signing_secret": SECRET}
        refused(hook, "body.url", "/v1/alert-receivers")
        # a regex Python reads but Alertmanager (Go RE2) refuses would block every later reload
        go_regex = {
            "name": "m",
            "kind": "email",
            "email_to": "a@b.example",
            "matchers": [{"name": "a", "op": "=~", "value": "(?=b)"}],
        }
        refused(go_regex, "body.matchers", "/v1/alert-receivers")
        refused(
            {**hook, "url": "https://hooks.example.com/x", "signing_secret": None},
            "body.signing_secret",
            "/v1/alert-receivers",
        )
        assert (
            client.post(
                "/v1/alert-rules", json={**base, "kind": "burn_rate", "expr": "vector(1) > 0"}
            ).status_code
            == 201
        )


def test_a_tenant_burn_rate_rule_is_refused_where_the_store_cannot_scope_it(tmp_path: Path) -> None:
    # Prometheus applies no extra_label to a whole expression: a tenant's free-form rule would
    # read every tenant's series, so it is refused even while no alerting engine runs
    with in_process_app(tmp_path, metrics_engine="prometheus") as (client, password, _db):
        admin = login(client, "admin", password)
        tenant_id = client.post("/v1/tenants", json={"name": "acme"}, headers=admin).json()["id"]
        user = {"username": "ops", "password": TENANT_PASSWORD, "role": "member", "tenant_id": tenant_id}
        assert client.post("/v1/users", json=user, headers=admin).status_code == 201
        member = login(client, "ops@acme", TENANT_PASSWORD)
        rule = {"name": "burn", "kind": "burn_rate", "expr": "vector(1) > 0"}
        r = client.post("/v1/alert-rules", json=rule, headers=member)
        assert r.status_code == 422 and "body.kind" in {e["field"] for e in r.json()["errors"]}, r.text
        assert client.get("/v1/alert-rules", headers=member).json()["items"] == []
        threshold = {"name": "cpu", "kind": "threshold", "metric": CPU, "op": ">", "value": 1}
        assert client.post("/v1/alert-rules", json=threshold, headers=member).status_code == 201
        # no SMTP server on this node: an email receiver is refused with what to do, not a 503
        mail = {"name": "mail", "kind": "email", "email_to": "ops@acme.example"}
        r = client.post("/v1/alert-receivers", json=mail, headers=admin)
        assert r.status_code == 422 and "NOVACRON_SMTP_HOST" in r.text, r.text
        assert "body.kind" in {e["field"] for e in r.json()["errors"]}
