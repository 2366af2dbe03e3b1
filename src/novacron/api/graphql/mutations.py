"""The GraphQL ``Mutation`` root: the REST routes' service calls, validated by their very models.

Each mutation validates its input with the REST route's pydantic model (the same 422 reasons, the
field named), calls the same service method, and honours an ``idempotencyKey`` as REST honours the
``Idempotency-Key`` header (``api/concurrency.py``): a retry with the same key and arguments gets the
first answer again (``replayed: true``), the same key with other arguments is refused. Each runs in a
savepoint of the operation's transaction, so a refused one leaves nothing behind; each is named in
the request's audit record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import strawberry
from pydantic import BaseModel
from strawberry.scalars import JSON

from novacron.api.concurrency import Idempotency
from novacron.api.graphql.context import Audited, Info
from novacron.api.graphql.types import TaskNode, VMNode, VolumeNode
from novacron.api.routers import vms as vms_api
from novacron.api.routers import volumes as volumes_api
from novacron.compute.vms import VMService
from novacron.compute.volumes import VolumeService, VolumeSpec
from novacron.quota.policy import Decisions


@strawberry.type(description="a VM operation accepted: its task to follow")
class VMAccepted:
    task_id: strawberry.ID
    vm_id: strawberry.ID
    warnings: list[str]
    replayed: bool = strawberry.field(description="the answer of an earlier call with the same key")

    @strawberry.field(description="the VM as it is now (null once deleted)")
    async def vm(self, info: Info) -> VMNode | None:
        found = await info.context.load.vm.load(str(self.vm_id))
        return VMNode.of(found) if found else None

    @strawberry.field(description="the task as it is now")
    async def task(self, info: Info) -> TaskNode | None:
        found = await info.context.load.task.load(str(self.task_id))
        return TaskNode.of(found) if found else None


@strawberry.type(description="a volume operation accepted")
class VolumeAccepted:
    task_id: strawberry.ID | None
    volume_id: strawberry.ID
    replayed: bool

    @strawberry.field(description="the volume as it is now (null once deleted)")
    async def volume(self, info: Info) -> VolumeNode | None:
        found = await info.context.load.volume.load(str(self.volume_id))
        return VolumeNode.of(found) if found else None


@strawberry.input(description="a NIC on a tenant network, as in POST /v1/vms")
class NicInput:
    network: str
    fixed_ip: str | None = None
    security_groups: list[str] | None = None


@strawberry.input(description="a VM to create: the body of POST /v1/vms")
class CreateVMInput:
    name: str
    flavor: str
    image: str | None = None
    project_id: str | None = None
    boot_volume: str | None = None
    volumes: list[str] | None = None
    user_data: str = ""
    metadata: JSON | None = None
    labels: JSON | None = None
    ha: bool = False
    networks: list[NicInput] | None = None


@strawberry.input(description="a volume to create: the body of POST /v1/volumes")
class CreateVolumeInput:
    name: str
    size_gb: int | None = None
    image: str | None = None
    project_id: str | None = None


def _dump(value: Any) -> Any:
    """A strawberry input as plain JSON (the REST body it stands for), unset fields left out."""
    if hasattr(value, "__strawberry_definition__"):
        return {k: _dump(v) for k, v in vars(value).items() if v is not None}
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def keyed(info: Info, mutation: str, key: str | None, request: Any, run: Callable[[], dict[str, Any]]) -> Any:
    """``run``'s answer (a JSON-able dict), or the stored one of an earlier call with this key;
    in a savepoint, and noted for the audit record."""
    c = info.context
    c.load.forget()  # the fields of an earlier mutation in this operation may have loaded rows it changes
    idem = Idempotency.of_call(key, c.principal, c.db, f"/v1/graphql#{mutation}")
    with c.db.begin_nested():
        replay = idem.replay(request)
        if replay is not None:
            answer = {**json.loads(bytes(replay.body)), "replayed": True}
        else:
            answer = {**run(), "replayed": False}
            idem.remember(200, answer)
    touched = (answer.get(k) for k in ("vm_id", "volume_id", "network_id", "group_id", "subnet_id"))
    c.audited.append(Audited(mutation, next((t for t in touched if t), None)))
    return answer


def _valid(model: type[BaseModel], body: Any) -> Any:
    return model.model_validate(body)


def _act(info: Info, vm_ref: str, action: str, params: dict[str, Any], key: str | None) -> VMAccepted | None:
    c = info.context
    c.require("vm:power")
    service = VMService(c.db, c.principal, c.ctx)
    vm = service.get(vm_ref)

    def run() -> dict[str, Any]:
        task = service.act(vm, action, params)
        return {"task_id": task.id, "vm_id": vm.id, "warnings": []}

    name = f"{action}Vm"
    return VMAccepted(**keyed(info, name, key, {"vm": vm.id, "action": action, **params}, run))


@strawberry.type
class Mutation:
    """VM create/start/stop/delete and volume create/delete, through the REST routes' services."""

    @strawberry.mutation(description="POST /v1/vms")
    def create_vm(
        self, info: Info, input: CreateVMInput, idempotency_key: str | None = None
    ) -> VMAccepted | None:
        c = info.context
        c.require("vm:create")
        body = _valid(vms_api.VMCreate, _dump(input))

        def run() -> dict[str, Any]:
            service = VMService(c.db, c.principal, c.ctx)
            decisions = Decisions()
            vm, task = service.create(service.project(body.project_id), vms_api._spec(body), decisions)
            return {"task_id": task.id, "vm_id": vm.id, "warnings": decisions.warnings}

        return VMAccepted(**keyed(info, "createVm", idempotency_key, body, run))

    @strawberry.mutation(description="POST /v1/vms/{id}/actions/start")
    def start_vm(
        self, info: Info, id: strawberry.ID, idempotency_key: str | None = None
    ) -> VMAccepted | None:
        return _act(info, str(id), "start", {}, idempotency_key)

    @strawberry.mutation(description="POST /v1/vms/{id}/actions/stop: ACPI shutdown, forced after timeoutS")
    def stop_vm(
        self,
        info: Info,
        id: strawberry.ID,
        force: bool = False,
        timeout_s: float = 60,
        idempotency_key: str | None = None,
    ) -> VMAccepted | None:
        params = _valid(vms_api.ActionRequest, {"force": force, "timeout_s": timeout_s}).model_dump()
        return _act(info, str(id), "stop", params, idempotency_key)

    @strawberry.mutation(description="DELETE /v1/vms/{id}")
    def delete_vm(
        self, info: Info, id: strawberry.ID, idempotency_key: str | None = None
    ) -> VMAccepted | None:
        c = info.context
        c.require("vm:delete")
        service = VMService(c.db, c.principal, c.ctx)
        vm = service.get(str(id))

        def run() -> dict[str, Any]:
            return {"task_id": service.delete(vm).id, "vm_id": vm.id, "warnings": []}

        return VMAccepted(**keyed(info, "deleteVm", idempotency_key, {"delete": vm.id}, run))

    @strawberry.mutation(description="POST /v1/volumes")
    def create_volume(
        self, info: Info, input: CreateVolumeInput, idempotency_key: str | None = None
    ) -> VolumeAccepted | None:
        c = info.context
        c.require("volume:write")
        body = _valid(volumes_api.VolumeCreate, _dump(input))

        def run() -> dict[str, Any]:
            spec = VolumeSpec(body.name, body.size_gb, body.image, body.project_id, pool=body.pool)
            volume, task = VolumeService(c.db, c.principal, c.ctx).create(spec)
            return {"task_id": task.id, "volume_id": volume.id}

        return VolumeAccepted(**keyed(info, "createVolume", idempotency_key, body, run))

    @strawberry.mutation(description="DELETE /v1/volumes/{id}")
    def delete_volume(
        self, info: Info, id: strawberry.ID, idempotency_key: str | None = None
    ) -> VolumeAccepted | None:
        c = info.context
        c.require("volume:write")
        service = VolumeService(c.db, c.principal, c.ctx)
        volume = service.get(str(id))

        def run() -> dict[str, Any]:
            service.delete(volume)
            return {"task_id": None, "volume_id": volume.id}

        return VolumeAccepted(**keyed(info, "deleteVolume", idempotency_key, {"delete": volume.id}, run))
