"""Hosts: what administrators set on a hypervisor host, and what each caller may see of one.

Hosts are shared by every tenant: platform administrators see all of a host; tenant roles see a
capacity summary (size, state, free capacity in coarse steps) and never the allocation counters,
heartbeats or underlay addresses, which would show other tenants' VMs coming and going.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute.placement import invalidate
from novacron.db.listing import ListParams, paginate
from novacron.db.models import AggregateHost, Host
from novacron.db.resolve import resolve
from novacron.identity.principal import Principal
from novacron.service import Service

#: free capacity is shown to tenant roles in steps this coarse: exact counters would show other
#: tenants' VMs coming and going on a shared host
FREE_STEP = 25


def free_percent(used: int, total: int, ratio: float) -> int:
    """How free a host is, in percent rounded down to a step of ``FREE_STEP``."""
    capacity = total * ratio
    if capacity <= 0:
        return 0
    free = max(0.0, 1 - used / capacity) * 100
    return int(free // FREE_STEP) * FREE_STEP


def host_by_ref(session: Session, principal: Principal, ref: str) -> Host:
    """The host of this id or name."""
    return resolve(session, principal, Host, ref)


@dataclass(frozen=True)
class HostView:
    """A host with the ids of the aggregates it belongs to."""

    host: Host
    aggregates: list[str]


@dataclass(frozen=True)
class HostSettings:
    """An administrator's change to a host: each field given (not None) replaces the stored one."""

    state: str | None = None
    labels: dict[str, str] | None = None
    traits: list[str] | None = None
    cpu_allocation_ratio: float | None = None
    ram_allocation_ratio: float | None = None


class HostService(Service):
    """Read hosts and change what administrators set on them (labels, traits, ratios, maintenance)."""

    @property
    def sees_all(self) -> bool:
        """Whether the caller sees whole hosts (platform administrators) or a capacity summary."""
        return self.principal.is_global

    def list(self, params: ListParams, *, state: str | None = None) -> tuple[list[HostView], str | None]:
        """One page of hosts, optionally only those in ``state``."""
        stmt = select(Host)
        if state is not None:
            stmt = stmt.where(Host.state == state)
        rows, nxt = paginate(self.session, stmt, Host, params)
        return [self.view(h) for h in rows], nxt

    def get(self, ref: str) -> HostView:
        """The host of this id or name."""
        return self.view(host_by_ref(self.session, self.principal, ref))

    def view(self, host: Host) -> HostView:
        """``host`` with its aggregates."""
        aggregates = self.session.scalars(
            select(AggregateHost.aggregate_id).where(AggregateHost.host_id == host.id)
        )
        return HostView(host, sorted(aggregates))

    def update(self, host: Host, settings: HostSettings) -> HostView:
        """Apply the settings given; a change is published and makes placement look again."""
        changes = {k: v for k, v in asdict(settings).items() if v is not None}
        if "traits" in changes:
            changes["traits"] = sorted(set(changes["traits"]))
        for field, value in changes.items():
            setattr(host, field, value)
        if changes:
            self.session.flush()
            events.publish(
                self.session,
                "host.updated",
                "host",
                host.id,
                tenant_id=None,
                name=host.name,
                changed=sorted(changes),
            )
            invalidate(self.session)
        return self.view(host)
