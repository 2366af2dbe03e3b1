"""The shared tail of the event log: what one follower is served is what the log would show it
(its tenant's events only, its type patterns), and a follower behind the tail reads the log."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from novacron import eventbus, events
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import Event, Tenant
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


def test_a_committed_transaction_hands_its_events_to_the_publisher_and_a_rollback_nothing(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    upgrade(db)
    handed: list[list[tuple[int, str | None]]] = []
    eventbus.BUS.publisher = handed.append
    try:
        with db.session() as s:
            s.add(Tenant(id="t-a", name="a"))
            events.publish(s, "vm.created", "vm", "vm-0", tenant_id="t-a")
            s.flush()
            events.publish(s, "host.down", "host", "h-1", tenant_id=None)
        with contextlib.suppress(RuntimeError), db.session() as s:
            events.publish(s, "vm.deleted", "vm", "vm-0", tenant_id="t-a")
            s.flush()
            raise RuntimeError("rolled back")
        with db.read_session() as s:
            seqs = [e.seq for e in events.visible_since(s, _principal(None), 0)]
    finally:
        eventbus.BUS.publisher = None
    assert handed == [[(seqs[0], "t-a"), (seqs[1], None)]]  # one call, both events; none rolled back


def test_a_follower_whose_wait_times_out_has_the_log_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback poll: an event whose wake-up never came (a link down) is read anyway."""
    monkeypatch.setattr(eventbus, "FALLBACK_POLL_S", 0.05)
    db = Database(f"sqlite:///{tmp_path}/t.db")
    upgrade(db)
    tail = events.Tail()
    tail.refresh(db)
    with db.session() as s:
        s.add(Event(type="vm.created", resource_type="vm", resource_id="vm-9", tenant_id=None, data={}))
    assert tail.since(tail.floor or 0, _principal(None), ()) == []  # no bump: nothing yet
    time.sleep(0.06)
    assert not tail.fresh()
    tail.refresh(db)
    assert [e["resource_id"] for e in tail.since(0, _principal(None), ()) or []] == ["vm-9"]
