"""Batched loading of the relations a GraphQL query walks: one query per relation and level.

A list of 50 VMs asking for their ports, and the ports for their security groups, makes one query for
the ports of all 50 and one for the groups of all those ports, never one per row (Strawberry's
``DataLoader`` gathers the keys the resolvers ask for in the same tick). Every query is narrowed by
``db/resolve.py``'s ``scoped``, the rule the services list with: a row of another tenant is never
loaded, so it is simply absent from the answer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session
from strawberry.dataloader import DataLoader

from novacron.db.models import (
    VM,
    BackupSnapshot,
    LbListener,
    LbMember,
    LbPool,
    Network,
    Port,
    PortSecurityGroup,
    Project,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Task,
    Tenant,
    Volume,
)
from novacron.db.resolve import scoped
from novacron.identity.principal import Principal

M = TypeVar("M")
K = TypeVar("K", bound=Hashable)
#: the most rows one relation gives one parent (the newest first where it has an order in time)
PER_PARENT = 100


def _grouped(
    session: Session, principal: Principal, model: Any, column: InstrumentedAttribute[Any], order: Any
) -> Callable[[list[str]], Awaitable[list[list[Any]]]]:
    async def load(keys: list[str]) -> list[list[Any]]:
        stmt = scoped(select(model), model, principal).where(column.in_(set(keys))).order_by(*order)
        groups: dict[str, list[Any]] = defaultdict(list)
        for row in session.scalars(stmt):
            group = groups[getattr(row, column.key)]
            if len(group) < PER_PARENT:
                group.append(row)
        return [groups.get(k, []) for k in keys]

    return load


def _by_id(session: Session, principal: Principal, model: Any) -> Callable[[list[str]], Awaitable[list[Any]]]:
    async def load(keys: list[str]) -> list[Any]:
        stmt = scoped(select(model), model, principal).where(model.id.in_(set(keys)))
        rows = {row.id: row for row in session.scalars(stmt)}
        return [rows.get(k) for k in keys]

    return load


def _groups_of_ports(
    session: Session, principal: Principal
) -> Callable[[list[str]], Awaitable[list[list[Any]]]]:
    async def load(keys: list[str]) -> list[list[Any]]:
        pairs: Any = select(PortSecurityGroup.port_id, SecurityGroup)
        stmt = scoped(
            pairs.join(SecurityGroup, SecurityGroup.id == PortSecurityGroup.group_id),
            SecurityGroup,
            principal,
        ).where(PortSecurityGroup.port_id.in_(set(keys)))
        groups: dict[str, list[SecurityGroup]] = defaultdict(list)
        for port_id, group in session.execute(stmt.order_by(SecurityGroup.name)):
            groups[port_id].append(group)
        return [groups.get(k, []) for k in keys]

    return load


class Loaders:
    """The batch loaders of one operation (their caches live as long as it)."""

    def __init__(self, session: Session, principal: Principal) -> None:
        def grouped(model: Any, column: Any, *order: Any) -> DataLoader[str, list[Any]]:
            return DataLoader(_grouped(session, principal, model, column, order))

        def by_id(model: Any) -> DataLoader[str, Any]:
            return DataLoader(_by_id(session, principal, model))

        self.tenant = by_id(Tenant)
        self.project = by_id(Project)
        self.vm = by_id(VM)
        self.task = by_id(Task)
        self.volume = by_id(Volume)
        self.network = by_id(Network)
        self.subnet = by_id(Subnet)
        self.security_group = by_id(SecurityGroup)
        self.projects_of_tenant = grouped(Project, Project.tenant_id, Project.name, Project.id)
        self.vms_of_project = grouped(VM, VM.project_id, VM.created_at, VM.id)
        self.ports_of_vm = grouped(Port, Port.vm_id, Port.position, Port.id)
        self.groups_of_port: DataLoader[str, list[Any]] = DataLoader(_groups_of_ports(session, principal))
        self.tasks_of_resource = grouped(Task, Task.resource_id, Task.created_at.desc(), Task.id)
        self.backups_of_vm = grouped(
            BackupSnapshot, BackupSnapshot.vm_id, BackupSnapshot.created_at.desc(), BackupSnapshot.id
        )
        self.volumes_of_vm = grouped(Volume, Volume.vm_id, Volume.created_at, Volume.id)
        self.subnets_of_network = grouped(Subnet, Subnet.network_id, Subnet.created_at, Subnet.id)
        self.ports_of_network = grouped(Port, Port.network_id, Port.created_at, Port.id)
        self.listeners_of_lb = grouped(
            LbListener, LbListener.loadbalancer_id, LbListener.created_at, LbListener.id
        )
        self.pools_of_lb = grouped(LbPool, LbPool.loadbalancer_id, LbPool.created_at, LbPool.id)
        self.members_of_pool = grouped(LbMember, LbMember.pool_id, LbMember.created_at, LbMember.id)
        self.ports_of_router = grouped(Port, Port.router_id, Port.created_at, Port.id)
        self.rules_of_group = grouped(
            SecurityGroupRule, SecurityGroupRule.group_id, SecurityGroupRule.created_at, SecurityGroupRule.id
        )

    def forget(self) -> None:
        """Empty every cache: a mutation changed rows a loader may already hold."""
        for loader in vars(self).values():
            if isinstance(loader, DataLoader):
                loader.clear_all()


def rows(found: Sequence[M | None]) -> list[M]:
    """The rows a by-id load found (a missing or foreign one is absent)."""
    return [r for r in found if r is not None]
