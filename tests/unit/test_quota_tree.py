"""Quota tree invariants under random operation sequences (hypothesis), on a real SQLite database
migrated to head: usage of a parent equals the sum of its children (plus its own direct charges,
which only reconciliation writes); no child's limit above its parent's; a charge that passed leaves
no node on its path above its limit; refusals change nothing; release gives back exactly."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from novacron.api.errors import status_of
from novacron.db.base import Database, new_id, utcnow
from novacron.db.migrate import upgrade
from novacron.db.models import Project, QuotaCharge, QuotaLimit, QuotaNode, QuotaUsage, Tenant, User
from novacron.errors import DomainError, Forbidden
from novacron.identity.permissions import permissions_of
from novacron.identity.principal import Principal
from novacron.quota import enforce, tree

RESOURCES = ("vcpus", "vms")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, list[str], list[Principal]]]:
    path: Path = tmp_path_factory.mktemp("quota")
    db = Database(f"sqlite:///{path}/nc.db")
    upgrade(db)
    with db.session() as s:
        t = Tenant(id=new_id("tenant"), name="t")
        s.add(t)
        s.flush()
        top = [Project(id=new_id("project"), tenant_id=t.id, name=f"p{i}") for i in range(2)]
        s.add_all(top)
        s.flush()
        subs = [
            Project(id=new_id("project"), tenant_id=t.id, name=f"p0-{i}", parent_id=top[0].id)
            for i in range(2)
        ]
        s.add_all(subs)
        s.flush()
        deep = Project(id=new_id("project"), tenant_id=t.id, name="p0-0-0", parent_id=subs[0].id)
        s.add(deep)
        users = [
            User(id=new_id("user"), username=f"u{i}", password_hash="x", role="member", tenant_id=t.id)
            for i in range(2)
        ]
        s.add_all(users)
        projects = [p.id for p in (*top, *subs, deep)]
        principals = [Principal(u.id, u.username, "member", t.id, permissions_of("member")) for u in users]
    yield db, projects, principals
    db.engine.dispose()


op_strategy = st.one_of(
    st.tuples(
        st.just("set"),
        st.integers(0, 20),
        st.sampled_from(RESOURCES),
        st.one_of(st.none(), st.integers(0, 12)),
    ),
    st.tuples(st.just("charge"), st.integers(0, 4), st.integers(0, 1), st.integers(1, 4)),
    st.tuples(st.just("release"), st.integers(0, 30), st.just(""), st.just(0)),
)


def _check(db: Database) -> None:
    with db.read_session() as s:
        nodes = {n.id: n for n in s.scalars(select(QuotaNode))}
        used: dict[tuple[str, str], int] = defaultdict(int)
        for u in s.scalars(select(QuotaUsage)):
            used[(u.node_id, u.resource)] = u.used
        direct: dict[tuple[str, str], int] = defaultdict(int)
        for c in s.scalars(select(QuotaCharge)):
            for r, v in c.amounts.items():
                direct[(c.node_id, r)] += int(v)
        limits = {(lim.node_id, lim.resource): lim.limit for lim in s.scalars(select(QuotaLimit))}
        children: dict[str, list[str]] = defaultdict(list)
        for n in nodes.values():
            if n.parent_id:
                children[n.parent_id].append(n.id)
        for node_id in nodes:
            for r in RESOURCES:
                below = sum(used[(c, r)] for c in children[node_id])
                assert used[(node_id, r)] == direct[(node_id, r)] + below, (node_id, r)
                assert used[(node_id, r)] >= 0
                own = limits.get((node_id, r))
                parent = nodes[node_id].parent_id
                while own is not None and parent is not None:
                    if (parent, r) in limits:
                        assert own <= limits[(parent, r)], (node_id, parent, r)
                        break
                    parent = nodes[parent].parent_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_strategy, min_size=1, max_size=25))
def test_tree_invariants_hold_under_random_operations(
    world: tuple[Database, list[str], list[Principal]], ops: list[tuple[str, int, str, int | None]]
) -> None:
    db, projects, principals = world
    with db.session() as s:
        s.execute(delete(QuotaCharge))
        s.execute(delete(QuotaLimit))
        s.execute(delete(QuotaUsage))
        s.execute(delete(QuotaNode).where(QuotaNode.kind != "system"))
    charges: list[str] = []
    for kind, a, b, c in ops:
        try:
            with db.session() as s:
                if kind == "set":
                    node_ids = sorted(s.scalars(select(QuotaNode.id)))
                    node = s.get(QuotaNode, node_ids[a % len(node_ids)])
                    assert node is not None
                    tree.set_limits(s, node, {b: c})
                elif kind == "charge":
                    project = s.get(Project, projects[a])
                    assert project is not None
                    rid = new_id("vm")
                    amounts = {"vcpus": int(c or 1), "vms": 1}
                    enforce.charge(s, principals[int(b)], project, "vm", rid, amounts)
                    # passed: no node on its path is above its limit on a charged resource
                    chain = tree.ancestors(s, tree.user_node(project.id, principals[int(b)].user_id))
                    for n in chain:
                        for r in amounts:
                            lim = s.get(QuotaLimit, (n.id, r))
                            u = s.get(QuotaUsage, (n.id, r))
                            assert lim is None or (u is not None and u.used <= lim.limit), (n.id, r)
                    charges.append(rid)
                elif charges:
                    rid = charges.pop(a % len(charges))
                    assert enforce.release(s, "vm", rid)
                    assert not enforce.release(s, "vm", rid)  # a second release does nothing
        except DomainError as exc:
            assert status_of(type(exc)) in (403, 422), exc.detail
        _check(db)


def _reset(db: Database) -> None:
    from novacron.db.models import PolicyRule

    with db.session() as s:
        for model in (PolicyRule, QuotaCharge, QuotaLimit, QuotaUsage):
            s.execute(delete(model))
        s.execute(delete(QuotaNode).where(QuotaNode.kind != "system"))


def _rule(db: Database, name: str, kind: str, params: dict[str, float], **fields: str) -> None:
    from novacron.db.models import PolicyRule

    with db.session() as s:
        s.add(PolicyRule(id=new_id("rule"), name=name, kind=kind, params=params, **fields))


def _charge(db: Database, project_id: str, who: Principal, vcpus: int) -> list[str]:
    with db.session() as s:
        project = s.get(Project, project_id)
        assert project is not None
        return enforce.charge(s, who, project, "vm", new_id("vm"), {"vcpus": vcpus, "vms": 1}).warnings


def test_policy_rules_name_the_rule_and_the_numbers(
    world: tuple[Database, list[str], list[Principal]],
) -> None:
    db, projects, (alice, _) = world
    _reset(db)
    with db.session() as s:
        node = s.get(QuotaNode, tree.node_for_ref(s, project_id=projects[1]))
        assert node is not None
        tree.set_limits(s, node, {"vcpus": 10})
    _rule(db, "warn-80-deny-100", "threshold", {"warn_pct": 80, "deny_pct": 100})
    _rule(db, "members-max-8", "max_size", {"max": 8}, resource="vcpus", role="member")
    assert _charge(db, projects[1], alice, 4) == []
    warnings = _charge(db, projects[1], alice, 5)  # 9 of 10: above 80 %
    assert len(warnings) == 1 and "warn-80-deny-100" in warnings[0] and "9 of 10 vcpus" in warnings[0]
    with pytest.raises(Forbidden) as refused:
        _charge(db, projects[1], alice, 2)
    p = refused.value
    assert status_of(type(p)) == 403 and p.extra["policy"]["rule"] == "warn-80-deny-100"
    assert (
        p.extra["policy"]["used"] == 9
        and p.extra["policy"]["limit"] == 10
        and p.extra["policy"]["requested"] == 2
    )
    assert "uses 9 of 10 vcpus" in p.detail
    with pytest.raises(Forbidden) as too_big:
        _charge(db, projects[1], alice, 9)
    assert too_big.value.extra["policy"] == {
        "rule": "members-max-8",
        "resource": "vcpus",
        "requested": 9,
        "max": 8,
    }
    with db.read_session() as s:  # the refusals changed nothing
        assert s.get(QuotaUsage, (tree.project_node(projects[1]), "vcpus")).used == 9  # type: ignore[union-attr]


def test_burst_allows_120_percent_for_a_limited_time(
    world: tuple[Database, list[str], list[Principal]],
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    db, projects, (alice, _) = world
    _reset(db)
    with db.session() as s:
        node = s.get(QuotaNode, tree.node_for_ref(s, project_id=projects[1]))
        assert node is not None
        tree.set_limits(s, node, {"vcpus": 10})
    _rule(db, "burst-120-2h", "burst", {"burst_pct": 120, "max_duration_s": 7200})
    _charge(db, projects[1], alice, 10)
    warnings = _charge(db, projects[1], alice, 1)  # 11 of 10: within the burst
    assert "burst-120-2h" in warnings[0]
    with pytest.raises(Forbidden):
        _charge(db, projects[1], alice, 2)  # 13 > 120 %
    with db.session() as s:  # the burst began more than 2 hours ago
        s.execute(
            update(QuotaUsage)
            .where(QuotaUsage.node_id == tree.project_node(projects[1]), QuotaUsage.resource == "vcpus")
            .values(over_since=utcnow() - timedelta(hours=3))
        )
    with pytest.raises(Forbidden) as expired:
        _charge(db, projects[1], alice, 1)  # 12 would fit the burst, but its 2 hours are over
    assert (
        expired.value.extra["policy"]["rule"] == "burst-120-2h"
        and "longer than the burst" in expired.value.detail
    )
