"""Pools: a load balancer's groups of members, how it chooses among them (algorithm, session
persistence) and how it checks them (the health monitor, kept whole on the pool).

Each change is checked against the whole load balancer (``changes.submit``) and realised by its
``loadbalancer.apply`` task.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import LbListener, LbPool, LoadBalancer
from novacron.errors import Conflict
from novacron.lbaas import changes
from novacron.service import Service

CHANGEABLE = frozenset(
    {"name", "description", "lb_algorithm", "hash_key", "session_persistence", "admin_state_up"}
)


@dataclass(frozen=True)
class NewPool:
    """A pool to create, as the caller asked for it (already checked for shape by the API);
    ``listener_id``: the listener whose default pool it becomes."""

    protocol: str
    lb_algorithm: str = "ROUND_ROBIN"
    name: str = ""
    description: str = ""
    hash_key: str | None = None
    session_persistence: dict[str, Any] | None = None
    healthmonitor: dict[str, Any] | None = None
    admin_state_up: bool = True
    listener_id: str | None = None


class PoolService(Service):
    """Create, read, change and delete the pools of the caller's load balancers."""

    def list(self, lb: LoadBalancer, params: ListParams) -> tuple[builtins.list[LbPool], str | None]:
        """One page of the load balancer's pools."""
        stmt = select(LbPool).where(LbPool.loadbalancer_id == lb.id)
        return paginate(self.session, stmt, LbPool, params)

    def loadbalancer(self, ref: str) -> LoadBalancer:
        """The load balancer of this id or name, as the caller sees it."""
        return changes.find(self.session, self.principal, ref)

    def get(self, lb: LoadBalancer, ref: str) -> LbPool:
        """The pool of this id (or name) of ``lb``."""
        return changes.child(self.session, LbPool, lb, ref, "pool")

    def create(self, lb: LoadBalancer, spec: NewPool) -> LbPool:
        """A new pool, the default of ``listener_id`` when one is named."""
        changes.check_not_pending(lb)
        pool = LbPool(
            id=new_id("pool"),
            loadbalancer_id=lb.id,
            tenant_id=lb.tenant_id,
            name=spec.name,
            description=spec.description,
            protocol=spec.protocol,
            lb_algorithm=spec.lb_algorithm,
            hash_key=spec.hash_key,
            session_persistence=spec.session_persistence,
            healthmonitor=spec.healthmonitor,
            admin_state_up=spec.admin_state_up,
        )
        self.session.add(pool)
        if spec.listener_id is not None:
            listener = changes.child(self.session, LbListener, lb, spec.listener_id, "listener")
            listener.default_pool_id = pool.id
        changes.submit(self.session, self._ctx, lb, "pool.created", pool_id=pool.id)
        return pool

    def update(self, lb: LoadBalancer, pool: LbPool, values: Mapping[str, Any]) -> LbPool:
        """Change the fields sent (the others stay)."""
        changes.check_not_pending(lb)
        changes.assign(pool, values, CHANGEABLE)
        changes.submit(self.session, self._ctx, lb, "pool.updated", pool_id=pool.id)
        return pool

    def set_healthmonitor(self, lb: LoadBalancer, pool: LbPool, monitor: dict[str, Any] | None) -> LbPool:
        """Put (or with None remove) the pool's health monitor."""
        changes.check_not_pending(lb)
        pool.healthmonitor = monitor
        what = "healthmonitor.deleted" if monitor is None else "healthmonitor.updated"
        changes.submit(self.session, self._ctx, lb, what, pool_id=pool.id)
        return pool

    def delete(self, lb: LoadBalancer, pool: LbPool) -> None:
        """Delete a pool no listener sends to, with its members."""
        changes.check_not_pending(lb)
        users = [
            li.id
            for li in self.session.scalars(select(LbListener).where(LbListener.loadbalancer_id == lb.id))
            if li.default_pool_id == pool.id
            or any(p.get("redirect_pool_id") == pool.id for p in li.l7policies or [])
        ]
        if users:
            raise Conflict(f"Pool '{pool.name or pool.id}' is used by listeners {', '.join(users)}.")
        self.session.delete(pool)
        changes.submit(self.session, self._ctx, lb, "pool.deleted", pool_id=pool.id)
