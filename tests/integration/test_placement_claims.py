"""Placement against the real store (SQLite and PostgreSQL): atomic claims, filters, weighers, groups.

Hosts here are rows (the scheduler only reads rows); no hypervisor is involved.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select

from novacron.compute import placement
from novacron.compute.placement import NoValidHost, claim, reconcile_usage, release
from novacron.compute.placement.view import decisions
from novacron.compute.reports import register_host
from novacron.db.base import Database, new_id, utcnow
from novacron.db.migrate import upgrade
from novacron.db.models import VM, Aggregate, AggregateHost, Allocation, Host, Project, ServerGroup, Tenant
from novacron.network.service import NicRequest, vm_traits
from novacron.virt.base import HostFacts

# the Core tables, to change rows behind the ORM's back (the drift reconcile must repair)
HOSTS = cast(Table, Host.__table__)
AGGREGATES = cast(Table, Aggregate.__table__)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/placement.db"
    else:
        pg: Any = request.getfixturevalue("postgres")
        url = pg.create_database(f"placement_{secrets.token_hex(4)}")
    database = Database(url)
    upgrade(database)
    yield database
    database.engine.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/placement.db")
    upgrade(database)
    yield database
    database.engine.dispose()


def _project(db: Database) -> tuple[str, str]:
    with db.session() as s:
        t = Tenant(id=new_id("tenant"), name=f"t-{secrets.token_hex(3)}")
        s.add(t)
        s.flush()
        p = Project(id=new_id("project"), tenant_id=t.id, name="main")
        s.add(p)
    return t.id, p.id


def _host(db: Database, name: str, cpus: int = 4, ram_mb: int = 8192, **kw: Any) -> str:
    with db.session() as s:
        h = Host(
            id=new_id("host"),
            name=name,
            driver="simulated",
            accelerator="tcg",
            cpus=cpus,
            ram_mb=ram_mb,
            last_heartbeat=utcnow(),
            **kw,
        )
        s.add(h)
    return h.id


def _vms(
    db: Database, tp: tuple[str, str], n: int, vcpus: int = 1, ram_mb: int = 128, **kw: Any
) -> list[str]:
    ids = []
    with db.session() as s:
        for _ in range(n):
            vm = VM(
                id=new_id("vm"),
                tenant_id=tp[0],
                project_id=tp[1],
                name=f"vm-{secrets.token_hex(4)}",
                vcpus=vcpus,
                ram_mb=ram_mb,
                disk_gb=1,
                **kw,
            )
            s.add(vm)
            ids.append(vm.id)
    return ids


def _place(db: Database, vm_id: str, strategy: str = "spread") -> str:
    with db.session() as s:
        vm = s.get(VM, vm_id)
        assert vm is not None
        return claim(s, vm, strategy).name


def _usage(db: Database) -> dict[str, tuple[int, int, int, int]]:
    """host name -> (vcpus counter, ram counter, vcpus summed from VM rows, ram summed)."""
    with db.session() as s:
        out = {}
        for h in s.scalars(select(Host)):
            v, r = s.execute(
                select(func.coalesce(func.sum(VM.vcpus), 0), func.coalesce(func.sum(VM.ram_mb), 0)).where(
                    VM.host_id == h.id
                )
            ).one()
            out[h.name] = (h.vcpus_used, h.ram_mb_used, int(v), int(r))
        return out


def test_50_concurrent_claims_place_exactly_20(db: Database) -> None:
    tp = _project(db)
    # room for exactly 20 tiny VMs: 8 + 8 by vCPU (2 CPUs x 4.0), 4 by RAM (512 MiB x 1.0)
    _host(db, "a", cpus=2, ram_mb=8192)
    _host(db, "b", cpus=2, ram_mb=8192)
    _host(db, "c", cpus=8, ram_mb=512)
    vm_ids = _vms(db, tp, 50)
    # five engines = five API replicas, each with its own placement view
    replicas = [db] + [Database(db.url) for _ in range(4)]
    barrier = threading.Barrier(50)
    placed: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        replica = replicas[i % len(replicas)]
        try:
            barrier.wait()
            name = _place(replica, vm_ids[i])
            with lock:
                placed.append(name)
        except NoValidHost as exc:
            with lock:
                refused.append(str(exc))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # each decision is tallied once, by the replica that made it (the platform's metrics read it)
    tallies = [decisions(replica.engine) for replica in replicas]
    for replica in replicas[1:]:
        replica.engine.dispose()
    assert not errors, errors
    assert len(placed) == 20 and len(refused) == 30
    assert sum(t.get("placed", 0) for t in tallies) == 20, tallies
    assert sum(t.get("no_valid_host", 0) for t in tallies) == 30, tallies
    assert sorted(set(placed)) == ["a", "b", "c"]
    assert {n: placed.count(n) for n in "abc"} == {"a": 8, "b": 8, "c": 4}
    for name, (v, r, v_rows, r_rows) in _usage(db).items():
        assert (v, r) == (v_rows, r_rows), name
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Allocation)) == 20
        for h in s.scalars(select(Host)):
            assert h.vcpus_used <= h.cpus * h.cpu_allocation_ratio
            assert h.ram_mb_used <= h.ram_mb * h.ram_allocation_ratio
    assert "too little free vCPU" in refused[0] or "too little free RAM" in refused[0]


def test_release_frees_room_once_and_reconcile_repairs_drift(db: Database) -> None:
    tp = _project(db)
    _host(db, "only", cpus=1, ram_mb=4096)  # 4 vCPU
    ids = _vms(db, tp, 5)
    for vm_id in ids[:4]:
        assert _place(db, vm_id) == "only"
    with pytest.raises(NoValidHost, match="too little free vCPU"):
        _place(db, ids[4])
    with db.session() as s:
        vm = s.get(VM, ids[0])
        assert vm is not None
        release(s, vm)
        release(s, vm)  # idempotent
    assert _usage(db)["only"][:2] == (3, 384)
    assert _place(db, ids[4]) == "only"
    # the counters follow the VM rows whatever code changes them: a resize, a cleared host_id
    # (a failed create's rollback), a deleted row
    with db.session() as s:
        resized, cleared, deleted = (s.get(VM, i) for i in ids[1:4])
        assert resized is not None and cleared is not None and deleted is not None
        resized.ram_mb = 256
        cleared.host_id = None
        s.delete(deleted)
    v, r, v_rows, r_rows = _usage(db)["only"]
    assert (v, r) == (v_rows, r_rows) == (2, 384)
    # drift from outside the ORM (a raw UPDATE, a cascade) is repaired by reconcile
    with db.session() as s:
        s.execute(HOSTS.update().values(vcpus_used=0))
    with db.session() as s:
        fixed = reconcile_usage(s)
    assert fixed == {"only": (2, 0)}
    v, r, v_rows, r_rows = _usage(db)["only"]
    assert (v, r) == (v_rows, r_rows) == (2, 384)
    with db.session() as s:
        assert reconcile_usage(s) == {}


def test_hard_anti_affinity_concurrent_members_land_on_distinct_hosts(db: Database) -> None:
    tp = _project(db)
    for n in "abc":
        _host(db, n)
    with db.session() as s:
        g = ServerGroup(
            id=new_id("sg"), tenant_id=tp[0], project_id=tp[1], name="web", policy="anti-affinity"
        )
        s.add(g)
    ids = _vms(db, tp, 4, server_group_id=g.id)
    replicas = [db, Database(db.url)]
    barrier = threading.Barrier(4)
    results: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results.append(_place(replicas[i % 2], ids[i]))
        except NoValidHost as exc:
            results.append(f"refused: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    replicas[1].engine.dispose()
    placed = sorted(r for r in results if not r.startswith("refused"))
    assert placed == ["a", "b", "c"]
    [refusal] = [r for r in results if r.startswith("refused")]
    assert "has a member of server group 'web' (anti-affinity, hard)" in refusal


def test_soft_anti_affinity_and_affinity(sqlite_db: Database) -> None:
    db = sqlite_db
    tp = _project(db)
    for n in "ab":
        _host(db, n)
    with db.session() as s:
        soft = ServerGroup(
            id=new_id("sg"), tenant_id=tp[0], project_id=tp[1], name="s", policy="anti-affinity", hard=False
        )
        aff = ServerGroup(id=new_id("sg"), tenant_id=tp[0], project_id=tp[1], name="db", policy="affinity")
        s.add_all([soft, aff])
    spread = [_place(db, i) for i in _vms(db, tp, 4, server_group_id=soft.id)]
    assert sorted(spread[:2]) == ["a", "b"]  # distinct while it can
    assert sorted(spread) == ["a", "a", "b", "b"]  # then the fewest members, never refused
    together = {_place(db, i) for i in _vms(db, tp, 5, server_group_id=aff.id)}
    assert len(together) == 1  # affinity packs even under spread
    # hard affinity whose host is full refuses with the reason
    host = together.pop()
    with db.session() as s:
        s.execute(HOSTS.update().where(Host.name == host).values(state="maintenance"))
    [late] = _vms(db, tp, 1, server_group_id=aff.id)
    with pytest.raises(NoValidHost, match=f"{host}: in maintenance"):
        _place(db, late)


def test_traits_labels_aggregates_and_maintenance_filter(sqlite_db: Database) -> None:
    db = sqlite_db
    tp = _project(db)
    gpu = _host(db, "gpu1", traits=["gpu", "hw:avx512"], labels={"zone": "a"})
    _host(db, "plain1", labels={"zone": "a"})
    _host(db, "plain2", labels={"zone": "b"})
    with db.session() as s:
        agg = Aggregate(id=new_id("agg"), name="fast", meta={"ssd": "true"})
        s.add(agg)
        s.flush()
        s.add(AggregateHost(aggregate_id=agg.id, host_id=gpu))
    [needs_gpu] = _vms(db, tp, 1, placement={"required_traits": ["gpu"]})
    assert _place(db, needs_gpu) == "gpu1"
    no_gpu = _vms(db, tp, 6, placement={"forbidden_traits": ["gpu"]})
    assert {_place(db, i) for i in no_gpu} == {"plain1", "plain2"}
    [zone_a] = _vms(db, tp, 1, placement={"labels": {"zone": "a"}, "forbidden_traits": ["gpu"]})
    assert _place(db, zone_a) == "plain1"
    [in_agg] = _vms(db, tp, 1, placement={"aggregate": agg.id})
    assert _place(db, in_agg) == "gpu1"
    [avx_in_b] = _vms(db, tp, 1, placement={"required_traits": ["hw:avx512"], "labels": {"zone": "b"}})
    with pytest.raises(NoValidHost) as exc:
        _place(db, avx_in_b)
    msg = str(exc.value)
    assert "gpu1: label zone=a, zone=b requested" in msg and "plain2: lacks trait hw:avx512" in msg
    # an aggregate whose metadata reserves its hosts for tenants keeps everyone else off them
    other = _project(db)
    with db.session() as s:
        s.execute(AGGREGATES.update().values(meta={"tenants": other[0]}))
    with db.session() as s:
        placement.invalidate(s)
    [mine] = _vms(db, tp, 1, placement={"required_traits": ["gpu"]})
    with pytest.raises(NoValidHost, match="gpu1: reserved for other tenants"):
        _place(db, mine)
    [theirs] = _vms(db, other, 1, placement={"required_traits": ["gpu"]})
    assert _place(db, theirs) == "gpu1"
    [open_host] = _vms(db, tp, 1)
    assert _place(db, open_host) in ("plain1", "plain2")
    # maintenance: the host gets nothing new, even through a stale view
    with db.session() as s:
        s.execute(HOSTS.update().where(Host.name == "plain2").values(state="maintenance"))
    [nz] = _vms(db, tp, 1, placement={"labels": {"zone": "b"}})
    with pytest.raises(NoValidHost, match="plain2: in maintenance"):
        _place(db, nz)


def test_pack_and_spread_choose_differently(sqlite_db: Database) -> None:
    db = sqlite_db
    tp = _project(db)
    _host(db, "big", cpus=8, ram_mb=16384)
    _host(db, "small", cpus=8, ram_mb=4096)
    first = _vms(db, tp, 2, ram_mb=1024)
    assert _place(db, first[0], "spread") == "big"  # most free RAM
    assert _place(db, first[1], "pack") == "small"  # the tightest fit
    packed = [_place(db, i, "pack") for i in _vms(db, tp, 3, ram_mb=1024)]
    assert packed == ["small", "small", "small"]  # filled before the big host is touched
    spread = [_place(db, i, "spread") for i in _vms(db, tp, 3, ram_mb=1024)]
    assert spread == ["big", "big", "big"]


def test_stale_heartbeat_excluded(sqlite_db: Database) -> None:
    from datetime import timedelta

    db = sqlite_db
    tp = _project(db)
    _host(db, "dead")
    with db.session() as s:
        s.execute(HOSTS.update().values(last_heartbeat=utcnow() - timedelta(minutes=5)))
    [vm] = _vms(db, tp, 1)
    with pytest.raises(NoValidHost, match="dead: no heartbeat"):
        _place(db, vm)


def test_migration_0002_keeps_placed_vms_and_counts_them(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Upgrading a store that already has hosts and placed VMs: rows kept, allocations and counters
    derived from them (on SQLite the new columns are added in place: a table copy of ``hosts``
    would be refused by the VMs' foreign keys)."""
    import sqlalchemy as sa

    for kind in ("sqlite", "postgresql"):
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path}/old.db"
        else:
            pg: Any = request.getfixturevalue("postgres")
            url = pg.create_database(f"mig_{secrets.token_hex(4)}")
        database = Database(url)
        try:
            upgrade(database, "0001")
            now = utcnow()
            stamp = {"created_at": now, "updated_at": now, "version": 1}
            t = sa.table
            c = sa.column
            with database.engine.begin() as conn:
                conn.execute(
                    t("tenants", c("id"), c("name"), c("description"), *map(c, stamp)).insert(),
                    {"id": "t", "name": "t", "description": "", **stamp},
                )
                conn.execute(
                    t(
                        "projects", c("id"), c("tenant_id"), c("name"), c("description"), *map(c, stamp)
                    ).insert(),
                    {"id": "p", "tenant_id": "t", "name": "main", "description": "", **stamp},
                )
                host_cols = (
                    "id",
                    "name",
                    "driver",
                    "accelerator",
                    "cpus",
                    "cpu_model",
                    "ram_mb",
                    "disk_gb",
                    "state",
                    "cpu_allocation_ratio",
                    "ram_allocation_ratio",
                )
                conn.execute(
                    t("hosts", *map(c, host_cols), *map(c, stamp)).insert(),
                    {
                        "id": "h",
                        "name": "h",
                        "driver": "qemu",
                        "accelerator": "tcg",
                        "cpus": 2,
                        "cpu_model": "",
                        "ram_mb": 4096,
                        "disk_gb": 10,
                        "state": "up",
                        "cpu_allocation_ratio": 4.0,
                        "ram_allocation_ratio": 1.0,
                        **stamp,
                    },
                )
                vm_cols = (
                    "id",
                    "project_id",
                    "tenant_id",
                    "name",
                    "host_id",
                    "vcpus",
                    "ram_mb",
                    "disk_gb",
                    "user_data",
                    "desired_state",
                    "state",
                )
                conn.execute(
                    t("vms", *map(c, vm_cols), c("meta", sa.JSON), *map(c, stamp)).insert(),
                    [
                        {
                            "id": f"v{i}",
                            "project_id": "p",
                            "tenant_id": "t",
                            "name": f"n{i}",
                            "host_id": "h",
                            "vcpus": 2,
                            "ram_mb": 256,
                            "disk_gb": 1,
                            "user_data": "",
                            "desired_state": "running",
                            "state": "running",
                            "meta": {},
                            **stamp,
                        }
                        for i in range(3)
                    ],
                )
            upgrade(database)
            with database.session() as s:
                host = s.scalar(select(Host))
                assert host is not None
                assert (host.vcpus_used, host.ram_mb_used, host.labels, host.traits) == (6, 768, {}, [])
                assert s.scalar(select(func.count()).select_from(Allocation)) == 3
                assert all(v.placement == {} and v.server_group_id is None for v in s.scalars(select(VM)))
                assert reconcile_usage(s) == {}
        finally:
            database.engine.dispose()


def test_reserve_elsewhere_for_migration_honours_group_and_counts_once(db: Database) -> None:
    tp = _project(db)
    for n in ("h1", "h2", "h3"):
        _host(db, n)
    with db.session() as s:
        g = ServerGroup(id=new_id("sg"), tenant_id=tp[0], project_id=tp[1], name="ha", policy="anti-affinity")
        s.add(g)
    a, b = _vms(db, tp, 2, server_group_id=g.id)
    placed = {_place(db, a), _place(db, b)}
    free = ({"h1", "h2", "h3"} - placed).pop()
    with db.session() as s:
        vm = s.get(VM, a)
        assert vm is not None
        source = vm.host_id
        target = placement.reserve_elsewhere(s, vm)
        assert target.name == free  # not its own host, not the host of the other member
        # the migration's switch: give the reservation back, then move the row (re-counted once)
        placement.unreserve(s, target.id, vm.vcpus, vm.ram_mb)
        vm.host_id = target.id
    usage = _usage(db)
    for name, (v, r, v_rows, r_rows) in usage.items():
        assert (v, r) == (v_rows, r_rows), name
    assert usage[free][0] == 1
    with db.session() as s:
        s.execute(HOSTS.update().where(Host.id == source).values(state="maintenance"))
        placement.invalidate(s)
    with db.session() as s:
        vm = s.get(VM, a)
        assert vm is not None
        with pytest.raises(NoValidHost) as exc:
            placement.reserve_elsewhere(s, vm)  # the one host left has the other member
    assert f"{free}: the VM's current host" in str(exc.value)
    assert "has a member of server group 'ha'" in str(exc.value) and "in maintenance" in str(exc.value)


def test_offline_resize_grows_the_claim_or_is_refused(db: Database) -> None:
    from novacron.api.errors import status_of
    from novacron.compute import vms as vm_service
    from novacron.errors import Conflict

    tp = _project(db)
    _host(db, "small", cpus=1, ram_mb=2048)  # 4 vCPU, 2048 MiB
    a, b = _vms(db, tp, 2, state="stopped")
    assert _place(db, a) == "small" and _place(db, b) == "small"
    with db.session() as s:
        vm = s.get(VM, a)
        assert vm is not None
        vm_service.resize(vm, None, 3, 1024)  # 3 + 1 vCPU, 1024 + 128 MiB: fits
    assert _usage(db)["small"] == (4, 1152, 4, 1152)
    with db.session() as s:
        vm = s.get(VM, b)
        assert vm is not None
        with pytest.raises(Conflict) as exc:
            vm_service.resize(vm, None, 2, None)  # one vCPU more than the host has
        # the refusal says what is missing, not the host's free amounts (other tenants' VMs)
        assert status_of(type(exc.value)) == 409 and "needs 1 vCPU and 0 MiB more" in exc.value.detail
        assert "free room" in exc.value.detail
    with db.session() as s:
        vm = s.get(VM, a)
        assert vm is not None
        vm_service.resize(vm, None, 1, 128)  # shrinking always fits
    v, r, v_rows, r_rows = _usage(db)["small"]
    assert (v, r) == (v_rows, r_rows) == (2, 256)


def test_nic_hardware_reported_by_hosts_steers_sriov_and_dpdk_vms(sqlite_db: Database) -> None:
    db = sqlite_db
    tp = _project(db)

    def facts(*nic_traits: str) -> HostFacts:
        return HostFacts(cpus=4, cpu_model="x", cpu_flags=frozenset(), ram_mb=8192, disk_gb=10,
                         accelerator="tcg", nic_traits=nic_traits)  # fmt: skip

    register_host(db, "sriov1", "simulated", facts("sriov"))
    register_host(db, "dpdk1", "simulated", facts("dpdk"))
    plain = register_host(db, "plain1", "simulated", facts())
    with db.session() as s:  # a trait set by hand that the hardware does not back is not kept
        s.execute(HOSTS.update().where(Host.id == plain).values(traits=["gpu", "sriov"]))
    register_host(db, "plain1", "simulated", facts())
    with db.session() as s:
        assert s.get(Host, plain).traits == ["gpu"]  # type: ignore[union-attr]

    def nic_vm(vnic_type: str) -> str:
        traits = sorted(vm_traits([NicRequest(network="n", vnic_type=vnic_type)]))
        [vm] = _vms(db, tp, 1, placement={"required_traits": traits})
        return vm

    assert {_place(db, nic_vm("direct")) for _ in range(3)} == {"sriov1"}
    assert _place(db, nic_vm("vhost-user")) == "dpdk1"
    assert _place(db, nic_vm("normal")) in {"sriov1", "dpdk1", "plain1"}
    register_host(db, "sriov1", "simulated", facts())  # its virtual functions were taken away
    with pytest.raises(NoValidHost, match="sriov1: lacks trait sriov"):
        _place(db, nic_vm("direct"))
