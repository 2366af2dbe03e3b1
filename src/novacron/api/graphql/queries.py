"""The GraphQL ``Query`` root: the same service calls as the REST list and get routes.

A list is a page (``first``, ``after``: the REST ``limit`` and ``cursor``); a single resource by id or
name is ``null`` when the caller may not see it, as if it did not exist (REST's 404).
"""

from __future__ import annotations

import strawberry

from novacron.api.graphql.catalog import CatalogQuery
from novacron.api.graphql.context import Info
from novacron.api.graphql.lbaas import LbQuery
from novacron.api.graphql.limits import DEFAULT_FIRST
from novacron.api.graphql.network import NetworkQuery
from novacron.api.graphql.pages import Page, absent, page_params
from novacron.api.graphql.routing import RoutingQuery
from novacron.api.graphql.types import (
    BackupNode,
    EventNode,
    ProjectNode,
    TaskNode,
    TenantNode,
    VMNode,
    VolumeNode,
)
from novacron.backup.service import BackupFilter, BackupService
from novacron.compute.vms import LIST_SORTS, VMService
from novacron.compute.volumes import VolumeService
from novacron.errors import InvalidInput
from novacron.events import EventService
from novacron.identity.projects import ProjectService
from novacron.identity.tenants import TenantService
from novacron.tasks.service import TaskService


@strawberry.type
class Query(NetworkQuery, RoutingQuery, CatalogQuery, LbQuery):
    """Reads: tenants, projects, VMs, tasks, volumes, backups and events, and their relations; networks
    and security groups (``network.py``), images and flavors (``catalog.py``), load balancers
    (``lbaas.py``), subnets, routers and floating IPs (``routing.py``)."""

    @strawberry.field(description="the tenants the caller sees (its own, or all for an admin)")
    def tenants(
        self, info: Info, first: int = DEFAULT_FIRST, after: str | None = None, name: str | None = None
    ) -> Page[TenantNode] | None:
        c = info.context
        c.require("tenant:read")
        params = page_params(first, after, ("name", "created_at"), "name")
        rows, nxt = TenantService(c.db, c.principal, c.ctx).list(params, name=name)
        return Page(items=[TenantNode.of(t) for t in rows], next_cursor=nxt)

    @strawberry.field(description="a tenant by id or name; null if the caller does not see it")
    def tenant(self, info: Info, id: strawberry.ID) -> TenantNode | None:
        c = info.context
        c.require("tenant:read")
        found = absent(lambda: TenantService(c.db, c.principal, c.ctx).get(str(id)))
        return TenantNode.of(found) if found else None

    @strawberry.field(description="the projects the caller sees")
    def projects(
        self, info: Info, first: int = DEFAULT_FIRST, after: str | None = None, name: str | None = None
    ) -> Page[ProjectNode] | None:
        c = info.context
        c.require("project:read")
        params = page_params(first, after, ("name", "created_at"), "name")
        rows, nxt = ProjectService(c.db, c.principal, c.ctx).list(params, name=name)
        return Page(items=[ProjectNode.of(p) for p in rows], next_cursor=nxt)

    @strawberry.field(description="a project by id or name; null if the caller does not see it")
    def project(self, info: Info, id: strawberry.ID) -> ProjectNode | None:
        c = info.context
        c.require("project:read")
        found = absent(lambda: ProjectService(c.db, c.principal, c.ctx).get(str(id)))
        return ProjectNode.of(found) if found else None

    @strawberry.field(description="the caller's VMs, as GET /v1/vms")
    def vms(  # noqa: PLR0913 (the listing's filters)
        self,
        info: Info,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        name: str | None = None,
        state: str | None = None,
        project_id: str | None = None,
    ) -> Page[VMNode] | None:
        c = info.context
        c.require("vm:read")
        params = page_params(first, after, LIST_SORTS, "created_at")
        rows, nxt = VMService(c.db, c.principal, c.ctx).list_rows(
            params, name=name, state=state, project_id=project_id
        )
        return Page(items=[VMNode.of_row(r) for r in rows], next_cursor=nxt)

    @strawberry.field(description="a VM by id or name; null if the caller does not see it")
    def vm(self, info: Info, id: strawberry.ID) -> VMNode | None:
        c = info.context
        c.require("vm:read")
        found = absent(lambda: VMService(c.db, c.principal, c.ctx).get(str(id)))
        return VMNode.of(found) if found else None

    @strawberry.field(description="the caller's tasks, newest first")
    def tasks(
        self,
        info: Info,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        state: str | None = None,
        resource_id: str | None = None,
    ) -> Page[TaskNode] | None:
        c = info.context
        c.require("task:read")
        params = page_params(first, after, ("created_at", "updated_at", "state"), "-created_at")
        rows, nxt = TaskService(c.db, c.principal, c.ctx).list(params, state=state, resource_id=resource_id)
        return Page(items=[TaskNode.of(t) for t in rows], next_cursor=nxt)

    @strawberry.field(description="a task by id; null if the caller does not see it")
    def task(self, info: Info, id: strawberry.ID) -> TaskNode | None:
        c = info.context
        c.require("task:read")
        found = absent(lambda: TaskService(c.db, c.principal, c.ctx).get(str(id)))
        return TaskNode.of(found) if found else None

    @strawberry.field(description="the caller's volumes")
    def volumes(
        self, info: Info, first: int = DEFAULT_FIRST, after: str | None = None, project_id: str | None = None
    ) -> Page[VolumeNode] | None:
        c = info.context
        c.require("volume:read")
        params = page_params(first, after, ("created_at", "name"), "created_at")
        rows, nxt = VolumeService(c.db, c.principal, c.ctx).list(params, project_id=project_id)
        return Page(items=[VolumeNode.of(v) for v in rows], next_cursor=nxt)

    @strawberry.field(description="the caller's backups")
    def backups(
        self, info: Info, first: int = DEFAULT_FIRST, after: str | None = None, vm_id: str | None = None
    ) -> Page[BackupNode] | None:
        c = info.context
        c.require("backup:read")
        params = page_params(first, after, ("created_at",), "-created_at")
        rows, nxt = BackupService(c.db, c.principal, c.ctx).list(params, BackupFilter(vm_id=vm_id))
        return Page(items=[BackupNode.of(b) for b in rows], next_cursor=nxt)

    @strawberry.field(description="events after the sequence number `after` (or the newest, tail)")
    def events(
        self,
        info: Info,
        after: float = 0,
        limit: int = 100,
        types: list[str] | None = None,
        tail: bool = False,
    ) -> list[EventNode] | None:
        c = info.context
        c.require("event:read")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be 1 to 1000", part="query")
        if not 0 <= after < 2**63:
            raise InvalidInput("after", "must be 0 to 2^63-1", part="query")
        page = EventService(c.db, c.principal, c.ctx).page(int(after), limit, types or [], tail=tail)
        return [EventNode.of_row(e) for e in page]
