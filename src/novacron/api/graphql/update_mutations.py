"""GraphQL subnet writes and ``updateVm``: the REST routes' models and service calls.

``createSubnet``/``deleteSubnet`` (``POST``/``DELETE /v1/subnets``, ``network:write``, the delete
its owner's only) and ``updateVm`` (``PATCH /v1/vms/{id}``, ``vm:update``), each validated by the
REST model, keyed by ``idempotencyKey``, in a savepoint, named in the audit record
(``mutations.keyed``). ``updateVm`` honours ``ifMatch`` as REST honours ``If-Match``: a value other
than the VM's ETag now (``VM.etag``) is refused with 412 and nothing changes. The check runs inside
the keyed call, so the retry of an update that succeeded gets its stored answer instead of a 412
against the version it made.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from novacron.api.concurrency import etag_of, refuse_stale
from novacron.api.graphql.context import Info
from novacron.api.graphql.mutations import _dump, _valid, keyed
from novacron.api.graphql.network import SubnetNode
from novacron.api.graphql.network_mutations import Mutations as NetworkMutations
from novacron.api.graphql.types import VMNode
from novacron.api.routers import networks as networks_api
from novacron.api.routers import vms as vms_api
from novacron.compute.vms import VMChange, VMService
from novacron.network.subnets import SubnetService


@strawberry.type(description="a subnet created or deleted")
class SubnetDone:
    subnet_id: strawberry.ID
    replayed: bool

    @strawberry.field(description="the subnet as it is now (null once deleted)")
    async def subnet(self, info: Info) -> SubnetNode | None:
        found = await info.context.load.subnet.load(str(self.subnet_id))
        return SubnetNode.of(found) if found else None


@strawberry.type(description="a VM updated (a resize of a running VM goes on in its task)")
class VMUpdated:
    vm_id: strawberry.ID
    etag: str = strawberry.field(description="the VM's ETag once updated (the next ifMatch)")
    replayed: bool

    @strawberry.field(description="the VM as it is now")
    async def vm(self, info: Info) -> VMNode | None:
        found = await info.context.load.vm.load(str(self.vm_id))
        return VMNode.of(found) if found else None


@strawberry.input(description="an allocation pool: its first and last address")
class PoolInput:
    start: str
    end: str


@strawberry.input(description="a static route handed out by DHCP")
class HostRouteInput:
    destination: str
    nexthop: str


@strawberry.input(description="a subnet to create: the body of POST /v1/subnets")
class CreateSubnetInput:
    network: str
    name: str
    cidr: str
    gateway_ip: str | None = None
    no_gateway: bool = False
    allocation_pools: list[PoolInput] | None = None
    dns_servers: list[str] | None = None
    host_routes: list[HostRouteInput] | None = None
    dhcp: bool = True


@strawberry.input(description="what to change: the body of PATCH /v1/vms/{id} (unset fields stay)")
class UpdateVMInput:
    flavor: str | None = None
    vcpus: int | None = None
    ram_mb: int | None = None
    disk_gb: int | None = None
    metadata: JSON | None = None
    ha: bool | None = None
    ha_priority: int | None = None
    labels: JSON | None = None


@strawberry.type(name="Mutation")
class Mutations(NetworkMutations):
    """VMs, volumes, networks and security groups (``mutations.py``, ``network_mutations.py``),
    subnets and VM updates."""

    @strawberry.mutation(description="POST /v1/subnets")
    def create_subnet(
        self, info: Info, input: CreateSubnetInput, idempotency_key: str | None = None
    ) -> SubnetDone | None:
        c = info.context
        c.require("network:write")
        body = _valid(networks_api.SubnetCreate, _dump(input))

        def run() -> dict[str, Any]:
            return {"subnet_id": SubnetService(c.db, c.principal, c.ctx).create(body.spec()).id}

        return SubnetDone(**keyed(info, "createSubnet", idempotency_key, body, run))

    @strawberry.mutation(description="DELETE /v1/subnets/{id} (its owner only)")
    def delete_subnet(
        self, info: Info, id: strawberry.ID, idempotency_key: str | None = None
    ) -> SubnetDone | None:
        c = info.context
        c.require("network:write")
        service = SubnetService(c.db, c.principal, c.ctx)
        subnet = service.get_owned(str(id))

        def run() -> dict[str, Any]:
            service.delete(subnet)
            return {"subnet_id": subnet.id}

        return SubnetDone(**keyed(info, "deleteSubnet", idempotency_key, {"delete": subnet.id}, run))

    @strawberry.mutation(description="PATCH /v1/vms/{id}; ifMatch: the VM's etag, refused (412) if stale")
    def update_vm(
        self,
        info: Info,
        id: strawberry.ID,
        input: UpdateVMInput,
        if_match: str | None = None,
        idempotency_key: str | None = None,
    ) -> VMUpdated | None:
        c = info.context
        c.require("vm:update")
        service = VMService(c.db, c.principal, c.ctx)
        vm = service.get(str(id))
        body = _valid(vms_api.VMUpdate, _dump(input))

        def run() -> dict[str, Any]:
            refuse_stale(if_match, vm)
            return {"vm_id": vm.id, "etag": etag_of(service.update(vm, VMChange(**body.model_dump())))}

        request = {"vm": vm.id, "if_match": if_match, **body.model_dump(mode="json", exclude_none=True)}
        return VMUpdated(**keyed(info, "updateVm", idempotency_key, request, run))
