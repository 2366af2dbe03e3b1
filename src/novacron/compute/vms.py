"""VMs: the service behind /v1/vms, and the state changes every caller of a VM action shares.

``VMService`` answers the API: checks that answer at once, then a task that does the work. The
module functions under it (``request_action``, ``request_delete``, ``request_migrate``, ...) move a
VM into a task's busy state; DR runbooks and the rebalancer call them with no caller to act for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from pydantic_core import from_json
from sqlalchemy import Text, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from novacron import events
from novacron.agent.protocol import ConsoleRead
from novacron.compute import boot_volume, guestinfo, hardware, hostops, live_resize, placement
from novacron.compute import tasks as vm_tasks
from novacron.compute.placement.requests import request_for_create
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import VM, Flavor, Host, Image, Project, Task, VMGuestInfo
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken, Unavailable, on_field
from novacron.identity import authz, kms_secrets
from novacron.identity.principal import Principal
from novacron.network import service as network_service
from novacron.network.service import NicRequest
from novacron.network.sync import syncing
from novacron.quota import enforce as quota
from novacron.quota.policy import Decisions
from novacron.quota.registry import vm_amounts
from novacron.service import Service
from novacron.tasks.runner import StepFailed, TaskHandler, create_task
from novacron.tasks.service import wake_on_commit
from novacron.virt.consolelog import read_log

MAX_USER_DATA = 64 * 1024

#: action -> (handler, states it is allowed from, task_state while it runs)
ACTIONS: dict[str, tuple[type[TaskHandler], tuple[str, ...], str]] = {
    "start": (vm_tasks.StartVM, ("stopped", "crashed"), "starting"),
    "stop": (vm_tasks.StopVM, ("running", "paused", "crashed"), "stopping"),
    "reboot": (vm_tasks.RebootVM, ("running",), "rebooting"),
    "pause": (vm_tasks.PauseVM, ("running",), "pausing"),
    "resume": (vm_tasks.ResumeVM, ("paused",), "resuming"),
}

#: a list row's JSON columns, read as their text and parsed in pydantic-core (``_parse_json``):
#: SQLAlchemy's JSON type costs three Python calls and a ``json.loads`` per value, 2,000 a page of 500
LIST_JSON = ("metadata", "placement", "labels", "ips")
#: a VM list selects plain rows of these columns: no ORM objects on the hottest read path
LIST_COLUMNS: tuple[Any, ...] = (
    VM.id,
    VM.name,
    VM.project_id,
    VM.tenant_id,
    VM.image_id,
    VM.flavor_id,
    VM.host_id,
    VM.vcpus,
    VM.ram_mb,
    VM.disk_gb,
    VM.state,
    VM.desired_state,
    VM.task_state,
    VM.error,
    type_coerce(VM.meta, Text).label("metadata"),
    VM.server_group_id,
    type_coerce(VM.placement, Text).label("placement"),
    VM.ha,
    VM.ha_priority,
    type_coerce(VM.labels, Text).label("labels"),
    VM.created_at,
    VM.updated_at,
    VM.version,
)
LIST_SORTS = ("created_at", "name", "state", "updated_at", "vcpus", "ram_mb")


@dataclass(frozen=True)
class VMSpec:
    """A VM to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    image: str
    flavor: str
    user_data: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    server_group: str | None = None
    #: placement beyond the flavor's traits: an aggregate and host labels that must all match
    aggregate: str | None = None
    host_labels: Mapping[str, str] | None = None
    ha: bool = False
    ha_priority: int = 0
    budget_override: bool = False
    #: the VM's own labels, what label policies select
    labels: Mapping[str, str] = field(default_factory=dict)
    nics: tuple[NicRequest, ...] = ()
    #: a volume of the project to boot from: the VM's root disk (``compute/boot_volume.py``)
    boot_volume: str | None = None
    #: volumes of the project attached from its first start
    volumes: tuple[str, ...] = ()
    #: a full clone's source: the new VM takes its size and hardware, not the flavor's
    like: VM | None = None
    #: the tenant's secrets (names) cloud-init writes into the guest (``identity/kms_secrets.py``)
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class VMChange:
    """An update of a VM: each field left None stays as it is."""

    flavor: str | None = None
    vcpus: int | None = None
    ram_mb: int | None = None
    disk_gb: int | None = None
    metadata: Mapping[str, str] | None = None
    ha: bool | None = None
    ha_priority: int | None = None
    labels: Mapping[str, str] | None = None

    @property
    def resizes(self) -> bool:
        """Whether the change asks for another size."""
        return any(v is not None for v in (self.flavor, self.vcpus, self.ram_mb, self.disk_gb))


def root_disk_gb(principal: Principal, image: Image, flavor: Flavor) -> int:
    """The VM's disk: the flavor's, which the image must fit (as Nova's FlavorDiskSmallerThanImage).

    The image's virtual size is a number in its header, free to choose (a 64 KiB qcow2 can say
    1 PiB): it never sizes the disk, the quota charge or the placement. A flavor without a disk
    (``disk_gb`` 0) would take the image's size: administrators only (as Nova's zero-disk policy).
    """
    image_gb = -(-image.virtual_size_bytes // 2**30)
    if flavor.disk_gb == 0:
        if not principal.is_global:
            raise InvalidInput(
                "flavor",
                f"flavor '{flavor.name}' has no disk size (disk_gb 0), which would take the image's "
                f"size; only administrators use it: choose a flavor with a disk of at least {image_gb} GiB",
            )
        return max(image_gb, 1)
    if image.virtual_size_bytes > flavor.disk_gb * 2**30:
        raise InvalidInput(
            "flavor",
            f"flavor '{flavor.name}' has a {flavor.disk_gb} GiB disk, smaller than image '{image.name}' "
            f"({image.virtual_size_bytes} bytes, {image_gb} GiB virtual size): choose a flavor with "
            f"at least {image_gb} GiB of disk",
        )
    return flavor.disk_gb


def _ensure_idle(vm: VM) -> None:
    """Refuse (409) while another task works on the VM."""
    if vm.task_state is not None:
        raise Conflict(
            f"VM '{vm.name}' is busy ({vm.task_state}); wait for its task to finish (novacron task list).",
        )


#: for the services of VM actions kept in their own modules (clones, templates)
ensure_idle = _ensure_idle


def request_action(session: Session, vm: VM, action: str, params: dict[str, Any]) -> Task:
    """The task of a power action (start, stop, reboot, pause, resume) allowed in the VM's state."""
    handler, allowed, busy_state = ACTIONS[action]
    _ensure_idle(vm)
    if vm.state not in allowed:
        raise Conflict(
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
    """The VM's delete task (the one already under way, if any); its quota is given back at once."""
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
        raise NameTaken("image", name, "image_name")
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
    """A stopped VM's disk copied to a new image of its project, charged to the snapshots quota."""
    _ensure_idle(vm)
    if vm.state != "stopped":
        raise Conflict(f"Stop VM '{vm.name}' before taking a snapshot (it is {vm.state}).")
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


def resize(
    vm: VM, flavor: Flavor | None, vcpus: int | None, ram_mb: int | None, disk_gb: int | None = None
) -> None:
    """Offline resize: the new size applies at the next start (a running VM: compute.live_resize)."""
    _ensure_idle(vm)
    if vm.state not in ("stopped", "error"):
        raise Conflict(f"Stop VM '{vm.name}' before resizing it (it is {vm.state}).")
    boot_volume.keep_disk(vm, disk_gb)
    if flavor is not None and 0 < flavor.disk_gb < vm.disk_gb:  # a disk is not shrunk
        raise InvalidInput(
            "flavor",
            f"flavor '{flavor.name}' has a {flavor.disk_gb} GiB disk, smaller than the VM's "
            f"{vm.disk_gb} GiB disk: choose a flavor with at least {vm.disk_gb} GiB",
        )
    new_vcpus = vcpus if vcpus is not None else flavor.vcpus if flavor is not None else vm.vcpus
    new_ram = ram_mb if ram_mb is not None else flavor.ram_mb if flavor is not None else vm.ram_mb
    new_disk = disk_gb if disk_gb is not None else vm.disk_gb
    if new_disk < vm.disk_gb:
        raise InvalidInput("disk_gb", f"a disk is not shrunk: at least {vm.disk_gb} GiB")
    session = object_session(vm)
    if session is not None:
        quota.resize(session, "vm", vm.id, vm_amounts(new_vcpus, new_ram, new_disk), role=None)
    if session is not None:  # a stopped VM keeps its host's claim: grow it there, or refuse
        try:
            placement.resize_claim(session, vm, new_vcpus, new_ram)
        except placement.NoValidHost as exc:
            raise Conflict(str(exc)) from exc
    if flavor is not None:
        vm.flavor_id = flavor.id
    vm.vcpus, vm.ram_mb, vm.disk_gb = new_vcpus, new_ram, new_disk


def request_migrate(
    session: Session, vm: VM, target_host_id: str | None, options: dict[str, Any] | None = None
) -> Task:
    """Live-migrate a running VM, cold-migrate a stopped one (``options``: storage, limits)."""
    from novacron.compute.migration import ColdMigrateVM, MigrateVM
    from novacron.compute.volumes import ensure_vm_volumes_idle

    _ensure_idle(vm)
    ensure_vm_volumes_idle(session, vm)
    if vm.state not in ("running", "stopped") or vm.host_id is None:
        raise Conflict(
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


class VMService(Service):
    """The caller's VMs: create, read, change, act on, and read their console and metrics."""

    def list_rows(
        self,
        params: ListParams,
        *,
        name: str | None = None,
        state: str | None = None,
        project_id: str | None = None,
        host_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of VMs as plain dicts of ``LIST_COLUMNS`` (no ORM objects: the hottest read),
        with their addresses (``compute/guestinfo.py``: joined, ports' in one query for the rest)."""
        ips = type_coerce(VMGuestInfo.ips, Text).label("ips")
        cols = (*LIST_COLUMNS, ips, VMGuestInfo.source.label("ip_source"))
        stmt = scoped(select(*cols).outerjoin(VMGuestInfo, VMGuestInfo.vm_id == VM.id), VM, self.principal)
        if (visible := authz.vm_filter(self.principal, "vm:read")) is not None:
            stmt = stmt.where(visible)  # a caller holding vm:read on a project or labels only
        stmt = where_equal(
            stmt, (VM.name, name), (VM.state, state), (VM.project_id, project_id), (VM.host_id, host_id)
        )
        rows, nxt = paginate(self.session, stmt, VM, params, as_rows=True)
        return _parse_json(guestinfo.with_port_ips(self.session, rows)), nxt

    def guest(self, vm: VM) -> guestinfo.GuestView:
        """What ``vm``'s guest says about itself, and its addresses' source."""
        return guestinfo.view(self.session, vm.id)

    def get(self, ref: str) -> VM:
        """The VM of this id (or name unique among the caller's), if the caller may see it."""
        vm = resolve(self.session, self.principal, VM, ref)
        gate = self.gate or "vm:read"
        if authz.narrowed(self.principal, gate):
            authz.check(self.principal, gate, authz.vm_scope(vm))
        return vm

    def project(self, project_id: str | None) -> Project:
        """The project a new VM goes to: the one named, or the caller's only project."""
        return resolve_project(self.session, self.principal, project_id)

    def create(
        self,
        project: Project,
        spec: VMSpec,
        decisions: Decisions,
        handler: type[TaskHandler] = vm_tasks.CreateVM,
        params: dict[str, Any] | None = None,
    ) -> tuple[VM, Task]:
        """A new VM in ``project`` and the task that builds it (``handler``: a clone's); quota and
        ports go in the same transaction, so a refusal or any later failure leaves none of them."""
        self._may(project.tenant_id, project.id, dict(spec.labels), spec.name)
        boot, data = boot_volume.claimable_all(
            self.session, self.principal, project, spec.boot_volume, spec.volumes
        )
        spec = replace(spec, image=boot_volume.image_ref(boot, spec.image))
        image, flavor = self._image_and_flavor(project, spec)
        disk_gb = boot_volume.ROOT_GB if boot is not None else root_disk_gb(self.principal, image, flavor)
        placement_spec, group_id = self._placement(project, flavor, spec)
        machine = hardware.for_vm(flavor.hardware, image.hardware, flavor.ram_mb)
        size = (flavor.vcpus, flavor.ram_mb, disk_gb)
        if spec.like is not None:  # a full clone: its source's size and hardware, not the flavor's
            size, machine = (
                (spec.like.vcpus, spec.like.ram_mb, spec.like.disk_gb),
                dict(spec.like.hardware or {}),
            )
        vm = VM(
            id=new_id("vm"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            image_id=image.id,
            flavor_id=flavor.id,
            vcpus=size[0],
            ram_mb=size[1],
            disk_gb=size[2],
            user_data=spec.user_data,
            meta=dict(spec.metadata),
            placement=placement_spec,
            server_group_id=group_id,
            ha=spec.ha,
            ha_priority=spec.ha_priority,
            labels=dict(spec.labels),
            hardware=machine,
            desired_state="running",
            state="building",
            task_state="creating",
        )
        self.session.add(vm)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise NameTaken("VM", spec.name, "name") from exc
        kms_secrets.attach_names(self.session, vm, spec.secrets)  # its tenant's, written by cloud-init
        amounts = vm_amounts(vm.vcpus, vm.ram_mb, vm.disk_gb)
        override = spec.budget_override
        quota.charge(
            self.session, self.principal, project, "vm", vm.id, amounts, decisions, budget_override=override
        )
        boot_volume.claim(boot, vm, data)
        if spec.nics:
            with syncing(self.session, vm.tenant_id):  # its addresses may join others' remote groups
                network_service.create_vm_ports(self.session, self.principal, project, vm, list(spec.nics))
        ids = {"tenant_id": vm.tenant_id, "project_id": vm.project_id}
        events.publish(self.session, "vm.created", "vm", vm.id, **ids, name=vm.name)
        task = create_task(self.session, handler, "vm", vm.id, **ids, params=params)
        if not decisions.items:  # the audit log says why it was let through
            decisions.add("allow", "quota", "within every quota, policy rule and budget")
        return vm, self._started(task)

    def _may(self, tenant_id: str, project_id: str, labels: dict[str, str], name: str) -> None:
        """Refuse a VM the caller's project- or label-limited roles do not cover (``identity/authz.py``)."""
        gate = self.gate or "vm:create"
        if authz.narrowed(self.principal, gate):
            authz.check(
                self.principal, gate, authz.ResourceScope(tenant_id, project_id, labels, f"VM '{name}'")
            )

    def _image_and_flavor(self, project: Project, spec: VMSpec) -> tuple[Image, Flavor]:
        """The image (one ``project`` may use, and active) and the flavor the VM is made of (its
        user-data checked first: a refusal names what the request got wrong in its order)."""
        if len(spec.user_data.encode()) > MAX_USER_DATA:
            raise InvalidInput("user_data", f"larger than {MAX_USER_DATA} bytes")
        image = resolve(
            self.session, self.principal, Image, spec.image, project=project, named=Named("image")
        )
        if image.status != "active":
            raise InvalidInput(
                "image", f"image '{image.name}' is {image.status}, not active; upload its disk first"
            )
        return image, self._flavor(spec.flavor)

    def _flavor(self, ref: str) -> Flavor:
        return resolve(self.session, self.principal, Flavor, ref, named=Named("flavor"))

    def _placement(self, project: Project, flavor: Flavor, spec: VMSpec) -> tuple[dict[str, Any], str | None]:
        """The VM's placement spec and server group; its name is checked free in the project."""
        placement_spec, group_id = request_for_create(
            self.session,
            self.principal,
            project,
            flavor,
            server_group=spec.server_group,
            aggregate=spec.aggregate,
            labels=dict(spec.host_labels) if spec.host_labels is not None else None,
        )
        if self.session.scalar(select(VM.id).where(VM.project_id == project.id, VM.name == spec.name)):
            raise NameTaken("VM", spec.name, "name")
        traits = network_service.vm_traits(list(spec.nics))
        if traits:  # SR-IOV and DPDK NICs need hosts that have them
            required = cast("list[str]", placement_spec.get("required_traits", []))
            placement_spec["required_traits"] = sorted(set(required) | traits)
        return placement_spec, group_id

    def update(self, vm: VM, change: VMChange) -> VM:
        """Resize a VM (a running one grows live: its task), replace its metadata, HA settings or labels."""
        if change.resizes:
            flavor = self._flavor(change.flavor) if change.flavor is not None else None
            sizes = (change.vcpus, change.ram_mb, change.disk_gb)
            if vm.state == "running":
                _ensure_idle(vm)
                self._started(live_resize.request(self.session, vm, flavor, sizes))
            else:
                resize(vm, flavor, *sizes)
        if change.metadata is not None:
            vm.meta = dict(change.metadata)
        if change.ha is not None:
            vm.ha = change.ha
        if change.ha_priority is not None:
            vm.ha_priority = change.ha_priority
        if change.labels is not None and change.labels != (vm.labels or {}):
            self._may(vm.tenant_id, vm.project_id, dict(change.labels), vm.name)  # no relabelling out
            with syncing(self.session, vm.tenant_id):  # label policies now select other addresses
                vm.labels = dict(change.labels)
        self.session.flush()
        return vm

    def delete(self, vm: VM) -> Task:
        """The VM's delete task (the one under way when asked again)."""
        task = request_delete(self.session, vm)
        self.session.flush()
        return self._started(task)

    def act(self, vm: VM, action: str, params: dict[str, Any]) -> Task:
        """The task of a power action: start, stop, reboot, pause or resume."""
        task = request_action(self.session, vm, action, params)
        self.session.flush()
        return self._started(task)

    def snapshot(self, vm: VM, image_name: str) -> tuple[Image, Task]:
        """A new image of the stopped VM's disk, and the task that fills it."""
        image, task = request_snapshot(self.session, self.principal, vm, image_name)
        return image, self._started(task)

    def migrate(self, vm: VM, host: str | None, options: dict[str, Any]) -> Task:
        """Move the VM to ``host`` (id or name; default: the scheduler chooses), live or cold."""
        target = self._host_id(host) if host else None
        if target is not None and target == vm.host_id:
            raise on_field(Conflict, "host", "the VM already runs there", title="Invalid request")
        task = request_migrate(self.session, vm, target, options)
        self.session.flush()
        return self._started(task)

    def _host_id(self, ref: str) -> str:
        return resolve(self.session, self.principal, Host, ref, named=Named("host")).id

    def console_log(self, ref: str, offset: int, tail: int | None) -> tuple[str, int]:
        """The serial console's text from ``offset`` (or its last ``tail`` bytes), and where to go on."""
        vm = self.get(ref)
        vm_id, host_id = vm.id, vm.host_id
        # a remote host's answer is awaited next: no transaction may stay open meanwhile
        self.session.rollback()
        if host_id is None:
            return "", offset
        agent = self.ctx.agent
        if agent is not None and host_id == agent.host_id:
            data, next_offset = read_log(agent.driver.console_log(vm_id), offset, tail)
            return data.decode("utf-8", "replace"), next_offset
        try:
            answer = hostops.call_blocking(self.ctx, host_id, ConsoleRead(offset, tail), vm_id)
        except StepFailed as exc:
            raise Unavailable(f"{exc} Retry when the host is back.") from exc
        return str(answer["text"]), int(answer["next_offset"])

    def metrics(self, ref: str, since: float | None) -> tuple[str, float, list[dict[str, Any]]]:
        """(VM id, sampling interval in seconds, the VM's samples after ``since``)."""
        vm = self.get(ref)
        samples: list[dict[str, Any]] = self.ctx.live_samples.get(vm.id, since)
        return vm.id, self.ctx.settings.metrics_interval_s, samples

    def _started(self, task: Task) -> Task:
        wake_on_commit(self.session, self.ctx)
        return task


def _parse_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with their ``LIST_JSON`` texts parsed (a driver that parses JSON itself, psycopg,
    hands over objects already; the ports' addresses of ``with_port_ips`` are a list too)."""
    for row in rows:
        for key in LIST_JSON:
            if isinstance(value := row[key], str):
                row[key] = from_json(value)
    return rows
