"""Backup policies: a schedule and a GFS retention for one VM or for every VM of a project.

The backup scheduler (``scheduler.py``) runs them; this is how callers make, read and remove them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from novacron.backup.service import default_target, visible_vm
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import BackupPolicy
from novacron.db.resolve import resolve, scoped
from novacron.errors import NameTaken
from novacron.service import Service


@dataclass(frozen=True)
class PolicySpec:
    """A policy to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    #: one VM (id or name); None: every VM of the project
    vm: str | None = None
    project_id: str | None = None
    target: str | None = None
    interval_s: int = 86400
    retention: dict[str, int] = field(default_factory=dict)
    immutable_s: int = 0
    enabled: bool = True


class BackupPolicyService(Service):
    """Create, read and delete the backup policies of the caller's projects."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[BackupPolicy], str | None]:
        """One page of the caller's policies, optionally only those of this name."""
        stmt = scoped(select(BackupPolicy), BackupPolicy, self.principal)
        if name is not None:
            stmt = stmt.where(BackupPolicy.name == name)
        return paginate(self.session, stmt, BackupPolicy, params)

    def get(self, ref: str) -> BackupPolicy:
        """The policy of this id or name, if the caller sees it."""
        return resolve(self.session, self.principal, BackupPolicy, ref)

    def create(self, spec: PolicySpec) -> BackupPolicy:
        """A new policy; its name is unique in its project."""
        vm_id = None
        if spec.vm is not None:
            vm = visible_vm(self.session, self.principal, spec.vm)
            project_id, tenant_id, vm_id = vm.project_id, vm.tenant_id, vm.id
        else:
            project = resolve_project(self.session, self.principal, spec.project_id)
            project_id, tenant_id = project.id, project.tenant_id
        if self.session.scalar(
            select(BackupPolicy.id).where(
                BackupPolicy.project_id == project_id, BackupPolicy.name == spec.name
            )
        ):
            raise NameTaken("backup policy", spec.name, "name")
        target = default_target(self.session, self.principal, spec.target)
        policy = BackupPolicy(
            id=new_id("bkp"),
            tenant_id=tenant_id,
            project_id=project_id,
            name=spec.name,
            vm_id=vm_id,
            target_id=target.id,
            interval_s=spec.interval_s,
            retention=dict(spec.retention),
            immutable_s=spec.immutable_s,
            enabled=spec.enabled,
        )
        self.session.add(policy)
        self.session.flush()
        return policy

    def delete(self, policy: BackupPolicy) -> None:
        """Delete a policy; the backups taken under it stay."""
        self.session.delete(policy)
