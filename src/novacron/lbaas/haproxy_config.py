"""Render a :class:`~novacron.lbaas.model.LoadBalancerSpec` as the text of its ``haproxy.cfg``.

One frontend per listener (bound to the VIP), one backend per pool, named by the objects' ids
(sanitised by :func:`name`, which the runtime API uses too). The global section runs HAProxy in
master-worker mode with an admin socket in the load balancer's state directory that exposes the
listening sockets, so a reload hands them to the new worker and no connection is refused; the
servers' run-time state (health, weights set through the runtime API) is saved to
``server-state`` before a reload and loaded by the new worker, so a member that is down does not
get traffic while the new worker's first checks run.

L7 policies become one ``http-request`` rule each, in position order: a REDIRECT_TO_POOL policy
records its pool in a transaction variable, and each later policy only applies while no pool is
recorded, so the first matching policy decides whatever its action (``use_backend`` alone runs
after every ``http-request`` rule and could not keep that order).

The configuration is only text here; :mod:`novacron.lbaas.haproxy` validates it with
``haproxy -c`` before using it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from novacron.lbaas.model import (
    HealthMonitorSpec,
    L7PolicySpec,
    L7RuleSpec,
    ListenerSpec,
    LoadBalancerSpec,
    MemberSpec,
    PoolSpec,
    expected_status_codes,
)
from novacron.lbaas.protection import ban_backend, frontend_lines

#: the variable the L7 policies record their chosen pool in
POOL_VAR = "txn.l7pool"
#: the admin socket (runtime API) and saved server state, relative to the state directory
ADMIN_SOCKET = "admin.sock"
#: the statistics frontend's unix socket: the agent reads the Prometheus exporter there, from the
#: host's namespace, without entering the load balancer's
STATS_SOCKET = "stats.sock"
SERVER_STATE = "server-state"
#: the HTTP-01 challenges HTTP listeners answer (token → key authorization), in the state directory
ACME_MAP = "acme-http01.map"
#: where HTTP-01 validation asks (RFC 8555 section 8.3); the token is the path's fourth field
ACME_PREFIX = "/.well-known/acme-challenge/"
#: the empty directory the workers are jailed in (chroot) when they run as an unprivileged user
JAIL = "jail"
#: a reload lets the old worker finish its connections for this long
HARD_STOP_AFTER = "30s"
#: connections kept for the statistics frontend beyond the listeners' limits
STATS_MAXCONN = 100

_BALANCE = {
    "ROUND_ROBIN": "roundrobin",
    "LEAST_CONNECTIONS": "leastconn",
    "SOURCE_IP": "source",
    "URI_HASH": "uri",
    "RANDOM_TWO": "random(2)",
}
_RULE_FETCH = {"HOST_NAME": "req.hdr(host),field(1,:)", "PATH": "path"}
_MATCH = {"EQUAL_TO": "str", "STARTS_WITH": "beg", "ENDS_WITH": "end", "CONTAINS": "sub", "REGEX": "reg"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class Paths:
    """Where the configuration's files live: the state directory and the TLS certificates."""

    state_dir: Path
    certs_dir: Path


def certificate_path(paths: Paths, ref: str) -> Path:
    """The PEM bundle (certificate, chain, key) of certificate ``ref``."""
    return paths.certs_dir / f"{name(ref)}.pem"


def crt_list_path(paths: Paths, listener: ListenerSpec) -> Path:
    return paths.certs_dir / f"{name(listener.id)}.crtlist"


def crt_lists(spec: LoadBalancerSpec, paths: Paths) -> dict[Path, str]:
    """Each TERMINATED_HTTPS listener's ``crt-list``: one certificate a line, the default
    (served to clients without SNI, or naming none of the certificates) first. No SNI filters:
    HAProxy selects each certificate by the names it holds, so a certificate replaced at run time
    with other names is served by its new names."""
    lists = {}
    for listener in spec.listeners:
        if listener.default_tls_container_ref is not None:
            refs = dict.fromkeys((listener.default_tls_container_ref, *listener.sni_container_refs))
            lines = [f"{certificate_path(paths, ref)}\n" for ref in refs]
            lists[crt_list_path(paths, listener)] = "".join(lines)
    return lists


def name(object_id: str) -> str:
    """The id as HAProxy's name of a frontend, backend, server or ACL."""
    return _UNSAFE_NAME.sub("_", object_id)


def _quote(value: str) -> str:
    """A double-quoted configuration word: ``\\``, ``"`` and ``$`` (environment variables) escaped;
    the model already refused control characters."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _endpoint(address: str, port: int) -> str:
    """``addr:port``, with HAProxy's ``ipv6@`` prefix so an IPv6 address's colons are not a port."""
    if ipaddress.ip_address(address).version == 6:
        return f"ipv6@{address}:{port}"
    return f"{address}:{port}"


def render(spec: LoadBalancerSpec, paths: Paths, user: str | None = None) -> str:
    """The whole ``haproxy.cfg`` of ``spec``. With ``user``, the workers drop root for that
    account (and group of the same name) and are jailed in an empty directory; the master, which
    only re-executes HAProxy on reloads, stays root."""
    sections = [_global(spec, paths, user), _defaults(), _stats_frontend(spec, paths)]
    sections += [_frontend(spec, listener, paths) for listener in spec.listeners]
    sections += [_backend(spec, pool) for pool in spec.pools]
    sections += [ban_backend(name(li.id)) for li in spec.listeners if li.protection is not None]
    return "\n".join("\n".join(lines) + "\n" for lines in sections)


def _global(spec: LoadBalancerSpec, paths: Paths, user: str | None) -> list[str]:
    lines = [
        f"# load balancer {spec.id}: rendered by NovaCron from its desired state; do not edit",
        "global",
        "    master-worker",
        f"    stats socket {paths.state_dir / ADMIN_SOCKET} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        f"    server-state-file {paths.state_dir / SERVER_STATE}",
        f"    hard-stop-after {HARD_STOP_AFTER}",
    ]
    if user is not None:
        lines += [f"    user {user}", f"    group {user}", f"    chroot {paths.state_dir / JAIL}"]
    limits = [li.connection_limit for li in spec.listeners]
    if limits and None not in limits:
        # else HAProxy sizes maxconn from the file-descriptor limit it is given
        lines.append(f"    maxconn {sum(x for x in limits if x is not None) + STATS_MAXCONN}")
    return lines


def _defaults() -> list[str]:
    return [
        "defaults",
        "    mode tcp",
        "    load-server-state-from-file global",
        "    option redispatch",
        "    retries 3",
        "    timeout connect 5s",
        "    timeout client 50s",
        "    timeout server 50s",
        "    timeout check 5s",
    ]


def _stats_frontend(spec: LoadBalancerSpec, paths: Paths) -> list[str]:
    return [
        "frontend stats",
        "    mode http",
        f"    bind {_endpoint(spec.stats_address, spec.stats_port)}",
        f"    bind unix@{paths.state_dir / STATS_SOCKET} mode 600",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
    ]


def _frontend(spec: LoadBalancerSpec, listener: ListenerSpec, paths: Paths) -> list[str]:
    bind = f"    bind {_endpoint(spec.vip_address, listener.protocol_port)}"
    if listener.default_tls_container_ref is not None:
        bind += f" ssl crt-list {crt_list_path(paths, listener)}"
    lines = [f"frontend {name(listener.id)}", f"    mode {'http' if listener.http else 'tcp'}", bind]
    if listener.http:
        # a reload's old worker answers the next request of an idle keep-alive connection (with
        # "Connection: close") instead of closing the connection under a client that may be
        # sending on it: HAProxy 2.4+ closes them at once, failing that request (bench_lb_changes.py)
        lines.append("    option idle-close-on-response")
    if listener.protection is not None:
        lines += frontend_lines(name(listener.id), listener.protection, listener.http)
    if listener.protocol == "HTTP":
        lines += _acme_http01(paths)
    if listener.connection_limit is not None:
        lines.append(f"    maxconn {listener.connection_limit}")
    if listener.qos is not None and listener.qos.connection_rate is not None:
        lines.append(f"    rate-limit sessions {listener.qos.connection_rate}")
    if listener.timeout_client_data is not None:
        lines.append(f"    timeout client {listener.timeout_client_data}ms")
    if "X-Forwarded-For" in listener.insert_headers:
        lines.append("    option forwardfor")
    if "X-Forwarded-Port" in listener.insert_headers:
        lines.append("    http-request set-header X-Forwarded-Port %[dst_port]")
    if "X-Forwarded-Proto" in listener.insert_headers:
        lines.append("    http-request set-header X-Forwarded-Proto https if { ssl_fc }")
        lines.append("    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }")
    lines += _l7_policies(listener)
    if listener.default_pool_id is not None:
        lines.append(f"    default_backend {name(listener.default_pool_id)}")
    return lines


def _acme_http01(paths: Paths) -> list[str]:
    """Answer ACME HTTP-01 validation from the challenge map, before any L7 policy, so the load
    balancer proves control of its names itself; the runtime API adds and removes tokens."""
    token = f"path,field(4,/),map({paths.state_dir / ACME_MAP})"
    return [
        f"    acl acme_http01 path_beg {ACME_PREFIX}",
        f"    acl acme_token_known {token} -m found",
        f'    http-request return status 200 content-type text/plain lf-string "%[{token}]"'
        " if acme_http01 acme_token_known",
    ]


def _rule_acl(rule: L7RuleSpec) -> str:
    if rule.type == "HEADER":
        fetch = f"req.hdr({rule.key})"
    elif rule.type == "COOKIE":
        fetch = f"req.cook({rule.key})"
    else:
        fetch = _RULE_FETCH[rule.type]
    case = " -i" if rule.type == "HOST_NAME" else ""
    return f"    acl {_acl_name(rule)} {fetch} -m {_MATCH[rule.compare_type]}{case} {_quote(rule.value)}"


def _acl_name(rule: L7RuleSpec) -> str:
    return f"l7rule_{name(rule.id)}"


def _l7_policies(listener: ListenerSpec) -> list[str]:
    policies = listener.policies_in_order()
    if not policies:
        return []
    lines = [_rule_acl(rule) for policy in policies for rule in policy.rules]
    undecided = f"!{{ var({POOL_VAR}) -m found }}"
    for policy in policies:
        rules = " ".join(("!" if r.invert else "") + _acl_name(r) for r in policy.rules)
        lines.append(f"    http-request {_policy_action(policy)} if {rules} {undecided}")
    lines.append(f"    use_backend %[var({POOL_VAR})] if {{ var({POOL_VAR}) -m found }}")
    return lines


def _policy_action(policy: L7PolicySpec) -> str:
    if policy.action == "REJECT":
        return "deny deny_status 403"
    if policy.action == "REDIRECT_TO_URL":
        return f"redirect code {policy.redirect_http_code} location {_quote(policy.redirect_url or '')}"
    return f"set-var({POOL_VAR}) str({name(policy.redirect_pool_id or '')})"


def _backend(spec: LoadBalancerSpec, pool: PoolSpec) -> list[str]:
    http = spec.pool_is_http(pool)
    lines = [f"backend {name(pool.id)}", f"    mode {'http' if http else 'tcp'}", *_balance(pool)]
    lines += _timeouts(spec.listeners_of(pool.id))
    lines += _persistence(pool)
    if pool.healthmonitor is not None:
        lines += _health_check(pool.healthmonitor)
    lines += [_server(pool, member) for member in pool.members]
    return lines


def _balance(pool: PoolSpec) -> list[str]:
    if pool.lb_algorithm == "HEADER_HASH":
        return [f"    balance hdr({pool.hash_key})", "    hash-type consistent"]
    if pool.lb_algorithm == "COOKIE_HASH":
        return [f"    balance hash req.cook({pool.hash_key})", "    hash-type consistent"]
    lines = [f"    balance {_BALANCE[pool.lb_algorithm]}"]
    if pool.lb_algorithm in ("URI_HASH", "SOURCE_IP"):
        lines.append("    hash-type consistent")
    return lines


def _timeouts(listeners: list[ListenerSpec]) -> list[str]:
    """A pool shared by listeners waits as long as the most patient of them asks."""
    lines = []
    connect = [li.timeout_member_connect for li in listeners if li.timeout_member_connect is not None]
    data = [li.timeout_member_data for li in listeners if li.timeout_member_data is not None]
    if connect:
        lines.append(f"    timeout connect {max(connect)}ms")
    if data:
        lines.append(f"    timeout server {max(data)}ms")
    return lines


def _persistence(pool: PoolSpec) -> list[str]:
    persistence = pool.session_persistence
    if persistence is None:
        return []
    if persistence.type == "SOURCE_IP":
        return ["    stick-table type ipv6 size 100k expire 30m", "    stick on src"]
    if persistence.type == "HTTP_COOKIE":
        return ["    cookie SRV insert indirect nocache"]
    cookie = persistence.cookie_name
    return [
        "    stick-table type string len 64 size 100k expire 30m",
        f"    stick store-response res.cook({cookie})",
        f"    stick match req.cook({cookie})",
    ]


def _health_check(monitor: HealthMonitorSpec) -> list[str]:
    lines = [f"    timeout check {monitor.timeout}s"]
    if monitor.type == "TCP":
        return lines
    lines.append(f"    option httpchk {monitor.http_method} {monitor.url_path}")
    codes = expected_status_codes(monitor.expected_codes)
    if len(codes) == 1:
        lines.append(f"    http-check expect status {codes[0]}")
    else:
        lines.append(f"    http-check expect rstatus ^({'|'.join(str(c) for c in codes)})$")
    return lines


def _server(pool: PoolSpec, member: MemberSpec) -> str:
    weight = 0 if member.drain else member.weight
    words = [
        f"    server {name(member.id)} {_endpoint(member.address, member.protocol_port)} weight {weight}"
    ]
    if member.backup:
        words.append("backup")
    if not member.admin_state_up:
        words.append("disabled")
    monitor = pool.healthmonitor
    if monitor is not None:
        words.append(
            f"check inter {monitor.delay}s fall {monitor.max_retries_down} rise {monitor.max_retries}"
        )
        if monitor.type == "HTTPS":
            words.append("check-ssl verify none")
    if pool.protocol == "PROXY":
        words.append("send-proxy")
    elif pool.protocol == "PROXYV2":
        words.append("send-proxy-v2")
    persistence = pool.session_persistence
    if persistence is not None and persistence.type == "HTTP_COOKIE":
        words.append(f"cookie {name(member.id)}")
    return " ".join(words)
