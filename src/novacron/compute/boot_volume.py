"""Volumes named at a VM's create: its boot volume, and data volumes attached from its first start.

Boot from volume: a VM whose root disk is a volume of its project, not a copy of its image.

The volume is claimed in the VM's create transaction (``boot``, ``in-use``, its ``vm_id``), so the
VM's first start plugs it in as the first disk with ``bootindex=1`` in place of the image's copy
(``virt/cmdline.py``). A volume in use elsewhere (attached, busy, or another VM's root disk) is
refused. The image still gives what the volume cannot: a kernel and initrd for an image booted
directly; without an image named, the volume's source image is used.

Data volumes (``volumes``) are claimed in the same transaction as attached volumes of a stopped
VM are (``in-use``, their ``vm_id``): the first start plugs them in after the root disk, in the
order given, as an attach to a running VM would.

Such a VM has no local root disk at all (the driver makes none) and its ``disk_gb`` is
``ROOT_GB`` (0): the flavor's disk is neither made nor charged, the volume's ``volume_gb`` is. Its
disk grows by extending the volume, not by a resize.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from novacron.db.models import VM, Project, Volume
from novacron.db.resolve import Named, resolve
from novacron.errors import Conflict, InvalidInput
from novacron.identity.principal import Principal

#: the ``disk_gb`` of a VM whose root disk is a volume: it has no local disk to size or charge
ROOT_GB = 0


def on_volume(vm: VM) -> bool:
    """The VM's root disk is a volume (boot from volume)."""
    return vm.disk_gb == ROOT_GB


def keep_disk(vm: VM, disk_gb: int | None) -> None:
    """Refuse a resize that asks a boot-from-volume VM for a local disk size."""
    if on_volume(vm) and disk_gb:
        raise InvalidInput(
            "disk_gb",
            f"VM '{vm.name}' boots from a volume: extend the volume instead (novacron volume extend)",
        )


def claimable(
    session: Session, principal: Principal, project: Project, ref: str | None, field: str = "boot_volume"
) -> Volume | None:
    """The volume ``ref`` of ``project`` (None: no volume), free to be claimed by a new VM;
    Conflict when it is in use. ``field``: where the reference came in."""
    if ref is None:
        return None
    volume = resolve(session, principal, Volume, ref, named=Named(field))
    if volume.project_id != project.id:
        raise InvalidInput(field, f"volume '{volume.name}' is in another project than the VM")
    if volume.vm_id is not None:
        vm = session.get(VM, volume.vm_id)
        raise Conflict(
            f"Volume '{volume.name}' is in use by VM '{vm.name if vm else volume.vm_id}'"
            f"{' as its root disk' if volume.boot else ''}; a new VM's volumes must be available "
            f"(detach it first: novacron volume detach {volume.name})."
        )
    if volume.status != "available":
        raise Conflict(
            f"Volume '{volume.name}' is {volume.status}, not available; wait for its task to finish."
        )
    return volume


def image_ref(volume: Volume | None, image: str) -> str:
    """The image the VM names (its kernel), else the one the boot volume was copied from."""
    if image:
        return image
    if volume is None:
        raise InvalidInput("image", "give the VM's image (or a boot_volume to boot from)")
    if volume.source_image_id is None:
        raise InvalidInput("image", f"volume '{volume.name}' was not made from an image: name the VM's image")
    return volume.source_image_id


def claim(volume: Volume | None, vm: VM, data: list[Volume] | None = None) -> None:
    """Make ``volume`` the VM's root disk and attach ``data`` (its first start plugs them in)."""
    if volume is not None:
        volume.vm_id, volume.boot, volume.status, volume.error = vm.id, True, "in-use", None
    for attached in data or []:
        attached.vm_id, attached.boot, attached.status, attached.error = vm.id, False, "in-use", None


def claimable_all(
    session: Session, principal: Principal, project: Project, boot_ref: str | None, refs: tuple[str, ...]
) -> tuple[Volume | None, list[Volume]]:
    """The boot volume and the data volumes ``refs``, each free, none named twice."""
    boot = claimable(session, principal, project, boot_ref)
    found: list[Volume] = []
    for i, ref in enumerate(refs):
        volume = claimable(session, principal, project, ref, f"volumes[{i}]")
        assert volume is not None
        if volume in found or volume is boot:
            raise InvalidInput(f"volumes[{i}]", f"volume '{volume.name}' is named twice")
        found.append(volume)
    return boot, found
