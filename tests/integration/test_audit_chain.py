"""The audit log you can prove, in-process: records written through the real app form a hash
chain with signed checkpoints; tampering with the SQLite file directly (an edited field, a deleted
middle record, a forged record, a cut tail) is named by ``GET /v1/audit/verify`` and by
``novacron audit verify`` (exit 1); the export as JSON lines and RFC 5424 syslog, scoped to a
tenant with the platform administrator's actions marked."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from novacron.cli import main as cli_main
from novacron.cli.client import Client
from novacron.cli.common import State
from novacron.db.models.audit_chain import record_hash
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW, Env, _tenant_with_admin

#: RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID params] MSG
SYSLOG = re.compile(
    r'^<(\d{1,3})>1 \S+Z \S+ novacron - (\S{1,32}) \[audit@32473 (?:\w+="(?:[^"\\\]]|\\.)*" ?)+\] .+$'
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = tmp_path_factory.mktemp("audit")
    with in_process_app(state) as (client, password, _db):
        yield Env(client, password, state)


def _verify(env: Env, admin: dict[str, str]) -> dict[str, Any]:
    r = env.client.get("/v1/audit/verify", headers=admin)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _cli(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    transport = env.client._transport
    client = Client("http://testserver", credentials_path=tmp_path / "c.json", transport=transport)
    client.token = env.headers()["Authorization"].split()[1]
    monkeypatch.setattr(State, "client", lambda _self: client)
    return CliRunner().invoke(cli_main.app, ["audit", *args])


def test_export_and_who_may_verify(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = env.headers()
    tid, ta = _tenant_with_admin(env, admin, "acme")
    r = env.client.post("/v1/projects", json={"name": "web"}, headers=ta)
    assert r.status_code == 201, r.text
    # a platform admin's action answered without a body: the tenant owning the user still sees it
    r = env.client.post("/v1/users", json={"username": "bob", "password": PW, "role": "member"}, headers=ta)
    assert r.status_code == 201, r.text
    reset = {"password": "a-new-long-passphrase-77"}
    r = env.client.post(f"/v1/users/{r.json()['id']}/password", json=reset, headers=admin)
    assert r.status_code == 204, r.text
    # a tenant-admin reads its tenant's log but may not verify the platform's chain
    r = env.client.get("/v1/audit/verify", headers=ta)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    lines = env.client.get("/v1/audit/export", params={"format": "jsonl"}, headers=ta).text.splitlines()
    mine = [json.loads(line) for line in lines]
    assert mine and {d["tenant_id"] for d in mine} == {tid}
    by_admin = [d for d in mine if d["actor_name"] == "admin"]
    assert by_admin and all(d["platform_admin"] for d in by_admin)
    assert {d["action"] for d in by_admin} >= {"user.create", "user.password"}
    assert any(d["action"] == "project.create" and not d["platform_admin"] for d in mine)
    everything = env.client.get("/v1/audit/export", headers=admin).text.splitlines()
    assert len(everything) > len(mine)
    assert [json.loads(line)["seq"] for line in everything] == list(range(1, len(everything) + 1))
    syslog = env.client.get("/v1/audit/export", params={"format": "syslog"}, headers=admin)
    assert syslog.status_code == 200 and syslog.headers["content-type"].startswith("text/plain")
    for line in syslog.text.splitlines():
        m = SYSLOG.match(line)
        assert m, line
        assert int(m.group(1)) in (13 * 8 + 4, 13 * 8 + 5)
    assert len(syslog.text.splitlines()) == len(everything)
    done = _cli(env, tmp_path, monkeypatch, "export", "--format", "syslog")
    assert done.exit_code == 0, done.output
    assert all(SYSLOG.match(line) for line in done.output.splitlines()[: len(everything)])
    r = env.client.get("/v1/audit/export", params={"format": "xml"}, headers=admin)
    assert r.status_code == 422 and "format" in r.text


def _rows(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute("SELECT * FROM audit_log ORDER BY seq"))


def test_tampering_is_named(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = env.headers()
    for name in ("a", "b", "c", "d"):
        assert env.client.post("/v1/tenants", json={"name": f"t-{name}"}, headers=admin).status_code == 201
    clean = _verify(env, admin)
    assert clean["ok"] is True and clean["problems"] == [] and clean["records"] >= 10
    assert clean["checkpoints"] >= 1  # the first record's write signed one
    done = _cli(env, tmp_path, monkeypatch, "verify")
    assert done.exit_code == 0 and "Audit log intact" in done.output, done.output
    r = env.client.post("/v1/audit/checkpoints", headers=admin)
    assert r.status_code == 201, r.text
    signed = r.json()["count"]

    db = env.state_dir / "nc.db"
    rows = _rows(db)
    assert len(rows) == signed + 1  # the checkpoint's own record comes after it
    edited, deleted, twin = rows[2], rows[4], rows[6]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET path = '/v1/nothing-happened' WHERE id = ?", (edited["id"],))
        conn.execute("DELETE FROM audit_log WHERE id = ?", (deleted["id"],))
        # a forger who knows the encoding: a well-formed record at a position already taken
        forged = dict(twin) | {"actor_name": "nobody", "action": "tenant.delete"}
        forged["hash"] = record_hash(SimpleNamespace(**forged), twin["seq"], twin["prev_hash"])
        del forged["id"]
        conn.execute(
            f"INSERT INTO audit_log ({', '.join(forged)}) VALUES ({', '.join('?' * len(forged))})",
            list(forged.values()),
        )
        forged_id = conn.execute("SELECT max(id) FROM audit_log").fetchone()[0]
        # cut the tail, and set the (unsigned) head back so only the checkpoint can tell
        cut = rows[-3:]
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (rows[-4]["seq"],))
        head = (rows[-4]["seq"], rows[-4]["hash"])
        conn.execute("UPDATE audit_chain_head SET count = ?, head_hash = ?", head)

    report = _verify(env, admin)
    assert report["ok"] is False
    found = {(p["kind"], p["record_id"], p["seq"]) for p in report["problems"]}
    assert ("edited", edited["id"], edited["seq"]) in found
    assert ("deleted", None, deleted["seq"]) in found
    assert ("inserted", forged_id, twin["seq"]) in found
    assert ("truncated", None, cut[0]["seq"]) in found
    kinds = sorted(p["kind"] for p in report["problems"])
    assert kinds == ["deleted", "edited", "inserted", "truncated"], report["problems"]

    done = _cli(env, tmp_path, monkeypatch, "verify")
    assert done.exit_code == 1, done.output
    assert "tampered" in done.output
    for rid in (edited["id"], forged_id):
        assert f"record {rid} " in done.output
    assert "truncated" in done.output and "deleted" in done.output


def test_the_migration_chains_records_already_written(tmp_path: Path) -> None:
    from novacron.db.base import Database
    from novacron.db.migrate import upgrade

    db = Database(f"sqlite:///{tmp_path}/nc.db")
    upgrade(db, "0039")
    with sqlite3.connect(tmp_path / "nc.db") as conn:
        for i in range(3):
            conn.execute(
                "INSERT INTO audit_log (time, actor_name, action, method, path, status_code, outcome)"
                " VALUES (?, 'admin', 'project.create', 'POST', '/v1/projects', 201, 'success')",
                (f"2026-12-0{i + 1} 10:00:00.000000",),
            )
    db.engine.dispose()
    with in_process_app(tmp_path) as (client, password, _db):
        env = Env(client, password, tmp_path)
        report = _verify(env, env.headers())
    assert report["ok"] is True, report["problems"]
    rows = _rows(tmp_path / "nc.db")
    assert [r["seq"] for r in rows[:3]] == [1, 2, 3] and rows[0]["actor_name"] == "admin"
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[3]["prev_hash"] == rows[2]["hash"]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres")
        return str(pg.create_database(f"audit_{secrets.token_hex(4)}"))
    return f"sqlite:///{tmp_path}/nc.db"


def test_concurrent_writers_never_fork_the_chain(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from novacron.config import Settings
    from novacron.context import Context
    from novacron.db.base import Database
    from novacron.db.migrate import upgrade
    from novacron.db.models import AuditRecord
    from novacron.identity import audit_chain
    from novacron.identity.audit import write_record
    from novacron.identity.principal import Principal
    from novacron.identity.tokens import TokenService

    monkeypatch.setattr(audit_chain, "CHECKPOINT_EVERY", 16)  # several checkpoints while they race
    settings = Settings(state_dir=tmp_path, database_url=database_url, embedded_agent=False)
    settings.ensure_dirs()
    db = Database(database_url)
    upgrade(db)
    ctx = Context(settings=settings, db=db, tokens=TokenService(db, settings))

    def writer(n: int) -> None:
        for i in range(20):
            record = AuditRecord(action="vm.create", method="POST", path=f"/v1/vms/{n}-{i}", status_code=201,
                                 outcome="success", actor_name=f"writer-{n}")  # fmt: skip
            write_record(db, record, ctx.tokens.keys)

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(writer, range(8)))
        admin = Principal("u-admin", "admin", "admin", None, frozenset({"global", "audit:verify"}))
        with db.read_session() as session:
            report = audit_chain.AuditChain(session, admin, ctx).verify()
            seqs = list(session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
    finally:
        db.engine.dispose()
    assert report.ok, report.problems
    assert seqs == list(range(1, 161)) and report.records == report.head_count == 160
    assert report.checkpoints >= 160 // 16
