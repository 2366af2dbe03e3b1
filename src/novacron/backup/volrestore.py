"""The volumes of a VM backup restored into a new VM: new volume rows, their files, their quota.

A snapshot lists its disks (``BackupSnapshot.disks``: ``vda`` and one entry per volume, by the
volume's id). Restoring it into a new VM makes one new volume per backed-up volume, in the new
VM's project (the snapshot's), charged to its ``volumes``/``volume_gb`` quota like any volume
(``compute/volumes.py``), claimed by the new VM as an attach to a stopped VM is recorded
(``in-use``, ``vm_id``, ``boot`` as the original). Its file is made in its pool by the restore
task just before the agent writes the backed-up bytes into it (``agentops.restore_disk``), and the
VM then starts with it. A failed restore gives the volumes back (file, quota, row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute.pools import attachment, pool_for
from novacron.db.base import new_id
from novacron.db.models import VM, BackupSnapshot, Project, Volume
from novacron.identity.principal import Principal
from novacron.quota import enforce as quota
from novacron.quota.registry import volume_amounts
from novacron.quota.tree import node_for_ref

if TYPE_CHECKING:
    from novacron.context import Context
    from novacron.virt.base import VolumeAttachment

GIB = 1 << 30


def volume_disks(snap: BackupSnapshot) -> list[dict[str, Any]]:
    """The snapshot's disks that are volumes (the root disk ``vda`` left out)."""
    return [d for d in snap.disks or [] if d.get("volume_id")]


def root_size(snap: BackupSnapshot) -> int:
    """The size of the snapshot's root disk ``vda`` (0 for a boot-from-volume VM's backup)."""
    disks = snap.disks or [{"name": "vda", "size": snap.size_bytes}]
    return sum(int(d.get("size") or 0) for d in disks if d.get("name") == "vda")


def _free_name(session: Session, project_id: str, name: str, volume_id: str) -> str:
    """``name``, or with the new volume's id in it when the project has a volume of that name."""
    taken = session.scalar(select(Volume.id).where(Volume.project_id == project_id, Volume.name == name[:64]))
    return (name[:50] + "-" + volume_id[-8:]) if taken else name[:64]


def new_volumes(
    session: Session, snap: BackupSnapshot, vm: VM, principal: Principal | None
) -> list[dict[str, str]]:
    """A new volume row for each backed-up volume, claimed by ``vm`` and charged to its project;
    what the restore task writes into which (``source``: the snapshot's disk, ``volume_id``)."""
    project = session.get(Project, vm.project_id)
    assert project is not None
    made = []
    for i, disk in enumerate(volume_disks(snap)):
        original = session.get(Volume, str(disk["volume_id"]))
        size_gb = max(1, -(-int(disk["size"]) // GIB))
        volume_id = new_id("vol")
        pool = original.pool if original is not None else "file"
        volume = Volume(
            id=volume_id,
            project_id=vm.project_id,
            tenant_id=vm.tenant_id,
            name=_free_name(session, vm.project_id, f"{vm.name}-vol{i}", volume_id),
            size_gb=size_gb,
            pool=pool,
            location="",
            status="creating",
            source_volume_id=str(disk["volume_id"]),
            vm_id=vm.id,
            boot=bool(original.boot) if original is not None else disk.get("device") == "vda",
            io_limits=dict(original.io_limits) if original is not None else {},
        )
        session.add(volume)
        session.flush()
        if principal is not None:
            quota.charge(session, principal, project, "volume", volume_id, volume_amounts(size_gb))
        else:
            node = node_for_ref(session, project_id=vm.project_id)  # a DR recovery: counted, not refused
            quota.charge_node(session, node, "volume", volume_id, volume_amounts(size_gb))
        events.publish(
            session,
            "volume.created",
            "volume",
            volume_id,
            tenant_id=vm.tenant_id,
            project_id=vm.project_id,
            size_gb=size_gb,
            restored_from=snap.id,
        )
        made.append({"source": str(disk["name"]), "volume_id": volume_id})
    return made


async def allocate(ctx: Context, made: list[dict[str, str]]) -> list[VolumeAttachment]:
    """Make each new volume's file in its pool (again: a step run twice finds it) and attach it
    to the stopped VM; how the VM's host opens each."""
    found: list[VolumeAttachment] = []
    for item in made:
        with ctx.db.session() as s:
            volume = s.get(Volume, item["volume_id"])
            assert volume is not None
            pool = pool_for(ctx.settings, volume.pool)
            if volume.status == "creating":
                volume.location = pool.location(volume.id)
            size_gb, status = volume.size_gb, volume.status
        if status == "creating":
            await pool.create(item["volume_id"], size_gb, None)
        with ctx.db.session() as s:
            volume = s.get(Volume, item["volume_id"])
            assert volume is not None
            volume.status = "in-use"
            found.append(attachment(volume.pool, volume.id, volume.location, volume.io_limits, volume.boot))
            events.publish(
                s, "volume.attached", "volume", volume.id, tenant_id=volume.tenant_id,
                project_id=volume.project_id, vm_id=volume.vm_id,
            )  # fmt: skip
    return found


def release(ctx: Context, made: list[dict[str, str]]) -> None:
    """A failed restore: the new volumes go (file, quota, row)."""
    for item in made:
        with ctx.db.session() as s:
            volume = s.get(Volume, item["volume_id"])
            if volume is None:
                continue
            if volume.location:
                pool_for(ctx.settings, volume.pool).delete(volume.id, volume.location)
            quota.release(s, "volume", volume.id)
            s.delete(volume)
