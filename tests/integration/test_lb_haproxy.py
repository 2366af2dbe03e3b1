"""The HAProxy data plane seen from a client: real HAProxy in its own network namespace in front of
member namespaces that answer their names (tests/integration/lblab.py).

Each test applies a desired state through :class:`HAProxyInstance` and asserts what a client of
the VIP sees: how requests spread, who serves when members fail, that no request fails while
members are drained, re-weighted and added, and where L7 policies send requests.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from novacron.errors import InvalidInput
from novacron.lbaas import exporter
from novacron.lbaas.haproxy import HAProxyInstance
from novacron.lbaas.model import (
    HealthMonitorSpec,
    L7PolicySpec,
    L7RuleSpec,
    ListenerSpec,
    LoadBalancerSpec,
    MemberSpec,
    PoolSpec,
    SessionPersistenceSpec,
)
from tests.integration.lblab import LbLab, haproxy_lab, sh

PORT = 80
#: checks every second; down after 2 failures, up after 2 successes
MONITOR = HealthMonitorSpec(type="HTTP", delay=1, timeout=1, max_retries=2, max_retries_down=2)


@pytest.fixture
def lab() -> Iterator[tuple[LbLab, HAProxyInstance]]:
    with haproxy_lab("nclb", members=3) as made:
        yield made


def member(lab: LbLab, name: str, **kw: object) -> MemberSpec:
    return MemberSpec(name, lab.addresses[name], 80, **kw)  # type: ignore[arg-type]


def one_pool(lab: LbLab, members: tuple[MemberSpec, ...], **pool: object) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        id="lb-1",
        vip_address=lab.vip,
        listeners=(ListenerSpec("listener-1", "HTTP", PORT, default_pool_id="pool-1"),),
        pools=(PoolSpec("pool-1", members=members, **pool),),  # type: ignore[arg-type]
    )


def wait_status(instance: HAProxyInstance, member_id: str, prefix: str, timeout: float) -> float:
    """Seconds until the member's status starts with ``prefix`` (UP, DOWN)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if instance.member_health()[("pool-1", member_id)].startswith(prefix):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{member_id} not {prefix} after {timeout} s: {instance.member_health()}")


def test_round_robin_alternates_and_weights_spread_3_to_1(lab: tuple[LbLab, HAProxyInstance]) -> None:
    net, instance = lab
    instance.apply(one_pool(net, (member(net, "m1"), member(net, "m2"))))
    names = net.names(PORT, 8)
    assert sorted(set(names)) == ["m1", "m2"]
    assert all(a != b for a, b in zip(names, names[1:], strict=False)), names

    instance.apply(one_pool(net, (member(net, "m1", weight=3), member(net, "m2", weight=1))))
    spread = Counter(net.names(PORT, 40))
    assert spread == {"m1": 30, "m2": 10}, spread

    metrics = sh(f"ip netns exec {net.lb} curl -s http://127.0.0.1:8404/metrics").stdout
    assert 'haproxy_server_status{proxy="pool-1",server="m1"' in metrics


def test_backup_serves_only_when_primaries_are_down(lab: tuple[LbLab, HAProxyInstance]) -> None:
    net, instance = lab
    members = (member(net, "m1"), member(net, "m2"), member(net, "m3", backup=True))
    instance.apply(one_pool(net, members, healthmonitor=MONITOR))
    assert set(net.names(PORT, 10)) == {"m1", "m2"}

    net.stop_member("m1")
    net.stop_member("m2")
    wait_status(instance, "m1", "DOWN", timeout=10)
    wait_status(instance, "m2", "DOWN", timeout=10)
    assert set(net.names(PORT, 6)) == {"m3"}


def test_source_ip_persistence_sticks(lab: tuple[LbLab, HAProxyInstance]) -> None:
    net, instance = lab
    members = (member(net, "m1"), member(net, "m2"), member(net, "m3"))
    instance.apply(one_pool(net, members, session_persistence=SessionPersistenceSpec("SOURCE_IP")))
    names = net.names(PORT, 12)
    assert len(set(names)) == 1 and names[0].startswith("m"), names


def statistics(instance: HAProxyInstance) -> dict[tuple[str, ...], float]:
    """The exporter's samples keyed by series and the ids in their labels."""
    assert instance.spec is not None
    samples = exporter.scrape(instance.paths.state_dir, instance.spec)
    keys = ("listener_id", "pool_id", "member_id", "code")
    return {(series, *(labels[k] for k in keys if k in labels)): value for series, labels, value in samples}


def test_failed_member_goes_down_within_delay_times_fall_and_back_within_rise_and_statistics_show_it(
    lab: tuple[LbLab, HAProxyInstance],
) -> None:
    net, instance = lab
    instance.apply(one_pool(net, (member(net, "m1"), member(net, "m2")), healthmonitor=MONITOR))
    wait_status(instance, "m2", "UP", timeout=10)
    assert set(net.names(PORT, 6)) == {"m1", "m2"}
    before = statistics(instance)
    assert before[("novacron_lb_listener_requests_total", "listener-1")] == 6
    assert before[("novacron_lb_listener_responses_total", "listener-1", "2xx")] == 6
    assert before[("novacron_lb_member_sessions_total", "pool-1", "m2")] == 3

    net.stop_member("m2")
    down_after = wait_status(instance, "m2", "DOWN", timeout=10)
    # delay x fall, plus the timeout of the check under way and a margin for a loaded machine
    assert down_after <= MONITOR.delay * MONITOR.max_retries_down + MONITOR.timeout + 1.5
    assert set(net.names(PORT, 6)) == {"m1"}
    after = statistics(instance)
    assert after[("novacron_lb_member_up", "pool-1", "m2")] == 0
    assert after[("novacron_lb_member_up", "pool-1", "m1")] == 1
    # HAProxy counts the failed checks of a member while it was up
    assert after[("novacron_lb_member_check_failures_total", "pool-1", "m2")] >= 1
    assert after[("novacron_lb_pool_active_members", "pool-1")] == 1

    net.start_member("m2")
    up_after = wait_status(instance, "m2", "UP", timeout=10)
    assert up_after <= MONITOR.delay * MONITOR.max_retries + 1.5
    assert set(net.names(PORT, 6)) == {"m1", "m2"}


def test_no_request_fails_while_members_are_drained_reweighted_and_added(
    lab: tuple[LbLab, HAProxyInstance],
) -> None:
    net, instance = lab
    instance.apply(one_pool(net, (member(net, "m1"), member(net, "m2")), healthmonitor=MONITOR))
    looper = net.loop(PORT)
    time.sleep(0.5)  # the client is under way before the first change

    instance.set_member("pool-1", "m1", state="drain")
    assert set(net.names(PORT, 6)) == {"m2"}
    instance.set_member("pool-1", "m1", state="ready")
    instance.set_member("pool-1", "m2", weight=5)
    # the looping client takes turns too, so the spread is not exactly 1:5
    spread = Counter(net.names(PORT, 24))
    assert spread["m1"] >= 1 and spread["m2"] >= 2 * spread["m1"], spread

    # the run-time weight is part of the desired state the next apply renders
    assert instance.spec is not None and instance.spec.pool("pool-1").member("m2").weight == 5
    pool = instance.spec.pool("pool-1")
    with_m3 = PoolSpec(pool.id, members=(*pool.members, member(net, "m3")), healthmonitor=MONITOR)

    def m3() -> str:
        return next(s.status for s in instance.stats() if s.member_id == "m3")

    for i in range(10):  # reloads, each handing the listening socket to a new worker
        instance.apply(LoadBalancerSpec("lb-1", net.vip, instance.spec.listeners, (with_m3,)))
        if i == 0:  # added to a checked pool, it is sent nothing before a check passed
            assert m3().startswith("DOWN"), instance.stats()
    weights = {s.member_id: s.weight for s in instance.stats()}
    assert weights == {"m1": 1, "m2": 5, "m3": 1}
    deadline = time.monotonic() + 10  # its checks pass (rise 2 at 1 s): it serves
    while m3() != "UP":
        assert time.monotonic() < deadline, instance.stats()
        time.sleep(0.2)
    assert "m3" in net.names(PORT, 14)

    # a desired state that changes only members' weight, drain or admin state is applied through
    # the runtime API: the same worker serves on, with the new weights and states
    workers = instance._workers()
    pool = instance.spec.pool("pool-1")
    retuned = tuple(
        dataclasses.replace(m, weight=3)
        if m.id == "m3"
        else dataclasses.replace(m, drain=True)
        if m.id == "m2"
        else m
        for m in pool.members
    )
    instance.apply(dataclasses.replace(instance.spec, pools=(dataclasses.replace(pool, members=retuned),)))
    assert instance._workers() == workers
    assert {s.member_id: (s.weight, s.status.split()[0]) for s in instance.stats()} == {
        "m1": (1, "UP"),
        "m2": (5, "DRAIN"),
        "m3": (3, "UP"),
    }
    assert set(net.names(PORT, 8)) == {"m1", "m3"}

    result = looper.finish()
    assert result["failed"] == [], result
    assert isinstance(result["ok"], int) and result["ok"] > 20


def test_l7_policies_route_by_path_and_host_and_reject(lab: tuple[LbLab, HAProxyInstance]) -> None:
    net, instance = lab
    policies = (
        L7PolicySpec(
            "api", "REDIRECT_TO_POOL", 1, (L7RuleSpec("api-path", "PATH", "STARTS_WITH", "/api/"),), "api"
        ),
        L7PolicySpec(
            "admin",
            "REDIRECT_TO_POOL",
            2,
            (L7RuleSpec("admin-host", "HOST_NAME", "EQUAL_TO", "admin.example"),),
            "adm",
        ),
        L7PolicySpec(
            "private", "REJECT", 3, (L7RuleSpec("private-path", "PATH", "STARTS_WITH", "/private"),)
        ),
    )
    spec = LoadBalancerSpec(
        id="lb-1",
        vip_address=net.vip,
        listeners=(ListenerSpec("web", "HTTP", PORT, default_pool_id="www", l7policies=policies),),
        pools=(
            PoolSpec("www", members=(member(net, "m1"),)),
            PoolSpec("api", members=(member(net, "m2"),)),
            PoolSpec("adm", members=(member(net, "m3"),)),
        ),
    )
    instance.apply(spec)
    assert net.names(PORT, 2, "/index.html") == ["m1", "m1"]
    assert net.names(PORT, 2, "/api/v1") == ["m2", "m2"]
    assert net.names(PORT, 2, "/", {"Host": "admin.example:80"}) == ["m3", "m3"]
    assert net.names(PORT, 1, "/private/x") == ["ERR 403"]
    # the first matching policy decides: /api/ on the admin host goes to the api pool
    assert net.names(PORT, 1, "/api/x", {"Host": "admin.example"}) == ["m2"]


def test_a_configuration_haproxy_refuses_leaves_the_running_one_serving(
    lab: tuple[LbLab, HAProxyInstance],
) -> None:
    net, instance = lab
    spec = one_pool(net, (member(net, "m1"),))
    instance.apply(spec)
    # the certificate was never placed in the state directory: haproxy -c refuses the configuration
    tls = ListenerSpec(
        "tls", "TERMINATED_HTTPS", 443, default_pool_id="pool-1", default_tls_container_ref="absent"
    )
    with pytest.raises(InvalidInput, match="absent.pem"):
        instance.apply(dataclasses.replace(spec, listeners=(*spec.listeners, tls)))
    assert instance.spec == spec
    assert net.names(PORT, 2) == ["m1", "m1"]


def test_inserted_cookie_and_uri_hash_keep_a_client_on_its_member(lab: tuple[LbLab, HAProxyInstance]) -> None:
    net, instance = lab
    members = (member(net, "m1"), member(net, "m2"), member(net, "m3"))
    instance.apply(one_pool(net, members, session_persistence=SessionPersistenceSpec("HTTP_COOKIE")))
    # HAProxy's inserted cookie names the member (its id): a client sending it back stays there
    assert net.names(PORT, 5, headers={"Cookie": "SRV=m2"}) == ["m2"] * 5
    assert net.names(PORT, 5, headers={"Cookie": "SRV=m3"}) == ["m3"] * 5

    instance.apply(one_pool(net, members, lb_algorithm="URI_HASH"))
    for path in ("/a", "/b/c"):
        assert len(set(net.names(PORT, 5, path))) == 1
    spread = {net.names(PORT, 1, f"/page-{n}")[0] for n in range(24)}
    assert spread == {"m1", "m2", "m3"}
