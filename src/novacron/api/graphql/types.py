"""The GraphQL object types: the REST resources' fields, and their relations through the loaders.

Tenant → projects → VMs → ports → security groups, and a VM's tasks, backups, volumes and metrics.
Each relation checks the permission the REST route of that resource requires (a member without
``backup:read`` gets the same 403 as ``GET /v1/backups``, as a GraphQL error on that field) and loads
through ``loaders.py``: batched, and only what the caller's tenant may see.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from novacron.api.concurrency import etag_of
from novacron.api.graphql.context import Info
from novacron.db.models import (
    VM,
    BackupSnapshot,
    Event,
    Port,
    Project,
    SecurityGroup,
    SecurityGroupRule,
    Task,
    Tenant,
    Volume,
)


@strawberry.type(name="SecurityGroupRule")
class RuleNode:
    """A rule of a security group (``/v1/security-groups/{id}/rules``)."""

    id: strawberry.ID
    group_id: str
    direction: str
    ethertype: str
    protocol: str | None
    port_min: int | None
    port_max: int | None
    remote_cidr: str | None
    remote_group_id: str | None
    remote_labels: JSON | None
    sni_allow: list[str]
    action: str

    @classmethod
    def of(cls, r: SecurityGroupRule) -> RuleNode:
        return cls(
            id=strawberry.ID(r.id),
            group_id=r.group_id,
            direction=r.direction,
            ethertype=r.ethertype,
            protocol=r.protocol,
            port_min=r.port_min,
            port_max=r.port_max,
            remote_cidr=r.remote_cidr,
            remote_group_id=r.remote_group_id,
            remote_labels=cast(Any, r.remote_labels),
            sni_allow=list(r.sni_allow or []),
            action=r.action,
        )


@strawberry.type(name="SecurityGroup")
class SecurityGroupNode:
    """A security group a port is in."""

    id: strawberry.ID
    name: str
    description: str
    project_id: str
    tenant_id: str

    @classmethod
    def of(cls, g: SecurityGroup) -> SecurityGroupNode:
        return cls(
            id=strawberry.ID(g.id),
            name=g.name,
            description=g.description,
            project_id=g.project_id,
            tenant_id=g.tenant_id,
        )

    @strawberry.field(description="its rules, oldest first (at most 100)")
    async def rules(self, info: Info) -> list[RuleNode] | None:
        info.context.require("network:read")
        return [RuleNode.of(r) for r in await info.context.load.rules_of_group.load(self.id)]


@strawberry.type(name="Port")
class PortNode:
    """A VM's NIC on a tenant network."""

    id: strawberry.ID
    name: str
    network_id: str
    vm_id: str | None
    mac: str
    vnic_type: str
    port_security: bool

    @strawberry.field(description="the security groups the port is in")
    async def security_groups(self, info: Info) -> list[SecurityGroupNode] | None:
        info.context.require("network:read")
        return [SecurityGroupNode.of(g) for g in await info.context.load.groups_of_port.load(self.id)]

    @classmethod
    def of(cls, p: Port) -> PortNode:
        return cls(
            id=strawberry.ID(p.id),
            name=p.name,
            network_id=p.network_id,
            vm_id=p.vm_id,
            mac=p.mac,
            vnic_type=p.vnic_type,
            port_security=p.port_security,
        )


@strawberry.type(name="Task")
class TaskNode:
    """A durable operation, with its steps and progress (``/v1/tasks``)."""

    id: strawberry.ID
    kind: str
    resource_type: str
    resource_id: str
    project_id: str | None
    state: str
    steps: list[str]
    current_step: str | None
    progress: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, t: Task) -> TaskNode:
        running = t.state == "running" and t.step_index < len(t.steps)
        return cls(
            id=strawberry.ID(t.id),
            kind=t.kind,
            resource_type=t.resource_type,
            resource_id=t.resource_id,
            project_id=t.project_id,
            state=t.state,
            steps=list(t.steps),
            current_step=t.steps[t.step_index] if running else None,
            progress=t.progress,
            error=t.error,
            created_at=t.created_at,
            finished_at=t.finished_at,
        )


@strawberry.type(name="Backup")
class BackupNode:
    """A backup of a VM (``/v1/backups``)."""

    id: strawberry.ID
    vm_id: str | None
    vm_name: str
    state: str
    mode: str | None
    size_bytes: float
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, b: BackupSnapshot) -> BackupNode:
        return cls(
            id=strawberry.ID(b.id),
            vm_id=b.vm_id,
            vm_name=b.vm_name,
            state=b.state,
            mode=b.mode,
            size_bytes=float(b.size_bytes),
            created_at=b.created_at,
            completed_at=b.completed_at,
        )


@strawberry.type(name="Volume")
class VolumeNode:
    """A block volume (``/v1/volumes``)."""

    id: strawberry.ID
    name: str
    project_id: str
    size_gb: int
    pool: str
    status: str
    vm_id: str | None
    error: str | None
    created_at: datetime

    @classmethod
    def of(cls, v: Volume) -> VolumeNode:
        return cls(
            id=strawberry.ID(v.id),
            name=v.name,
            project_id=v.project_id,
            size_gb=v.size_gb,
            pool=v.pool,
            status=v.status,
            vm_id=v.vm_id,
            error=v.error,
            created_at=v.created_at,
        )


@strawberry.type(name="VM")
class VMNode:
    """A virtual machine (``/v1/vms``), with its ports, tasks, backups, volumes and metrics."""

    id: strawberry.ID
    name: str
    project_id: str
    tenant_id: str
    host_id: str | None
    image_id: str | None
    flavor_id: str | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    state: str
    desired_state: str
    task_state: str | None
    error: str | None
    labels: JSON
    created_at: datetime
    updated_at: datetime
    version: int

    @strawberry.field(description="what REST's ETag says: updateVm's ifMatch")
    def etag(self) -> str:
        return etag_of(self)

    @strawberry.field(description="the VM's project")
    async def project(self, info: Info) -> ProjectNode | None:
        info.context.require("project:read")
        found = await info.context.load.project.load(self.project_id)
        return ProjectNode.of(found) if found else None

    @strawberry.field(description="the VM's NICs")
    async def ports(self, info: Info) -> list[PortNode] | None:
        info.context.require("network:read")
        return [PortNode.of(p) for p in await info.context.load.ports_of_vm.load(self.id)]

    @strawberry.field(description="its tasks, newest first (at most 100)")
    async def tasks(self, info: Info) -> list[TaskNode] | None:
        info.context.require("task:read")
        return [TaskNode.of(t) for t in await info.context.load.tasks_of_resource.load(self.id)]

    @strawberry.field(description="its backups, newest first (at most 100)")
    async def backups(self, info: Info) -> list[BackupNode] | None:
        info.context.require("backup:read")
        return [BackupNode.of(b) for b in await info.context.load.backups_of_vm.load(self.id)]

    @strawberry.field(description="the volumes attached to it")
    async def volumes(self, info: Info) -> list[VolumeNode] | None:
        info.context.require("volume:read")
        return [VolumeNode.of(v) for v in await info.context.load.volumes_of_vm.load(self.id)]

    @strawberry.field(description="its recent raw samples, as GET /v1/vms/{id}/metrics (memory: no query)")
    def metrics(self, info: Info, since: float | None = None) -> list[JSON] | None:
        info.context.require("metrics:read")
        samples: list[Any] = info.context.ctx.live_samples.get(str(self.id), since)
        return samples

    @classmethod
    def of(cls, vm: VM) -> VMNode:
        return cls.of_row({c: getattr(vm, c) for c in _VM_FIELDS})

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> VMNode:
        """From ORM attributes or a row of ``VMService.list_rows``."""
        fields: dict[str, Any] = {c: row.get(c) for c in _VM_FIELDS}
        fields["id"] = strawberry.ID(str(row["id"]))
        fields["labels"] = row.get("labels") or {}
        return cls(**fields)


_VM_FIELDS = (
    "id", "name", "project_id", "tenant_id", "host_id", "image_id", "flavor_id", "vcpus", "ram_mb",
    "disk_gb", "state", "desired_state", "task_state", "error", "labels", "created_at", "updated_at",
    "version",
)  # fmt: skip


@strawberry.type(name="Project")
class ProjectNode:
    """A project of a tenant (``/v1/projects``)."""

    id: strawberry.ID
    name: str
    description: str
    tenant_id: str
    created_at: datetime

    @strawberry.field(description="the project's VMs, oldest first (at most 100)")
    async def vms(self, info: Info) -> list[VMNode] | None:
        info.context.require("vm:read")
        return [VMNode.of(vm) for vm in await info.context.load.vms_of_project.load(self.id)]

    @classmethod
    def of(cls, p: Project) -> ProjectNode:
        return cls(
            id=strawberry.ID(p.id),
            name=p.name,
            description=p.description,
            tenant_id=p.tenant_id,
            created_at=p.created_at,
        )


@strawberry.type(name="Tenant")
class TenantNode:
    """A tenant (``/v1/tenants``): a caller of a tenant sees its own only."""

    id: strawberry.ID
    name: str
    description: str
    created_at: datetime

    @strawberry.field(description="the tenant's projects, by name (at most 100)")
    async def projects(self, info: Info) -> list[ProjectNode] | None:
        info.context.require("project:read")
        return [ProjectNode.of(p) for p in await info.context.load.projects_of_tenant.load(self.id)]

    @classmethod
    def of(cls, t: Tenant) -> TenantNode:
        return cls(id=strawberry.ID(t.id), name=t.name, description=t.description, created_at=t.created_at)


@strawberry.type(name="Event")
class EventNode:
    """An entry of the event log (``/v1/events``)."""

    seq: float
    time: str
    type: str
    resource_type: str
    resource_id: str
    tenant_id: str | None
    project_id: str | None
    data: JSON

    @classmethod
    def of(cls, e: dict[str, Any]) -> EventNode:
        return cls(**{**e, "seq": float(e["seq"])})

    @classmethod
    def of_row(cls, e: Event) -> EventNode:
        from novacron.events import as_dict

        return cls.of(as_dict(e))
