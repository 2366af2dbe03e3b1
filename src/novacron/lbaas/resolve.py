"""A load balancer's rows as the data plane's desired state, and the snapshot a failed change
rolls back to.

:func:`spec_of` builds the :class:`~novacron.lbaas.model.LoadBalancerSpec` the hosts apply; the
specs' own checks (ports, pools a listener uses, protocols that fit together) raise
``InvalidInput`` naming the field, so a service that resolves the tree after its change refuses
a change the data plane could not run, before anything is written. Disabled listeners are left
out, a disabled pool's members are taken out, and a disabled load balancer serves nothing.

:func:`tree` is every row of the load balancer as plain JSON (the ``applied`` column once the
hosts took it); :func:`restore` puts the rows back as a tree had them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.models import LbAmphora, LbListener, LbMember, LbPool, LoadBalancer
from novacron.errors import InvalidInput
from novacron.lbaas.model import (
    AmphoraSpec,
    HealthMonitorSpec,
    L7PolicySpec,
    ListenerSpec,
    LoadBalancerSpec,
    MemberSpec,
    PoolSpec,
    SessionPersistenceSpec,
)
from novacron.lbaas.protection import ListenerProtection
from novacron.lbaas.qos import ListenerQoS
from novacron.network.linux import names
from novacron.network.wire import from_dict

T = TypeVar("T")

#: the columns a snapshot leaves out: the row's bookkeeping, not its meaning
_UNSAVED = frozenset({"created_at", "updated_at"})
#: the child tables of a load balancer and their key in a tree, parents first (members need their pool)
_CHILDREN: tuple[tuple[type[Any], str], ...] = (
    (LbPool, "pools"),
    (LbMember, "members"),
    (LbListener, "listeners"),
)


def listeners_of(session: Session, lb_id: str) -> list[LbListener]:
    stmt = select(LbListener).where(LbListener.loadbalancer_id == lb_id)
    return list(session.scalars(stmt.order_by(LbListener.created_at, LbListener.id)))


def pools_of(session: Session, lb_id: str) -> list[LbPool]:
    stmt = select(LbPool).where(LbPool.loadbalancer_id == lb_id)
    return list(session.scalars(stmt.order_by(LbPool.created_at, LbPool.id)))


def members_of(session: Session, lb_id: str) -> list[LbMember]:
    stmt = select(LbMember).where(LbMember.loadbalancer_id == lb_id)
    return list(session.scalars(stmt.order_by(LbMember.created_at, LbMember.id)))


def amphorae_of(session: Session, lb_id: str) -> list[LbAmphora]:
    stmt = select(LbAmphora).where(LbAmphora.loadbalancer_id == lb_id)
    return list(session.scalars(stmt.order_by(LbAmphora.role.desc(), LbAmphora.id)))


def member_spec(member: LbMember, pool_up: bool) -> MemberSpec:
    return MemberSpec(
        id=member.id,
        address=member.address,
        protocol_port=member.protocol_port,
        weight=member.weight,
        backup=member.backup,
        admin_state_up=member.admin_state_up and pool_up,
        drain=member.drain,
    )


def pool_spec(pool: LbPool, members: list[LbMember]) -> PoolSpec:
    persistence = pool.session_persistence
    monitor = pool.healthmonitor
    return PoolSpec(
        id=pool.id,
        protocol=pool.protocol,  # type: ignore[arg-type]
        lb_algorithm=pool.lb_algorithm,  # type: ignore[arg-type]
        hash_key=pool.hash_key,
        session_persistence=from_dict(SessionPersistenceSpec, persistence) if persistence else None,
        members=tuple(member_spec(m, pool.admin_state_up) for m in members if m.pool_id == pool.id),
        healthmonitor=from_dict(HealthMonitorSpec, monitor) if monitor else None,
    )


def listener_spec(listener: LbListener) -> ListenerSpec:
    return ListenerSpec(
        id=listener.id,
        protocol=listener.protocol,  # type: ignore[arg-type]
        protocol_port=listener.protocol_port,
        default_pool_id=listener.default_pool_id,
        connection_limit=listener.connection_limit,
        timeout_client_data=listener.timeout_client_data,
        timeout_member_connect=listener.timeout_member_connect,
        timeout_member_data=listener.timeout_member_data,
        insert_headers=tuple(listener.insert_headers or ()),  # type: ignore[arg-type]
        l7policies=tuple(from_dict(L7PolicySpec, p) for p in listener.l7policies or ()),
        default_tls_container_ref=listener.default_tls_container_ref,
        sni_container_refs=tuple(listener.sni_container_refs or ()),
        protection=_nested("protection", ListenerProtection, listener.protection),
        qos=_nested("qos", ListenerQoS, listener.qos),
    )


def _nested(field: str, cls: type[T], data: dict[str, Any] | None) -> T | None:
    """A listener's nested spec from its JSON column; a refused value is named under ``field``
    (``qos.bandwidth_kbit``), as the caller sent it."""
    if not data:
        return None
    try:
        return from_dict(cls, data)
    except InvalidInput as exc:
        error = exc.fields[0]
        raise InvalidInput(f"{field}.{error.field}", error.reason) from None


def spec_of(session: Session, lb: LoadBalancer) -> LoadBalancerSpec:
    """The desired state of ``lb`` from its rows; ``InvalidInput`` (naming the field) when its
    parts do not fit together."""
    session.flush()
    members = members_of(session, lb.id)
    pools = tuple(pool_spec(p, members) for p in pools_of(session, lb.id))
    listeners: tuple[ListenerSpec, ...] = ()
    if lb.admin_state_up:
        listeners = tuple(listener_spec(li) for li in listeners_of(session, lb.id) if li.admin_state_up)
    amphorae: tuple[AmphoraSpec, ...] = ()
    if lb.topology == "ACTIVE_STANDBY":
        amphorae = tuple(
            AmphoraSpec(id=a.id, role=a.role, vrrp_ip=a.address, vrrp_interface=names.LB_INNER)  # type: ignore[arg-type]
            for a in amphorae_of(session, lb.id)
        )
    return LoadBalancerSpec(
        id=lb.id,
        vip_address=lb.vip_address,
        listeners=listeners,
        pools=pools,
        topology=lb.topology,  # type: ignore[arg-type]
        amphorae=amphorae,
        vrrp_id=lb.vrrp_id,
    )


def _row(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__mapper__.column_attrs if c.key not in _UNSAVED}


def tree(session: Session, lb: LoadBalancer) -> dict[str, Any]:
    """Every row of ``lb`` (its own columns that a change can touch, and its children) as JSON."""
    session.flush()
    return {
        "loadbalancer": {k: v for k, v in _row(lb).items() if k in ("name", "description", "admin_state_up")},
        "pools": [_row(p) for p in pools_of(session, lb.id)],
        "members": [_row(m) for m in members_of(session, lb.id)],
        "listeners": [_row(li) for li in listeners_of(session, lb.id)],
    }


def restore(session: Session, lb: LoadBalancer, saved: dict[str, Any]) -> None:
    """Put ``lb`` and its children back as ``saved`` (a :func:`tree`) had them: rows kept are
    updated in place (their version, hence their ETag, moves on), others deleted or made again."""
    for key, value in saved["loadbalancer"].items():
        setattr(lb, key, value)
    wanted = {model: {v["id"]: v for v in saved[key]} for model, key in _CHILDREN}
    kept: dict[type[Any], dict[str, Any]] = {}
    for model, _ in reversed(_CHILDREN):  # listeners, members, then pools: nothing left dangling
        rows = {r.id: r for r in session.scalars(select(model).where(model.loadbalancer_id == lb.id))}
        for row_id, row in rows.items():
            if row_id not in wanted[model]:
                session.delete(row)
        kept[model] = rows
        session.flush()
    for model, _ in _CHILDREN:  # pools first: members need theirs
        for row_id, values in wanted[model].items():
            fields = {k: v for k, v in values.items() if k != "version"}
            row = kept[model].get(row_id)
            if row is None:
                session.add(model(**fields))
            else:
                for key, value in fields.items():
                    if getattr(row, key) != value:
                        setattr(row, key, value)
        session.flush()
