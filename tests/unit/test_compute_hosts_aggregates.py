"""Host, aggregate and join services without HTTP: what they write, and the domain errors they raise
(fields named without the ``body.`` prefix, which only the API adds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from novacron.compute.aggregates import AggregateChange, AggregateService, AggregateSpec, metadata_for
from novacron.compute.hosts import HostService, HostSettings, free_percent
from novacron.compute.nodes import NodeService
from novacron.db.base import Database
from novacron.db.listing import ListParams
from novacron.db.migrate import upgrade
from novacron.db.models import Event, Host, NodeCredential
from novacron.errors import Conflict, InvalidInput, NotFound
from novacron.identity.principal import Principal

ADMIN = Principal("u-admin", "admin", "admin", None, frozenset({"global"}))
TENANT = Principal("u-t1", "alice", "member", "t1", frozenset())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/nc.db")
    upgrade(database)
    with database.session() as s:
        for name in ("host-a", "host-b"):
            s.add(Host(id=name, name=name, driver="qemu", accelerator="tcg", cpus=4, ram_mb=4096))
    yield database
    database.engine.dispose()


def _events(db: Database, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(resource id, data) of each event of this kind."""
    with db.read_session() as s:
        return [(e.resource_id, e.data) for e in s.scalars(select(Event).where(Event.type == kind))]


def test_an_aggregate_names_a_bad_member_by_its_index_and_a_taken_name(db: Database) -> None:
    with pytest.raises(InvalidInput) as bad, db.session() as s:
        AggregateService(s, ADMIN).create(AggregateSpec("fast", hosts=["host-a", "nope"]))
    assert [(f.field, f.qualified()) for f in bad.value.fields] == [("hosts.1", "body.hosts.1")]
    with db.session() as s:
        view = AggregateService(s, ADMIN).create(
            AggregateSpec("fast", {"tenants": "t1,t2"}, ["host-b", "host-a"])
        )
        assert view.hosts == ["host-a", "host-b"] and view.metadata == {"tenants": "t1,t2"}
    with pytest.raises(Conflict) as taken, db.session() as s:
        AggregateService(s, ADMIN).create(AggregateSpec("fast"))
    assert [f.field for f in taken.value.fields] == ["name"]
    assert len(_events(db, "aggregate.created")) == 1


def test_a_tenant_sees_only_its_own_reservation(db: Database) -> None:
    with db.session() as s:
        AggregateService(s, ADMIN).create(AggregateSpec("kept", {"tenants": "t1,t2", "ssd": "yes"}))
    with db.read_session() as s:
        rows, _ = AggregateService(s, TENANT).list(ListParams(sortable=("name",), sort="name"))
    assert rows[0].metadata == {"ssd": "yes", "tenants": "t1"}
    assert metadata_for({"tenants": "t2"}, TENANT) == {}


def test_changing_members_gives_the_aggregate_a_new_version(db: Database) -> None:
    with db.session() as s:
        version = AggregateService(s, ADMIN).create(AggregateSpec("g", hosts=["host-a"])).aggregate.version
    with db.session() as s:
        service = AggregateService(s, ADMIN)
        view = service.update(service.get("g").aggregate, AggregateChange(hosts=["host-b"]))
        assert view.hosts == ["host-b"] and view.aggregate.version == version + 1
    with pytest.raises(NotFound), db.session() as s:
        AggregateService(s, ADMIN).get("missing")


def test_a_host_update_applies_and_announces_only_what_was_given(db: Database) -> None:
    with db.session() as s:
        view = HostService(s, ADMIN).update(
            HostService(s, ADMIN).get("host-a").host, HostSettings(traits=["gpu", "avx", "gpu"])
        )
        assert view.host.traits == ["avx", "gpu"] and view.host.state != "maintenance"
    [(host_id, data)] = _events(db, "host.updated")
    assert host_id == "host-a" and data["changed"] == ["traits"]
    with db.session() as s:
        HostService(s, ADMIN).update(HostService(s, ADMIN).get("host-a").host, HostSettings())
    assert len(_events(db, "host.updated")) == 1


def test_free_capacity_is_shown_in_coarse_steps() -> None:
    assert free_percent(0, 4, 1.0) == 100
    assert free_percent(1, 4, 1.0) == 75
    assert free_percent(3, 16, 1.0) == 75  # 81 % free shows as 75
    assert free_percent(5, 4, 1.0) == 0
    assert free_percent(0, 0, 1.0) == 0


def test_only_a_joined_host_can_be_rekeyed_or_revoked(db: Database) -> None:
    with db.session() as s:
        nodes = NodeService(s, ADMIN)
        with pytest.raises(Conflict, match="has no agent credential"):
            nodes.revoke("host-a")
        with pytest.raises(Conflict, match="has no agent credential"):
            nodes.rejoin_token("host-a", 600)
        with pytest.raises(NotFound):
            nodes.revoke("no-such-host")
        s.add(NodeCredential(host_id="host-b", token_hash="x"))
        s.flush()
        nodes.revoke("host-b")
        assert s.get(Host, "host-b").state == "down"  # type: ignore[union-attr]
    assert [host_id for host_id, _ in _events(db, "host.revoked")] == ["host-b"]
