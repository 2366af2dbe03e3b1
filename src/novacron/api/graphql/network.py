"""GraphQL networks (with their subnets and ports) and security groups (with their rules).

The reads are the REST routes' service calls (``NetworkService.list``/``get``,
``SecurityGroupService.list``/``get``) and their permission (``network:read``); a relation loads
through ``loaders.py``, batched and narrowed by the services' own visibility rule (a shared or
external network is everyone's, its subnets with it; another tenant's ports are absent).
"""

from __future__ import annotations

from datetime import datetime

import strawberry

from novacron.api.graphql.context import Info
from novacron.api.graphql.limits import DEFAULT_FIRST
from novacron.api.graphql.pages import Page, absent, node_of, page_params
from novacron.api.graphql.types import PortNode, SecurityGroupNode
from novacron.db.models import Network, Subnet
from novacron.network.networks import NetworkService
from novacron.network.secgroups import SecurityGroupService


@strawberry.type(name="Subnet")
class SubnetNode:
    """A subnet of a network (``/v1/subnets``)."""

    id: strawberry.ID
    name: str
    network_id: str
    project_id: str
    tenant_id: str
    ip_version: int
    cidr: str
    gateway_ip: str | None
    dns_servers: list[str]
    dhcp: bool
    created_at: datetime

    @classmethod
    def of(cls, s: Subnet) -> SubnetNode:
        return cls(
            id=strawberry.ID(s.id),
            name=s.name,
            network_id=s.network_id,
            project_id=s.project_id,
            tenant_id=s.tenant_id,
            ip_version=s.ip_version,
            cidr=s.cidr,
            gateway_ip=s.gateway_ip,
            dns_servers=list(s.dns_servers or []),
            dhcp=s.dhcp,
            created_at=s.created_at,
        )


@strawberry.type(name="Network")
class NetworkNode:
    """A tenant overlay network, or a shared or external one (``/v1/networks``)."""

    id: strawberry.ID
    name: str
    project_id: str
    tenant_id: str
    vni: int
    mtu: int
    external: bool
    shared: bool
    created_at: datetime

    @strawberry.field(description="its subnets, oldest first (at most 100)")
    async def subnets(self, info: Info) -> list[SubnetNode] | None:
        info.context.require("network:read")
        return [SubnetNode.of(s) for s in await info.context.load.subnets_of_network.load(self.id)]

    @strawberry.field(description="the caller's ports on it (at most 100)")
    async def ports(self, info: Info) -> list[PortNode] | None:
        info.context.require("network:read")
        return [PortNode.of(p) for p in await info.context.load.ports_of_network.load(self.id)]

    @classmethod
    def of(cls, n: Network) -> NetworkNode:
        return node_of(cls, n)


@strawberry.type
class NetworkQuery:
    """Networks and security groups."""

    @strawberry.field(description="the networks the caller sees, as GET /v1/networks")
    def networks(  # noqa: PLR0913 (the listing's filters)
        self,
        info: Info,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        name: str | None = None,
        project_id: str | None = None,
        external: bool | None = None,
    ) -> Page[NetworkNode] | None:
        c = info.context
        c.require("network:read")
        params = page_params(first, after, ("created_at", "name", "vni"), "created_at")
        rows, nxt = NetworkService(c.db, c.principal, c.ctx).list(
            params, name=name, project_id=project_id, external=external
        )
        return Page(items=[NetworkNode.of(n) for n in rows], next_cursor=nxt)

    @strawberry.field(description="a network by id or name; null if the caller does not see it")
    def network(self, info: Info, id: strawberry.ID) -> NetworkNode | None:
        c = info.context
        c.require("network:read")
        found = absent(lambda: NetworkService(c.db, c.principal, c.ctx).get(str(id)))
        return NetworkNode.of(found) if found else None

    @strawberry.field(description="the security groups the caller sees (a read: it makes no defaults)")
    def security_groups(
        self,
        info: Info,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        name: str | None = None,
        project_id: str | None = None,
    ) -> Page[SecurityGroupNode] | None:
        c = info.context
        c.require("network:read")
        params = page_params(first, after, ("created_at", "name"), "created_at")
        rows, nxt = SecurityGroupService(c.db, c.principal, c.ctx).list(
            params, name=name, project_id=project_id, make_defaults=False
        )
        return Page(items=[SecurityGroupNode.of(g) for g in rows], next_cursor=nxt)

    @strawberry.field(description="a security group by id or name; null if the caller does not see it")
    def security_group(self, info: Info, id: strawberry.ID) -> SecurityGroupNode | None:
        c = info.context
        c.require("network:read")
        found = absent(lambda: SecurityGroupService(c.db, c.principal, c.ctx).get(str(id)))
        return SecurityGroupNode.of(found) if found else None
