"""The volumes of a VM backup restored into a new VM: new volume rows, their files, their quota.

A snapshot lists its disks (``BackupSnapshot.disks``: ``vda`` and one entry per volume, by the
volume's id). Restoring it into a new VM makes one new volume per backed-up volume, in the new
VM's project (the snapshot's), charged to its ``volumes``/``volume_gb`` quota like any volume
(``compute/volumes.py``), claimed by the new VM as an attach to a stopped VM is recorded
(``in-use``, ``vm_id``, ``boot`` as the original). Its file is made in its pool by the restore
task just before the agent writes the backed-up bytes into it (``agentops.restore_disk``), and the
VM then starts with it. A failed restore gives the volumes back (file, quota, row). A DR
fail-back (``home_volumes``) writes each recovered volume over the original volume it came from, or
into a new one made the same way when that is no longer the original VM's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute.pools import attachment, pool_for
from novacron.compute.spec import ATTACHED
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


def _new_row(  # noqa: PLR0913 - a volume row's own fields
    session: Session,
    vm: VM,
    name: str,
    size_gb: int,
    pool: str,
    source_volume_id: str,
    boot: bool,
    io_limits: dict[str, Any],
    principal: Principal | None,
    restored_from: str,
) -> str:
    """A new volume claimed by the stopped ``vm``, its file not made yet, charged to its project (a DR
    run has no principal: counted, not refused)."""
    project = session.get(Project, vm.project_id)
    assert project is not None
    volume_id = new_id("vol")
    volume = Volume(
        id=volume_id,
        project_id=vm.project_id,
        tenant_id=vm.tenant_id,
        name=_free_name(session, vm.project_id, name, volume_id),
        size_gb=size_gb,
        pool=pool,
        location="",
        status="creating",
        source_volume_id=source_volume_id,
        vm_id=vm.id,
        boot=boot,
        io_limits=io_limits,
    )
    session.add(volume)
    session.flush()
    if principal is not None:
        quota.charge(session, principal, project, "volume", volume_id, volume_amounts(size_gb))
    else:
        node = node_for_ref(session, project_id=vm.project_id)
        quota.charge_node(session, node, "volume", volume_id, volume_amounts(size_gb))
    events.publish(
        session, "volume.created", "volume", volume_id, tenant_id=vm.tenant_id, project_id=vm.project_id,
        size_gb=size_gb, restored_from=restored_from,
    )  # fmt: skip
    return volume_id


def new_volumes(
    session: Session, snap: BackupSnapshot, vm: VM, principal: Principal | None
) -> list[dict[str, str]]:
    """A new volume row for each backed-up volume, claimed by ``vm`` and charged to its project;
    what the restore task writes into which (``source``: the snapshot's disk, ``volume_id``)."""
    made = []
    for i, disk in enumerate(volume_disks(snap)):
        original = session.get(Volume, str(disk["volume_id"]))
        volume_id = _new_row(
            session, vm, f"{vm.name}-vol{i}", max(1, -(-int(disk["size"]) // GIB)),
            original.pool if original is not None else "file", str(disk["volume_id"]),
            bool(original.boot) if original is not None else disk.get("device") == "vda",
            dict(original.io_limits) if original is not None else {}, principal, snap.id,
        )  # fmt: skip
        made.append({"source": str(disk["name"]), "volume_id": volume_id})
    return made


def home_volumes(session: Session, recovered_vm_id: str, original: VM) -> list[dict[str, str]]:
    """A DR fail-back: where each volume attached to the recovered VM goes home. The recovered volume
    was made by the failover from the original's volume (``source_volume_id``): when that volume is
    still attached to the original VM, the backed-up bytes are written over it (``kind`` ``home``);
    else a new volume is made for the original like a restore's (``kind`` ``new``; its file is made by
    ``allocate`` and it is given back by ``release`` when the fail-back fails). ``source`` is the
    recovered volume's id: its disk's name in the fail-back's backup."""
    rows = session.scalars(
        select(Volume)
        .where(Volume.vm_id == recovered_vm_id, Volume.status.in_(ATTACHED))
        .order_by(Volume.created_at)
    ).all()
    plan = []
    for i, rv in enumerate(rows):
        home = session.get(Volume, rv.source_volume_id) if rv.source_volume_id else None
        if home is not None and home.vm_id == original.id:
            plan.append({"source": rv.id, "volume_id": home.id, "kind": "home"})
            continue
        volume_id = _new_row(
            session, original, f"{original.name}-vol{i}", rv.size_gb,
            home.pool if home is not None else rv.pool, rv.id, rv.boot, dict(rv.io_limits), None,
            recovered_vm_id,
        )  # fmt: skip
        plan.append({"source": rv.id, "volume_id": volume_id, "kind": "new"})
    return plan


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
