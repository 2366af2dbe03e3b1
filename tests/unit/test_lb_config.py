"""A load balancer's desired state: validated where it is built, round-tripped through JSON for
the agent, and rendered to a configuration that HAProxy itself (``haproxy -c``) accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from novacron.errors import InvalidInput
from novacron.lbaas.haproxy import carry_health
from novacron.lbaas.haproxy_config import ACME_MAP, Paths, crt_lists, render
from novacron.lbaas.model import (
    HealthMonitorSpec,
    L7PolicySpec,
    L7RuleSpec,
    ListenerSpec,
    LoadBalancerSpec,
    MemberSpec,
    PoolSpec,
    SessionPersistenceSpec,
    expected_status_codes,
)
from novacron.network.wire import from_dict, to_dict
from tests.conftest import require


def full_spec() -> LoadBalancerSpec:
    """Every listener protocol, algorithm, persistence, monitor and policy kind at once."""
    http_monitor = HealthMonitorSpec(
        type="HTTP", delay=2, timeout=1, http_method="HEAD", expected_codes="200-204,301"
    )
    rules = (
        L7RuleSpec("host", "HOST_NAME", "EQUAL_TO", "api.example"),
        L7RuleSpec("hdr", "HEADER", "REGEX", '^a"b c$\\d', key="X-Client", invert=True),
    )
    policies = (
        L7PolicySpec("deny", "REJECT", 2, (L7RuleSpec("adm", "PATH", "STARTS_WITH", "/admin"),)),
        L7PolicySpec("to-api", "REDIRECT_TO_POOL", 1, rules, redirect_pool_id="api"),
        L7PolicySpec(
            "moved",
            "REDIRECT_TO_URL",
            3,
            (L7RuleSpec("old", "COOKIE", "CONTAINS", "v1", key="ver"),),
            redirect_url="https://new.example/",
            redirect_http_code=301,
        ),
    )
    web_members = (
        MemberSpec("m1", "10.0.0.1", 80, weight=3),
        MemberSpec("m2", "fd00::2", 8080, backup=True),
        MemberSpec("m3", "10.0.0.3", 80, admin_state_up=False),
        MemberSpec("m4", "10.0.0.4", 80, drain=True),
    )
    pools = (
        PoolSpec(
            "web",
            members=web_members,
            healthmonitor=http_monitor,
            session_persistence=SessionPersistenceSpec("HTTP_COOKIE"),
        ),
        PoolSpec(
            "api", lb_algorithm="COOKIE_HASH", hash_key="sid", members=(MemberSpec("a1", "10.0.1.1", 80),)
        ),
        PoolSpec(
            "hdr",
            lb_algorithm="HEADER_HASH",
            hash_key="X-User",
            session_persistence=SessionPersistenceSpec("APP_COOKIE", "JSESSIONID"),
        ),
        PoolSpec("uri", lb_algorithm="URI_HASH"),
        PoolSpec(
            "tcp",
            protocol="PROXYV2",
            lb_algorithm="RANDOM_TWO",
            session_persistence=SessionPersistenceSpec("SOURCE_IP"),
            members=(MemberSpec("t1", "10.0.2.1", 5432),),
            healthmonitor=HealthMonitorSpec(),
        ),
        PoolSpec(
            "tls",
            protocol="HTTPS",
            lb_algorithm="LEAST_CONNECTIONS",
            members=(MemberSpec("s1", "10.0.3.1", 443),),
            healthmonitor=HealthMonitorSpec(type="HTTPS"),
        ),
        PoolSpec("src", protocol="TCP", lb_algorithm="SOURCE_IP"),
    )
    listeners = (
        ListenerSpec(
            "http",
            "HTTP",
            80,
            default_pool_id="web",
            connection_limit=1000,
            timeout_client_data=30000,
            timeout_member_connect=2000,
            timeout_member_data=60000,
            insert_headers=("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"),
            l7policies=policies,
        ),
        ListenerSpec("tcp", "TCP", 5432, default_pool_id="tcp"),
        ListenerSpec("passthrough", "HTTPS", 443, default_pool_id="tls"),
        ListenerSpec(
            "terminated", "TERMINATED_HTTPS", 8443, default_pool_id="hdr", default_tls_container_ref="cert-1"
        ),
        ListenerSpec("other", "HTTP", 8080, default_pool_id="uri"),
        ListenerSpec("tcp2", "TCP", 9000, default_pool_id="src"),
    )
    return LoadBalancerSpec("lb-1", "10.0.0.100", listeners, pools)


def test_spec_round_trips_through_json() -> None:
    spec = full_spec()
    assert from_dict(LoadBalancerSpec, json.loads(json.dumps(to_dict(spec)))) == spec


def haproxy_accepts(config: str, directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "haproxy.cfg"
    path.write_text(config)
    return subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)


def self_signed(certs: Path, name: str) -> None:
    certs.mkdir(exist_ok=True)
    key, crt = certs / "key", certs / "crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lb.example"]
        + ["-keyout", str(key), "-out", str(crt)],
        check=True,
        capture_output=True,
    )
    (certs / f"{name}.pem").write_bytes(crt.read_bytes() + key.read_bytes())


def test_every_feature_renders_a_configuration_haproxy_accepts(tmp_path: Path) -> None:
    require(shutil.which("haproxy") is not None, "needs haproxy (scripts/setup.sh installs it)")
    self_signed(tmp_path / "certs", "cert-1")
    paths = Paths(tmp_path, tmp_path / "certs")
    config = render(full_spec(), paths, user="haproxy")
    for path, text in crt_lists(full_spec(), paths).items():
        path.write_text(text)
    (tmp_path / ACME_MAP).write_text("")
    checked = haproxy_accepts(config, tmp_path)
    assert checked.returncode == 0, checked.stderr + config
    for line in (
        "master-worker",
        "user haproxy",
        f"chroot {tmp_path / 'jail'}",
        "expose-fd listeners",
        "http-request use-service prometheus-exporter if { path /metrics }",
        "balance random(2)",
        "balance hash req.cook(sid)",
        "hash-type consistent",
        "stick on src",
        "cookie SRV insert indirect nocache",
        "http-check expect rstatus ^(200|201|202|203|204|301)$",
        "option httpchk HEAD /",
        "option forwardfor",
        "server m1 10.0.0.1:80 weight 3 check inter 2s fall 3 rise 2 cookie m1",
        "server m2 ipv6@fd00::2:8080 weight 1 backup check",
        "server m4 10.0.0.4:80 weight 0 check",
        "send-proxy-v2",
        "check-ssl verify none",
        "maxconn 1000",
        f"bind 10.0.0.100:8443 ssl crt-list {tmp_path / 'certs' / 'terminated.crtlist'}",
    ):
        assert line in config, line
    assert "server m3 10.0.0.3:80 weight 1 disabled" in config


def test_l7_policies_apply_in_position_order_and_the_first_match_decides(tmp_path: Path) -> None:
    config = render(full_spec(), Paths(tmp_path, tmp_path))
    actions = [line.strip() for line in config.splitlines() if "var(txn.l7pool) -m found }" in line]
    assert actions[0].startswith("http-request set-var(txn.l7pool) str(api) if l7rule_host !l7rule_hdr ")
    assert actions[1].startswith("http-request deny deny_status 403 if l7rule_adm ")
    assert actions[2].startswith(
        'http-request redirect code 301 location "https://new.example/" if l7rule_old '
    )
    assert 'acl l7rule_hdr req.hdr(X-Client) -m reg "^a\\"b c\\$\\\\d"' in config
    assert 'acl l7rule_host req.hdr(host),field(1,:) -m str -i "api.example"' in config


def test_expected_codes_expand_to_the_codes_they_accept() -> None:
    assert expected_status_codes("200") == [200]
    assert expected_status_codes("200-202,301") == [200, 201, 202, 301]


INVALID: list[tuple[str, Callable[[], object]]] = [
    ("protocol_port", lambda: MemberSpec("m", "10.0.0.1", 0)),
    ("weight", lambda: MemberSpec("m", "10.0.0.1", 80, weight=257)),
    ("address", lambda: MemberSpec("m", "10.0.0.1:80", 80)),
    ("member.id", lambda: MemberSpec("m 1", "10.0.0.1", 80)),
    ("expected_codes", lambda: HealthMonitorSpec(expected_codes="2OO")),
    ("expected_codes", lambda: HealthMonitorSpec(expected_codes="204-200")),
    ("expected_codes", lambda: HealthMonitorSpec(expected_codes="099")),
    ("timeout", lambda: HealthMonitorSpec(delay=2, timeout=3)),
    ("max_retries_down", lambda: HealthMonitorSpec(max_retries_down=11)),
    ("url_path", lambda: HealthMonitorSpec(url_path="/a b")),
    ("value", lambda: L7RuleSpec("r", "PATH", "EQUAL_TO", "/a\n    server evil 1.2.3.4:80")),
    ("value", lambda: L7RuleSpec("r", "PATH", "REGEX", "(")),
    ("key", lambda: L7RuleSpec("r", "HEADER", "EQUAL_TO", "x", key="X Bad")),
    ("key", lambda: L7RuleSpec("r", "PATH", "EQUAL_TO", "x", key="X")),
    (
        "redirect_url",
        lambda: L7PolicySpec("p", "REDIRECT_TO_URL", rules=(rule(),), redirect_url="https://a b"),
    ),
    ("redirect_pool_id", lambda: L7PolicySpec("p", "REDIRECT_TO_POOL", rules=(rule(),))),
    ("rules", lambda: L7PolicySpec("p", "REJECT")),
    ("hash_key", lambda: PoolSpec("p", lb_algorithm="HEADER_HASH")),
    ("cookie_name", lambda: SessionPersistenceSpec("APP_COOKIE")),
    (
        "members",
        lambda: PoolSpec("p", members=(MemberSpec("m", "10.0.0.1", 80), MemberSpec("m", "10.0.0.2", 80))),
    ),
    (
        "l7policies",
        lambda: ListenerSpec(
            "l",
            "HTTP",
            80,
            l7policies=(
                L7PolicySpec("a", "REJECT", rules=(rule(),)),
                L7PolicySpec("b", "REJECT", rules=(rule(),)),
            ),
        ),
    ),
    ("insert_headers", lambda: ListenerSpec("l", "TCP", 80, insert_headers=("X-Forwarded-For",))),
    ("default_tls_container_ref", lambda: ListenerSpec("l", "TERMINATED_HTTPS", 443)),
    (
        "pool_id",
        lambda: LoadBalancerSpec("lb", "10.0.0.1", (ListenerSpec("l", "HTTP", 80, default_pool_id="x"),)),
    ),
    (
        "default_pool_id",
        lambda: lb_with(ListenerSpec("l", "HTTP", 80, default_pool_id="p"), PoolSpec("p", protocol="TCP")),
    ),
    (
        "lb_algorithm",
        lambda: lb_with(ListenerSpec("l", "TCP", 80, default_pool_id="p"), PoolSpec("p", "TCP", "URI_HASH")),
    ),
    (
        "listeners",
        lambda: LoadBalancerSpec(
            "lb", "10.0.0.1", (ListenerSpec("a", "TCP", 80), ListenerSpec("b", "TCP", 80))
        ),
    ),
]


def rule() -> L7RuleSpec:
    return L7RuleSpec("r", "PATH", "EQUAL_TO", "/")


def lb_with(listener: ListenerSpec, pool: PoolSpec) -> LoadBalancerSpec:
    return LoadBalancerSpec("lb", "10.0.0.1", (listener,), (pool,))


@pytest.mark.parametrize(("field", "build"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
def test_invalid_values_are_refused_naming_the_field(field: str, build: Callable[[], object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        build()
    assert caught.value.fields[0].field == field


def test_reload_carries_health_but_the_desired_weights_and_maintenance() -> None:
    spec = lb_with(
        ListenerSpec("l", "HTTP", 80, default_pool_id="p"),
        PoolSpec(
            "p",
            members=(
                MemberSpec("a", "10.0.0.1", 80, weight=4),
                MemberSpec("b", "10.0.0.2", 80, admin_state_up=False),
            ),
        ),
    )
    saved = (
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\n"
        "3 p 1 a 10.0.0.1 0 8 7 7 12 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
        "3 p 2 b 10.0.0.2 2 0 1 1 12 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
        "3 p 3 gone 10.0.0.3 2 0 1 1 12 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
    )
    kept = carry_health(saved, spec).splitlines()
    assert kept[2].split()[3:9] == ["a", "10.0.0.1", "0", "0", "4", "4"]  # still down, no longer drained
    assert kept[3].split()[3:9] == ["b", "10.0.0.2", "2", "4", "1", "1"]  # maintenance as configured
    assert len(kept) == 4
