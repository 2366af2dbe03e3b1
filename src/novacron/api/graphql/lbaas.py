"""GraphQL load balancers: ``GET /v1/loadbalancers``'s service reads and ``loadbalancer:read``.

As in REST, a load balancer names its listeners and pools (id and name); here they are relations,
loaded for a whole page in one query each (``loaders.py``), narrowed to the caller's tenant; a pool's
members likewise (``GET .../pools/{id}/members``). Amphorae and the floating IP are not in the schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from novacron.api.graphql.context import Info
from novacron.api.graphql.limits import DEFAULT_FIRST
from novacron.api.graphql.pages import Page, absent, node_of, page_params
from novacron.db.models import LbMember, LoadBalancer
from novacron.lbaas.loadbalancers import LoadBalancerService


@strawberry.type(description="a listener of a load balancer: its id and name, as in REST")
class LbPart:
    id: strawberry.ID
    name: str
    protocol: str

    @classmethod
    def of(cls, part: Any) -> LbPart:
        return node_of(cls, part)


@strawberry.type(name="LbMember")
class LbMemberNode:
    """A backend of a pool (``/v1/loadbalancers/{id}/pools/{id}/members``)."""

    id: strawberry.ID
    pool_id: str
    loadbalancer_id: str
    name: str
    address: str
    protocol_port: int
    subnet_id: str
    vm_id: str | None
    weight: int
    backup: bool
    admin_state_up: bool
    drain: bool
    operating_status: str
    created_at: datetime

    @classmethod
    def of(cls, m: LbMember) -> LbMemberNode:
        return node_of(cls, m)


@strawberry.type(description="a pool of a load balancer: its id and name, as in REST, and its members")
class LbPool:
    id: strawberry.ID
    name: str
    protocol: str

    @strawberry.field(description="its members, oldest first (at most 100)")
    async def members(self, info: Info) -> list[LbMemberNode] | None:
        info.context.require("loadbalancer:read")
        return [LbMemberNode.of(m) for m in await info.context.load.members_of_pool.load(self.id)]

    @classmethod
    def of(cls, part: Any) -> LbPool:
        return node_of(cls, part)


@strawberry.type(name="LoadBalancer")
class LoadBalancerNode:
    """A load balancer (``/v1/loadbalancers``)."""

    id: strawberry.ID
    name: str
    description: str
    project_id: str
    tenant_id: str
    vip_subnet_id: str
    vip_network_id: str
    vip_port_id: str | None
    vip_address: str
    topology: str
    admin_state_up: bool
    provisioning_status: str
    operating_status: str
    task_id: str | None
    created_at: datetime

    @strawberry.field(description="its listeners, oldest first (at most 100)")
    async def listeners(self, info: Info) -> list[LbPart] | None:
        info.context.require("loadbalancer:read")
        return [LbPart.of(li) for li in await info.context.load.listeners_of_lb.load(self.id)]

    @strawberry.field(description="its pools, oldest first (at most 100)")
    async def pools(self, info: Info) -> list[LbPool] | None:
        info.context.require("loadbalancer:read")
        return [LbPool.of(p) for p in await info.context.load.pools_of_lb.load(self.id)]

    @classmethod
    def of(cls, lb: LoadBalancer) -> LoadBalancerNode:
        return node_of(cls, lb)


@strawberry.type
class LbQuery:
    """Load balancers."""

    @strawberry.field(description="the caller's load balancers, as GET /v1/loadbalancers")
    def load_balancers(
        self,
        info: Info,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        name: str | None = None,
        project_id: str | None = None,
    ) -> Page[LoadBalancerNode] | None:
        c = info.context
        c.require("loadbalancer:read")
        params = page_params(first, after, ("created_at", "name"), "created_at")
        service = LoadBalancerService(c.db, c.principal, c.ctx)
        rows, nxt = service.list(params, name=name, project_id=project_id)
        return Page(items=[LoadBalancerNode.of(lb) for lb in rows], next_cursor=nxt)

    @strawberry.field(description="a load balancer by id or name; null if the caller does not see it")
    def load_balancer(self, info: Info, id: strawberry.ID) -> LoadBalancerNode | None:
        c = info.context
        c.require("loadbalancer:read")
        found = absent(lambda: LoadBalancerService(c.db, c.principal, c.ctx).get(str(id)))
        return LoadBalancerNode.of(found) if found else None
