"""Pushing desired state: a ``network_sync`` host operation carrying the host's whole state.

Queued in the same transaction as the change that caused it, so a rolled-back change pushes
nothing. The latest state wins: a newer sync replaces the host's syncs not yet claimed, an agent
skips a claimed one older than the newest it has received (``generation``), and since each carries
the full state, an agent that missed one converges at the next.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from novacron.agent.protocol import NetworkSync, encode
from novacron.compute import hostops
from novacron.db.models import VM, Host, HostOperation, Port
from novacron.network.specs import Layout, Resolver, affected_hosts, host_state

OP = NetworkSync.OP


def sync_payload(
    session: Session, host_id: str, moving: dict[str, str] | None = None, *, shared: tuple[Layout, Resolver]
) -> dict[str, Any]:
    layout, resolver = shared
    sync = NetworkSync(
        state=host_state(session, host_id, moving, layout=layout, resolver=resolver),
        # the agent applies the newest it has received: pushes to one host are serialised by its row
        # lock, so the clock orders them (replicas' clocks are assumed synchronised, as PostgreSQL
        # replication and TLS already need)
        generation=time.time_ns(),
    )
    return encode(sync)


def push(session: Session, host_ids: Iterable[str], moving: dict[str, str] | None = None) -> list[str]:
    """Queue each host's current state (fire-and-forget); the agents are woken after the commit."""
    session.flush()
    queued: list[str] = []
    # the hosts' row locks, in one order, serialise concurrent pushes (PostgreSQL; SQLite serialises
    # writers anyway); the state is read after them, so a later generation never carries older rows
    hosts = [session.get(Host, h, with_for_update=True) for h in sorted(set(host_ids))]
    shared = (Layout(session, moving), Resolver(session))  # read once for every host's state
    for host in hosts:
        if host is None or host.fenced_at is not None:
            continue
        host_id = host.id
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
                payload=sync_payload(session, host_id, moving, shared=shared),
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
