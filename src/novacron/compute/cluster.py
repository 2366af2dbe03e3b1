"""Moving VMs between hosts for the cluster's sake: draining a host, rebalancing the load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute import rebalance
from novacron.compute.vms import request_migrate
from novacron.db.models import VM, Host, Task
from novacron.db.resolve import Named, resolve
from novacron.errors import Conflict, InvalidInput, on_field
from novacron.identity.principal import Principal
from novacron.service import Service
from novacron.tasks.service import wake_on_commit

#: a reviewed move: (VM id, the host it must still be on or None, target host id or name)
WantedMove = tuple[str, str | None, str]


@dataclass(frozen=True)
class Drained:
    """A host put in maintenance: the migrations started, and the VMs left on it."""

    host_id: str
    state: str
    task_ids: list[str]
    #: VMs not moved (busy with another task, or neither running nor stopped)
    left: list[str]


@dataclass(frozen=True)
class RebalanceSpec:
    """What a rebalance asks for: a plan of at most ``max_moves`` moves, or exactly ``moves``."""

    max_moves: int = 10
    #: a VM moves only to a host at least this much less loaded (None: the server's setting)
    threshold: float | None = None
    moves: tuple[WantedMove, ...] | None = None

    def __post_init__(self) -> None:
        if self.moves is not None and len(self.moves) > self.max_moves:
            raise InvalidInput("moves", f"{len(self.moves)} moves, more than max_moves ({self.max_moves})")


def _host_ids(session: Session, principal: Principal, moves: Sequence[WantedMove]) -> list[WantedMove]:
    """The moves with their target named by id; an unknown target is refused by its index."""
    return [
        (vm, source, resolve(session, principal, Host, to, named=Named(f"moves.{k}.to")).id)
        for k, (vm, source, to) in enumerate(moves)
    ]


class ClusterService(Service):
    """Drain a host of its VMs; plan, and start, the migrations that even out host load."""

    def drain(self, host_ref: str) -> Drained:
        """Put the host in maintenance (no new VMs); live-migrate its running VMs, cold-migrate
        stopped ones."""
        host = resolve(self.session, self.principal, Host, host_ref)
        if host.state == "down":
            raise Conflict(f"Host '{host.name}' is down: its VMs cannot be live-migrated.")
        host.state = "maintenance"
        events.publish(self.session, "host.maintenance", "host", host.id, tenant_id=None, name=host.name)
        task_ids, left = [], []
        for vm in self.session.scalars(select(VM).where(VM.host_id == host.id)):
            if vm.state in ("running", "stopped") and vm.task_state is None:
                task_ids.append(request_migrate(self.session, vm, None).id)
            else:
                left.append(vm.id)
        self.session.flush()
        wake_on_commit(self.session, self.ctx)
        return Drained(host_id=host.id, state=host.state, task_ids=task_ids, left=left)

    def plan_rebalance(self, spec: RebalanceSpec) -> tuple[rebalance.Plan, rebalance.Options]:
        """The moves that even out the load (or a check of the ``spec``'s own), changing nothing."""
        settings = self.ctx.settings
        options = rebalance.Options(
            max_moves=spec.max_moves,
            threshold=spec.threshold if spec.threshold is not None else settings.rebalance_threshold,
            cooldown_s=settings.rebalance_cooldown_s,
        )
        # planning reads every placed VM: a read session, so it never holds SQLite's write lock
        with self.ctx.db.read_session() as rs:
            wanted = _host_ids(rs, self.principal, spec.moves) if spec.moves is not None else None
            snapshot = rebalance.load_snapshot(rs, self.ctx.live_samples)
        try:
            if wanted is None:
                return rebalance.plan(snapshot, options), options
            return rebalance.check_moves(snapshot, options, wanted), options
        except rebalance.PlanRejected as exc:
            raise on_field(Conflict, f"moves.{exc.index}", exc.reason, title="Invalid request") from exc

    def start_rebalance(self, plan: rebalance.Plan) -> list[Task]:
        """The live-migration task of each planned move; each VM must still be where the plan
        found it, and idle (409 otherwise)."""
        try:
            tasks = rebalance.start_moves(self.session, plan.moves)
        except rebalance.MoveConflict as exc:
            raise Conflict(str(exc)) from exc
        if tasks:
            wake_on_commit(self.session, self.ctx)
        return tasks
