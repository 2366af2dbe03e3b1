"""Capacity reservations (advance booking), after OpenStack Blazar's leases.

A booking names a project, an amount of vCPU and RAM and a window. It is placed at booking time on
one host whose capacity (``cpus * ratio``, ``ram_mb * ratio``) still holds it next to every booking
of that host overlapping the window; otherwise it is refused with each host's reason. While its
window is open the reservation is *active*: the host's ``vcpus_reserved``/``ram_mb_reserved``
counters hold what its project has not used yet, and every other project's placement claim counts
them as taken (``compute/placement/claims.py``). The project's own VMs are placed into it first:
the claim moves their size from "reserved" to "used" on the host in one transaction, and a delete
gives it back to the reservation. At the end of the window the reservation expires, an unused
remainder is freed, and its VMs keep running as ordinary allocations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from novacron.compute.placement.view import view_for
from novacron.db.base import new_id, utcnow
from novacron.db.models import Allocation, CapacityReservation, Host, Project
from novacron.errors import Conflict, FieldError, InvalidInput, NameTaken


def _overlapping(session: Session, host_id: str, start: datetime, end: datetime) -> tuple[int, int, int]:
    """Sum of bookings on ``host_id`` overlapping [start, end) (a bound on their peak), and their count."""
    rows = session.execute(
        select(CapacityReservation.vcpus, CapacityReservation.ram_mb).where(
            CapacityReservation.host_id == host_id,
            CapacityReservation.status.in_(("pending", "active")),
            CapacityReservation.starts_at < end,
            CapacityReservation.ends_at > start,
        )
    ).all()
    return sum(r.vcpus for r in rows), sum(r.ram_mb for r in rows), len(rows)


@dataclass(frozen=True)
class ReservationSpec:
    """A booking as the caller asked for it: how much, when, for which project, on which host."""

    name: str
    vcpus: int
    ram_mb: int
    starts_at: datetime
    ends_at: datetime
    #: None: the caller's only project
    project_id: str | None = None
    #: a host's id or name (platform administrators); None: the first host with room
    host: str | None = None


def book(
    session: Session, project: Project, spec: ReservationSpec, *, detailed: bool = True
) -> CapacityReservation:
    """Book room on a host for the window. ``detailed``: a refusal gives each host's bookings and
    free amounts (platform administrators); otherwise only that the host is full, since those
    amounts are other tenants' bookings and VMs."""
    now = utcnow()
    start, end = spec.starts_at, spec.ends_at
    if end <= start:
        raise InvalidInput("ends_at", "must be after starts_at")
    if end <= now:
        raise InvalidInput("ends_at", "is in the past")
    if session.scalar(
        select(CapacityReservation.id).where(
            CapacityReservation.project_id == project.id, CapacityReservation.name == spec.name
        )
    ):
        raise NameTaken("reservation", spec.name, "name")
    starts_now = start <= now
    reasons = []
    chosen = None
    for host in _candidate_hosts(session, spec.host):
        reason = _why_full(session, host, spec, starts_now, detailed)
        if reason is None:
            chosen = host
            break
        reasons.append(reason)
    if chosen is None:
        raise Conflict(
            f"No host can hold {spec.vcpus} vCPU and {spec.ram_mb} MiB from {start.isoformat()} to "
            f"{end.isoformat()}: " + "; ".join(reasons) + ".",
            fields=[FieldError("body", "conflicts with existing bookings", part="")],
        )
    res = CapacityReservation(
        id=new_id("rsv"),
        tenant_id=project.tenant_id,
        project_id=project.id,
        name=spec.name,
        host_id=chosen.id,
        vcpus=spec.vcpus,
        ram_mb=spec.ram_mb,
        starts_at=start,
        ends_at=end,
        status="pending",
    )
    session.add(res)
    session.flush()
    if starts_now:
        _activate(session, res)
    return res


def _candidate_hosts(session: Session, host_ref: str | None) -> list[Host]:
    """The hosts a booking may go to, in a stable order (only ``host_ref`` when it names one)."""
    stmt = select(Host).where(Host.state != "down").order_by(Host.id)
    if host_ref is not None:
        stmt = stmt.where((Host.id == host_ref) | (Host.name == host_ref))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # bookings of one host are decided one at a time
    hosts = list(session.scalars(stmt))
    if not hosts:
        raise InvalidInput("host", f"no host '{host_ref}'" if host_ref else "no host is registered")
    return hosts


def _why_full(
    session: Session, host: Host, spec: ReservationSpec, starts_now: bool, detailed: bool
) -> str | None:
    """Why ``host`` cannot hold the booking (its window's bookings, or its free room when the window
    is open already), or None when it can."""
    vcpus, ram_mb = spec.vcpus, spec.ram_mb
    cap_v, cap_r = host.cpus * host.cpu_allocation_ratio, host.ram_mb * host.ram_allocation_ratio
    bv, br, count = _overlapping(session, host.id, spec.starts_at, spec.ends_at)
    if bv + vcpus > cap_v or br + ram_mb > cap_r:
        return (
            f"{host.name}: {count} booking(s) hold {bv} vCPU, {br} MiB in that window; capacity "
            f"{cap_v:g} vCPU, {cap_r:g} MiB"
            if detailed
            else f"{host.name}: booked up in that window"
        )
    if starts_now and (
        host.vcpus_used + host.vcpus_reserved + vcpus > cap_v
        or host.ram_mb_used + host.ram_mb_reserved + ram_mb > cap_r
    ):
        return (
            f"{host.name}: only {cap_v - host.vcpus_used - host.vcpus_reserved:g} vCPU, "
            f"{cap_r - host.ram_mb_used - host.ram_mb_reserved:g} MiB free now"
            if detailed
            else f"{host.name}: too little free room now"
        )
    return None


def _activate(session: Session, res: CapacityReservation) -> None:
    session.execute(
        update(Host)
        .where(Host.id == res.host_id)
        .values(
            vcpus_reserved=Host.vcpus_reserved + res.vcpus, ram_mb_reserved=Host.ram_mb_reserved + res.ram_mb
        )
        .execution_options(synchronize_session=False)
    )
    res.status = "active"
    view_for(session).invalidate()


def end(session: Session, res: CapacityReservation, status: str) -> None:
    """Expire or cancel: free the unused remainder; its VMs stay as ordinary allocations."""
    if res.status == "active":
        session.execute(
            update(Host)
            .where(Host.id == res.host_id)
            .values(
                vcpus_reserved=Host.vcpus_reserved - (res.vcpus - res.vcpus_used),
                ram_mb_reserved=Host.ram_mb_reserved - (res.ram_mb - res.ram_mb_used),
            )
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(Allocation)
            .where(Allocation.reservation_id == res.id)
            .values(reservation_id=None, res_vcpus=0, res_ram_mb=0)
        )
        view_for(session).invalidate()
    res.status = status


def tick(session: Session, now: datetime | None = None) -> dict[str, int]:
    """Open the windows that began and close those that ended (the reservation controller)."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(CapacityReservation)
            .where(CapacityReservation.status == "pending", CapacityReservation.starts_at <= now)
            .order_by(CapacityReservation.host_id, CapacityReservation.id)
        )
    )
    for res in due:
        if res.ends_at <= now:
            res.status = "expired"
        else:
            _activate(session, res)
    ended = list(
        session.scalars(
            select(CapacityReservation)
            .where(CapacityReservation.status == "active", CapacityReservation.ends_at <= now)
            .order_by(CapacityReservation.host_id, CapacityReservation.id)
        )
    )
    for res in ended:
        end(session, res, "expired")
    session.flush()
    return {"activated": len(due), "expired": len(ended)}


def claim_through(session: Session, project_id: str, vcpus: int, ram_mb: int) -> tuple[str, str] | None:
    """Take room for a VM of ``project_id`` from one of its active reservations: ``(reservation,
    host)`` whose counters now include it, or None when none has room left (or its host is down)."""
    conn = session.connection()
    candidates = conn.execute(
        select(CapacityReservation.id, CapacityReservation.host_id)
        .join(Host, Host.id == CapacityReservation.host_id)
        .where(
            CapacityReservation.project_id == project_id,
            CapacityReservation.status == "active",
            CapacityReservation.vcpus - CapacityReservation.vcpus_used >= vcpus,
            CapacityReservation.ram_mb - CapacityReservation.ram_mb_used >= ram_mb,
            Host.state == "up",
        )
        .order_by(CapacityReservation.ends_at, CapacityReservation.id)
    ).all()
    for rid, host_id in candidates:
        took = cast(
            CursorResult[Any],
            conn.execute(
                update(CapacityReservation)
                .where(
                    CapacityReservation.id == rid,
                    CapacityReservation.status == "active",
                    CapacityReservation.vcpus_used + vcpus <= CapacityReservation.vcpus,
                    CapacityReservation.ram_mb_used + ram_mb <= CapacityReservation.ram_mb,
                )
                .values(
                    vcpus_used=CapacityReservation.vcpus_used + vcpus,
                    ram_mb_used=CapacityReservation.ram_mb_used + ram_mb,
                )
            ),
        )
        if took.rowcount != 1:
            continue
        # the room is already counted as reserved on the host: move it from reserved to used
        conn.execute(
            update(Host)
            .where(Host.id == host_id)
            .values(
                vcpus_used=Host.vcpus_used + vcpus,
                ram_mb_used=Host.ram_mb_used + ram_mb,
                vcpus_reserved=Host.vcpus_reserved - vcpus,
                ram_mb_reserved=Host.ram_mb_reserved - ram_mb,
            )
        )
        return rid, host_id
    return None


def give_back(session: Session, reservation_id: str, host_id: str, vcpus: int, ram_mb: int) -> bool:
    """A VM placed through a still-active reservation returns its room to it (not to everyone)."""
    conn = session.connection()
    result = cast(
        CursorResult[Any],
        conn.execute(
            update(CapacityReservation)
            .where(CapacityReservation.id == reservation_id, CapacityReservation.status == "active")
            .values(
                vcpus_used=CapacityReservation.vcpus_used - vcpus,
                ram_mb_used=CapacityReservation.ram_mb_used - ram_mb,
            )
        ),
    )
    if result.rowcount != 1:
        return False
    conn.execute(
        update(Host)
        .where(Host.id == host_id)
        .values(vcpus_reserved=Host.vcpus_reserved + vcpus, ram_mb_reserved=Host.ram_mb_reserved + ram_mb)
    )
    return True
