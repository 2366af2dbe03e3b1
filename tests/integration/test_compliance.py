"""Compliance checks in-process (one SQLite app for the module): a well-configured tenant passes
every check; breaking each control makes its check fail with evidence naming what broke, and a
pass-to-fail change raises a ``compliance.drift`` event; reports in JSON, CSV and HTML (API and
CLI); GDPR export and erasure; the leader's periodic run.

Backups themselves need a guest: the backup catalogue's rows (an available backup, a restore test)
are written directly, the target and its tenant key are made by the real backup store.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from novacron.cli import main as cli_main
from novacron.cli.client import Client
from novacron.cli.common import State
from novacron.compliance.catalogue import CHECKS, CONTROLS, FRAMEWORKS
from novacron.compliance.checks import Scope
from novacron.compliance.checks import tls_listeners as tls_check
from novacron.compliance.export_task import HANDLERS as EXPORT_HANDLERS
from novacron.compliance.service import ComplianceController
from novacron.context import Context
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import (
    AuditRecord,
    BackupSnapshot,
    MfaTotp,
    RestoreJob,
    SigningKey,
    User,
)
from novacron.tasks.runner import TaskRunner
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW
from tests.integration.test_mfa import Authenticator


@dataclass
class Env:
    client: TestClient
    db: Database
    ctx: Context
    admin: dict[str, str]
    alice: dict[str, str]
    tenant_id: str
    project_id: str
    policy_id: str
    target_dir: Path
    saved: dict[str, Any] = field(default_factory=dict)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _login(c: TestClient, username: str, password: str) -> dict[str, str]:
    return _bearer(
        _ok(c.post("/v1/tokens", json={"username": username, "password": password}))["access_token"]
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = tmp_path_factory.mktemp("compliance")
    with in_process_app(state) as (c, password, db):
        admin = _login(c, "admin", password)
        tenant = _ok(c.post("/v1/tenants", json={"name": "acme"}, headers=admin), 201)
        spec = {"username": "alice", "password": PW, "role": "tenant-admin", "tenant_id": tenant["id"]}
        _ok(c.post("/v1/users", json=spec, headers=admin), 201)
        alice = _login(c, "alice@acme", PW)
        secret = _ok(c.post("/v1/mfa/totp", headers=alice), 201)["secret"]
        _ok(c.post("/v1/mfa/totp/confirm", json={"code": Authenticator(secret).code()}, headers=alice))
        _ok(c.put(f"/v1/tenants/{tenant['id']}/mfa-policy", json={"require": "admins"}, headers=alice))
        project = _ok(c.post("/v1/projects", json={"name": "web"}, headers=alice), 201)
        rule = {
            "direction": "ingress",
            "protocol": "tcp",
            "port_min": 22,
            "port_max": 22,
            "remote_cidr": "10.0.0.0/8",
        }
        group = {"name": "ssh-office", "project_id": project["id"], "rules": [rule]}
        _ok(c.post("/v1/security-groups", json=group, headers=alice), 201)
        target_dir = state / "target"
        target = {"name": "local1", "type": "local", "config": {"path": str(target_dir)}}
        _ok(c.post("/v1/backup-targets", json=target, headers=admin), 201)
        policy = {
            "name": "daily",
            "project_id": project["id"],
            "target": "local1",
            "interval_s": 3600,
            "retention": {"keep_last": 3},
        }
        pol = _ok(c.post("/v1/backup-policies", json=policy, headers=alice), 201)
        ctx: Context = c.app.state.ctx  # type: ignore[attr-defined]
        env = Env(c, db, ctx, admin, alice, tenant["id"], project["id"], pol["id"], target_dir)
        _seed_backups(env)
        with _task_runner(ctx):
            yield env


@contextlib.contextmanager
def _task_runner(ctx: Context) -> Iterator[None]:
    """A real task runner for the export tasks, on a thread of its own (the in-process app has none)."""
    loop = asyncio.new_event_loop()
    runner = TaskRunner(ctx, list(EXPORT_HANDLERS))
    runner.bind_loop(loop)
    ctx.tasks = runner
    thread = threading.Thread(target=loop.run_until_complete, args=(runner.run_forever(0.2),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(runner.stop(), loop).result(10)
        thread.join(10)
        loop.close()
        ctx.tasks = None


def _seed_backups(env: Env) -> None:
    """An available backup of the policy and a successful restore test (rows: no guest here), and
    the tenant's key in the target made by the real store."""
    from novacron.backup.vmstore import server_store
    from novacron.db.models import BackupTarget

    with env.db.read_session() as s:  # not a write transaction: the first key makes a KMS key
        target = s.scalars(select(BackupTarget)).one()
        server_store(env.ctx.settings, target).keyring.key(env.tenant_id)
        target_id = target.id
    with env.db.session() as s:
        snap = BackupSnapshot(
            id=new_id("bak"),
            tenant_id=env.tenant_id,
            project_id=env.project_id,
            vm_name="db1",
            target_id=target_id,
            policy_id=env.policy_id,
            state="available",
            completed_at=utcnow(),
        )
        s.add(snap)
        s.flush()
        s.add(
            RestoreJob(
                id=new_id("rst"),
                tenant_id=env.tenant_id,
                project_id=env.project_id,
                snapshot_id=snap.id,
                mode="test",
                state="succeeded",
                finished_at=utcnow(),
            )
        )
        env.saved["snapshot_id"] = snap.id


def _run(env: Env) -> dict[str, dict[str, Any]]:
    run = _ok(env.client.post("/v1/compliance/runs", json={"tenant_id": "acme"}, headers=env.alice), 201)
    return {r["check"]: r for r in run["results"]}


def test_catalogue_maps_every_framework_to_checks(env: Env) -> None:
    cat = _ok(env.client.get("/v1/compliance/catalogue", headers=env.alice))
    assert {c["id"] for c in cat["checks"]} == {c.id for c in CHECKS}
    assert {c["framework"] for c in cat["controls"]} == set(FRAMEWORKS)
    assert all(c["checks"] for c in cat["controls"]) and len(cat["controls"]) == len(CONTROLS)


def test_well_configured_tenant_passes_every_check(env: Env) -> None:
    results = _run(env)
    assert set(results) == {c.id for c in CHECKS}
    failing = {k: r["summary"] for k, r in results.items() if r["status"] != "pass"}
    assert not failing, failing
    assert results["mfa_admins"]["evidence"]["admins"][0] == {
        "user": "alice",
        "tenant_id": env.tenant_id,
        "role": "tenant-admin",
        "mfa": True,
    }
    assert results["backup_encryption"]["evidence"]["targets"][0]["aead"] == "aes-256-gcm"


def _db_set(env: Env, model: Any, where: Any, **values: Any) -> None:
    with env.db.session() as s:
        s.execute(update(model).where(where).values(**values))


def _alice_id(env: Env) -> str:
    with env.db.read_session() as s:
        return str(s.scalar(select(User.id).where(User.username == "alice")))


def _break_sg(env: Env) -> Callable[[], None]:
    rule = {
        "direction": "ingress",
        "protocol": "tcp",
        "port_min": 20,
        "port_max": 25,
        "remote_cidr": "0.0.0.0/0",
    }
    group = _ok(env.client.get("/v1/security-groups", params={"name": "ssh-office"}, headers=env.alice))[
        "items"
    ][0]
    made = _ok(env.client.post(f"/v1/security-groups/{group['id']}/rules", json=rule, headers=env.alice), 201)
    env.saved["needle"] = made["id"]
    return lambda: _ok_204(
        env.client.delete(f"/v1/security-groups/{group['id']}/rules/{made['id']}", headers=env.alice)
    )


def _ok_204(r: Any) -> None:
    assert r.status_code == 204, r.text


def _break_mfa(env: Env) -> Callable[[], None]:
    spec = {"username": "bob", "password": PW, "role": "tenant-admin"}
    bob = _ok(env.client.post("/v1/users", json=spec, headers=env.alice), 201)
    env.saved["needle"] = "admin bob has no second factor"
    return lambda: _ok_204(env.client.delete(f"/v1/users/{bob['id']}", headers=env.alice))


def _break_image(env: Env) -> Callable[[], None]:
    body = {"name": "leaky-snapshot", "project_id": env.project_id, "public": True}
    image = _ok(env.client.post("/v1/images", json=body, headers=env.admin), 201)
    env.saved["needle"] = "leaky-snapshot"
    return lambda: _ok_204(env.client.delete(f"/v1/images/{image['id']}", headers=env.admin))


def _break_audit(env: Env) -> Callable[[], None]:
    with env.db.read_session() as s:
        rid, path = s.execute(
            select(AuditRecord.id, AuditRecord.path).where(AuditRecord.tenant_id == env.tenant_id).limit(1)
        ).one()
    _db_set(env, AuditRecord, AuditRecord.id == rid, path="/v1/nothing-happened")
    env.saved["needle"] = f"record {rid}: its fields no longer match its hash"
    return lambda: _db_set(env, AuditRecord, AuditRecord.id == rid, path=path)


def _break_dormant(env: Env) -> Callable[[], None]:
    uid = _alice_id(env)
    _db_set(env, User, User.id == uid, last_login_at=utcnow() - timedelta(days=200))
    env.saved["needle"] = "dormant accounts: alice"
    return lambda: _db_set(env, User, User.id == uid, last_login_at=utcnow())


def _break_password(env: Env) -> Callable[[], None]:
    uid = _alice_id(env)
    with env.db.read_session() as s:
        old = s.scalar(select(User.password_hash).where(User.id == uid))
    _db_set(env, User, User.id == uid, password_hash="$2b$04$" + "x" * 53)  # a bcrypt import
    env.saved["needle"] = "user alice: password not hashed with argon2id"
    return lambda: _db_set(env, User, User.id == uid, password_hash=old)


def _break_secret(env: Env) -> Callable[[], None]:
    uid = _alice_id(env)
    with env.db.read_session() as s:
        old = s.scalar(select(MfaTotp.secret).where(MfaTotp.user_id == uid))
    _db_set(env, MfaTotp, MfaTotp.user_id == uid, secret="JBSWY3DPEHPK3PXP")
    env.saved["needle"] = f"mfa_totp.secret of {uid} is stored in clear"
    return lambda: _db_set(env, MfaTotp, MfaTotp.user_id == uid, secret=old)


def _break_keys(env: Env) -> Callable[[], None]:
    with env.db.read_session() as s:
        kid, made = s.execute(
            select(SigningKey.kid, SigningKey.created_at).where(SigningKey.active.is_(True))
        ).one()
    _db_set(env, SigningKey, SigningKey.kid == kid, created_at=utcnow() - timedelta(days=200))
    env.saved["needle"] = f"signing key {kid} is 200 days old"
    return lambda: _db_set(env, SigningKey, SigningKey.kid == kid, created_at=made)


def _break_backups(env: Env) -> Callable[[], None]:
    sid = env.saved["snapshot_id"]
    _db_set(env, BackupSnapshot, BackupSnapshot.id == sid, completed_at=utcnow() - timedelta(hours=5))
    env.saved["needle"] = "policy daily: last backup"
    return lambda: _db_set(env, BackupSnapshot, BackupSnapshot.id == sid, completed_at=utcnow())


def _break_restore(env: Env) -> Callable[[], None]:
    _db_set(env, RestoreJob, RestoreJob.tenant_id == env.tenant_id, finished_at=utcnow() - timedelta(days=45))
    env.saved["needle"] = "no successful restore test since"
    return lambda: _db_set(env, RestoreJob, RestoreJob.tenant_id == env.tenant_id, finished_at=utcnow())


def _break_retention(env: Env) -> Callable[[], None]:
    from novacron.db.models import BackupPolicy

    _db_set(env, BackupPolicy, BackupPolicy.id == env.policy_id, retention={})
    env.saved["needle"] = "policy daily has no retention"
    return lambda: _db_set(env, BackupPolicy, BackupPolicy.id == env.policy_id, retention={"keep_last": 3})


def _break_backup_key(env: Env) -> Callable[[], None]:
    path = env.target_dir / "keys" / f"{env.tenant_id}.json"
    original = path.read_bytes()
    record = json.loads(original)
    record["wrapped"]["kek"] = "kek-0000000000000000"
    path.write_text(json.dumps(record))
    env.saved["needle"] = "wrapped by kek-0000000000000000, which the platform no longer holds"

    def repair() -> None:
        path.write_bytes(original)

    return repair


BREAKERS: dict[str, Callable[[Env], Callable[[], None]]] = {
    "open_security_groups": _break_sg,
    "mfa_admins": _break_mfa,
    "public_images": _break_image,
    "audit_chain": _break_audit,
    "dormant_accounts": _break_dormant,
    "password_policy": _break_password,
    "secrets_sealed": _break_secret,
    "keys_rotated": _break_keys,
    "backups_taken": _break_backups,
    "restore_tested": _break_restore,
    "retention_holds": _break_retention,
    "backup_encryption": _break_backup_key,
}


@pytest.mark.parametrize("check", sorted(BREAKERS))
def test_broken_control_fails_with_evidence_and_drift(env: Env, check: str) -> None:
    assert _run(env)[check]["status"] == "pass"
    repair = BREAKERS[check](env)
    try:
        result = _run(env)[check]
    finally:
        repair()
    assert result["status"] == "fail", result
    assert env.saved["needle"] in json.dumps(result), result
    events = _ok(
        env.client.get("/v1/events", params={"types": "compliance.drift", "limit": 1000}, headers=env.alice)
    )
    drift = [e for e in events["items"] if e["resource_id"] == check]
    assert drift and drift[-1]["data"]["controls"], events
    # and the counter alert rules use (increase(novacron_compliance_drift_total[1h]) > 0)
    metrics = env.client.get("/metrics", headers=env.admin).text
    assert f'novacron_compliance_drift_total{{check="{check}"}} 1.0' in metrics
    assert _run(env)[check]["status"] == "pass"  # repaired: the check passes again


def test_tls_check_fails_on_a_plain_http_api_listener(env: Env) -> None:
    """The API listener's configuration (a node started with NOVACRON_PLAIN_HTTP=1)."""
    ctx = SimpleNamespace(settings=replace(env.ctx.settings, plain_http=True, listen_port=8080))
    with env.db.read_session() as s:
        good = tls_check(Scope(s, env.ctx, env.tenant_id, utcnow()))
        bad = tls_check(Scope(s, ctx, env.tenant_id, utcnow()))  # type: ignore[arg-type]
    assert good.status == "pass" and good.evidence["api_listener"]["tls"] is True
    assert bad.status == "fail" and "API listener 127.0.0.1:8080 serves plain HTTP" in bad.summary


def _cli(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, *args: str) -> str:
    cli = Client(
        "http://testserver",
        token=token,
        credentials_path=tmp_path / "c.json",
        transport=env.client._transport,
    )
    monkeypatch.setattr(State, "client", lambda _self: cli)
    result = CliRunner().invoke(cli_main.app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_reports_in_json_csv_html_from_api_and_cli(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = env.alice["Authorization"].split()[1]
    out = _cli(env, tmp_path, monkeypatch, token, "compliance", "run", "--tenant", "acme")
    assert "open_security_groups" in out and "pass" in out
    r = env.client.get(
        "/v1/compliance/report", params={"tenant_id": "acme", "format": "csv"}, headers=env.alice
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = {row["check"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert rows["audit_chain"]["status"] == "pass" and "records" in json.loads(
        rows["audit_chain"]["evidence"]
    )
    html = env.client.get("/v1/compliance/report", params={"format": "html"}, headers=env.alice).text
    assert "Compliance evidence: tenant" in html and "PCI-DSS" in html and "8.2.6" in html
    out = _cli(
        env,
        tmp_path,
        monkeypatch,
        token,
        "compliance",
        "report",
        "--format",
        "json",
        "-o",
        str(tmp_path / "r.json"),
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run"]["tenant_id"] == env.tenant_id and len(report["checks"]) == len(CHECKS)
    # another tenant's evidence is not the tenant admin's to read
    other = env.client.get("/v1/compliance/latest", params={"tenant_id": "nope"}, headers=env.alice)
    assert other.status_code == 404


def test_gdpr_export_and_erasure(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = env.client
    r = c.get(f"/v1/tenants/{env.tenant_id}/export", headers=env.alice)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    users = json.loads(z.read("users.json"))
    assert [u["username"] for u in users] == ["alice"] and users[0]["password_hash"] == "[sealed]"
    assert "ssh-office" in {g["name"] for g in json.loads(z.read("security_groups.json"))}
    assert json.loads(z.read("manifest.json"))["tables"]["security_group_rules"] >= 1
    assert json.loads(z.read("audit_log.json")), "the tenant's audit records are exported"
    # the same as a durable task (a large tenant): accepted, run by the task runner, downloaded
    task_id = _ok(c.post(f"/v1/tenants/{env.tenant_id}/exports", headers=env.alice), 202)["task_id"]
    for _ in range(300):
        task = _ok(c.get(f"/v1/tasks/{task_id}", headers=env.alice))
        if task["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert task["state"] == "succeeded", task
    r = c.get(f"/v1/tenants/{env.tenant_id}/exports/{task_id}", headers=env.alice)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("manifest.json"))["tables"]["users"] == 1
    # erasure: a tenant without projects is anonymised and deleted
    gone = _ok(c.post("/v1/tenants", json={"name": "leaving"}, headers=env.admin), 201)
    spec = {"username": "carol", "password": PW, "tenant_id": gone["id"]}
    _ok(c.post("/v1/users", json=spec, headers=env.admin), 201)
    admin_token = env.admin["Authorization"].split()[1]
    out = _cli(
        env,
        tmp_path,
        monkeypatch,
        admin_token,
        "compliance",
        "export",
        "leaving",
        "-o",
        str(tmp_path / "x.zip"),
    )
    assert "users.json" in zipfile.ZipFile(tmp_path / "x.zip").namelist(), out
    out = _cli(env, tmp_path, monkeypatch, admin_token, "compliance", "erase", "leaving", "--yes")
    assert "1 users anonymised" in out and "tenant deleted" in out, out
    assert c.get(f"/v1/tenants/{gone['id']}", headers=env.admin).status_code == 404
    assert c.post("/v1/tokens", json={"username": "carol@leaving", "password": PW}).status_code == 401
    # a tenant admin cannot erase
    assert c.post(f"/v1/tenants/{env.tenant_id}/erase", headers=env.alice).status_code == 403


def test_leader_runs_every_scope(env: Env) -> None:
    controller = ComplianceController(env.ctx)
    assert controller.run_due() is None  # not in the first minutes of a process
    controller._started -= 3600
    failed = controller.run_due()
    assert controller.run_due() is None  # the platform's run is fresh now
    runs = _ok(env.client.get("/v1/compliance/runs", headers=env.admin))["items"]
    assert runs and runs[0]["trigger"] == "schedule" and runs[0]["tenant_id"] is None
    assert (
        _ok(env.client.get("/v1/compliance/latest", params={"tenant_id": "acme"}, headers=env.admin))[
            "trigger"
        ]
        == "schedule"
    )
    # the platform admin has no second factor: the platform's run says so
    platform = _ok(env.client.get("/v1/compliance/latest", headers=env.admin))
    mfa = next(r for r in platform["results"] if r["check"] == "mfa_admins")
    assert (
        mfa["status"] == "fail"
        and "admin admin has no second factor" in mfa["summary"] + json.dumps(mfa)
        and failed
    )
