"""Live resize of a running VM: more vCPUs, more memory and a bigger root disk, without a stop.

Every fresh boot (create, start) gives the VM headroom, recorded on its row as ``vm.hotplug``:
``max_vcpus`` = min(host CPUs, factor x vCPUs) and ``max_ram_mb`` = min(host RAM, factor x RAM)
(``NOVACRON_HOTPLUG_FACTOR``, 4; 1 turns headroom off; memory only for VMs of 512 MiB and more,
see ``MIN_HOTPLUG_RAM_MB``), on the QEMU command line as
``-smp maxcpus`` and ``-m maxmem`` (virt/hotplug.py). A resize of the running VM within that
ceiling is a task: the row takes the new size at once (so its quota and host claim grow first,
and refuse when there is no room), then the VM's host hot-adds CPUs and one memory DIMM per grow
and grows the root disk. The row keeps the DIMMs (``dimms_mb``) and the hot-added CPUs
(``hot_vcpus``) so that a migration starts its destination with the same devices; the next fresh
boot folds them into its boot memory and CPUs.

Growing is all a running VM can do: a shrink is refused (stop it first), and so is a size over
its ceiling, naming the field and the ceiling. A VM booted before headroom existed only grows
its disk until it is stopped and started again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from novacron import events
from novacron.agent.protocol import ResizeLive
from novacron.compute import boot_volume, hostops, placement
from novacron.db.models import VM, Flavor, Host, Task
from novacron.errors import Conflict, InvalidInput, on_field
from novacron.quota import enforce as quota
from novacron.quota.registry import vm_amounts
from novacron.tasks.runner import StepFailed, TaskHandler, create_task
from novacron.virt.base import LiveSize
from novacron.virt.hotplug import SLOTS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context

#: the Linux guest onlines memory in 128 MiB sections (x86-64): a grow is a whole number of them
RAM_STEP_MB = 128
#: memory headroom only from this size: once memory may reach above 4 GiB (where QEMU puts the
#: DIMMs) an x86 Linux guest reserves a 64 MiB DMA bounce buffer (swiotlb) at boot, which a
#: 128 MiB guest does not survive (measured: out-of-memory panic while unpacking its initramfs)
MIN_HOTPLUG_RAM_MB = 512
GIB = 1 << 30
#: a ``vm.hotplug`` of a VM with no headroom (booted before it existed, or factor 1)
NONE: dict[str, Any] = {}


def headroom(vm: VM, host: Host | None, factor: int) -> dict[str, Any]:
    """The ceiling a fresh boot of ``vm`` on ``host`` gets, and no DIMMs (its memory is all boot memory)."""
    cpus = host.cpus if host is not None else vm.vcpus
    ram = host.ram_mb if host is not None else vm.ram_mb
    max_vcpus = max(vm.vcpus, min(cpus, factor * vm.vcpus))
    spare = max(0, min(ram, factor * vm.ram_mb) - vm.ram_mb) if vm.ram_mb >= MIN_HOTPLUG_RAM_MB else 0
    max_ram = vm.ram_mb + spare - spare % RAM_STEP_MB
    return {"max_vcpus": max_vcpus, "max_ram_mb": max_ram, "hot_vcpus": 0, "dimms_mb": []}


def fresh_boot(session: Session, vm_id: str, factor: int) -> None:
    """The VM is about to boot afresh (not running anywhere): its headroom on its host, no DIMMs."""
    vm = session.get(VM, vm_id)
    if vm is None:
        return
    host = session.get(Host, vm.host_id) if vm.host_id else None
    vm.hotplug = headroom(vm, host, factor) if factor > 1 else NONE


def spec_fields(vm: VM) -> dict[str, Any]:
    """The spec's headroom and DIMMs (virt.base.InstanceSpec), as the row records them."""
    hp = vm.hotplug or {}
    return {
        "max_vcpus": int(hp.get("max_vcpus", 0)),
        "max_ram_mb": int(hp.get("max_ram_mb", 0)),
        "hot_vcpus": int(hp.get("hot_vcpus", 0)),
        "dimms_mb": [int(x) for x in hp.get("dimms_mb", [])],
    }


def limits(vm: VM) -> tuple[int | None, int | None]:
    """(max vCPUs, max RAM MiB) the VM can grow to while it runs; None: no headroom."""
    hp = vm.hotplug or {}
    return hp.get("max_vcpus"), hp.get("max_ram_mb")


def _check(vm: VM, vcpus: int, ram_mb: int, disk_gb: int) -> None:
    """Refuse a shrink (stop first) and a size over the ceiling (naming the field and the ceiling)."""
    for field, new, now in (
        ("vcpus", vcpus, vm.vcpus),
        ("ram_mb", ram_mb, vm.ram_mb),
        ("disk_gb", disk_gb, vm.disk_gb),
    ):
        if new < now:
            raise on_field(
                Conflict, field, f"VM '{vm.name}' is running: {field} cannot shrink from {now} to {new} "
                "while it runs; stop the VM first to make it smaller", title="Invalid request",
            )  # fmt: skip
    max_vcpus, max_ram = limits(vm)
    if (vcpus > vm.vcpus or ram_mb > vm.ram_mb) and max_vcpus is None:
        raise on_field(
            Conflict, "vcpus" if vcpus > vm.vcpus else "ram_mb", f"VM '{vm.name}' was booted without "
            "room for hot-added CPUs and memory: stop and start it once, or resize it stopped",
            title="Invalid request",
        )  # fmt: skip
    if max_vcpus is not None and vcpus > max_vcpus:
        raise InvalidInput(
            "vcpus",
            f"at most {max_vcpus} vCPUs while VM '{vm.name}' runs (its ceiling); stop it to go beyond",
        )
    if max_ram is not None and ram_mb > max_ram:
        raise InvalidInput(
            "ram_mb", f"at most {max_ram} MiB while VM '{vm.name}' runs (its ceiling); stop it to go beyond"
        )
    grow = ram_mb - vm.ram_mb
    if grow % RAM_STEP_MB:
        raise InvalidInput(
            "ram_mb", f"a running VM's memory grows by a multiple of {RAM_STEP_MB} MiB, not {grow}"
        )
    if grow and len((vm.hotplug or {}).get("dimms_mb", [])) >= SLOTS:
        raise InvalidInput(
            "ram_mb", f"VM '{vm.name}' has grown its memory {SLOTS} times while running: stop it first"
        )


def request(
    session: Session, vm: VM, flavor: Flavor | None, sizes: tuple[int | None, int | None, int | None]
) -> Task:
    """Grow the running ``vm`` (to ``flavor`` or the given vCPUs, RAM MiB, disk GiB): its task."""
    vcpus, ram_mb, disk_gb = sizes
    new_vcpus = vcpus if vcpus is not None else flavor.vcpus if flavor is not None else vm.vcpus
    new_ram = ram_mb if ram_mb is not None else flavor.ram_mb if flavor is not None else vm.ram_mb
    boot_volume.keep_disk(vm, disk_gb)
    new_disk = disk_gb if disk_gb is not None else max(vm.disk_gb, flavor.disk_gb if flavor else 0)
    if boot_volume.on_volume(vm):  # no local disk: a flavor's disk is neither made nor charged
        new_disk = boot_volume.ROOT_GB
    _check(vm, new_vcpus, new_ram, new_disk)
    quota.resize(session, "vm", vm.id, vm_amounts(new_vcpus, new_ram, new_disk), role=None)
    try:  # the host must have the room before the row grows (its claim follows the row)
        placement.resize_claim(session, vm, new_vcpus, new_ram)
    except placement.NoValidHost as exc:
        raise Conflict(str(exc)) from exc
    old = {
        "vcpus": vm.vcpus,
        "ram_mb": vm.ram_mb,
        "disk_gb": vm.disk_gb,
        "flavor_id": vm.flavor_id,
        "hotplug": vm.hotplug,
    }
    hp = dict(vm.hotplug or {})
    hp["hot_vcpus"] = int(hp.get("hot_vcpus", 0)) + new_vcpus - vm.vcpus
    if new_ram > vm.ram_mb:
        hp["dimms_mb"] = [*hp.get("dimms_mb", []), new_ram - vm.ram_mb]
    vm.vcpus, vm.ram_mb, vm.disk_gb, vm.hotplug = new_vcpus, new_ram, new_disk, hp
    if flavor is not None:
        vm.flavor_id = flavor.id
    vm.task_state = "resizing"
    params = {
        "old": old,
        "target": {"vcpus": new_vcpus, "dimms_mb": hp.get("dimms_mb", []), "disk_gb": new_disk},
    }
    return create_task(
        session, ResizeVMLive, "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id, params=params
    )


class ResizeVMLive(TaskHandler):
    """Hot-add the CPUs and memory and grow the root disk of the running VM on its host."""

    kind = "vm.resize_live"
    steps: ClassVar[list[str]] = ["hotplug"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        target = task.params["target"]
        size = LiveSize(
            int(target["vcpus"]), tuple(int(x) for x in target["dimms_mb"]), int(target["disk_gb"]) * GIB
        )
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None or vm.host_id is None:
                raise StepFailed(f"VM {task.resource_id} is not on any host.")
            host_id = vm.host_id
        await hostops.call(ctx, host_id, task, ResizeLive(size), task.resource_id, timeout_s=120)

    async def on_success(self, ctx: Context, task: Task) -> None:
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                return
            vm.task_state, vm.error = None, None
            events.publish(
                s, "vm.resized", "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id,
                name=vm.name, vcpus=vm.vcpus, ram_mb=vm.ram_mb, disk_gb=vm.disk_gb, live=True,
            )  # fmt: skip

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """The old size on the row, its quota and its claim (what the host did plug stays plugged
        until the next fresh boot: QEMU cannot take a CPU or DIMM back without the guest's help)."""
        old = task.params["old"]
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                return
            quota.resize(s, "vm", vm.id, vm_amounts(old["vcpus"], old["ram_mb"], old["disk_gb"]), None)
            placement.resize_claim(s, vm, old["vcpus"], old["ram_mb"])
            vm.vcpus, vm.ram_mb, vm.disk_gb = old["vcpus"], old["ram_mb"], old["disk_gb"]
            vm.flavor_id, vm.hotplug = old["flavor_id"], old["hotplug"]
            vm.task_state, vm.error = None, error


HANDLERS: list[TaskHandler] = [ResizeVMLive()]
