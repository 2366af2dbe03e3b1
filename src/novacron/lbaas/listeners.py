"""Listeners: the ports of a load balancer's VIP, with their L7 policies (each with its rules)
and protection kept whole on the listener.

Each change is checked against the whole load balancer (``changes.submit``) and realised by its
``loadbalancer.apply`` task.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import LbCertificate, LbListener, LbPool, LoadBalancer
from novacron.errors import Conflict, FieldError, InvalidInput
from novacron.lbaas import certstore, changes
from novacron.service import Service

#: what a listener's update may change (its protocol and port are what it is)
CHANGEABLE = frozenset(
    {
        "name",
        "description",
        "default_pool_id",
        "connection_limit",
        "timeout_client_data",
        "timeout_member_connect",
        "timeout_member_data",
        "insert_headers",
        "default_tls_container_ref",
        "sni_container_refs",
        "protection",
        "qos",
        "l7policies",
        "admin_state_up",
    }
)


@dataclass(frozen=True)
class NewListener:
    """A listener to create, as the caller asked for it (already checked for shape by the API)."""

    protocol: str
    protocol_port: int
    name: str = ""
    description: str = ""
    default_pool_id: str | None = None
    connection_limit: int | None = None
    timeout_client_data: int | None = None
    timeout_member_connect: int | None = None
    timeout_member_data: int | None = None
    insert_headers: list[str] = field(default_factory=list)
    default_tls_container_ref: str | None = None
    sni_container_refs: list[str] = field(default_factory=list)
    protection: dict[str, Any] | None = None
    qos: dict[str, Any] | None = None
    l7policies: list[dict[str, Any]] = field(default_factory=list)
    admin_state_up: bool = True


def with_ids(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The L7 policies with an id given to each policy and rule that has none."""
    out = []
    for policy in policies:
        rules = [{**r, "id": r.get("id") or new_id("l7r")} for r in policy.get("rules", [])]
        out.append({**policy, "id": policy.get("id") or new_id("l7p"), "rules": rules})
    return out


class ListenerService(Service):
    """Create, read, change and delete the listeners of the caller's load balancers."""

    def list(self, lb: LoadBalancer, params: ListParams) -> tuple[builtins.list[LbListener], str | None]:
        """One page of the load balancer's listeners."""
        stmt = select(LbListener).where(LbListener.loadbalancer_id == lb.id)
        return paginate(self.session, stmt, LbListener, params)

    def loadbalancer(self, ref: str) -> LoadBalancer:
        """The load balancer of this id or name, as the caller sees it."""
        return changes.find(self.session, self.principal, ref)

    def get(self, lb: LoadBalancer, ref: str) -> LbListener:
        """The listener of this id (or name) of ``lb``."""
        return changes.child(self.session, LbListener, lb, ref, "listener")

    def create(self, lb: LoadBalancer, spec: NewListener) -> LbListener:
        """A new listener on ``lb``'s VIP; its port must be free there."""
        changes.check_not_pending(lb)
        self._check_port_free(lb, spec.protocol_port)
        values = asdict(spec)
        values["l7policies"] = with_ids(spec.l7policies)
        values.update(self._certificates(lb, values))
        self._check_pool(lb, spec.default_pool_id)
        listener = LbListener(id=new_id("lsn"), loadbalancer_id=lb.id, tenant_id=lb.tenant_id, **values)
        self.session.add(listener)
        changes.submit(self.session, self._ctx, lb, "listener.created", listener_id=listener.id)
        return listener

    def update(self, lb: LoadBalancer, listener: LbListener, values: Mapping[str, Any]) -> LbListener:
        """Change the fields sent (the others stay)."""
        changes.check_not_pending(lb)
        values = dict(values)
        if "l7policies" in values:
            values["l7policies"] = with_ids(values["l7policies"] or [])
        if "default_pool_id" in values:
            self._check_pool(lb, values["default_pool_id"])
        values.update(self._certificates(lb, values))
        changes.assign(listener, values, CHANGEABLE)
        changes.submit(self.session, self._ctx, lb, "listener.updated", listener_id=listener.id)
        return listener

    def delete(self, lb: LoadBalancer, listener: LbListener) -> None:
        """Stop serving the listener's port."""
        changes.check_not_pending(lb)
        self.session.delete(listener)
        changes.submit(self.session, self._ctx, lb, "listener.deleted", listener_id=listener.id)

    def _check_port_free(self, lb: LoadBalancer, port: int) -> None:
        stmt = select(LbListener.id).where(
            LbListener.loadbalancer_id == lb.id, LbListener.protocol_port == port
        )
        if (other := self.session.scalar(stmt)) is not None:
            raise Conflict(
                f"Port {port} of load balancer '{lb.name}' is taken by listener {other}.",
                fields=[FieldError("protocol_port", f"taken by listener {other}")],
            )

    def _certificates(self, lb: LoadBalancer, values: Mapping[str, Any]) -> dict[str, Any]:
        """The certificate references among ``values`` as the ids of the tenant's own
        certificates (another tenant's is not there: a 422 naming the field)."""
        out: dict[str, Any] = {}
        if values.get("default_tls_container_ref") is not None:
            ref = values["default_tls_container_ref"]
            out["default_tls_container_ref"] = self._certificate(lb, ref, "default_tls_container_ref")
        if "sni_container_refs" in values:
            refs = values["sni_container_refs"] or []
            out["sni_container_refs"] = [
                self._certificate(lb, ref, f"sni_container_refs.{i}") for i, ref in enumerate(refs)
            ]
        return out

    def _certificate(self, lb: LoadBalancer, ref: str, field: str) -> str:
        row = certstore.tenant_certificate(self.session, lb.tenant_id, ref)
        if row is None:
            raise InvalidInput(field, f"no certificate '{ref}' of yours; see GET /v1/certificates")
        return row.id

    def _check_pool(self, lb: LoadBalancer, pool_id: str | None) -> None:
        if pool_id is None:
            return
        stmt = select(LbPool.id).where(LbPool.loadbalancer_id == lb.id, LbPool.id == pool_id)
        if self.session.scalar(stmt) is None:
            raise InvalidInput("default_pool_id", f"load balancer '{lb.name}' has no pool '{pool_id}'")


def listeners_serving(session: Session, certificate: LbCertificate) -> list[tuple[LbListener, str]]:
    """The listeners that serve ``certificate``, with their load balancer's name."""
    stmt = (
        select(LbListener, LoadBalancer.name)
        .join(LoadBalancer, LoadBalancer.id == LbListener.loadbalancer_id)
        .where(LbListener.tenant_id == certificate.tenant_id)
    )
    return [
        (listener, lb_name)
        for listener, lb_name in session.execute(stmt)
        if certificate.id in (listener.default_tls_container_ref, *(listener.sni_container_refs or ()))
    ]


def listeners_using(session: Session, certificate: LbCertificate) -> list[str]:
    """The listeners that serve ``certificate`` (the store keeps it while any does)."""
    return [
        f"listener {listener.name or listener.id} of load balancer {lb_name}"
        for listener, lb_name in listeners_serving(session, certificate)
    ]


certstore.register_in_use_check(listeners_using)
