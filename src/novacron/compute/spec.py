"""Turn a VM row and its image into the driver's InstanceSpec."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.compute import hardware, live_resize, storage
from novacron.compute.pools import attachment
from novacron.db.models import VM, Image, Volume
from novacron.network.service import nics_of

#: the volume states a VM starts with (attaching and detaching ones have the VM busy; a start
#: during a snapshot's ``qemu-img`` fails on its lock rather than start without the disk)
ATTACHED = ("in-use", "extending", "limiting", "snapshotting", "cloning")


def spec_payload(session: Session, vm: VM) -> dict[str, Any]:
    """The instance spec as the agent receives it: image by id (the agent finds or fetches the files)."""
    image = session.get(Image, vm.image_id) if vm.image_id else None
    if image is None or image.status != "active" or image.disk_format is None:
        raise ValueError(f"image {vm.image_id} of VM {vm.name} is missing or not active")
    spec: dict[str, Any] = {
        "id": vm.id,
        "name": vm.name,
        "vcpus": vm.vcpus,
        "ram_mb": vm.ram_mb,
        "disk_gb": vm.disk_gb,
        "image_id": image.id,
        "image_sha256": image.checksum_sha256,
        "image_format": image.disk_format,
        "has_kernel": image.has_kernel,
        "has_initrd": image.has_initrd,
        "kernel_cmdline": image.kernel_cmdline,
        "mac": storage.mac_for(vm.id),
        "user_data": vm.user_data,
        "meta_data": {"instance-id": vm.id, "local-hostname": vm.name},
        **hardware.of_vm(vm.hardware),
        **live_resize.spec_fields(vm),
    }
    nics = nics_of(session, vm.id)
    if nics:  # NICs on tenant networks (a VM without any keeps the default bridge's NIC)
        spec["nics"] = nics
    volumes = session.scalars(
        select(Volume).where(Volume.vm_id == vm.id, Volume.status.in_(ATTACHED)).order_by(Volume.created_at)
    )
    if vols := [asdict(attachment(v.pool, v.id, v.location, v.io_limits, v.boot)) for v in volumes]:
        spec["volumes"] = vols
    if (vm.meta or {}).get("dr_isolated") == "true":  # a DR dry run's VM: no NIC at all
        spec["isolated"] = True
    return {"spec": spec}
