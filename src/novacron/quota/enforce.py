"""Charging and releasing quota in the caller's transaction, race-free on SQLite and PostgreSQL.

A charge adds its amounts to the usage counter of every node from the system down to the leaf
with one conditional UPDATE each::

    UPDATE quota_usage SET used = used + :n, over_since = CASE ... END
     WHERE node_id = :node AND resource = :r AND used + :n <= :ceiling
    RETURNING used

No row back means the node is full: the caller's transaction (which also holds the resource row)
rolls back, and with it every counter already raised. PostgreSQL re-checks the WHERE on the
newest row version after waiting for a concurrent writer; SQLite serialises writers
(``BEGIN IMMEDIATE``). Rows are always updated in one global order (resource, then depth from the
root), so two transactions never wait on each other in a cycle: no deadlocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from novacron.db.base import utcnow
from novacron.db.models import Project, QuotaCharge, QuotaNode, QuotaUsage
from novacron.identity.principal import Principal
from novacron.quota import billing, policy
from novacron.quota.policy import Decisions
from novacron.quota.registry import RESOURCES
from novacron.quota.tree import (
    SYSTEM,
    chain_limits,
    chain_specs,
    ensure_nodes,
    insert_ignore,
    limits_of,
    project_node,
    user_node,
)

_USAGE: Table = QuotaUsage.__table__  # type: ignore[assignment]
_NOW = bindparam("now", type_=QuotaUsage.over_since.type)
_N = bindparam("n", type_=BigInteger())
_WHERE = (_USAGE.c.node_id == bindparam("node"), _USAGE.c.resource == bindparam("res"))
#: when usage first goes above the limit: the start of a burst (kept while above, cleared below)
_OVER = case(
    (_USAGE.c.used + _N > bindparam("lim", type_=BigInteger()), func.coalesce(_USAGE.c.over_since, _NOW)),
    else_=null(),
)
# built once: building and compiling the statement per counter cost more than running it
_ADD = (
    update(_USAGE).where(*_WHERE).values(used=_USAGE.c.used + _N, over_since=null()).returning(_USAGE.c.used)
)
_ADD_TRACKED = (
    update(_USAGE).where(*_WHERE).values(used=_USAGE.c.used + _N, over_since=_OVER).returning(_USAGE.c.used)
)
_ADD_CHECKED = (
    update(_USAGE)
    .where(
        *_WHERE,
        or_(
            _USAGE.c.used + _N <= bindparam("ceil", type_=BigInteger()),
            and_(
                _USAGE.c.used + _N <= bindparam("burst", type_=BigInteger()),
                or_(
                    _USAGE.c.over_since.is_(None),
                    _USAGE.c.over_since >= bindparam("cutoff", type_=QuotaUsage.over_since.type),
                ),
            ),
        ),
    )
    .values(used=_USAGE.c.used + _N, over_since=_OVER)
    .returning(_USAGE.c.used)
)


def _ensure_usage(session: Session, chain: list[str], resources: list[str]) -> bool:
    """Create missing counters (of a resource registered after the node); True if any was missing."""
    return (
        insert_ignore(
            session,
            QuotaUsage,
            [{"node_id": n, "resource": r, "used": 0} for r in resources for n in reversed(chain)],
        )
        > 0
    )


_ADD_MANY = (
    update(_USAGE)
    .where(_USAGE.c.resource == bindparam("res"), _USAGE.c.node_id.in_(bindparam("nodes", expanding=True)))
    .values(used=_USAGE.c.used + _N, over_since=null())
)


def _add_free(session: Session, nodes: list[str], resource: str, n: int) -> None:
    """Move the counters of nodes without a limit on ``resource`` in one statement."""
    conn = session.connection()
    result: Any = conn.execute(_ADD_MANY, {"res": resource, "nodes": nodes, "n": n})
    if result.rowcount != len(nodes):  # a counter is missing (a resource registered later)
        conn.execute(_ADD_MANY, {"res": resource, "nodes": nodes, "n": -n})
        _ensure_usage(session, nodes, [resource])
        conn.execute(_ADD_MANY, {"res": resource, "nodes": nodes, "n": n})


def apply(  # noqa: PLR0913  (the quota engine's entry: keyword-only overrides, each defaulted here)
    session: Session,
    chain: list[str],
    amounts: dict[str, int],
    *,
    enforce: bool,
    role: str | None = None,
    decisions: Decisions | None = None,
    rules: list[policy.Rule] | None = None,
    now: datetime | None = None,
    limits: dict[tuple[str, str], int] | None = None,
) -> None:
    """Add ``amounts`` (negative to give back) along ``chain`` (leaf first), checking ceilings when
    ``enforce``; raises the policy's refusal naming the rule and the numbers."""
    resources = sorted(r for r, n in amounts.items() if n)
    if not resources:
        return
    now = now or utcnow()
    decisions = decisions if decisions is not None else Decisions()
    limits = limits if limits is not None else limits_of(session, chain)
    rules = rules if rules is not None else (policy.load(session) if enforce else [])
    rows: list[_Row] = []  # the global order: resource, then root first
    ceilings: dict[tuple[str, str], policy.Ceiling] = {}
    for resource in resources:
        n = amounts[resource]
        for node_id in reversed(chain):
            limit = limits.get((node_id, resource))
            cap = None
            if limit is not None and enforce and n > 0:
                c = policy.ceiling(rules, resource, role, node_id, chain, limit, now)
                if c.burst is not None and c.burst > c.normal:  # rare: the row-by-row statements
                    return _apply_rowwise(
                        session, chain, amounts, resources, limits, enforce, role, decisions, rules, now
                    )
                ceilings[(node_id, resource)] = c
                cap = c.normal
            rows.append(_Row(node_id, resource, n, cap, limit))
    got = _update(session, rows, now)
    if len(got) < len(rows):
        left = [r for r in rows if (r.node, r.res) not in got]
        # counters of a resource registered after the node: made here, or by a concurrent first
        # charge (this insert then adds none, but the row is there): move them either way
        _ensure_usage_pairs(session, left)
        got.update(_update(session, left, now))
        for r in rows:
            if (r.node, r.res) not in got:
                c = ceilings[(r.node, r.res)]
                raise _refusal(session, decisions, r.node, r.res, r.n, c.limit, c)
    for (node_id, resource), c in ceilings.items():
        _note(decisions, node_id, resource, amounts[resource], got[(node_id, resource)], c.limit, c)


@dataclass(frozen=True)
class _Row:
    node: str
    res: str
    n: int
    cap: int | None
    lim: int | None


_UPDATE_SQL: dict[tuple[str, int], Any] = {}
_SET = (
    "used = {u}.used + req.n, over_since = CASE WHEN req.lim IS NOT NULL AND {u}.used + req.n > req.lim "
    "THEN COALESCE({u}.over_since, :now) ELSE NULL END"
)
_MATCH = (
    "{u}.node_id = req.node AND {u}.resource = req.res AND (req.cap IS NULL OR {u}.used + req.n <= req.cap)"
)


def _update_sql(dialect: str, count: int) -> Any:
    """One UPDATE of every counter a charge moves, each checked against its own ceiling; built
    once per dialect and row count (bind parameters only)."""
    key = (dialect, count)
    if key not in _UPDATE_SQL:
        if dialect == "postgresql":
            typed = (("n", "VARCHAR"), ("r", "VARCHAR"), ("a", "BIGINT"), ("c", "BIGINT"), ("l", "BIGINT"))
            values = ", ".join(
                "(" + ", ".join(f"CAST(:{p}{i} AS {t})" for p, t in typed) + ")" for i in range(count)
            )
            sql = (
                f"UPDATE quota_usage AS u SET {_SET.format(u='u')} "
                f"FROM (VALUES {values}) AS req(node, res, n, cap, lim) "
                f"WHERE {_MATCH.format(u='u')} RETURNING u.node_id, u.resource, u.used"
            )
        else:
            values = ", ".join(f"(:n{i}, :r{i}, :a{i}, :c{i}, :l{i})" for i in range(count))
            sql = (
                f"WITH req(node, res, n, cap, lim) AS (VALUES {values}) "
                f"UPDATE quota_usage SET {_SET.format(u='quota_usage')} FROM req "
                f"WHERE {_MATCH.format(u='quota_usage')} RETURNING node_id, resource, used"
            )
        _UPDATE_SQL[key] = text(sql).bindparams(bindparam("now", type_=QuotaUsage.over_since.type))
    return _UPDATE_SQL[key]


_LOCK = (
    select(_USAGE.c.node_id)
    .join(QuotaNode.__table__, QuotaNode.__table__.c.id == _USAGE.c.node_id)
    .where(
        _USAGE.c.node_id.in_(bindparam("nodes", expanding=True)),
        _USAGE.c.resource.in_(bindparam("res", expanding=True)),
    )
    .order_by(_USAGE.c.resource, QuotaNode.__table__.c.depth, _USAGE.c.node_id)
    .with_for_update(of=_USAGE)
)


def _update(session: Session, rows: list[_Row], now: datetime) -> dict[tuple[str, str], int]:
    """Move the counters; returns the new usage of those that moved (a missing one was full, or
    does not exist). PostgreSQL first locks them in the global order (one statement, so two charges
    never wait on each other in a cycle); SQLite serialises writers (``BEGIN IMMEDIATE``)."""
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(_LOCK, {"nodes": sorted({r.node for r in rows}), "res": sorted({r.res for r in rows})})
    params: dict[str, Any] = {"now": now}
    for i, r in enumerate(rows):
        params.update({f"n{i}": r.node, f"r{i}": r.res, f"a{i}": r.n, f"c{i}": r.cap, f"l{i}": r.lim})
    result = conn.execute(_update_sql(dialect, len(rows)), params)
    return {(node, res): int(used) for node, res, used in result}


def _ensure_usage_pairs(session: Session, rows: list[_Row]) -> bool:
    return (
        insert_ignore(session, QuotaUsage, [{"node_id": r.node, "resource": r.res, "used": 0} for r in rows])
        > 0
    )


def _apply_rowwise(  # noqa: PLR0913  (apply()'s resolved state, handed over whole)
    session: Session,
    chain: list[str],
    amounts: dict[str, int],
    resources: list[str],
    limits: dict[tuple[str, str], int],
    enforce: bool,
    role: str | None,
    decisions: Decisions,
    rules: list[policy.Rule],
    now: datetime,
) -> None:
    """One conditional UPDATE per counter: needed when a burst rule lets a counter pass its limit
    for a while (the condition then depends on since when it is over)."""
    conn = session.connection()
    # SQLite serialises writers, so the counters without a limit can move in one statement per
    # resource; PostgreSQL updates row by row in the global order (a multi-row UPDATE locks in scan
    # order, which could deadlock with another charge)
    bulk = conn.dialect.name == "sqlite"
    for resource in resources:
        n = amounts[resource]
        if bulk:
            free = [node for node in chain if (node, resource) not in limits]
            if free:
                _add_free(session, free, resource, n)
        for node_id in reversed(chain):  # root first: the global lock order
            limit = limits.get((node_id, resource))
            if bulk and limit is None:
                continue
            params: dict[str, Any] = {"node": node_id, "res": resource, "n": n, "lim": limit, "now": now}
            ceil = None
            if limit is None:
                stmt = _ADD
            elif enforce and n > 0:
                ceil = policy.ceiling(rules, resource, role, node_id, chain, limit, now)
                burst = ceil.burst if ceil.burst is not None and ceil.burst > ceil.normal else None
                params.update(
                    ceil=ceil.normal,
                    burst=burst if burst is not None else -1,
                    cutoff=ceil.burst_cutoff or now,
                )
                stmt = _ADD_CHECKED
            else:
                stmt = _ADD_TRACKED
            row = conn.execute(stmt, params).first()
            if row is None and _ensure_usage(session, [node_id], [resource]):
                row = conn.execute(stmt, params).first()  # the counter was missing: now it exists
            if row is None:
                assert ceil is not None and limit is not None
                raise _refusal(session, decisions, node_id, resource, n, limit, ceil)
            if ceil is not None and limit is not None:
                _note(decisions, node_id, resource, n, int(row[0]), limit, ceil)


def _note(d: Decisions, node: str, resource: str, n: int, used: int, limit: int, c: policy.Ceiling) -> None:
    if node == SYSTEM:
        # the system node's usage is every tenant's together: no caller is told it
        return
    if used > c.normal and c.burst_rule is not None:
        d.add(
            "burst",
            c.burst_rule,
            f"Rule '{c.burst_rule}' (burst): node '{node}' uses {used} of {limit} {resource} "
            f"({100 * used / max(limit, 1):.0f} %), allowed for a limited time.",
            node=node,
            resource=resource,
            used=used,
            requested=n,
            limit=limit,
            ceiling=c.burst,
        )
    elif c.warn_at is not None and used > c.warn_at and c.warn_rule is not None:
        d.add(
            "warn",
            c.warn_rule,
            f"Rule '{c.warn_rule}' (threshold): node '{node}' uses {used} of {limit} {resource} "
            f"({100 * used / max(limit, 1):.0f} %, warning above {c.warn_at:g}).",
            node=node,
            resource=resource,
            used=used,
            requested=n,
            limit=limit,
            warn_at=c.warn_at,
        )


def _refusal(
    session: Session, d: Decisions, node: str, resource: str, n: int, limit: int, c: policy.Ceiling
) -> Exception:
    used, over_since = session.execute(
        select(QuotaUsage.used, QuotaUsage.over_since).where(
            QuotaUsage.node_id == node, QuotaUsage.resource == resource
        )
    ).one()
    numbers = {"node": node, "resource": resource, "used": int(used), "requested": n, "limit": limit}
    if node == SYSTEM:
        return _platform_refusal(d, c.normal_rule or policy.LIMIT_RULE, resource, n, limit)
    if c.burst is not None and used + n <= c.burst and over_since is not None:
        return policy.refused(
            d,
            c.burst_rule or policy.LIMIT_RULE,
            f"Rule '{c.burst_rule}' (burst): node '{node}' has been above its {resource} limit {limit} since "
            f"{over_since.isoformat(timespec='seconds')}, longer than the burst allows; it uses {used}, "
            f"this request needs {n} more.",
            ceiling=c.normal,
            over_since=over_since.isoformat(),
            **numbers,
        )
    top = c.burst if c.burst is not None and c.burst > c.normal else c.normal
    rule = c.burst_rule if top != c.normal else c.normal_rule
    how = "quota limit" if rule == policy.LIMIT_RULE else f"rule '{rule}'"
    return policy.refused(
        d,
        rule or policy.LIMIT_RULE,
        f"Quota exceeded ({how}): node '{node}' uses {used} of {limit} {resource} (refused above {top}); "
        f"this request needs {n} more.",
        ceiling=top,
        **numbers,
    )


def _platform_refusal(d: Decisions, rule: str, resource: str, n: int, limit: int) -> Exception:
    """A refusal at the system node, without its usage: that is every tenant's usage together."""
    return policy.refused(
        d,
        rule,
        f"Quota exceeded: the platform-wide {resource} limit ({limit}) is reached; this request needs "
        f"{n} more and is refused until some is freed or an administrator raises the limit.",
        node=SYSTEM,
        resource=resource,
        requested=n,
        limit=limit,
    )


def charge(  # noqa: PLR0913  (the charged row: kind, id and amounts; called from every area)
    session: Session,
    principal: Principal,
    project: Project,
    kind: str,
    resource_id: str,
    amounts: dict[str, int],
    decisions: Decisions | None = None,
    budget_override: bool = False,
) -> Decisions:
    """Charge a new resource row to the caller's user node in ``project`` (same transaction)."""
    unknown = set(amounts) - set(RESOURCES)
    if unknown:
        raise ValueError(f"unregistered resources {sorted(unknown)}")
    decisions = decisions if decisions is not None else Decisions()
    chain, limits = _chain_of(session, project, principal.user_id if principal.kind == "user" else None)
    rules = policy.load(session)
    policy.check_size(rules, principal.role, chain, amounts, decisions)
    apply(
        session,
        chain,
        amounts,
        enforce=True,
        role=principal.role,
        decisions=decisions,
        rules=rules,
        limits=limits,
    )
    billing.check_budget(session, chain, amounts, principal, budget_override, decisions)
    _record(session, kind, resource_id, chain[0], amounts)
    return decisions


_INSERT_CHARGE = insert(QuotaCharge.__table__)  # type: ignore[arg-type]


def _record(session: Session, kind: str, resource_id: str, node_id: str, amounts: dict[str, int]) -> None:
    """The charge row, written without the ORM's unit of work (it is never read back in this
    transaction as an object: release and reconcile select it)."""
    session.connection().execute(
        _INSERT_CHARGE,
        {
            "kind": kind,
            "resource_id": resource_id,
            "node_id": node_id,
            "amounts": dict(amounts),
            "created_at": utcnow(),
        },
    )


def _chain_of(
    session: Session, project: Project, user_id: str | None
) -> tuple[list[str], dict[tuple[str, str], int]]:
    """The leaf's chain and limits in one query; the nodes are created on a first use."""
    leaf = user_node(project.id, user_id) if user_id is not None else project_node(project.id)
    chain, limits = chain_limits(session, leaf)
    if not chain:
        ensure_nodes(session, chain_specs(session, project, user_id))
        chain, limits = chain_limits(session, leaf)
    return chain, limits


def require_room(
    session: Session, project: Project, resource: str, what: str, n: int = 1, user_id: str | None = None
) -> None:
    """Refuse ``what`` unless ``n`` more ``resource`` fit under every limit from ``project`` (or its
    ``user_id`` node) up: for a resource whose amount is known only once the work is done (a backup's
    size, charged then), or one request charged row by row (a VM's ports), so the refusal states the
    usage before the request. The charge itself stays the race-free check."""
    specs = chain_specs(session, project, user_id)
    ensure_nodes(session, specs)
    chain = [s.id for s in specs]
    limits = limits_of(session, chain)
    if not any((n, resource) in limits for n in chain):
        return
    used = dict(
        session.execute(
            select(QuotaUsage.node_id, QuotaUsage.used).where(
                QuotaUsage.node_id.in_(chain), QuotaUsage.resource == resource
            )
        ).all()
    )
    rules = policy.load(session)
    now = utcnow()
    for node_id in reversed(chain):
        limit = limits.get((node_id, resource))
        if limit is None:
            continue
        ceil = policy.ceiling(rules, resource, None, node_id, chain, limit, now)
        now_used = int(used.get(node_id, 0))
        if now_used + n > ceil.normal and node_id == SYSTEM:
            raise _platform_refusal(Decisions(), ceil.normal_rule or policy.LIMIT_RULE, resource, n, limit)
        if now_used + n > ceil.normal:
            raise policy.refused(
                Decisions(),
                ceil.normal_rule or policy.LIMIT_RULE,
                f"Quota exceeded: node '{node_id}' uses {now_used} of {limit} {resource}; {what} needs "
                f"{n} more and is refused until some is freed or the limit is raised.",
                node=node_id,
                resource=resource,
                used=now_used,
                requested=n,
                limit=limit,
                ceiling=ceil.normal,
            )


def charge_node(session: Session, node_id: str, kind: str, resource_id: str, amounts: dict[str, int]) -> None:
    """Count an existing row without checking limits (reconciliation found it uncounted)."""
    chain, limits = chain_limits(session, node_id)
    apply(session, chain, amounts, enforce=False, limits=limits)
    _record(session, kind, resource_id, node_id, amounts)


_CHARGE_KEY = (QuotaCharge.kind == bindparam("kind"), QuotaCharge.resource_id == bindparam("rid"))
_FIND_CHARGE = select(QuotaCharge.node_id, QuotaCharge.amounts).where(*_CHARGE_KEY)
_DELETE_CHARGE = delete(QuotaCharge).where(*_CHARGE_KEY)


def release(session: Session, kind: str, resource_id: str) -> bool:
    """Give back what a resource row holds, at once; a second call does nothing."""
    row = session.connection().execute(_FIND_CHARGE, {"kind": kind, "rid": resource_id}).one_or_none()
    if row is None:
        return False
    chain, limits = chain_limits(session, row.node_id)
    apply(session, chain, {r: -int(v) for r, v in row.amounts.items()}, enforce=False, limits=limits)
    session.connection().execute(_DELETE_CHARGE, {"kind": kind, "rid": resource_id})
    return True


def resize(session: Session, kind: str, resource_id: str, amounts: dict[str, int], role: str | None) -> None:
    """Change what a row holds (a resize): growth is checked like a create, shrinking always passes."""
    charge_row = session.get(QuotaCharge, (kind, resource_id))
    if charge_row is None:
        return
    delta = {r: int(v) - int(charge_row.amounts.get(r, 0)) for r, v in amounts.items()}
    chain, limits = chain_limits(session, charge_row.node_id)
    apply(session, chain, {r: v for r, v in delta.items() if v < 0}, enforce=False, limits=limits)
    apply(session, chain, {r: v for r, v in delta.items() if v > 0}, enforce=True, role=role, limits=limits)
    charge_row.amounts = dict(amounts)
