"""The durable tasks that realise a load balancer on the hosts, and undo a change that failed.

``loadbalancer.apply`` (every create and change): ``place`` the legs without a usable host (SINGLE:
the host with the fewest legs; ACTIVE_STANDBY: two distinct hosts), ``plumb`` (push the hosts'
network state: the legs' namespaces on their networks; skipped when every leg is on the host it was
on at the last applied change, as a change of listeners, pools or members leaves the namespaces as
they are: a host's network sync costs more the more legs it carries), ``apply`` (``lb_apply`` on
each leg's host with the resolved spec), ``confirm`` (the tree becomes the ``applied`` snapshot, the
load balancer ACTIVE with its health rolled up). A failure rolls back: the rows are restored from
the snapshot, the restored tree is applied again on the reachable legs (a host that refused the
change kept its previous configuration; the other side of a pair may have taken it) and the load
balancer is ACTIVE again, or ERROR when its create failed. It never stays ``PENDING_*``.

``loadbalancer.delete``: ``lb_remove`` on each leg's host (skipped for a host that is down or
fenced: nothing runs there to stop), then the ports released, the rows deleted, the quota given
back and the hosts' network state pushed without the legs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from novacron.agent.protocol import LbApply, LbRemove
from novacron.compute import hostops
from novacron.db.models import Host, LbAmphora, LbListener, LbMember, LbPool, LoadBalancer, Port, Task
from novacron.errors import DomainError
from novacron.lbaas import certstore, changes, placement
from novacron.lbaas.health import apply_health, roll_up
from novacron.lbaas.model import LoadBalancerSpec
from novacron.lbaas.resolve import amphorae_of, restore, spec_of, tree
from novacron.network import service as ports
from novacron.network.specs import affected_hosts
from novacron.network.sync import push
from novacron.quota import enforce as quota
from novacron.tasks.runner import StepFailed, TaskHandler

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
APPLY_TIMEOUT_S = 120.0
REMOVE_TIMEOUT_S = 60.0
REAPPLY_TIMEOUT_S = 30.0
#: the key of the applied tree naming the host of each leg at the time
LEG_HOSTS = "leg_hosts"


def _load(session: Session, task: Task) -> LoadBalancer:
    lb = session.get(LoadBalancer, task.resource_id)
    if lb is None:
        raise StepFailed(f"Load balancer {task.resource_id} no longer exists.")
    return lb


def _legs(ctx: Context, task: Task) -> list[tuple[str, str | None, str]]:
    """(leg id, host id, role) of each leg of the task's load balancer."""
    with ctx.db.session() as s:
        return [(a.id, a.host_id, a.role) for a in amphorae_of(s, task.resource_id)]


def leg_hosts(legs: list[LbAmphora]) -> dict[str, str | None]:
    """Where each leg runs: kept with the applied tree, so a change that moves none skips ``plumb``."""
    return {a.id: a.host_id for a in legs}


def _push_for(session: Session, lb: LoadBalancer, *hosts: str | None) -> None:
    """Push every host the load balancer's legs concern (and its tenant's network hosts)."""
    push(session, affected_hosts(session, lb.tenant_id) | {h for h in hosts if h})


def secrets_of(session: Session, lb: LoadBalancer, spec: LoadBalancerSpec, ctx: Context) -> dict[str, Any]:
    """``LbApply.secrets``: the PEM bundles of the certificates its listeners serve (the
    tenant's own; sealed while the operation waits in the database)."""
    refs = [
        ref for li in spec.listeners for ref in (li.default_tls_container_ref, *li.sni_container_refs) if ref
    ]
    if not refs:
        return {}
    return {"certificates": certstore.certificates_for(session, lb.tenant_id, refs, ctx.settings)}


def reachable(ctx: Context, host_id: str) -> bool:
    """Whether the host's agent can run an operation now (up, not fenced)."""
    with ctx.db.session() as s:
        host = s.get(Host, host_id)
        return host is not None and host.state == "up" and host.fenced_at is None


class ApplyLoadBalancer(TaskHandler):
    kind = "loadbalancer.apply"
    steps: ClassVar[list[str]] = ["place", "plumb", "apply", "confirm"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "apply":
            await self._apply(ctx, task)
            return
        with ctx.db.session() as s:
            lb = _load(s, task)
            if step == "place":
                try:
                    placement.place(s, amphorae_of(s, lb.id))
                except placement.NoHosts as exc:
                    raise StepFailed(exc.detail) from exc
            elif step == "plumb":
                legs = amphorae_of(s, lb.id)
                if lb.applied is None or lb.applied.get(LEG_HOSTS) != leg_hosts(legs):
                    _push_for(s, lb, *(a.host_id for a in legs))
            elif step == "confirm":
                lb.applied = {**tree(s, lb), LEG_HOSTS: leg_hosts(amphorae_of(s, lb.id))}
                lb.provisioning_status = "ACTIVE"
                roll_up(s, lb)
                self.confirmed(s, lb, task)

    def confirmed(self, session: Session, lb: LoadBalancer, task: Task) -> None:
        """The hosts run the change: say so."""
        changes.publish(session, "active", lb, task_id=task.id)

    async def _apply(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            lb = _load(s, task)
            try:
                spec = spec_of(s, lb)
                secrets = secrets_of(s, lb, spec, ctx)
            except DomainError as exc:
                raise StepFailed(f"The load balancer's configuration is refused: {exc.detail}") from exc
            standby = lb.topology == "ACTIVE_STANDBY"
        for leg_id, host_id, _role in _legs(ctx, task):
            if host_id is None:
                raise StepFailed(f"Amphora {leg_id} is not placed on a host.")
            request = LbApply(
                spec=spec, leg_id=leg_id, amphora_id=leg_id if standby else None, secrets=secrets
            )
            answer = await hostops.call(
                ctx, host_id, task, request, task.resource_id, APPLY_TIMEOUT_S, key=leg_id
            )
            self._record_health(ctx, task, answer)

    @staticmethod
    def _record_health(ctx: Context, task: Task, answer: dict[str, Any]) -> None:
        members = answer.get("members")
        if isinstance(members, dict):
            with ctx.db.session() as s:
                apply_health(s, _load(s, task), members)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """Back to the last applied tree (ACTIVE), or ERROR when nothing was ever applied."""
        with ctx.db.session() as s:
            lb = s.get(LoadBalancer, task.resource_id)
            if lb is None:
                return
            if lb.applied is None:
                lb.provisioning_status, lb.operating_status = "ERROR", "ERROR"
                changes.publish(s, "create_failed", lb, task_id=task.id, error=error)
                return
            restore(s, lb, lb.applied)
            lb.provisioning_status = "ACTIVE"
            roll_up(s, lb)
            changes.publish(s, "update_failed", lb, task_id=task.id, error=error)
        await self._reapply(ctx, task)

    async def _reapply(self, ctx: Context, task: Task) -> None:
        """Best effort: the restored tree again on every reachable leg (one side of a pair may have
        taken the change before the other refused it; a refused one kept its own)."""
        with ctx.db.session() as s:
            lb = _load(s, task)
            spec, standby = spec_of(s, lb), lb.topology == "ACTIVE_STANDBY"
            try:
                secrets = secrets_of(s, lb, spec, ctx)
            except DomainError as exc:
                log.warning("restoring %s: %s", lb.id, exc.detail)
                return
        for leg_id, host_id, _role in _legs(ctx, task):
            if host_id is None or not reachable(ctx, host_id):
                continue
            request = LbApply(
                spec=spec, leg_id=leg_id, amphora_id=leg_id if standby else None, secrets=secrets
            )
            try:
                await hostops.call(
                    ctx, host_id, task, request, task.resource_id, REAPPLY_TIMEOUT_S, key=f"restore-{leg_id}"
                )
            except StepFailed as exc:
                log.warning("restoring %s on %s: %s", leg_id, host_id, exc)


class DeleteLoadBalancer(TaskHandler):
    kind = "loadbalancer.delete"
    steps: ClassVar[list[str]] = ["remove", "release"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step == "remove":
            for leg_id, host_id, _role in _legs(ctx, task):
                if host_id is not None and reachable(ctx, host_id):
                    request = LbRemove(loadbalancer_id=task.resource_id, leg_id=leg_id)
                    try:
                        await hostops.call(
                            ctx, host_id, task, request, task.resource_id, REMOVE_TIMEOUT_S, key=leg_id
                        )
                    except StepFailed as exc:  # the host went away meanwhile: its namespace goes with it
                        log.warning("lb_remove of %s on %s: %s", leg_id, host_id, exc)
            return
        with ctx.db.session() as s:
            lb = s.get(LoadBalancer, task.resource_id)
            if lb is not None:
                self._release(s, lb, task)

    @staticmethod
    def _release(session: Session, lb: LoadBalancer, task: Task) -> None:
        legs = amphorae_of(session, lb.id)
        hosts = affected_hosts(session, lb.tenant_id) | {a.host_id for a in legs if a.host_id}
        port_ids = {lb.vip_port_id, *(a.port_id for a in legs)}
        for model in (LbListener, LbMember, LbPool, LbAmphora):
            session.execute(delete(model).where(model.loadbalancer_id == lb.id))
        for port in session.scalars(select(Port).where(Port.id.in_([p for p in port_ids if p]))):
            ports.delete_port(session, port)
        quota.release(session, "loadbalancer", lb.id)
        changes.publish(session, "deleted", lb, task_id=task.id)
        session.delete(lb)
        push(session, hosts)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """A delete that could not finish leaves the load balancer in ERROR, to be deleted again."""
        with ctx.db.session() as s:
            lb = s.get(LoadBalancer, task.resource_id)
            if lb is not None:
                lb.provisioning_status = "ERROR"
                changes.publish(s, "delete_failed", lb, task_id=task.id, error=error)


HANDLERS: list[TaskHandler] = [ApplyLoadBalancer(), DeleteLoadBalancer()]
