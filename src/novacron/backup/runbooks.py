"""DR runbooks as callers manage them: make, read and delete them; start drills, failovers, dry
runs and fail-backs.

The work is done by tasks (``dr.DRDrill``, ``failover.DRFailover``, ``DRDryRun``, ``DRFailback``);
this module checks a request against the runbook and its state, and queues them. A runbook's
webhook URLs are stored sealed and opened for its readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from novacron.backup.dr import DRDrill, rpo_status
from novacron.backup.drsteps import hook_url_aad, map_hook_urls, refused_target
from novacron.backup.drwatch import rpo_of
from novacron.backup.failover import DRDryRun, DRFailback, DRFailover
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Aggregate, DRRunbook, Project, Task
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken
from novacron.identity.encryption import encryption_for
from novacron.netguard import EgressPolicy
from novacron.network.service import find_network
from novacron.service import Service
from novacron.tasks.runner import TaskHandler, create_task

#: each VM's RPO, one row per step (``RunbookView.rpo``)
RpoRows = list[dict[str, Any]]
#: the runs of a runbook besides a drill, by task kind
RUNS: dict[str, type[TaskHandler]] = {
    "dr.failover": DRFailover,
    "dr.dry_run": DRDryRun,
    "dr.failback": DRFailback,
}


@dataclass(frozen=True)
class RunbookSpec:
    """A runbook to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    #: the steps, restored in this order, without the fields left unset
    steps: list[dict[str, Any]]
    project_id: str | None = None
    rpo_target_s: int = 86400
    rto_target_s: int = 3600
    recovery_group: str | None = None
    network_map: dict[str, str] = field(default_factory=dict)
    test_network: str | None = None


@dataclass(frozen=True)
class RunbookView:
    """A runbook as its readers see it: webhook URLs opened, and (one runbook read) each VM's RPO."""

    row: DRRunbook
    steps: list[dict[str, Any]]
    #: each VM's RPO now: its newest available backup, and (``replicated``) its newest replicated one
    rpo: RpoRows = field(default_factory=list)


class RunbookService(Service):
    """Create, read and delete the runbooks of the caller's projects, and start their runs."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[RunbookView], str | None]:
        """One page of the caller's runbooks, optionally only those of this name."""
        stmt = scoped(select(DRRunbook), DRRunbook, self.principal)
        if name is not None:
            stmt = stmt.where(DRRunbook.name == name)
        rows, nxt = paginate(self.session, stmt, DRRunbook, params)
        return [self._view(r) for r in rows], nxt

    def find(self, ref: str) -> DRRunbook:
        """The runbook of this id or name, if the caller sees it."""
        return resolve(self.session, self.principal, DRRunbook, ref)

    def get(self, ref: str) -> RunbookView:
        """The runbook with each VM's RPO now: the newest backup anywhere, and at the recovery site."""
        runbook = self.find(ref)
        rpo = [
            {**now, "replicated": rpo_of(self.session, runbook, step)}
            for now, step in zip(rpo_status(self.session, runbook), runbook.steps, strict=True)
        ]
        return self._view(runbook, rpo)

    def create(self, spec: RunbookSpec) -> RunbookView:
        """A new runbook; command hooks are for platform admins, webhooks and tcp checks must pass
        the egress guard, and what it names (host group, networks) must exist."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        if not self.principal.is_global and any(
            h.get("command") for st in spec.steps for h in st.get("hooks", [])
        ):
            raise InvalidInput("steps.hooks", "command hooks run on the control plane: platform admins only")
        # webhooks and tcp checks leave from the control plane: the egress guard, for every role
        if (refused := refused_target(spec.steps, EgressPolicy.from_settings(self.ctx.settings))) is not None:
            raise InvalidInput(*refused)
        group, network_map, test_network = self._references(project, spec)
        runbook_id, enc = new_id("drb"), encryption_for(self.ctx.settings)
        steps = map_hook_urls(spec.steps, lambda url: enc.seal_text(url, hook_url_aad(runbook_id)))
        if self.session.scalar(
            select(DRRunbook.id).where(DRRunbook.project_id == project.id, DRRunbook.name == spec.name)
        ):
            raise NameTaken("runbook", spec.name, "name")
        runbook = DRRunbook(
            id=runbook_id,
            tenant_id=project.tenant_id,
            project_id=project.id,
            name=spec.name,
            steps=steps,
            rpo_target_s=spec.rpo_target_s,
            rto_target_s=spec.rto_target_s,
            recovery_group=group,
            network_map=network_map,
            test_network=test_network,
        )
        self.session.add(runbook)
        self.session.flush()
        return self._view(runbook)

    def delete(self, runbook: DRRunbook) -> None:
        """Delete a runbook that is neither failed over nor running."""
        if runbook.state == "failed-over":
            raise Conflict(f"Runbook '{runbook.name}' is failed over; fail it back first.")
        self._refuse_while_running(runbook)
        self.session.delete(runbook)

    def drill(self, runbook: DRRunbook) -> Task:
        """Queue a drill: every VM restored for real in order, RPO and RTO measured."""
        return self._queue(runbook, DRDrill)

    def run(self, runbook: DRRunbook, kind: str) -> Task:
        """Queue a failover, dry run or fail-back (``kind``, a key of ``RUNS``) the runbook's state allows."""
        if kind == "dr.failback" and runbook.state != "failed-over":
            raise Conflict(
                f"Runbook '{runbook.name}' is {runbook.state}: only a failed-over runbook fails back."
            )
        if kind != "dr.failback" and runbook.recovery_group is None:
            raise Conflict("The runbook names no recovery_group (the host group to restore into).")
        if kind == "dr.failover" and runbook.state == "failed-over":
            raise Conflict(f"Runbook '{runbook.name}' is already failed over; fail it back first.")
        self._refuse_while_running(runbook)
        return self._queue(runbook, RUNS[kind])

    def _queue(self, runbook: DRRunbook, handler: type[TaskHandler]) -> Task:
        return create_task(
            self.session,
            handler,
            "dr-runbook",
            runbook.id,
            tenant_id=runbook.tenant_id,
            project_id=runbook.project_id,
        )

    def _refuse_while_running(self, runbook: DRRunbook) -> None:
        if self.session.scalar(
            select(Task.id)
            .where(Task.resource_id == runbook.id, Task.state.in_(("pending", "running")))
            .limit(1)
        ):
            raise Conflict(
                f"A run of runbook '{runbook.name}' is still going; wait for it (novacron task list)."
            )

    def _references(
        self, project: Project, spec: RunbookSpec
    ) -> tuple[str | None, dict[str, str], str | None]:
        """The aggregate's id and the networks' ids (ones ``project`` may use), refused by field."""
        session, principal = self.session, self.principal
        group = None
        if spec.recovery_group is not None:
            named = Named("recovery_group")
            group = resolve(session, principal, Aggregate, spec.recovery_group, named=named).id

        def network(ref: str, field: str) -> str:
            return find_network(session, principal, ref, field, project).id

        network_map = {
            network(src, f"network_map.{src}"): network(dst, f"network_map.{src}")
            for src, dst in spec.network_map.items()
        }
        test_network = None
        if spec.test_network is not None:
            test_network = network(spec.test_network, "test_network")
        return group, network_map, test_network

    def _view(self, runbook: DRRunbook, rpo: RpoRows | None = None) -> RunbookView:
        enc, aad = encryption_for(self.ctx.settings), hook_url_aad(runbook.id)
        steps = map_hook_urls(list(runbook.steps), lambda url: enc.open_text(url, aad))  # sealed at rest
        return RunbookView(runbook, steps, rpo or [])
