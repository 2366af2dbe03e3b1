"""The attached volumes of a VM on the move: which ones are copied, and their rows following.

The source names each attached volume's file, storage id and size; the destination answers, per
file, whether it reaches it on the same storage (``shared``: kept) or not (``local``: copied over
NBD during a live migration, see ``virt.volmove``). After the switch, a copied volume's row names
its path on the new host, and the source's copy is removed with the source instance. A cold
migration copies them too: their files follow the root disk on its connection (``virt/coldmove.py``).

Which volumes: the source reads those its VM runs with from ``launch.json``, and is also given the
``file`` pool locations of the rows (``files``): a stopped VM may have had a volume attached since
its last start. An ``rbd`` volume is never copied: every host of the cluster reaches the pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from novacron import events
from novacron.db.models import Volume

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def files(s: Session, vm_id: str) -> tuple[str, ...]:
    """The files of the VM's ``file`` pool volumes (an ``rbd`` volume has none to move)."""
    rows = s.scalars(select(Volume).where(Volume.vm_id == vm_id, Volume.pool == "file")).all()
    return tuple(sorted(r.location for r in rows if r.location))


def plan(
    s: Session, vm_id: str, source: dict[str, Any], modes: dict[str, str]
) -> tuple[dict[str, int], dict[str, str]]:
    """The volumes to copy (id -> virtual size) and where each is now (id -> source path)."""
    sizes: dict[str, dict[str, Any]] = source.get("volumes", {})
    rows = s.scalars(select(Volume).where(Volume.vm_id == vm_id)).all()
    copies, sources = {}, {}
    for row in rows:
        if row.location in sizes and modes.get(row.location) == "local":
            copies[row.id] = int(sizes[row.location]["size"])
            sources[row.id] = row.location
    return copies, sources


def follow(s: Session, moved: dict[str, str], target_host_id: str) -> None:
    """The copied volumes' rows name their file on the new host (in the switch's transaction)."""
    for volume_id, path in moved.items():
        row = s.get(Volume, volume_id)
        if row is None or row.location == path:
            continue
        row.location = path
        events.publish(
            s,
            "volume.moved",
            "volume",
            row.id,
            tenant_id=row.tenant_id,
            project_id=row.project_id,
            name=row.name,
            host_id=target_host_id,
        )
