"""The shared tail of the event log: what one follower is served is what the log would show it
(its tenant's events only, its type patterns), and a follower behind the tail reads the log."""

from __future__ import annotations

from pathlib import Path

from novacron import eventbus, events
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import Tenant
from novacron.identity.principal import Principal


def _principal(tenant: str | None) -> Principal:
    perms = frozenset({"event:read", *(["global"] if tenant is None else [])})
    return Principal("u", "u", "admin" if tenant is None else "member", tenant, perms)


def test_the_tail_serves_each_follower_what_the_log_would(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    upgrade(db)
    tail = events.Tail()
    with db.session() as s:
        s.add_all([Tenant(id="t-a", name="a"), Tenant(id="t-b", name="b")])
        events.publish(s, "vm.created", "vm", "vm-0", tenant_id="t-a")
    tail.refresh(db)
    start = tail.floor
    assert start is not None and tail.since(start - 1, _principal("t-a"), ()) is None  # behind: the log
    bumps = eventbus.BUS.bumps
    with db.session() as s:
        events.publish(s, "vm.created", "vm", "vm-1", tenant_id="t-a")
        events.publish(s, "vm_snapshot.created", "vm", "vm-1", tenant_id="t-a")
        events.publish(s, "volume.created", "volume", "vol-1", tenant_id="t-b")
        events.publish(s, "host.down", "host", "h-1", tenant_id=None)
    assert eventbus.BUS.bumps == bumps + 1  # one wake-up per transaction
    tail.refresh(db)
    for who in (_principal("t-a"), _principal("t-b"), _principal(None)):
        for types in ((), ("vm.*",), ("vm_*", "host.*")):
            with db.read_session() as s:
                expected = [events.as_dict(e) for e in events.visible_since(s, who, start, 500, types)]
            assert tail.since(start, who, types) == expected, (who.tenant_id, types)
    assert [e["resource_id"] for e in tail.since(start, _principal("t-b"), ()) or []] == ["vol-1"]
