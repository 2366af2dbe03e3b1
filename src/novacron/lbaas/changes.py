"""The status machine every change of a load balancer goes through (Octavia's).

A change is refused while another is in flight (``PENDING_*``: a 409 naming the task to wait
for); otherwise it is written, the whole tree is resolved into the data plane's spec (so a change
that does not fit is refused, naming the field, with nothing written), the load balancer goes
``PENDING_UPDATE`` and one durable ``loadbalancer.apply`` task realises it on the hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.models import LoadBalancer, Task
from novacron.db.resolve import resolve
from novacron.errors import Conflict, InvalidInput, NotFound
from novacron.identity.principal import Principal
from novacron.lbaas.resolve import spec_of
from novacron.tasks.runner import TaskHandler, create_task
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from novacron.context import Context

M = TypeVar("M")
PENDING = ("PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE")


def find(session: Session, principal: Principal, ref: str) -> LoadBalancer:
    """The load balancer of this id or name, as the caller sees it (another tenant's: 404)."""
    return resolve(session, principal, LoadBalancer, ref)


def check_not_pending(lb: LoadBalancer) -> None:
    """409 while a change is in flight, naming the task to wait for."""
    if lb.provisioning_status in PENDING:
        raise Conflict(
            f"Load balancer '{lb.name}' is {lb.provisioning_status} (task {lb.task_id}); "
            "retry when it is ACTIVE.",
            extra={"task_id": lb.task_id, "provisioning_status": lb.provisioning_status},
        )


def publish(session: Session, event_type: str, lb: LoadBalancer, **extra: Any) -> None:
    events.publish(
        session,
        f"loadbalancer.{event_type}",
        "loadbalancer",
        lb.id,
        tenant_id=lb.tenant_id,
        project_id=lb.project_id,
        name=lb.name,
        **extra,
    )


def start_task(
    session: Session, ctx: Context | None, lb: LoadBalancer, handler: type[TaskHandler], status: str
) -> Task:
    """Move ``lb`` to ``status`` and queue ``handler``'s task for it (woken at commit)."""
    task = create_task(
        session, handler, "loadbalancer", lb.id, tenant_id=lb.tenant_id, project_id=lb.project_id
    )
    lb.provisioning_status = status
    lb.task_id = task.id
    if ctx is not None:
        wake_on_commit(session, ctx)
    return task


def submit(session: Session, ctx: Context | None, lb: LoadBalancer, what: str, **extra: Any) -> Task:
    """After a change of ``lb``'s rows: check the tree still makes a valid load balancer, then
    queue its realisation (``PENDING_UPDATE``) and publish ``loadbalancer.<what>``."""
    from novacron.lbaas.tasks import ApplyLoadBalancer  # the tasks use this module's helpers

    spec_of(session, lb)
    task = start_task(session, ctx, lb, ApplyLoadBalancer, "PENDING_UPDATE")
    publish(session, what, lb, task_id=task.id, **extra)
    return task


def child(session: Session, model: type[M], lb: LoadBalancer, ref: str, kind: str) -> M:
    """The ``model`` row of ``lb`` of this id (or name, when only one has it); 404 otherwise."""
    table: Any = model
    row = session.scalar(select(model).where(table.loadbalancer_id == lb.id, table.id == ref))
    if row is None:
        named = list(
            session.scalars(select(model).where(table.loadbalancer_id == lb.id, table.name == ref).limit(2))
        )
        row = named[0] if len(named) == 1 else None
    if row is None:
        raise NotFound(kind, ref, detail=f"Load balancer '{lb.name}' has no {kind} '{ref}'.")
    return row


def assign(row: Any, values: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Set the fields of ``values`` (those the caller sent) on ``row``."""
    for key, value in values.items():
        if key not in allowed:
            raise InvalidInput(key, "cannot be changed")
        setattr(row, key, value)
