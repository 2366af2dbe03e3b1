"""Cluster rebalancing: a pure planner over a snapshot, plus loading that snapshot and applying a plan.

A host's load has three dimensions, each a utilisation (1.0 = full):

- ``cpu``: CPU its VMs really use (cores, from the agents' samples, mean over the last
  ``RATE_WINDOW_S`` seconds) over its physical cores. A VM without a measured rate yet (just
  created or just moved: a migration forgets the VM's samples) counts as fully busy (its vCPUs), so
  the planner never piles VMs onto a host whose real use it cannot see.
- ``vcpu``: allocated vCPUs over ``cpus * cpu_allocation_ratio`` (the claim counters).
- ``ram``: allocated RAM over ``ram_mb * ram_allocation_ratio``.

The host's ``load`` is its dominant dimension (the largest). The cluster's imbalance is the root
mean square of the three dimensions' standard deviations over the hosts taking part (up, with a fresh
heartbeat); a plan lowers it one move at a time, each move the one that lowers it most among the
VMs of the most loaded hosts and the least loaded hosts that pass every placement filter
(``static_refusal``: state, tenant reservation, aggregate, labels, traits; room within the
allocation ratios; server-group anti-affinity). No tiny moves: a move only goes from a host to one
whose load is at least ``threshold`` lower, and only if it lowers the imbalance; a plan lowering it
by less than ``min_improvement`` in all is empty. A VM moved within the
cool-down, a busy one (``task_state``), one not running, and a member of an affinity group with
placed companions (it would have to move with them) stay where they are.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from novacron.compute.placement.spec import RequestSpec
from novacron.compute.placement.view import HEARTBEAT_GRACE_S, HostEntry, PlacementView, static_refusal
from novacron.db.base import utcnow
from novacron.db.models import VM, ServerGroup

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.compute.reports import LiveSamples
    from novacron.db.models import Task

#: seconds of samples the CPU rate of a VM is averaged over
RATE_WINDOW_S = 60.0
#: the most loaded hosts whose VMs are considered for each move
SOURCES_PER_MOVE = 3
#: feasible targets (least loaded first) evaluated per VM and move
TARGETS_PER_VM = 4
DIMS = ("cpu", "vcpu", "ram")
_EPS = 1e-12


@dataclass(slots=True)
class VMSnap:
    id: str
    name: str
    host_id: str
    vcpus: int
    ram_mb: int
    #: cores in use (measured), or None when no rate is known yet
    cpu: float | None
    state: str
    task_state: str | None
    #: unix time of the last move, None when never moved
    moved_at: float | None
    group_id: str | None
    spec: RequestSpec = field(default_factory=RequestSpec)

    @property
    def cpu_load(self) -> float:
        return float(self.vcpus) if self.cpu is None else min(self.cpu, float(self.vcpus))


@dataclass(frozen=True, slots=True)
class GroupSnap:
    policy: str
    hard: bool


@dataclass
class Snapshot:
    hosts: list[HostEntry]
    vms: list[VMSnap]
    groups: dict[str, GroupSnap] = field(default_factory=dict)
    #: unix time the snapshot was taken (heartbeats and cool-downs are judged against it)
    now: float = 0.0


@dataclass(frozen=True)
class Options:
    max_moves: int = 10
    #: a move goes only to a host whose load is at least this much lower (0.10 = 10 points)
    threshold: float = 0.10
    cooldown_s: float = 1800.0
    #: a plan lowering the imbalance by less than this is not worth its migrations: it is empty
    min_improvement: float = 0.001


@dataclass(frozen=True)
class Move:
    vm_id: str
    vm_name: str
    source: str
    target: str
    reason: str


@dataclass(frozen=True)
class HostLoad:
    host_id: str
    name: str
    vms: int
    cpu: float
    vcpu: float
    ram: float

    @property
    def load(self) -> float:
        return max(self.cpu, self.vcpu, self.ram)


@dataclass
class Plan:
    moves: list[Move]
    before: list[HostLoad]
    after: list[HostLoad]
    imbalance_before: float
    imbalance_after: float
    #: VMs left alone and why (cool-down, busy, not running, affinity group)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def spread_before(self) -> float:
        return _spread(self.before)

    @property
    def spread_after(self) -> float:
        return _spread(self.after)


def _spread(loads: Sequence[HostLoad]) -> float:
    return max(h.load for h in loads) - min(h.load for h in loads) if loads else 0.0


class PlanRejected(Exception):
    """A requested move is not possible on the current cluster; ``index`` is its position."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


class _Sim:
    """The cluster being simulated: per-host utilisations and the sums that give the variance in O(1)."""

    def __init__(self, snap: Snapshot, options: Options) -> None:
        self.snap = snap
        self.options = options
        cutoff = snap.now - HEARTBEAT_GRACE_S
        self.hosts = [
            h for h in snap.hosts if h.state == "up" and h.heartbeat >= cutoff and h.cpus > 0 and h.ram_mb > 0
        ]
        self.pos = {h.id: i for i, h in enumerate(self.hosts)}
        n = len(self.hosts)
        self.cap = [
            [float(h.cpus) for h in self.hosts],
            [h.cpus * h.cpu_ratio for h in self.hosts],
            [h.ram_mb * h.ram_ratio for h in self.hosts],
        ]
        # allocations come from the host counters (they include reservations of migrations in flight)
        self.used = [
            [0.0] * n,
            [float(h.vcpus_used) for h in self.hosts],
            [float(h.ram_mb_used) for h in self.hosts],
        ]
        self.vms_on: list[list[VMSnap]] = [[] for _ in range(n)]
        self.members: dict[str, Counter[str]] = {}
        for vm in snap.vms:
            if vm.group_id is not None:
                self.members.setdefault(vm.group_id, Counter())[vm.host_id] += 1
            i = self.pos.get(vm.host_id)
            if i is not None:
                self.used[0][i] += vm.cpu_load
                self.vms_on[i].append(vm)
        self.util = [
            [u / c for u, c in zip(used, cap, strict=True)]
            for used, cap in zip(self.used, self.cap, strict=True)
        ]
        self.s1 = [sum(u) for u in self.util]
        self.s2 = [sum(x * x for x in u) for u in self.util]
        self.moved: set[str] = set()

    # -- figures -------------------------------------------------------------------------------

    def objective(self, s1: Sequence[float] | None = None, s2: Sequence[float] | None = None) -> float:
        """The sum of the three dimensions' variances over the hosts taking part."""
        n = len(self.hosts)
        if n == 0:
            return 0.0
        s1, s2 = s1 or self.s1, s2 or self.s2
        return sum(max(0.0, b / n - (a / n) ** 2) for a, b in zip(s1, s2, strict=True))

    def imbalance(self) -> float:
        return math.sqrt(self.objective() / len(DIMS))

    def load(self, i: int) -> float:
        return max(self.util[0][i], self.util[1][i], self.util[2][i])

    def loads(self) -> list[HostLoad]:
        return [
            HostLoad(h.id, h.name, len(self.vms_on[i]), self.util[0][i], self.util[1][i], self.util[2][i])
            for i, h in enumerate(self.hosts)
        ]

    # -- rules ---------------------------------------------------------------------------------

    def why_not_movable(self, vm: VMSnap) -> str | None:
        if vm.id in self.moved:
            return "already moved in this plan"
        if vm.host_id not in self.pos:
            return "its host is not up (maintenance, down or silent): drain or HA handles it"
        if vm.state != "running":
            return "not running"
        if vm.task_state is not None:
            return "busy"
        if vm.moved_at is not None and self.snap.now - vm.moved_at < self.options.cooldown_s:
            return "cool-down"
        if vm.group_id is not None:
            group = self.snap.groups.get(vm.group_id)
            if (
                group is not None
                and group.policy == "affinity"
                and sum(self.members[vm.group_id].values()) > 1
            ):
                return "affinity group"
        return None

    def why_not_fits(self, vm: VMSnap, t: int) -> str | None:
        host = self.hosts[t]
        if host.id == vm.host_id:
            return "already there"
        refusal = static_refusal(host, vm.spec)
        if refusal is not None:
            return refusal
        if self.used[1][t] + vm.vcpus > self.cap[1][t] + _EPS:
            return f"{self.cap[1][t] - self.used[1][t]:g} vCPU free, {vm.vcpus} needed"
        if self.used[2][t] + vm.ram_mb > self.cap[2][t] + _EPS:
            return f"{self.cap[2][t] - self.used[2][t]:g} MiB RAM free, {vm.ram_mb} needed"
        if vm.group_id is not None:
            group = self.snap.groups.get(vm.group_id)
            # soft anti-affinity is kept as strictly as hard: a rebalance never makes it worse
            if (
                group is not None
                and group.policy == "anti-affinity"
                and self.members[vm.group_id][host.id] > 0
            ):
                return "holds a member of the VM's anti-affinity group"
        return None

    # -- moves ---------------------------------------------------------------------------------

    def _amounts(self, vm: VMSnap) -> tuple[float, float, float]:
        return vm.cpu_load, float(vm.vcpus), float(vm.ram_mb)

    def delta(self, vm: VMSnap, s: int, t: int) -> float:
        """How much the objective changes if ``vm`` moves from host ``s`` to host ``t`` (O(1)).

        Per dimension, with the sums S1 = sum(u) and S2 = sum(u^2) over n hosts, the variance is
        S2/n - (S1/n)^2; the move changes u_s by ds and u_t by dt."""
        n = len(self.hosts)
        total = 0.0
        for d, x in enumerate(self._amounts(vm)):
            util, cap = self.util[d], self.cap[d]
            ds, dt = -x / cap[s], x / cap[t]
            d1 = ds + dt
            d2 = ds * (2 * util[s] + ds) + dt * (2 * util[t] + dt)
            total += d2 / n - d1 * (2 * self.s1[d] + d1) / (n * n)
        return total

    def apply(self, vm: VMSnap, s: int, t: int) -> None:
        for d, x in enumerate(self._amounts(vm)):
            us, ut = self.util[d][s], self.util[d][t]
            self.used[d][s] -= x
            self.used[d][t] += x
            ns, nt = self.used[d][s] / self.cap[d][s], self.used[d][t] / self.cap[d][t]
            self.util[d][s], self.util[d][t] = ns, nt
            self.s1[d] += ns - us + nt - ut
            self.s2[d] += ns * ns - us * us + nt * nt - ut * ut
        self.vms_on[s].remove(vm)
        self.vms_on[t].append(vm)
        if vm.group_id is not None:
            self.members[vm.group_id][self.hosts[s].id] -= 1
            self.members[vm.group_id][self.hosts[t].id] += 1
        self.moved.add(vm.id)

    def reason(self, vm: VMSnap, s: int, t: int) -> str:
        src, dst = self.hosts[s], self.hosts[t]
        cpu = "unmeasured, counted as its vCPUs" if vm.cpu is None else f"{vm.cpu:.2f} cores in use"
        return (
            f"{src.name} is at {self.load(s):.0%} load, {dst.name} at {self.load(t):.0%}; "
            f"moves {vm.vcpus} vCPU, {vm.ram_mb} MiB ({cpu})"
        )

    def best_move(self) -> tuple[float, VMSnap, int, int] | None:
        loads = [self.load(i) for i in range(len(self.hosts))]
        order = sorted(range(len(self.hosts)), key=lambda i: (loads[i], self.hosts[i].name))
        best: tuple[float, VMSnap, int, int] | None = None
        for s in reversed(order[-SOURCES_PER_MOVE:]):
            for vm in sorted(self.vms_on[s], key=lambda v: v.id):
                if self.why_not_movable(vm) is not None:
                    continue
                tried = 0
                for t in order:
                    if loads[s] - loads[t] < self.options.threshold or tried >= TARGETS_PER_VM:
                        break
                    if self.why_not_fits(vm, t) is not None:
                        continue
                    tried += 1
                    gain = self.delta(vm, s, t)
                    if gain < -_EPS and (best is None or gain < best[0] - _EPS):
                        best = (gain, vm, s, t)
        return best


def plan(snap: Snapshot, options: Options) -> Plan:
    """Moves that even out the load, at most ``options.max_moves``; pure: reads only ``snap``."""
    sim = _Sim(snap, options)
    before, imbalance_before = sim.loads(), sim.imbalance()
    skipped = Counter(r for vm in snap.vms if (r := sim.why_not_movable(vm)) is not None)
    moves: list[Move] = []
    while len(moves) < options.max_moves:
        best = sim.best_move()
        if best is None:
            break
        _, vm, s, t = best
        moves.append(Move(vm.id, vm.name, sim.hosts[s].id, sim.hosts[t].id, sim.reason(vm, s, t)))
        sim.apply(vm, s, t)
    if imbalance_before - sim.imbalance() < options.min_improvement:
        return Plan([], before, before, imbalance_before, imbalance_before, dict(skipped))
    return Plan(moves, before, sim.loads(), imbalance_before, sim.imbalance(), dict(skipped))


def check_moves(snap: Snapshot, options: Options, wanted: Sequence[tuple[str, str | None, str]]) -> Plan:
    """Simulate exactly the moves ``(vm id, expected source or None, target)`` of a reviewed plan.

    Every rule of ``plan`` applies except the choice itself (and the threshold): the VM must be
    movable and the target must pass every filter after the earlier moves. Raises PlanRejected.
    """
    sim = _Sim(snap, options)
    before, imbalance_before = sim.loads(), sim.imbalance()
    skipped = dict(Counter(r for vm in snap.vms if (r := sim.why_not_movable(vm)) is not None))
    by_id = {vm.id: vm for vm in snap.vms}
    moves: list[Move] = []
    for k, (vm_id, source, target) in enumerate(wanted):
        vm = by_id.get(vm_id)
        if vm is None:
            raise PlanRejected(k, f"VM {vm_id} is not placed on any host")
        if source is not None and vm.host_id != source:
            raise PlanRejected(k, f"VM {vm.name} is no longer on host {source}")
        why = sim.why_not_movable(vm)
        if why is not None:
            raise PlanRejected(k, f"VM {vm.name} cannot move: {why}")
        t = sim.pos.get(target)
        if t is None:
            raise PlanRejected(k, f"host {target} is not up (or unknown)")
        why = sim.why_not_fits(vm, t)
        if why is not None:
            raise PlanRejected(k, f"VM {vm.name} does not fit on {sim.hosts[t].name}: {why}")
        s = sim.pos[vm.host_id]
        moves.append(Move(vm.id, vm.name, vm.host_id, target, sim.reason(vm, s, t)))
        sim.apply(vm, s, t)
    return Plan(moves, before, sim.loads(), imbalance_before, sim.imbalance(), skipped)


# -- the database side ---------------------------------------------------------------------------


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def load_snapshot(session: Session, metrics: LiveSamples) -> Snapshot:
    """Hosts (with aggregates and tenant reservations, as placement sees them), placed VMs, groups."""
    view = PlacementView()
    view.refresh(session)
    groups = {
        gid: GroupSnap(policy, hard)
        for gid, policy, hard in session.execute(select(ServerGroup.id, ServerGroup.policy, ServerGroup.hard))
    }
    rows = session.execute(
        select(
            VM.id,
            VM.name,
            VM.host_id,
            VM.vcpus,
            VM.ram_mb,
            VM.state,
            VM.task_state,
            VM.moved_at,
            VM.server_group_id,
            VM.placement,
            VM.tenant_id,
        ).where(VM.host_id.is_not(None))
    ).all()
    vms = []
    unconstrained = RequestSpec()
    for r in rows:
        spec = RequestSpec.from_dict(r.placement) if r.placement else unconstrained
        if view.isolating:
            spec = replace(spec, tenant=r.tenant_id)
        vms.append(
            VMSnap(
                id=r.id,
                name=r.name,
                host_id=r.host_id,
                vcpus=r.vcpus,
                ram_mb=r.ram_mb,
                cpu=metrics.cpu_cores(r.id, RATE_WINDOW_S),
                state=r.state,
                task_state=r.task_state,
                moved_at=_ts(r.moved_at),
                group_id=r.server_group_id,
                spec=spec,
            )
        )
    return Snapshot(hosts=view.hosts, vms=vms, groups=groups, now=utcnow().timestamp())


class MoveConflict(Exception):
    pass


def start_moves(session: Session, moves: Sequence[Move]) -> list[Task]:
    """Create the live-migration task of each move, with its target, in the caller's transaction.

    ``moved_at`` is set here, when the move is decided: the cool-down then also covers the
    migration in flight, and a failed migration is not retried by the next rebalance at once.
    """
    from novacron.compute.vms import request_migrate

    tasks = []
    now = utcnow()
    for move in moves:
        # locked (PostgreSQL): a concurrent apply waits, then finds the VM busy (409), not stale
        vm = session.get(VM, move.vm_id, with_for_update=True)
        if vm is None or vm.host_id != move.source:
            raise MoveConflict(f"VM {move.vm_name} moved or was deleted meanwhile; plan again")
        tasks.append(request_migrate(session, vm, move.target))
        vm.moved_at = now
    session.flush()
    return tasks
