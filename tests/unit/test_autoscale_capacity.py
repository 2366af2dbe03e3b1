"""Capacity forecasts on a synthetic growing ledger: the exhaustion time falls within its interval
and near the true one, the bottleneck is named, and the what-ifs move it the right way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from novacron.autoscaling.capacity import ALL, CapacityService, Forecast, Pool, WhatIf, forecast
from novacron.compute.placement import claims  # noqa: F401 - its listener counts vm-1 on h-1, as in a node
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import (
    VM,
    Aggregate,
    AggregateHost,
    Host,
    IPAllocation,
    LedgerEntry,
    Network,
    Port,
    Project,
    Subnet,
    Tenant,
)
from novacron.errors import Forbidden
from novacron.identity.principal import Principal

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOURS = 48
#: vCPUs grow 0.25 an hour; 16 of 32 are used now: 64 hours left
VCPU_GROWTH = 0.25
#: addresses grow 0.1 an hour; 6 of 10 are used now: 40 hours left
PORT_GROWTH = 0.1


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One database for the module: its tests only read."""
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('capacity')}/nc.db")
    upgrade(database)
    with database.session() as s:
        s.add_all(Tenant(id=t, name=t) for t in ("t1", "t2"))
        s.flush()
        s.add_all(Project(id=f"p-{t}", tenant_id=t, name="main") for t in ("t1", "t2"))
        h1 = Host(
            id="h-1", name="h-1", driver="simulated", accelerator="tcg", cpus=8, ram_mb=16384, disk_gb=500
        )
        h2 = Host(
            id="h-2", name="h-2", driver="simulated", accelerator="tcg", cpus=8, ram_mb=16384, disk_gb=500
        )
        s.add_all([h1, h2, Aggregate(id="agg-a", name="rack-a", meta={})])
        s.flush()
        s.add(AggregateHost(aggregate_id="agg-a", host_id="h-1"))
        s.add(
            VM(
                id="vm-1",
                name="a",
                project_id="p-t1",
                tenant_id="t1",
                host_id="h-1",
                vcpus=16,
                ram_mb=8192,
                disk_gb=40,
            )
        )
        s.add(Network(id="net-1", project_id="p-t1", tenant_id="t1", name="n", vni=1001))
        s.flush()
        s.add(
            Subnet(
                id="sub-1",
                network_id="net-1",
                project_id="p-t1",
                tenant_id="t1",
                name="s",
                ip_version=4,
                cidr="10.0.0.0/24",
                allocation_pools=[["10.0.0.2", "10.0.0.11"]],
            )
        )
        for i in range(6):
            s.add(
                Port(
                    id=f"port-{i}",
                    network_id="net-1",
                    project_id="p-t1",
                    tenant_id="t1",
                    mac=f"m{i}",
                    device=f"d{i}",
                )
            )
        s.flush()
        s.add_all(
            IPAllocation(subnet_id="sub-1", ip=f"10.0.0.{i + 2}", port_id=f"port-{i}", network_id="net-1")
            for i in range(6)
        )
        start = NOW - timedelta(hours=HOURS)
        for h in range(HOURS):
            wobble = 0.2 if h % 2 else -0.2
            for resource, qty in (
                ("vcpus", 4 + VCPU_GROWTH * h + wobble),
                ("ports", 1 + PORT_GROWTH * h + wobble / 4),
            ):
                s.add(
                    LedgerEntry(
                        tenant_id="t1",
                        project_id="p-t1",
                        resource=resource,
                        hour=start + timedelta(hours=h),
                        quantity=qty,
                        cost=0.0,
                    )
                )
    yield database
    database.engine.dispose()


def _pool(result: Forecast, group: str, resource: str) -> Pool:
    return next(
        p for g in result.groups if g.name.startswith(group) for p in g.pools if p.resource == resource
    )


def _hours(pool: Pool, when: datetime | None) -> float:
    assert when is not None, pool
    return (when - NOW).total_seconds() / 3600


def test_exhaustion_of_a_growing_pool_is_predicted_within_its_interval(db: Database) -> None:
    with db.read_session() as s:
        result = forecast(s, 24 * 30, WhatIf(), now=NOW)
    vcpus = _pool(result, "rack-a", "vcpus")
    assert (vcpus.capacity, vcpus.used, vcpus.history_points) == (32, 16, HOURS)
    earliest, expected, latest = (
        _hours(vcpus, vcpus.earliest),
        _hours(vcpus, vcpus.expected),
        _hours(vcpus, vcpus.latest),
    )
    assert earliest <= 64 <= latest and earliest <= expected <= latest
    assert expected == pytest.approx(64, abs=3)
    addresses = _pool(result, "subnet 10.0.0.0/24", "addresses")
    assert (addresses.capacity, addresses.used) == (10, 6)
    assert _hours(addresses, addresses.expected) == pytest.approx(40, abs=3)
    # the rack's RAM and disk don't grow: vCPUs bind first
    rack = next(g for g in result.groups if g.name == "rack-a")
    assert rack.bottleneck == "vcpus"
    assert _pool(result, "rack-a", "ram_mb").expected is None
    # the whole cluster has h-2's room too: 64 vCPUs, (64 - 16) / 0.25 = 192 hours
    cluster = _pool(result, ALL, "vcpus")
    assert cluster.capacity == 64 and _hours(cluster, cluster.expected) == pytest.approx(192, abs=8)


def test_what_ifs_move_the_exhaustion(db: Database) -> None:
    with db.read_session() as s:
        base = _pool(forecast(s, 24 * 30, WhatIf(), now=NOW), "rack-a", "vcpus")
        # two 8-CPU hosts at the rack's ratio 4: 64 more vCPUs, 256 more hours
        more = forecast(
            s, 24 * 30, WhatIf(add_hosts=2, host_cpus=8, host_ram_mb=16384, aggregate="rack-a"), now=NOW
        )
        added = _pool(more, "rack-a", "vcpus")
        assert added.capacity == 96
        assert _hours(added, added.expected) == pytest.approx(64 + 256, abs=10)
        # t1 (all of the rack's use) growing 50 % a month on top of its trend: sooner
        faster = _pool(forecast(s, 24 * 30, WhatIf(tenant_id="t1", growth=0.5), now=NOW), "rack-a", "vcpus")
        assert faster.expected is not None and base.expected is not None and faster.expected < base.expected
        # another tenant's growth changes nothing here
        other = _pool(forecast(s, 24 * 30, WhatIf(tenant_id="t2", growth=0.5), now=NOW), "rack-a", "vcpus")
        assert other.expected == base.expected


def test_only_platform_administrators_plan_capacity(db: Database) -> None:
    member = Principal("u-a", "alice", "member", "t1", frozenset())
    with db.read_session() as s, pytest.raises(Forbidden):
        CapacityService(s, member).forecast(30, WhatIf())
