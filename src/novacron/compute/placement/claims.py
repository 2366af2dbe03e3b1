"""Claims: the database decides, with one conditional UPDATE per attempt.

A claim adds the VM's vCPUs and RAM to its host's counters only if the result stays within
``cpus * cpu_allocation_ratio`` and ``ram_mb * ram_allocation_ratio`` and the host is up with a
fresh heartbeat::

    UPDATE hosts SET vcpus_used = vcpus_used + :v, ram_mb_used = ram_mb_used + :r
     WHERE id = :h AND state = 'up' AND last_heartbeat >= :cutoff
       AND vcpus_used + :v <= cpus * cpu_allocation_ratio
       AND ram_mb_used + :r <= ram_mb * ram_allocation_ratio

One row updated means the claim won; zero means another claim took the room first (or the host
went into maintenance), and the next candidate is tried. PostgreSQL re-evaluates the WHERE on the
newest row version after waiting for a concurrent writer (READ COMMITTED), SQLite serialises
writers (``BEGIN IMMEDIATE``), so no interleaving over-commits a host. The allocation row and the
VM's ``host_id`` are written in the same transaction, and ``release`` undoes exactly what the
allocation says, once.

Server groups: the group row is locked (``FOR UPDATE``) before its members are read, so two
members placed at the same time see each other and hard (anti-)affinity holds under concurrency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, delete, event, func, insert, select, update
from sqlalchemy.orm import Session, attributes

from novacron.compute.placement.spec import RequestSpec
from novacron.compute.placement.view import CLAIM_CONFLICT, HEARTBEAT_GRACE_S, PlacementView, view_for
from novacron.db.base import utcnow
from novacron.db.models import VM, Allocation, CapacityReservation, Host, ServerGroup
from novacron.quota import reservations

STRATEGIES = ("spread", "pack")
#: NoValidHost lists every host up to this many, then counts reasons
EXPLAIN_HOSTS = 10


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
    """The host's allocated vCPU and RAM (its claim counters), optionally without one VM's share."""
    vcpus, ram = host.vcpus_used, host.ram_mb_used
    if exclude_vm is not None:
        alloc = session.get(Allocation, exclude_vm)
        if alloc is not None and alloc.host_id == host.id:
            vcpus, ram = vcpus - alloc.vcpus, ram - alloc.ram_mb
    return HostUsage(host, vcpus, ram)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


#: built once: compiling the statement per claim costs more than running it
_CLAIM = (
    update(Host)
    .where(
        Host.id == bindparam("h"),
        Host.state == "up",
        Host.last_heartbeat >= bindparam("cutoff", type_=Host.last_heartbeat.type),
        # capacity held by active reservations counts as taken (quota/reservations.py)
        Host.vcpus_used + Host.vcpus_reserved + bindparam("v") <= Host.cpus * Host.cpu_allocation_ratio,
        Host.ram_mb_used + Host.ram_mb_reserved + bindparam("r") <= Host.ram_mb * Host.ram_allocation_ratio,
    )
    .values(vcpus_used=Host.vcpus_used + bindparam("v"), ram_mb_used=Host.ram_mb_used + bindparam("r"))
)


def try_claim(session: Session, host_id: str, vcpus: int, ram_mb: int) -> bool:
    """The conditional UPDATE: True when the host had room and now counts the claim."""
    cutoff = utcnow() - timedelta(seconds=HEARTBEAT_GRACE_S)
    result = cast(
        CursorResult[Any],
        session.connection().execute(_CLAIM, {"h": host_id, "cutoff": cutoff, "v": vcpus, "r": ram_mb}),
    )
    return result.rowcount == 1


@dataclass
class _Group:
    group: ServerGroup
    #: host id -> members already placed there (this VM excluded)
    members: Counter[str]

    def label(self) -> str:
        return (
            f"server group '{self.group.name}' ({self.group.policy}, {'hard' if self.group.hard else 'soft'})"
        )


def _load_group(session: Session, vm: VM) -> _Group | None:
    if vm.server_group_id is None:
        return None
    stmt = select(ServerGroup).where(ServerGroup.id == vm.server_group_id)
    if _is_postgres(session):
        stmt = stmt.with_for_update()  # members of one group are placed one at a time
    group = session.scalar(stmt)
    if group is None:
        return None
    hosts = session.scalars(
        select(VM.host_id).where(VM.server_group_id == group.id, VM.host_id.is_not(None), VM.id != vm.id)
    )
    return _Group(group, Counter(h for h in hosts if h is not None))


def _choose(
    view: PlacementView,
    spec: RequestSpec,
    vm: VM,
    strategy: str,
    group: _Group | None,
    lost: set[int],
) -> int | None:
    v, r = vm.vcpus, vm.ram_mb
    if group is None or not group.members:
        return view.select(spec, v, r, strategy, lost)
    member_idx = {view.by_id[h] for h in group.members if h in view.by_id}
    if group.group.policy == "affinity":
        idx = view.select(spec, v, r, strategy, lost, only=member_idx)
        if idx is None and not group.group.hard:
            idx = view.select(spec, v, r, strategy, lost)
        return idx
    idx = view.select(spec, v, r, strategy, lost | member_idx)
    if idx is None and not group.group.hard:
        # soft anti-affinity: the host with the fewest members that fits
        by_count = sorted(member_idx, key=lambda i: group.members[view.hosts[i].id])
        for i in by_count:
            idx = view.select(spec, v, r, strategy, lost, only=(i,))
            if idx is not None:
                break
    return idx


def claim(session: Session, vm: VM, strategy: str = "spread") -> Host:
    """Choose a host for ``vm`` and claim its resources atomically; idempotent for a placed VM.

    Raises NoValidHost naming why each host (or each class of host) was refused.
    """
    if vm.host_id is not None:
        host = session.get(Host, vm.host_id)
        if host is not None:
            return host
    if vm in session.new:
        session.flush()  # the allocation row references the VM row
    # the project's own active reservation first: its room is kept free for exactly this
    through = reservations.claim_through(session, vm.project_id, vm.vcpus, vm.ram_mb)
    values: dict[str, Any] = {}
    if through is not None:
        reservation_id, host_id = through
        values = {"reservation_id": reservation_id, "res_vcpus": vm.vcpus, "res_ram_mb": vm.ram_mb}
        view_for(session).invalidate()
        view_for(session).count("reservation")
    else:
        host_id = _claim_counters(session, vm, strategy, avoid=frozenset())
    session.execute(
        insert(Allocation).values(
            vm_id=vm.id, host_id=host_id, vcpus=vm.vcpus, ram_mb=vm.ram_mb, created_at=utcnow(), **values
        )
    )
    session.info.setdefault(_CLAIMED, set()).add(vm.id)
    vm.host_id = host_id
    session.flush()
    host = session.get(Host, host_id)
    assert host is not None
    return host


def claim_on(session: Session, vm: VM, host_id: str) -> Host:
    """Claim ``vm``'s resources on this one host (a full clone goes where its source's disk is);
    NoValidHost when it is down or full. Idempotent for a placed VM."""
    if vm.host_id is not None:
        return claim(session, vm)
    if vm in session.new:
        session.flush()
    if not try_claim(session, host_id, vm.vcpus, vm.ram_mb):
        raise NoValidHost(
            f"host {host_id} (where the source's disk is) is down or has no room for "
            f"{vm.vcpus} vCPU and {vm.ram_mb} MiB of RAM"
        )
    session.execute(
        insert(Allocation).values(
            vm_id=vm.id, host_id=host_id, vcpus=vm.vcpus, ram_mb=vm.ram_mb, created_at=utcnow()
        )
    )
    session.info.setdefault(_CLAIMED, set()).add(vm.id)
    view_for(session).invalidate()
    vm.host_id = host_id
    session.flush()
    host = session.get(Host, host_id)
    assert host is not None
    return host


def reserve_elsewhere(
    session: Session, vm: VM, strategy: str = "spread", require_traits: frozenset[str] = frozenset()
) -> Host:
    """For a migration: choose and reserve another host for ``vm`` (every filter and its server
    group's policy apply, plus ``require_traits``: an HA restart needs the host that shares the
    VM's disk storage; its current host is excluded). Only the target's counters are claimed;
    writing ``vm.host_id = target`` later moves the allocation (the ORM hook re-counts it), so the
    caller gives the reservation back first with ``unreserve`` (or on failure).
    """
    avoid = frozenset({vm.host_id}) if vm.host_id else frozenset()
    host = session.get(Host, _claim_counters(session, vm, strategy, avoid, require_traits))
    assert host is not None
    return host


def unreserve(session: Session, host_id: str, vcpus: int, ram_mb: int) -> None:
    """Give back counters claimed by ``reserve_elsewhere`` (or ``try_claim``)."""
    session.execute(
        update(Host)
        .where(Host.id == host_id)
        .values(vcpus_used=Host.vcpus_used - vcpus, ram_mb_used=Host.ram_mb_used - ram_mb)
        .execution_options(synchronize_session=False)
    )
    view_for(session).adjust(host_id, -vcpus, -ram_mb)


def _claim_counters(
    session: Session,
    vm: VM,
    strategy: str,
    avoid: frozenset[str],
    require_traits: frozenset[str] = frozenset(),
) -> str:
    """Decide from the view, claim with the conditional UPDATE, move on when a claim loses."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown placement strategy {strategy!r}")
    group = _load_group(session, vm)
    view = view_for(session)
    view.ensure_fresh(session)
    spec = RequestSpec.from_dict(vm.placement)
    if require_traits:
        spec = replace(spec, required_traits=spec.required_traits | require_traits)
    if view.isolating:
        spec = replace(spec, tenant=vm.tenant_id)
    lost: set[int] = {view.by_id[h] for h in avoid if h in view.by_id}
    while True:
        idx = _choose(view, spec, vm, strategy, group, lost)
        if idx is None:
            break
        host_id = view.hosts[idx].id
        if try_claim(session, host_id, vm.vcpus, vm.ram_mb):
            view.adjust(host_id, vm.vcpus, vm.ram_mb)
            view.count("placed")
            return host_id
        view.count(CLAIM_CONFLICT)
        lost.add(idx)
        view.reload_host(session, host_id)
        if view.stale():  # the host's configuration changed under us: rebuild, keep what lost
            lost_ids = {view.hosts[i].id for i in lost}
            view.refresh(session)
            lost = {view.by_id[h] for h in lost_ids if h in view.by_id}
    view.refresh(session)  # explain from what the database says now
    view.count("no_valid_host")
    raise NoValidHost(_explain(view, spec, vm, group, avoid))


def _explain(
    view: PlacementView, spec: RequestSpec, vm: VM, group: _Group | None, avoid: frozenset[str] = frozenset()
) -> str:
    if not view.hosts:
        return "No host can take this VM: no host is registered."
    reasons = view.explain(spec, vm.vcpus, vm.ram_mb)
    if avoid:
        current = {view.hosts[view.by_id[h]].name for h in avoid if h in view.by_id}
        reasons = [(n, "the VM's current host" if n in current else r) for n, r in reasons]
    if group is not None and group.members:
        members = {view.hosts[view.by_id[h]].name for h in group.members if h in view.by_id}
        if group.group.policy == "anti-affinity":
            reasons = [(n, f"has a member of {group.label()}" if n in members else r) for n, r in reasons]
        else:
            reasons = [(n, r if n in members else f"not the host of {group.label()}") for n, r in reasons]
    if len(reasons) <= EXPLAIN_HOSTS:
        detail = "; ".join(f"{n}: {r}" for n, r in reasons)
    else:
        counts = Counter(r.split(" (")[0] if r.startswith("too little free") else r for _, r in reasons)
        detail = "; ".join(f"{c} host(s): {r}" for r, c in counts.most_common())
    want = f"{vm.vcpus} vCPU, {vm.ram_mb} MiB"
    if spec.to_dict():
        want += f", {spec.describe()}"
    return f"No host can take this VM ({want}): {detail}."


def release(session: Session, vm: VM) -> None:
    """Give back what ``vm`` holds on its host; a second call does nothing."""
    _drop_allocation(session, vm.id)
    vm.host_id = None
    session.flush()


def resize_claim(session: Session, vm: VM, vcpus: int, ram_mb: int) -> None:
    """Grow (conditionally) or shrink a placed VM's allocation to a new size, before the VM row changes.

    Raises NoValidHost when the VM's host lacks room for the growth. A VM not placed holds nothing.
    Call it before writing the new size: the ORM hook then finds the allocation already matching.
    """
    conn = session.connection()
    alloc = conn.execute(
        select(Allocation.host_id, Allocation.vcpus, Allocation.ram_mb).where(Allocation.vm_id == vm.id)
    ).one_or_none()
    if alloc is None:
        return
    dv, dr = vcpus - alloc.vcpus, ram_mb - alloc.ram_mb
    if dv == 0 and dr == 0:
        return
    stmt = update(Host).where(Host.id == alloc.host_id)
    if dv > 0:
        stmt = stmt.where(Host.vcpus_used + Host.vcpus_reserved + dv <= Host.cpus * Host.cpu_allocation_ratio)
    if dr > 0:
        stmt = stmt.where(
            Host.ram_mb_used + Host.ram_mb_reserved + dr <= Host.ram_mb * Host.ram_allocation_ratio
        )
    result = cast(
        CursorResult[Any],
        conn.execute(stmt.values(vcpus_used=Host.vcpus_used + dv, ram_mb_used=Host.ram_mb_used + dr)),
    )
    if result.rowcount != 1:
        name = conn.execute(select(Host.name).where(Host.id == alloc.host_id)).scalar_one()
        # not the host's free amounts: a tenant reads this, and they would show others' VMs
        raise NoValidHost(
            f"Host {name} has too little free room: growing to {vcpus} vCPU, {ram_mb} MiB needs "
            f"{max(dv, 0)} vCPU and {max(dr, 0)} MiB more."
        )
    conn.execute(update(Allocation).where(Allocation.vm_id == vm.id).values(vcpus=vcpus, ram_mb=ram_mb))
    view_for(session).adjust(alloc.host_id, dv, dr)


def _drop_allocation(session: Session, vm_id: str) -> None:
    conn = session.connection()
    row = conn.execute(
        select(
            Allocation.host_id,
            Allocation.vcpus,
            Allocation.ram_mb,
            Allocation.reservation_id,
            Allocation.res_vcpus,
            Allocation.res_ram_mb,
        ).where(Allocation.vm_id == vm_id)
    ).one_or_none()
    if row is None:
        return
    conn.execute(
        update(Host)
        .where(Host.id == row.host_id)
        .values(vcpus_used=Host.vcpus_used - row.vcpus, ram_mb_used=Host.ram_mb_used - row.ram_mb)
    )
    if row.reservation_id is not None:
        reservations.give_back(session, row.reservation_id, row.host_id, row.res_vcpus, row.res_ram_mb)
    conn.execute(delete(Allocation).where(Allocation.vm_id == vm_id))
    view_for(session).adjust(row.host_id, -row.vcpus, -row.ram_mb)


def _adopt(session: Session, vm: VM) -> None:
    """Count a VM someone put on a host without ``claim`` (migration, manual fix): no refusal."""
    assert vm.host_id is not None
    conn = session.connection()
    conn.execute(
        update(Host)
        .where(Host.id == vm.host_id)
        .values(vcpus_used=Host.vcpus_used + vm.vcpus, ram_mb_used=Host.ram_mb_used + vm.ram_mb)
    )
    conn.execute(
        insert(Allocation).values(
            vm_id=vm.id, host_id=vm.host_id, vcpus=vm.vcpus, ram_mb=vm.ram_mb, created_at=utcnow()
        )
    )
    view_for(session).adjust(vm.host_id, vm.vcpus, vm.ram_mb)


#: session.info key: VMs whose allocation ``claim`` already wrote in this flush
_CLAIMED = "placement.claimed"


@event.listens_for(Session, "before_flush")
def _release_deleted(session: Session, _ctx: object, _instances: object) -> None:
    """A deleted VM gives its allocation back (before the FK cascade would drop it unaccounted)."""
    for obj in session.deleted:
        if isinstance(obj, VM):
            _drop_allocation(session, obj.id)


@event.listens_for(Session, "after_flush")
def _follow_vm_rows(session: Session, _ctx: object) -> None:
    """Keep allocations equal to the VM rows, whichever code moved, cleared or resized a VM.

    ``claim`` and ``release`` do their own accounting; this catches the rest (``vm.host_id = None``
    in a rollback, a migration writing the destination, an offline resize of a placed VM).
    """
    claimed: set[str] = session.info.get(_CLAIMED, set())
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, VM):
            continue
        if obj.id in claimed:
            claimed.discard(obj.id)
            continue
        moved = attributes.get_history(obj, "host_id").has_changes()
        resized = (
            attributes.get_history(obj, "vcpus").has_changes()
            or attributes.get_history(obj, "ram_mb").has_changes()
        )
        if obj in session.new:
            if obj.host_id is not None:
                _adopt(session, obj)
            continue
        if not (moved or resized):
            continue
        alloc = (
            session.connection()
            .execute(
                select(Allocation.host_id, Allocation.vcpus, Allocation.ram_mb).where(
                    Allocation.vm_id == obj.id
                )
            )
            .one_or_none()
        )
        if alloc is not None and tuple(alloc) == (obj.host_id, obj.vcpus, obj.ram_mb):
            continue
        if alloc is not None:
            _drop_allocation(session, obj.id)
        if obj.host_id is not None:
            _adopt(session, obj)


def reconcile_usage(session: Session) -> dict[str, tuple[int, int]]:
    """Make allocations match the VM rows and the host counters match the allocations.

    Returns ``{host name: (vcpus delta, ram delta)}`` of the counters it corrected. On PostgreSQL
    the host rows are locked first, so concurrent claims wait instead of being miscounted.
    """
    host_q = select(Host).order_by(Host.id)
    if _is_postgres(session):
        host_q = host_q.with_for_update()
    hosts = list(session.scalars(host_q))
    allocs = {a.vm_id: a for a in session.scalars(select(Allocation))}
    for vm_id, host_id, vcpus, ram_mb in session.execute(
        select(VM.id, VM.host_id, VM.vcpus, VM.ram_mb).where(VM.host_id.is_not(None))
    ):
        assert host_id is not None
        a = allocs.pop(vm_id, None)
        if a is None:
            session.add(Allocation(vm_id=vm_id, host_id=host_id, vcpus=vcpus, ram_mb=ram_mb))
        elif (a.host_id, a.vcpus, a.ram_mb) != (host_id, vcpus, ram_mb):
            a.host_id, a.vcpus, a.ram_mb = host_id, vcpus, ram_mb
    for orphan in allocs.values():
        session.delete(orphan)
    session.flush()
    sums = {
        h: (int(v), int(r))
        for h, v, r in session.execute(
            select(Allocation.host_id, func.sum(Allocation.vcpus), func.sum(Allocation.ram_mb)).group_by(
                Allocation.host_id
            )
        )
    }
    _reconcile_reservations(session)
    fixed: dict[str, tuple[int, int]] = {}
    for host in hosts:
        session.refresh(host, ["vcpus_used", "ram_mb_used"])
        v, r = sums.get(host.id, (0, 0))
        if (host.vcpus_used, host.ram_mb_used) != (v, r):
            fixed[host.name] = (v - host.vcpus_used, r - host.ram_mb_used)
            session.execute(
                update(Host)
                .where(Host.id == host.id)
                .values(vcpus_used=v, ram_mb_used=r)
                .execution_options(synchronize_session=False)
            )
    view_for(session).invalidate()
    return fixed


def _reconcile_reservations(session: Session) -> None:
    """Active reservations' use equals their allocations; hosts hold exactly their unused remainder."""
    used: dict[str, tuple[int, int]] = {
        r: (int(v), int(m))
        for r, v, m in session.execute(
            select(Allocation.reservation_id, func.sum(Allocation.res_vcpus), func.sum(Allocation.res_ram_mb))
            .where(Allocation.reservation_id.is_not(None))
            .group_by(Allocation.reservation_id)
        )
        if r is not None
    }
    held: dict[str, list[int]] = {}
    for res in session.scalars(select(CapacityReservation).where(CapacityReservation.status == "active")):
        res.vcpus_used, res.ram_mb_used = used.get(res.id, (0, 0))
        h = held.setdefault(res.host_id, [0, 0])
        h[0] += res.vcpus - res.vcpus_used
        h[1] += res.ram_mb - res.ram_mb_used
    for host_id, vcpus_reserved, ram_reserved in session.execute(
        select(Host.id, Host.vcpus_reserved, Host.ram_mb_reserved)
    ):
        want = held.get(host_id, [0, 0])
        if (vcpus_reserved, ram_reserved) != tuple(want):
            session.execute(
                update(Host)
                .where(Host.id == host_id)
                .values(vcpus_reserved=want[0], ram_mb_reserved=want[1])
                .execution_options(synchronize_session=False)
            )
