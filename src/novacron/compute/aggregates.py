"""Aggregates: named groups of hosts with metadata, defined by platform administrators.

A VM asks for one with ``placement: {aggregate: NAME}``; only the aggregate's hosts are then
candidates. The metadata key ``tenants`` (comma-separated tenant ids) reserves the aggregate's hosts
for those tenants: no other tenant's VM is placed there (Nova's multi-tenancy isolation). Tenant
roles see a reservation only when it names their own tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from novacron import events
from novacron.compute.placement import invalidate
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Aggregate, AggregateHost, Host
from novacron.db.resolve import Named, resolve
from novacron.errors import Conflict, FieldError
from novacron.identity.principal import Principal
from novacron.service import Service

#: the metadata key reserving an aggregate's hosts for some tenants (comma-separated tenant ids)
TENANTS_KEY = "tenants"


def metadata_for(meta: dict[str, str], principal: Principal | None) -> dict[str, str]:
    """The metadata a caller may see: all of it for platform administrators; for anyone else, the
    reservation only when it names the caller's own tenant (and then only that tenant), never
    which other tenants a host group is kept for."""
    if principal is None or principal.is_global:
        return dict(meta)
    shown = {k: v for k, v in meta.items() if k != TENANTS_KEY}
    reserved_for = {t.strip() for t in meta.get(TENANTS_KEY, "").split(",") if t.strip()}
    if principal.tenant_id is not None and principal.tenant_id in reserved_for:
        shown[TENANTS_KEY] = principal.tenant_id
    return shown


@dataclass(frozen=True)
class AggregateView:
    """An aggregate as its caller may see it: its metadata (see ``metadata_for``), member names."""

    aggregate: Aggregate
    metadata: dict[str, str]
    hosts: list[str]


@dataclass(frozen=True)
class AggregateSpec:
    """An aggregate to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    metadata: dict[str, str] = field(default_factory=dict)
    #: host ids or names
    hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AggregateChange:
    """What to change of an aggregate: each field given (not None) replaces the stored one."""

    name: str | None = None
    metadata: dict[str, str] | None = None
    #: replaces the member list (host ids or names)
    hosts: list[str] | None = None


def _host_ids(session: Session, principal: Principal, refs: list[str]) -> list[str]:
    ids = {resolve(session, principal, Host, ref, named=Named(f"hosts.{i}")).id for i, ref in enumerate(refs)}
    return sorted(ids)


def _set_hosts(session: Session, agg: Aggregate, host_ids: list[str]) -> None:
    session.execute(delete(AggregateHost).where(AggregateHost.aggregate_id == agg.id))
    session.add_all(AggregateHost(aggregate_id=agg.id, host_id=h) for h in host_ids)


class AggregateService(Service):
    """Create, read, change and delete aggregates; every write makes placement look again."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[AggregateView], str | None]:
        """One page of aggregates, optionally only the one of this name."""
        stmt = select(Aggregate)
        if name is not None:
            stmt = stmt.where(Aggregate.name == name)
        rows, nxt = paginate(self.session, stmt, Aggregate, params)
        return [self.view(a) for a in rows], nxt

    def get(self, ref: str) -> AggregateView:
        """The aggregate of this id or name."""
        return self.view(resolve(self.session, self.principal, Aggregate, ref))

    def view(self, agg: Aggregate, *, whole: bool = False) -> AggregateView:
        """``agg`` as the caller may see it (``whole``: all of its metadata, for a writer's answer)."""
        hosts = self.session.scalars(
            select(Host.name)
            .join(AggregateHost, AggregateHost.host_id == Host.id)
            .where(AggregateHost.aggregate_id == agg.id)
            .order_by(Host.name)
        )
        return AggregateView(
            agg, metadata_for(agg.meta or {}, None if whole else self.principal), list(hosts)
        )

    def create(self, spec: AggregateSpec) -> AggregateView:
        """A new aggregate of these hosts; its name is unique on the platform."""
        self._check_name_free(spec.name)
        agg = Aggregate(id=new_id("agg"), name=spec.name, meta=dict(spec.metadata))
        self.session.add(agg)
        self.session.flush()
        _set_hosts(self.session, agg, _host_ids(self.session, self.principal, spec.hosts))
        self.session.flush()
        events.publish(self.session, "aggregate.created", "aggregate", agg.id, tenant_id=None, name=agg.name)
        invalidate(self.session)
        return self.view(agg, whole=True)

    def update(self, agg: Aggregate, change: AggregateChange) -> AggregateView:
        """Rename, replace the metadata, or replace the members; the aggregate gets a new version."""
        if change.name is not None:
            self._check_name_free(change.name, but=agg.id)
            agg.name = change.name
        if change.metadata is not None:
            agg.meta = dict(change.metadata)
        if change.hosts is not None:
            _set_hosts(self.session, agg, _host_ids(self.session, self.principal, change.hosts))
            flag_modified(agg, "meta")  # membership is part of the aggregate: a new version and ETag
        self.session.flush()
        events.publish(self.session, "aggregate.updated", "aggregate", agg.id, tenant_id=None, name=agg.name)
        invalidate(self.session)
        return self.view(agg, whole=True)

    def delete(self, agg: Aggregate) -> None:
        """Delete the aggregate (its hosts stay)."""
        events.publish(self.session, "aggregate.deleted", "aggregate", agg.id, tenant_id=None, name=agg.name)
        self.session.delete(agg)
        invalidate(self.session)

    def _check_name_free(self, name: str, but: str | None = None) -> None:
        other = self.session.scalar(select(Aggregate.id).where(Aggregate.name == name))
        if other is not None and other != but:
            raise Conflict(
                f"An aggregate named '{name}' exists.", fields=[FieldError("name", "already used")]
            )
