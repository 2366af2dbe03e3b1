"""Placement: filter the hosts that can take a VM, weigh the rest, claim atomically.

The claim is the VM row's ``host_id`` written in the same transaction that
re-counts the host's allocations, so two concurrent creates cannot both take
the last slot (SQLite serialises writers; PostgreSQL locks the host row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from novacron.db.base import utcnow
from novacron.db.models import VM, Host

HEARTBEAT_GRACE = timedelta(seconds=30)


class NoValidHost(Exception):
    pass


@dataclass(frozen=True)
class HostUsage:
    host: Host
    vcpus_used: int
    ram_mb_used: int

    @property
    def vcpus_free(self) -> float:
        return self.host.cpus * self.host.cpu_allocation_ratio - self.vcpus_used

    @property
    def ram_mb_free(self) -> float:
        return self.host.ram_mb * self.host.ram_allocation_ratio - self.ram_mb_used


def host_usage(session: Session, host: Host, exclude_vm: str | None = None) -> HostUsage:
    stmt = select(func.coalesce(func.sum(VM.vcpus), 0), func.coalesce(func.sum(VM.ram_mb), 0)).where(
        VM.host_id == host.id
    )
    if exclude_vm:
        stmt = stmt.where(VM.id != exclude_vm)
    vcpus, ram = session.execute(stmt).one()
    return HostUsage(host, int(vcpus), int(ram))


def place(session: Session, vm: VM) -> Host:
    """Pick a host for ``vm`` and claim it; raise NoValidHost with the reason each host was refused."""
    now = utcnow()
    stmt = select(Host).where(Host.state == "up").order_by(Host.name)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    reasons: list[str] = []
    fits: list[HostUsage] = []
    for host in session.scalars(stmt):
        if host.last_heartbeat is None or now - host.last_heartbeat > HEARTBEAT_GRACE:
            reasons.append(f"{host.name}: no heartbeat")
            continue
        usage = host_usage(session, host, exclude_vm=vm.id)
        if usage.vcpus_free < vm.vcpus:
            reasons.append(f"{host.name}: {usage.vcpus_free:g} vCPU free, {vm.vcpus} needed")
        elif usage.ram_mb_free < vm.ram_mb:
            reasons.append(f"{host.name}: {usage.ram_mb_free:g} MiB RAM free, {vm.ram_mb} needed")
        else:
            fits.append(usage)
    if not fits:
        detail = "; ".join(reasons) or "no host is registered and up"
        raise NoValidHost(f"No host can take this VM ({detail}).")
    # spread: the host with the most free RAM relative to its size wins
    best = max(fits, key=lambda u: (u.ram_mb_free / max(u.host.ram_mb, 1), u.vcpus_free))
    vm.host_id = best.host.id
    session.flush()
    return best.host
