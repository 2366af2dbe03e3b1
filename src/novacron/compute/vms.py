"""VM requests: checks that answer at once, and the tasks that do the work."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from novacron import events
from novacron.api.errors import Problem, invalid, name_taken
from novacron.compute import placement
from novacron.compute import tasks as vm_tasks
from novacron.compute.placement.requests import request_for_create
from novacron.compute.scope import get_visible
from novacron.db.base import new_id
from novacron.db.models import VM, Flavor, Image, Project, Task
from novacron.errors import DomainError
from novacron.identity.principal import Principal
from novacron.network import service as network_service
from novacron.network.service import NicRequest
from novacron.network.sync import syncing
from novacron.quota import enforce as quota
from novacron.quota.policy import Decisions
from novacron.quota.registry import vm_amounts
from novacron.tasks.runner import TaskHandler, create_task

MAX_USER_DATA = 64 * 1024

#: action -> (handler, states it is allowed from, task_state while it runs)
ACTIONS: dict[str, tuple[type[TaskHandler], tuple[str, ...], str]] = {
    "start": (vm_tasks.StartVM, ("stopped", "crashed"), "starting"),
    "stop": (vm_tasks.StopVM, ("running", "paused", "crashed"), "stopping"),
    "reboot": (vm_tasks.RebootVM, ("running",), "rebooting"),
    "pause": (vm_tasks.PauseVM, ("running",), "pausing"),
    "resume": (vm_tasks.ResumeVM, ("paused",), "resuming"),
}


def create_vm(
    session: Session,
    principal: Principal,
    project: Project,
    *,
    name: str,
    image_ref: str,
    flavor_ref: str,
    user_data: str,
    metadata: dict[str, str],
    server_group: str | None = None,
    aggregate: str | None = None,
    labels: dict[str, str] | None = None,
    ha: bool = False,
    ha_priority: int = 0,
    budget_override: bool = False,
    decisions: Decisions | None = None,
    vm_labels: dict[str, str] | None = None,
    nics: list[NicRequest] | None = None,
) -> tuple[VM, Task]:
    try:
        image = get_visible(session, Image, image_ref, principal, "image")
    except DomainError as exc:
        raise invalid("body.image", f"no image '{image_ref}' is visible to you; see GET /v1/images") from exc
    if image.status != "active":
        raise invalid(
            "body.image", f"image '{image.name}' is {image.status}, not active; upload its disk first"
        )
    flavor = session.scalar(select(Flavor).where((Flavor.id == flavor_ref) | (Flavor.name == flavor_ref)))
    if flavor is None:
        raise invalid("body.flavor", f"no flavor '{flavor_ref}'; see GET /v1/flavors", 422)
    if len(user_data.encode()) > MAX_USER_DATA:
        raise invalid("body.user_data", f"larger than {MAX_USER_DATA} bytes")
    disk_gb = root_disk_gb(principal, image, flavor)
    placement, group_id = request_for_create(
        session, principal, project, flavor, server_group=server_group, aggregate=aggregate, labels=labels
    )
    if session.scalar(select(VM.id).where(VM.project_id == project.id, VM.name == name)):
        raise name_taken("VM", name, "body.name")
    traits = network_service.vm_traits(nics or [])
    if traits:  # SR-IOV and DPDK NICs need hosts that have them
        placement["required_traits"] = sorted(set(placement.get("required_traits", ())) | traits)  # type: ignore[call-overload]
    vm = VM(
        id=new_id("vm"),
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=name,
        image_id=image.id,
        flavor_id=flavor.id,
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
        disk_gb=disk_gb,
        user_data=user_data,
        meta=metadata,
        placement=placement,
        server_group_id=group_id,
        ha=ha,
        ha_priority=ha_priority,
        labels=dict(vm_labels or {}),
        desired_state="running",
        state="building",
        task_state="creating",
    )
    session.add(vm)
    try:
        session.flush()
    except IntegrityError as exc:
        raise name_taken("VM", name, "body.name") from exc
    # in the transaction of the VM row: a refusal or any later failure of this request rolls both back
    quota.charge(
        session,
        principal,
        project,
        "vm",
        vm.id,
        vm_amounts(vm.vcpus, vm.ram_mb, vm.disk_gb),
        decisions,
        budget_override=budget_override,
    )
    if nics:
        with syncing(session, vm.tenant_id):  # its addresses may join others' remote groups
            network_service.create_vm_ports(session, principal, project, vm, nics)
    events.publish(
        session, "vm.created", "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id, name=name
    )
    task = create_task(
        session, vm_tasks.CreateVM, "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id
    )
    return vm, task


def root_disk_gb(principal: Principal, image: Image, flavor: Flavor) -> int:
    """The VM's disk: the flavor's, which the image must fit (as Nova's FlavorDiskSmallerThanImage).

    The image's virtual size is a number in its header, free to choose (a 64 KiB qcow2 can say
    1 PiB): it never sizes the disk, the quota charge or the placement. A flavor without a disk
    (``disk_gb`` 0) would take the image's size: administrators only (as Nova's zero-disk policy).
    """
    image_gb = -(-image.virtual_size_bytes // 2**30)
    if flavor.disk_gb == 0:
        if not principal.is_global:
            raise invalid(
                "body.flavor",
                f"flavor '{flavor.name}' has no disk size (disk_gb 0), which would take the image's "
                f"size; only administrators use it: choose a flavor with a disk of at least {image_gb} GiB",
            )
        return max(image_gb, 1)
    if image.virtual_size_bytes > flavor.disk_gb * 2**30:
        raise invalid(
            "body.flavor",
            f"flavor '{flavor.name}' has a {flavor.disk_gb} GiB disk, smaller than image '{image.name}' "
            f"({image.virtual_size_bytes} bytes, {image_gb} GiB virtual size): choose a flavor with "
            f"at least {image_gb} GiB of disk",
        )
    return flavor.disk_gb


def _ensure_idle(vm: VM) -> None:
    if vm.task_state is not None:
        raise Problem(
            409,
            "Conflict",
            f"VM '{vm.name}' is busy ({vm.task_state}); wait for its task to finish (novacron task list).",
        )


def request_action(session: Session, vm: VM, action: str, params: dict[str, Any]) -> Task:
    handler, allowed, busy_state = ACTIONS[action]
    _ensure_idle(vm)
    if vm.state not in allowed:
        raise Problem(
            409,
            "Conflict",
            f"Cannot {action} VM '{vm.name}' while it is {vm.state}; allowed from: {', '.join(allowed)}.",
        )
    vm.task_state = busy_state
    vm.desired_state = {"start": "running", "stop": "stopped", "pause": "paused", "resume": "running"}.get(
        action, vm.desired_state
    )
    return create_task(
        session, handler, "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id, params=params
    )


def request_delete(session: Session, vm: VM) -> Task:
    if vm.task_state == "deleting":
        task = session.scalar(
            select(Task).where(Task.resource_id == vm.id, Task.kind == "vm.delete", Task.state != "failed")
        )
        if task is not None:
            return task
    if vm.task_state not in (None, "deleting"):
        _ensure_idle(vm)
    vm.task_state = "deleting"
    vm.desired_state = "deleted"
    quota.release(session, "vm", vm.id)  # at once: the room is the tenant's again
    return create_task(
        session, vm_tasks.DeleteVM, "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id
    )


def new_derived_image(
    session: Session, tenant_id: str, project_id: str, name: str, snapshot_of: str | None = None
) -> Image:
    """The row of an image a task will fill from a VM's disk (snapshot, restore as image)."""
    if session.scalar(select(Image.id).where(Image.project_id == project_id, Image.name == name)):
        raise name_taken("image", name, "body.image_name")
    image = Image(
        id=new_id("img"),
        project_id=project_id,
        tenant_id=tenant_id,
        name=name,
        status="importing",
        snapshot_of=snapshot_of,
    )
    session.add(image)
    return image


def request_snapshot(session: Session, principal: Principal, vm: VM, image_name: str) -> tuple[Image, Task]:
    _ensure_idle(vm)
    if vm.state != "stopped":
        raise Problem(409, "Conflict", f"Stop VM '{vm.name}' before taking a snapshot (it is {vm.state}).")
    image = new_derived_image(session, vm.tenant_id, vm.project_id, image_name, snapshot_of=vm.id)
    project = session.get(Project, vm.project_id)
    assert project is not None
    # with the image row: a refusal leaves neither (a failed snapshot task gives it back)
    quota.charge(session, principal, project, "snapshot", image.id, {"snapshots": 1})
    vm.task_state = "snapshotting"
    session.flush()
    task = create_task(
        session,
        vm_tasks.SnapshotVM,
        "vm",
        vm.id,
        tenant_id=vm.tenant_id,
        project_id=vm.project_id,
        params={"image_id": image.id},
    )
    return image, task


def resize(vm: VM, flavor: Flavor | None, vcpus: int | None, ram_mb: int | None) -> None:
    """Offline resize: the new size applies at the next start."""
    _ensure_idle(vm)
    if vm.state not in ("stopped", "error"):
        raise Problem(409, "Conflict", f"Stop VM '{vm.name}' before resizing it (it is {vm.state}).")
    if flavor is not None and 0 < flavor.disk_gb < vm.disk_gb:  # a disk is not shrunk
        raise invalid(
            "body.flavor",
            f"flavor '{flavor.name}' has a {flavor.disk_gb} GiB disk, smaller than the VM's "
            f"{vm.disk_gb} GiB disk: choose a flavor with at least {vm.disk_gb} GiB",
        )
    new_vcpus = vcpus if vcpus is not None else flavor.vcpus if flavor is not None else vm.vcpus
    new_ram = ram_mb if ram_mb is not None else flavor.ram_mb if flavor is not None else vm.ram_mb
    session = object_session(vm)
    if session is not None:
        quota.resize(session, "vm", vm.id, vm_amounts(new_vcpus, new_ram, vm.disk_gb), role=None)
    if session is not None:  # a stopped VM keeps its host's claim: grow it there, or refuse
        try:
            placement.resize_claim(session, vm, new_vcpus, new_ram)
        except placement.NoValidHost as exc:
            raise Problem(409, "Conflict", str(exc)) from exc
    if flavor is not None:
        vm.flavor_id = flavor.id
    vm.vcpus, vm.ram_mb = new_vcpus, new_ram


def request_migrate(
    session: Session, vm: VM, target_host_id: str | None, options: dict[str, Any] | None = None
) -> Task:
    """Live-migrate a running VM, cold-migrate a stopped one (``options``: storage, limits)."""
    from novacron.compute.migration import ColdMigrateVM, MigrateVM

    _ensure_idle(vm)
    if vm.state not in ("running", "stopped") or vm.host_id is None:
        raise Problem(
            409,
            "Conflict",
            f"Only a running (live) or stopped (cold) VM can be migrated; '{vm.name}' is {vm.state}.",
        )
    vm.task_state = "migrating"
    return create_task(
        session,
        MigrateVM if vm.state == "running" else ColdMigrateVM,
        "vm",
        vm.id,
        tenant_id=vm.tenant_id,
        project_id=vm.project_id,
        params={
            "source_host_id": vm.host_id,
            "target_host_id": target_host_id,
            "was": vm.state,
            "options": options or {},
        },
    )
