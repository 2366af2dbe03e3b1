"""Boot from volume: a VM whose root disk is a volume of its project, not a copy of its image.

The volume is claimed in the VM's create transaction (``boot``, ``in-use``, its ``vm_id``), so the
VM's first start plugs it in as the first disk with ``bootindex=1`` in place of the image's copy
(``virt/cmdline.py``). A volume in use elsewhere (attached, busy, or another VM's root disk) is
refused. The image still gives what the volume cannot: a kernel and initrd for an image booted
directly; without an image named, the volume's source image is used.

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


def claimable(session: Session, principal: Principal, project: Project, ref: str | None) -> Volume | None:
    """The volume ``ref`` of ``project`` (None: no boot volume), free to become a root disk;
    Conflict when it is in use."""
    if ref is None:
        return None
    volume = resolve(session, principal, Volume, ref, named=Named("boot_volume"))
    if volume.project_id != project.id:
        raise InvalidInput("boot_volume", f"volume '{volume.name}' is in another project than the VM")
    if volume.vm_id is not None:
        vm = session.get(VM, volume.vm_id)
        raise Conflict(
            f"Volume '{volume.name}' is in use by VM '{vm.name if vm else volume.vm_id}'"
            f"{' as its root disk' if volume.boot else ''}; a boot volume must be available "
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


def claim(volume: Volume | None, vm: VM) -> None:
    """Make the volume the VM's root disk (its first start plugs it in)."""
    if volume is None:
        return
    volume.vm_id, volume.boot, volume.status, volume.error = vm.id, True, "in-use", None
