"""The store behaves the same on SQLite and PostgreSQL: schema, concurrency, paging, scoping."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from novacron import events
from novacron.db.base import Base, Database, new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.migrate import upgrade
from novacron.db.models import VM, IdempotencyRecord, Project, Task, Tenant
from novacron.identity.permissions import permissions_of
from novacron.identity.principal import Principal


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        pg: Any = request.getfixturevalue("postgres")
        url = pg.create_database(f"store_{secrets.token_hex(4)}")
    database = Database(url)
    upgrade(database)
    yield database
    database.engine.dispose()


def _tenant(db: Database, name: str) -> tuple[str, str]:
    with db.session() as s:
        t = Tenant(id=new_id("tenant"), name=name)
        s.add(t)
        s.flush()
        p = Project(id=new_id("project"), tenant_id=t.id, name="main")
        s.add(p)
    return t.id, p.id


def _vm(tenant_id: str, project_id: str, name: str) -> VM:
    return VM(
        id=new_id("vm"), tenant_id=tenant_id, project_id=project_id, name=name, vcpus=1, ram_mb=128, disk_gb=1
    )


def test_migrations_create_every_table(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    upgrade(db)  # a second upgrade is a no-op


def test_stale_update_is_refused(db: Database) -> None:
    tid, pid = _tenant(db, "acme")
    with db.session() as s:
        vm = _vm(tid, pid, "a")
        s.add(vm)
    first, second = db.sessions(), db.sessions()
    try:
        # the second client reads, then the first changes the row under it
        b = second.get(VM, vm.id)
        second.commit()
        a = first.get(VM, vm.id)
        assert a is not None and b is not None
        a.vcpus = 2
        first.commit()
        b.vcpus = 4
        with pytest.raises(StaleDataError):
            second.commit()
    finally:
        first.close()
        second.close()
    with db.session() as s:
        row = s.get(VM, vm.id)
        assert row is not None and row.vcpus == 2 and row.version == 2


def test_names_are_unique_per_project(db: Database) -> None:
    tid, pid = _tenant(db, "acme")
    with db.session() as s:
        s.add(_vm(tid, pid, "web"))
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(_vm(tid, pid, "web"))
    other_tid, other_pid = _tenant(db, "globex")
    with db.session() as s:
        s.add(_vm(other_tid, other_pid, "web"))  # another project may reuse the name


def test_only_one_runner_claims_a_task(db: Database) -> None:
    with db.session() as s:
        task = Task(id=new_id("task"), kind="vm.create", resource_type="vm", resource_id="vm-x", steps=["a"])
        s.add(task)
    claims = []
    for owner in ("runner-a", "runner-b"):
        with db.session() as s:
            claims.append(
                s.execute(
                    update(Task)
                    .where(Task.id == task.id, Task.attempts == 0)
                    .values(lease_owner=owner, attempts=1, state="running")
                ).rowcount  # type: ignore[attr-defined]
            )
    assert claims == [1, 0]
    with db.session() as s:
        assert s.scalar(select(Task.lease_owner).where(Task.id == task.id)) == "runner-a"


def test_keyset_pages_cover_everything_once(db: Database) -> None:
    tid, pid = _tenant(db, "acme")
    with db.session() as s:
        s.add_all(_vm(tid, pid, f"vm-{i:03d}") for i in range(120))
    seen: list[str] = []
    cursor = None
    with db.session() as s:
        while True:
            rows, cursor = paginate(
                s, select(VM), VM, ListParams(limit=50, cursor=cursor, sort="-name", sortable=("name",))
            )
            seen += [r.name for r in rows]
            if cursor is None:
                break
    assert seen == sorted((f"vm-{i:03d}" for i in range(120)), reverse=True)


def test_events_are_ordered_and_tenant_scoped(db: Database) -> None:
    a, _ = _tenant(db, "acme")
    b, _ = _tenant(db, "globex")
    with db.session() as s:
        for i in range(5):
            events.publish(s, "vm.created", "vm", f"vm-{i}", tenant_id=a if i % 2 else b)
    alice = Principal("u1", "alice", "member", a, permissions_of("member"))
    admin = Principal("u0", "admin", "admin", None, permissions_of("admin"))
    with db.session() as s:
        mine = events.visible_since(s, alice, 0)
        everything = events.visible_since(s, admin, 0)
    assert [e.resource_id for e in mine] == ["vm-1", "vm-3"]
    assert [e.seq for e in everything] == sorted(e.seq for e in everything) and len(everything) == 5


def test_idempotency_key_is_unique_per_caller(db: Database) -> None:
    def record(principal: str) -> IdempotencyRecord:
        return IdempotencyRecord(
            principal_id=principal,
            key="k1",
            method="POST",
            path="/v1/vms",
            request_hash="h",
            status_code=202,
            response_body="{}",
        )

    with db.session() as s:
        s.add_all([record("u1"), record("u2")])
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(record("u1"))
