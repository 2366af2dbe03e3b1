"""The live configuration against one real server: a change refused naming the field, a change
applied to the running login throttle without a restart, stale and replayed writes, the audit,
a tenant refused, and the ``novacron config`` commands (the two-replica case is in
test_event_bus.py, on its PostgreSQL replicas)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Server, tenant_user
from tests.integration.shared_server import server
from tests.integration.test_cli import Cli

__all__ = ["server"]


def _wrong_logins(server: Server, username: str, count: int) -> list[int]:
    body = {"username": username, "password": "not-the-password-1"}
    return [
        httpx.post(f"{server.url}/v1/tokens", json=body, timeout=10, verify=server.verify).status_code
        for _ in range(count)
    ]


def _fields(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["reason"] for e in r.json()["errors"]}


def _version(admin: httpx.Client) -> int:
    return int(admin.get("/v1/config").json()["version"])


def test_bad_values_are_refused_naming_the_field_and_nothing_is_stored(server: Server) -> None:
    with server.client() as admin:
        before = _version(admin)
        fields = _fields(admin.patch("/v1/config", json={"scheduler": {"rebalance_threshold": 2}}))
        assert "at most 1" in fields["body.scheduler.rebalance_threshold"]
        fields = _fields(admin.patch("/v1/config", json={"scheduler": {"cpu_weight": 3}}))
        assert "body.scheduler.cpu_weight" in fields
        fields = _fields(admin.patch("/v1/config", json={"scheduler": {"placement_strategy": "random"}}))
        assert "body.scheduler.placement_strategy" in fields
        # a rule between two fields, checked by the service on the merged document
        r = admin.patch("/v1/config", json={"login": {"backoff_s": 120, "backoff_max_s": 60}})
        assert "must not exceed login.backoff_max_s" in _fields(r)["body.login.backoff_s"]
        assert _version(admin) == before


def test_a_changed_login_limit_refuses_at_the_new_limit_without_a_restart(server: Server) -> None:
    with server.client() as admin:
        # start-up value: 5 failures of an account before its backoff: the third is still a 401
        assert _wrong_logins(server, f"nobody-{uuid.uuid4().hex[:6]}", 3) == [401, 401, 401]
        current = admin.get("/v1/config")
        assert current.json()["effective"]["login"]["account_failures"] == 5
        key = {"Idempotency-Key": uuid.uuid4().hex}
        body: dict[str, Any] = {
            "login": {"account_failures": 2, "backoff_s": 30},
            "reason": "brute force seen",
        }
        r = admin.patch("/v1/config", json=body, headers={"If-Match": current.headers["etag"], **key})
        assert r.status_code == 200, r.text
        version = r.json()["version"]
        assert r.headers["etag"] == f'"config.v{version}"'
        # applied on the replica that stored it as the change committed, before it answered
        assert admin.get("/v1/config").json()["applied_version"] == version
        # the running throttle counts with the new limit: the third attempt waits (429)
        assert _wrong_logins(server, f"nobody-{uuid.uuid4().hex[:6]}", 3) == [401, 401, 429]
        # a retry with the same key is the same answer, not a new version
        again = admin.patch("/v1/config", json=body, headers={"If-Match": current.headers["etag"], **key})
        assert again.headers.get("idempotent-replayed") == "true" and again.json()["version"] == version
        # a change made on a copy older than the stored one is refused
        stale = admin.patch(
            "/v1/config",
            json={"login": {"account_failures": 9}},
            headers={"If-Match": current.headers["etag"]},
        )
        assert stale.status_code == 412, stale.text
        # back to the start-up value (null), and the change is in the audit log
        r = admin.patch("/v1/config", json={"login": {"account_failures": None, "backoff_s": None}})
        assert r.json()["effective"]["login"]["account_failures"] == 5
        records = admin.get("/v1/audit", params={"limit": 20}).json()["items"]
        assert any(
            a["path"] == "/v1/config" and a["method"] == "PATCH" and a["status_code"] == 200 for a in records
        )
        events = admin.get("/v1/events", params={"types": "config.changed", "tail": "true"}).json()["items"]
        assert any(
            e["data"]["version"] == version and e["data"]["reason"] == "brute force seen" for e in events
        )


def test_a_shorter_metering_interval_is_used_by_the_running_quota_controller(server: Server) -> None:
    with server.client() as admin:
        project = admin.get("/v1/projects", params={"name": "default"}).json()["items"][0]
        r = admin.post("/v1/networks", json={"name": "metered", "project_id": project["id"]})
        assert r.status_code in (201, 202), r.text
        network = r.json()["id"]

        def metered() -> bool:
            report = admin.get("/v1/usage", params={"tenant_id": project["tenant_id"]}).json()
            return any(i["quantity"] > 0 for i in report["items"])

        # the start-up interval is an hour: the controller's first run only started the clock
        assert not metered()
        r = admin.patch("/v1/config", json={"intervals": {"metering_interval_s": 1}, "reason": "bill now"})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while not metered():
            assert time.monotonic() < deadline, "the quota controller kept its start-up interval"
            time.sleep(0.5)
        admin.patch("/v1/config", json={"intervals": {"metering_interval_s": None}})
        admin.delete(f"/v1/networks/{network}")


def test_a_tenant_user_is_refused(server: Server) -> None:
    with server.client() as admin:
        tenant, _ = tenant_user(admin, server, "cfgtenant", role="tenant-admin")
        with tenant:
            assert tenant.get("/v1/config").status_code == 403
            r = tenant.patch("/v1/config", json={"login": {"account_failures": 1}})
            assert r.status_code == 403 and "config:write" in r.json()["detail"]
            assert tenant.post("/v1/config/rollback", json={"version": 0}).status_code == 403


@pytest.fixture(scope="module")
def cli(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    c = Cli(tmp_path_factory.mktemp("cfgcli") / "novacron" / "credentials.json", server)
    c.ok("login", "--server", server.url, "--password-stdin", stdin=server.admin_password + "\n")
    return c


def test_config_commands_set_get_history_diff_rollback(cli: Cli) -> None:
    start = cli.ok("config", "get", "--json").json()["version"]
    cli.ok(
        "config",
        "set",
        "scheduler.placement_strategy=pack",
        "intervals.metering_interval_s=120",
        "-m",
        "pack it",
    )
    assert cli.ok("config", "get", "scheduler.placement_strategy").out.strip() == "pack"
    table = cli.ok("config", "get").out
    assert "scheduler.placement_strategy" in table and "live" in table
    assert "pack it" in cli.ok("config", "history").out
    diff = cli.ok("config", "diff", str(start), "--json").json()["changes"]
    assert {"key": "scheduler.placement_strategy", "old": "spread", "new": "pack"} in diff
    assert {"key": "intervals.metering_interval_s", "old": 3600.0, "new": 120.0} in diff
    r = cli("config", "set", "scheduler.rebalance_threshold=5")
    assert r.code != 0 and "scheduler.rebalance_threshold" in r.err, r.err
    cli.ok("config", "rollback", str(start), "-m", "undo")
    assert cli.ok("config", "get", "scheduler.placement_strategy").out.strip() == "spread"
    history = cli.ok("config", "history", "--json").json()["items"]
    assert history[0]["rollback_of"] == start and history[0]["reason"] == "undo"
