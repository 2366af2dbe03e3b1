"""The resource registry: what can be limited, and how rows of other areas count against it.

A later area registers its resources with one call (``register_resource("volumes", "volumes")``)
and, when its rows should be reconciled and metered, a counter: a function that reads what really
exists and yields ``(kind, resource id, project id, tenant id, amounts)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import (
    VM,
    BackupSnapshot,
    FloatingIP,
    Image,
    LoadBalancer,
    Network,
    Port,
    VmSnapshot,
    Volume,
    VolumeSnapshot,
)

#: VM states metering charges vCPU and RAM for (a stopped VM pays for its disk only)
METERED_STATES = ("running", "paused", "building")


@dataclass(frozen=True)
class Resource:
    name: str
    unit: str
    description: str
    #: what one unit costs per hour is expressed in this unit (``ram_mb`` is billed per GiB-hour)
    billing_unit: str
    #: billing units per counted unit (``ram_mb``: 1/1024 GiB)
    billing_factor: float = 1.0


@dataclass(frozen=True)
class Existing:
    kind: str
    resource_id: str
    project_id: str
    tenant_id: str
    amounts: dict[str, int]
    #: metered only while true (a stopped VM pays for its disk, not its vCPU and RAM)
    running: bool = True


Counter = Callable[[Session], Iterator[Existing]]

RESOURCES: dict[str, Resource] = {}
COUNTERS: dict[str, Counter] = {}
#: resources metered only while their row is running (the rest accrue while the row exists)
RUNTIME_ONLY: set[str] = set()


def register_resource(
    name: str, unit: str, description: str = "", billing_unit: str | None = None, billing_factor: float = 1.0
) -> Resource:
    res = Resource(name, unit, description, billing_unit or unit, billing_factor)
    RESOURCES[name] = res
    return res


def register_counter(kind: str, counter: Counter) -> None:
    COUNTERS[kind] = counter


def known(name: str) -> bool:
    return name in RESOURCES


def vm_amounts(vcpus: int, ram_mb: int, disk_gb: int) -> dict[str, int]:
    return {"vcpus": vcpus, "ram_mb": ram_mb, "disk_gb": disk_gb, "vms": 1}


def volume_amounts(size_gb: int) -> dict[str, int]:
    """A volume holds one ``volumes`` and its size in ``volume_gb`` (Cinder's volumes, gigabytes)."""
    return {"volumes": 1, "volume_gb": size_gb}


def vm_counts(state: str, host_id: str | None, desired_state: str) -> bool:
    """Whether a VM row holds quota: not once its delete was asked, nor after its create failed
    (``error`` with no host: nothing was left of it)."""
    return desired_state != "deleted" and not (state == "error" and host_id is None)


#: ports a project asks for (a VM's NICs, its routers' interfaces); a floating IP's own port and a
#: router's gateway port sit on the external network and count as the floating IP or not at all
CHARGED_PORT_OWNERS = ("compute", "router_interface")
GIB = 2**30


def backup_amounts(size_bytes: int) -> dict[str, int]:
    """A backup holds its disk's logical size, in whole GiB (as Cinder's backup_gigabytes)."""
    return {"backup_storage_gb": max(1, -(-size_bytes // GIB))}


def _rows(
    session: Session, kind: str, model: Any, *where: Any, amounts: Callable[[Any], dict[str, int]]
) -> Iterator[Existing]:
    row: Any
    for row in session.scalars(select(model).where(*where)):
        yield Existing(kind, row.id, row.project_id, row.tenant_id, amounts(row))


def _networks(session: Session) -> Iterator[Existing]:
    return _rows(session, "network", Network, amounts=lambda _: {"networks": 1})


def _ports(session: Session) -> Iterator[Existing]:
    return _rows(session, "port", Port, Port.owner.in_(CHARGED_PORT_OWNERS), amounts=lambda _: {"ports": 1})


def _floating_ips(session: Session) -> Iterator[Existing]:
    return _rows(session, "floating_ip", FloatingIP, amounts=lambda _: {"floating_ips": 1})


def _loadbalancers(session: Session) -> Iterator[Existing]:
    return _rows(session, "loadbalancer", LoadBalancer, amounts=lambda _: {"load_balancers": 1})


def _snapshots(session: Session) -> Iterator[Existing]:
    """Images made from a VM's disk, unless the snapshot failed (its row stays, in ``error``)."""
    return _rows(
        session,
        "snapshot",
        Image,
        Image.snapshot_of.is_not(None),
        Image.status != "error",
        amounts=lambda _: {"snapshots": 1},
    )


def _vm_snapshots(session: Session) -> Iterator[Existing]:
    """Live snapshots of VMs (compute/vm_snapshots.py): one ``snapshots`` each, like an image one."""
    return _rows(session, "vm_snapshot", VmSnapshot, amounts=lambda _: {"snapshots": 1})


def _backups(session: Session) -> Iterator[Existing]:
    return _rows(
        session,
        "backup",
        BackupSnapshot,
        BackupSnapshot.state == "available",
        amounts=lambda r: backup_amounts(r.size_bytes),
    )


def _volumes(session: Session) -> Iterator[Existing]:
    """Volumes, unless their create failed (the row stays, in ``error``, holding nothing)."""
    return _rows(
        session, "volume", Volume, Volume.status != "error", amounts=lambda r: volume_amounts(r.size_gb)
    )


def _volume_snapshots(session: Session) -> Iterator[Existing]:
    return _rows(
        session,
        "volume_snapshot",
        VolumeSnapshot,
        VolumeSnapshot.status != "error",
        amounts=lambda _: {"volume_snapshots": 1},
    )


def _vms(session: Session) -> Iterator[Existing]:
    rows = session.execute(
        select(
            VM.id,
            VM.project_id,
            VM.tenant_id,
            VM.vcpus,
            VM.ram_mb,
            VM.disk_gb,
            VM.state,
            VM.host_id,
            VM.desired_state,
        )
    )
    for r in rows:
        if vm_counts(r.state, r.host_id, r.desired_state):
            yield Existing(
                "vm",
                r.id,
                r.project_id,
                r.tenant_id,
                vm_amounts(r.vcpus, r.ram_mb, r.disk_gb),
                running=r.state in METERED_STATES,
            )


for _name, _unit, _desc, _bunit, _factor in (
    ("vcpus", "vCPU", "virtual CPUs of VMs", "vCPU", 1.0),
    ("ram_mb", "MiB", "RAM of VMs", "GiB", 1 / 1024),
    ("disk_gb", "GiB", "root disks of VMs", "GiB", 1.0),
    ("vms", "VMs", "virtual machines", "VM", 1.0),
    ("snapshots", "snapshots", "VM snapshots", "snapshot", 1.0),
    ("networks", "networks", "tenant networks", "network", 1.0),
    ("ports", "ports", "network ports", "port", 1.0),
    ("floating_ips", "IPs", "floating IPs", "IP", 1.0),
    ("backup_storage_gb", "GiB", "backup storage", "GiB", 1.0),
    ("load_balancers", "LBs", "load balancers", "LB", 1.0),
    ("volumes", "volumes", "block storage volumes", "volume", 1.0),
    ("volume_gb", "GiB", "size of volumes", "GiB", 1.0),
    ("volume_snapshots", "snapshots", "snapshots of volumes", "snapshot", 1.0),
):
    register_resource(_name, _unit, _desc, _bunit, _factor)
RUNTIME_ONLY.update({"vcpus", "ram_mb"})
register_counter("vm", _vms)
for _kind, _counter in (
    ("network", _networks),
    ("port", _ports),
    ("floating_ip", _floating_ips),
    ("loadbalancer", _loadbalancers),
    ("snapshot", _snapshots),
    ("vm_snapshot", _vm_snapshots),
    ("backup", _backups),
    ("volume", _volumes),
    ("volume_snapshot", _volume_snapshots),
):
    register_counter(_kind, _counter)
