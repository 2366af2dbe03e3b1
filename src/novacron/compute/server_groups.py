"""Server groups: VMs placed together (affinity) or apart (anti-affinity), per project.

``hard`` (the default) refuses a create the policy cannot satisfy; soft only weighs. Members are
the VMs created with ``server_group``. A group's policy is fixed once created (as in Nova); it is
deleted when it has no members left.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron import events
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import VM, ServerGroup
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict, NameTaken
from novacron.service import Service


@dataclass(frozen=True)
class ServerGroupSpec:
    """A server group to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    policy: str
    hard: bool = True
    project_id: str | None = None


@dataclass(frozen=True)
class ServerGroupView:
    """A server group with its members (VM ids, oldest first)."""

    group: ServerGroup
    members: list[str]


class ServerGroupService(Service):
    """Create, read and delete the server groups of the caller's projects."""

    def list(
        self, params: ListParams, *, name: str | None = None, project_id: str | None = None
    ) -> tuple[list[ServerGroupView], str | None]:
        """One page of the server groups the caller sees, optionally filtered."""
        stmt = scoped(select(ServerGroup), ServerGroup, self.principal)
        stmt = where_equal(stmt, (ServerGroup.name, name), (ServerGroup.project_id, project_id))
        rows, nxt = paginate(self.session, stmt, ServerGroup, params)
        return [self.view(g) for g in rows], nxt

    def get(self, ref: str) -> ServerGroupView:
        """The server group of this id or name, among those the caller sees."""
        return self.view(resolve(self.session, self.principal, ServerGroup, ref))

    def view(self, group: ServerGroup) -> ServerGroupView:
        """``group`` with its members."""
        members = self.session.scalars(
            select(VM.id).where(VM.server_group_id == group.id).order_by(VM.created_at)
        )
        return ServerGroupView(group, list(members))

    def create(self, spec: ServerGroupSpec) -> ServerGroupView:
        """A new group in the project named (or the caller's only one); its name is unique there."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        if self.session.scalar(
            select(ServerGroup.id).where(ServerGroup.project_id == project.id, ServerGroup.name == spec.name)
        ):
            raise NameTaken("server group", spec.name, "name")
        group = ServerGroup(
            id=new_id("sg"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            policy=spec.policy,
            hard=spec.hard,
        )
        self.session.add(group)
        self.session.flush()
        self._publish("server_group.created", group)
        return self.view(group)

    def delete(self, group: ServerGroup) -> None:
        """Delete a group that has no members left."""
        if self.session.scalar(select(VM.id).where(VM.server_group_id == group.id).limit(1)) is not None:
            raise Conflict(f"Server group '{group.name}' still has members; delete its VMs first.")
        self._publish("server_group.deleted", group)
        self.session.delete(group)

    def _publish(self, kind: str, group: ServerGroup) -> None:
        events.publish(
            self.session,
            kind,
            "server_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            name=group.name,
        )
