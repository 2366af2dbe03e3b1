"""Pushing desired state: a ``network_sync`` host operation carrying the host's whole state.

Queued in the same transaction as the change that caused it, so a rolled-back change pushes
nothing. The latest state wins: a newer sync replaces the host's syncs not yet claimed, and since
each carries the full state, an agent that missed one converges at the next.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from novacron.compute import hostops
from novacron.db.models import VM, Host, HostOperation, Port
from novacron.network.specs import affected_hosts, host_state
from novacron.network.wire import to_dict

OP = "network_sync"


def sync_payload(session: Session, host_id: str, moving: dict[str, str] | None = None) -> dict[str, Any]:
    return {"state": to_dict(host_state(session, host_id, moving))}


def push(session: Session, host_ids: Iterable[str], moving: dict[str, str] | None = None) -> list[str]:
    """Queue each host's current state (fire-and-forget); the agents are woken after the commit."""
    session.flush()
    queued: list[str] = []
    for host_id in sorted(set(host_ids)):
        host = session.get(Host, host_id)
        if host is None or host.fenced_at is not None:
            continue
        session.execute(
            delete(HostOperation).where(
                HostOperation.host_id == host_id,
                HostOperation.op == OP,
                HostOperation.state == "pending",
                HostOperation.task_id.is_(None),
            )
        )
        session.add(
            HostOperation(
                id=f"{OP}:{host_id}:{secrets.token_hex(8)}",
                host_id=host_id,
                task_id=None,
                op=OP,
                instance_id=host_id[:40],
                payload=sync_payload(session, host_id, moving),
            )
        )
        queued.append(host_id)
    if queued:

        def _wake(_: Session) -> None:
            for host_id in queued:
                hostops.wake(host_id)

        event.listen(session, "after_commit", _wake, once=True)
    return queued


@contextmanager
def syncing(session: Session, tenant_id: str, *extra_hosts: str | None) -> Iterator[None]:
    """Push every host the block's changes may concern: before the change and after it."""
    session.flush()
    before = affected_hosts(session, tenant_id)
    yield
    session.flush()
    push(session, before | affected_hosts(session, tenant_id) | {h for h in extra_hosts if h})


def vm_has_ports(session: Session, vm_id: str) -> bool:
    return session.scalar(select(Port.id).where(Port.vm_id == vm_id).limit(1)) is not None


def syncing_vm(session: Session, vm: VM) -> AbstractContextManager[None]:
    """``syncing`` for a change of a VM's placement or existence; nothing for a VM without ports."""
    return syncing(session, vm.tenant_id) if vm_has_ports(session, vm.id) else nullcontext()
