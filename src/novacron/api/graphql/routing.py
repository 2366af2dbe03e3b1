"""GraphQL subnets, routers (with their interfaces) and floating IPs as roots.

The reads are the REST routes' service calls (``SubnetService``, ``RouterService``,
``FloatingIPService`` ``list``/``get``) with their permission (``network:read``). A router's
interfaces are its ports (not its gateway's), loaded for a whole page in one query
(``loaders.ports_of_router``), narrowed to what the caller sees. What REST computes per row with
queries of its own (a subnet's used addresses, a router's external address, a floating IP's fixed
address) is not in the schema.
"""

from __future__ import annotations

from datetime import datetime

import strawberry

from novacron.api.graphql.context import Info
from novacron.api.graphql.limits import DEFAULT_FIRST
from novacron.api.graphql.network import SubnetNode
from novacron.api.graphql.pages import Page, absent, node_of, page_params
from novacron.api.graphql.types import PortNode
from novacron.db.models import FloatingIP, Router
from novacron.network.floating import FloatingIPService
from novacron.network.routers import RouterService
from novacron.network.subnets import SubnetService


@strawberry.type(name="Router")
class RouterNode:
    """A router between a tenant's subnets, with SNAT through its gateway (``/v1/routers``)."""

    id: strawberry.ID
    name: str
    project_id: str
    tenant_id: str
    external_network_id: str | None
    snat: bool
    created_at: datetime

    @strawberry.field(description="its legs on subnets (ports holding their gateway), oldest first")
    async def interfaces(self, info: Info) -> list[PortNode] | None:
        info.context.require("network:read")
        ports = await info.context.load.ports_of_router.load(self.id)
        return [PortNode.of(p) for p in ports if p.owner != "router_gateway"]

    @classmethod
    def of(cls, r: Router) -> RouterNode:
        return node_of(cls, r)


@strawberry.type(name="FloatingIP")
class FloatingIPNode:
    """An address on an external network, DNAT'ed to a port once associated (``/v1/floating-ips``)."""

    id: strawberry.ID
    ip: str
    network_id: str
    project_id: str
    tenant_id: str
    port_id: str | None
    router_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, f: FloatingIP) -> FloatingIPNode:
        return node_of(cls, f)


@strawberry.type
class RoutingQuery:
    """Subnets, routers and floating IPs."""

    @strawberry.field(description="the subnets of the networks the caller sees, as GET /v1/subnets")
    def subnets(
        self,
        info: Info,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        network_id: str | None = None,
        name: str | None = None,
    ) -> Page[SubnetNode] | None:
        c = info.context
        c.require("network:read")
        params = page_params(first, after, ("created_at", "name"), "created_at")
        rows, nxt = SubnetService(c.db, c.principal, c.ctx).list(params, network_id=network_id, name=name)
        return Page(items=[SubnetNode.of(s) for s in rows], next_cursor=nxt)

    @strawberry.field(description="a subnet by id or name; null if the caller does not see it")
    def subnet(self, info: Info, id: strawberry.ID) -> SubnetNode | None:
        c = info.context
        c.require("network:read")
        found = absent(lambda: SubnetService(c.db, c.principal, c.ctx).get(str(id)))
        return SubnetNode.of(found) if found else None

    @strawberry.field(description="the caller's routers, as GET /v1/routers")
    def routers(
        self, info: Info, first: int = DEFAULT_FIRST, after: str | None = None, name: str | None = None
    ) -> Page[RouterNode] | None:
        c = info.context
        c.require("network:read")
        params = page_params(first, after, ("created_at", "name"), "created_at")
        rows, nxt = RouterService(c.db, c.principal, c.ctx).list(params, name=name)
        return Page(items=[RouterNode.of(r) for r in rows], next_cursor=nxt)

    @strawberry.field(description="a router by id or name; null if the caller does not see it")
    def router(self, info: Info, id: strawberry.ID) -> RouterNode | None:
        c = info.context
        c.require("network:read")
        found = absent(lambda: RouterService(c.db, c.principal, c.ctx).get(str(id)))
        return RouterNode.of(found) if found else None

    @strawberry.field(description="the caller's floating IPs, as GET /v1/floating-ips")
    def floating_ips(
        self, info: Info, first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Page[FloatingIPNode] | None:
        c = info.context
        c.require("network:read")
        params = page_params(first, after, ("created_at",), "created_at")
        rows, nxt = FloatingIPService(c.db, c.principal, c.ctx).list(params)
        return Page(items=[FloatingIPNode.of(f) for f in rows], next_cursor=nxt)

    @strawberry.field(description="a floating IP by id; null if the caller does not see it")
    def floating_ip(self, info: Info, id: strawberry.ID) -> FloatingIPNode | None:
        c = info.context
        c.require("network:read")
        found = absent(lambda: FloatingIPService(c.db, c.principal, c.ctx).get(str(id)))
        return FloatingIPNode.of(found) if found else None
