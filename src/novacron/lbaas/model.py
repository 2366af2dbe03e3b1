"""The desired state of one load balancer: what its HAProxy must serve, in Octavia's terms.

Frozen dataclasses, one per Octavia object (load balancer, listener, pool, member, health monitor,
L7 policy and rule), with Octavia's field names and values so that users recognise them. Each
constructor validates its values (ports, weights, expected codes, names that end up in the
configuration) and raises :class:`~novacron.errors.InvalidInput` naming the field; a
:class:`LoadBalancerSpec` also checks that its parts fit together (pools referenced exist,
protocols are compatible, ports are not taken twice).

Every string that reaches ``haproxy.cfg`` is checked here to hold no whitespace or control
characters where the configuration could not quote it, so a tenant's value never becomes a second
configuration line. An ACTIVE_STANDBY load balancer also carries its two amphorae (Octavia's name
for one side: role, address on the VIP's network) and its VRRP router id; :func:`assign_vrrp_id`
derives that id from the load balancer's id and keeps it unique on a network. The specs
round-trip through JSON for the agent with ``novacron.network.wire.to_dict`` / ``from_dict``
(choices are ``Literal`` strings, not enums, so they come back equal).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from novacron.errors import Conflict, InvalidInput
from novacron.lbaas.protection import ListenerProtection
from novacron.lbaas.qos import ListenerQoS

ListenerProtocol = Literal["TCP", "HTTP", "HTTPS", "TERMINATED_HTTPS"]
#: PROXY / PROXYV2: the pool's members get the PROXY protocol header (v1 / v2) before the traffic
PoolProtocol = Literal["TCP", "HTTP", "HTTPS", "PROXY", "PROXYV2"]
LbAlgorithm = Literal[
    "ROUND_ROBIN",
    "LEAST_CONNECTIONS",
    "SOURCE_IP",
    "URI_HASH",
    "HEADER_HASH",
    "COOKIE_HASH",
    "RANDOM_TWO",
]
PersistenceType = Literal["SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE"]
MonitorType = Literal["TCP", "HTTP", "HTTPS"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"]
L7Action = Literal["REDIRECT_TO_POOL", "REDIRECT_TO_URL", "REJECT"]
L7RuleType = Literal["HOST_NAME", "PATH", "HEADER", "COOKIE"]
L7CompareType = Literal["EQUAL_TO", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "REGEX"]
InsertHeader = Literal["X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"]
#: SINGLE: one HAProxy; ACTIVE_STANDBY: two sharing the VIP through VRRP (keepalived)
Topology = Literal["SINGLE", "ACTIVE_STANDBY"]
AmphoraRole = Literal["MASTER", "BACKUP"]

#: listener protocols that HAProxy serves in HTTP mode (the others are TCP mode)
HTTP_LISTENERS = frozenset({"HTTP", "TERMINATED_HTTPS"})
#: which pool protocols each listener protocol can send to (Octavia's compatibility table)
COMPATIBLE_POOLS: dict[str, frozenset[str]] = {
    "TCP": frozenset({"TCP", "PROXY", "PROXYV2"}),
    "HTTP": frozenset({"HTTP", "PROXY", "PROXYV2"}),
    "HTTPS": frozenset({"HTTPS", "TCP", "PROXY", "PROXYV2"}),
    "TERMINATED_HTTPS": frozenset({"HTTP", "PROXY", "PROXYV2"}),
}
#: algorithms and persistence that read the HTTP request, so need an HTTP-mode pool
HTTP_ONLY_ALGORITHMS = frozenset({"URI_HASH", "HEADER_HASH", "COOKIE_HASH"})
HTTP_ONLY_PERSISTENCE = frozenset({"HTTP_COOKIE", "APP_COOKIE"})

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
#: an HTTP header or cookie name (RFC 9110 token)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_CODES = re.compile(r"^\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
MAX_WEIGHT = 256
MAX_RETRIES = 10
#: Octavia's VRRP priorities of the two roles
ROLE_PRIORITY: dict[str, int] = {"MASTER": 100, "BACKUP": 90}
#: VRRP router ids are 1-255 on a network
VRRP_IDS = range(1, 256)
#: a Linux interface name
_INTERFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _check_id(field: str, value: str) -> None:
    if not _ID.match(value):
        raise InvalidInput(field, "must be 1-64 letters, digits, '_', '.', ':' or '-'")


def _check_port(field: str, value: int) -> None:
    if not 1 <= value <= 65535:
        raise InvalidInput(field, "must be a port number from 1 to 65535")


def _check_address(field: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(field, "must be an IPv4 or IPv6 address") from None


def _check_token(field: str, value: str | None) -> None:
    if value is None or not _TOKEN.match(value):
        raise InvalidInput(field, "must be an HTTP header or cookie name")


def _check_timeout_ms(field: str, value: int | None) -> None:
    if value is not None and not 0 < value <= 24 * 3600 * 1000:
        raise InvalidInput(field, "must be from 1 ms to 24 hours (in milliseconds)")


def expected_status_codes(expected: str) -> list[int]:
    """``"200"``, ``"200-204"`` or ``"200,202"`` as the list of HTTP status codes it accepts."""
    codes: list[int] = []
    for part in expected.split(","):
        low, _, high = part.partition("-")
        codes.extend(range(int(low), int(high or low) + 1))
    return codes


def _check_expected_codes(value: str) -> None:
    if not _CODES.match(value):
        raise InvalidInput("expected_codes", "must be a code, a range or a list: 200, 200-204, 200,202")
    for part in value.split(","):
        low, _, high = part.partition("-")
        if not 100 <= int(low) <= int(high or low) <= 599:
            raise InvalidInput("expected_codes", f"{part} is not an HTTP status code or ascending range")


@dataclass(frozen=True)
class HealthMonitorSpec:
    """How HAProxy checks a pool's members: every ``delay`` seconds, ``timeout`` seconds to answer;
    ``max_retries`` successes in a row bring a member up (HAProxy's ``rise``) and
    ``max_retries_down`` failures take it down (``fall``)."""

    type: MonitorType = "TCP"
    delay: int = 5
    timeout: int = 3
    max_retries: int = 2
    max_retries_down: int = 3
    http_method: HttpMethod = "GET"
    url_path: str = "/"
    expected_codes: str = "200"

    def __post_init__(self) -> None:
        if not 1 <= self.delay <= 3600:
            raise InvalidInput("delay", "must be from 1 to 3600 seconds")
        if not 1 <= self.timeout <= self.delay:
            raise InvalidInput("timeout", "must be from 1 second to the delay")
        for name in ("max_retries", "max_retries_down"):
            if not 1 <= getattr(self, name) <= MAX_RETRIES:
                raise InvalidInput(name, f"must be from 1 to {MAX_RETRIES}")
        if not self.url_path.startswith("/") or not _PRINTABLE.match(self.url_path):
            raise InvalidInput("url_path", "must be a path starting with / without spaces")
        _check_expected_codes(self.expected_codes)


@dataclass(frozen=True)
class MemberSpec:
    """One backend server: ``weight`` 0-256 (0 takes no new connections), ``backup`` members serve
    only when no other member is up, ``drain`` keeps the member's existing sessions but sends it
    nothing new, ``admin_state_up=False`` takes it out entirely."""

    id: str
    address: str
    protocol_port: int
    weight: int = 1
    backup: bool = False
    admin_state_up: bool = True
    drain: bool = False

    def __post_init__(self) -> None:
        _check_id("member.id", self.id)
        _check_address("address", self.address)
        _check_port("protocol_port", self.protocol_port)
        if not 0 <= self.weight <= MAX_WEIGHT:
            raise InvalidInput("weight", f"must be from 0 to {MAX_WEIGHT}")


@dataclass(frozen=True)
class SessionPersistenceSpec:
    """SOURCE_IP (a stick table on the client address), HTTP_COOKIE (HAProxy inserts a cookie
    naming the member) or APP_COOKIE (sticks on the application's own cookie ``cookie_name``)."""

    type: PersistenceType
    cookie_name: str | None = None

    def __post_init__(self) -> None:
        if self.type == "APP_COOKIE":
            _check_token("cookie_name", self.cookie_name)
        elif self.cookie_name is not None:
            raise InvalidInput("cookie_name", "only APP_COOKIE persistence takes a cookie name")


@dataclass(frozen=True)
class PoolSpec:
    """A group of members and how to choose among them. ``hash_key`` names the header
    (HEADER_HASH) or cookie (COOKIE_HASH) that consistent hashing reads."""

    id: str
    protocol: PoolProtocol = "HTTP"
    lb_algorithm: LbAlgorithm = "ROUND_ROBIN"
    hash_key: str | None = None
    session_persistence: SessionPersistenceSpec | None = None
    members: tuple[MemberSpec, ...] = ()
    healthmonitor: HealthMonitorSpec | None = None

    def __post_init__(self) -> None:
        _check_id("pool.id", self.id)
        if self.lb_algorithm in ("HEADER_HASH", "COOKIE_HASH"):
            _check_token("hash_key", self.hash_key)
        elif self.hash_key is not None:
            raise InvalidInput("hash_key", "only HEADER_HASH and COOKIE_HASH take a hash key")
        ids = [m.id for m in self.members]
        if len(set(ids)) != len(ids):
            raise InvalidInput("members", "member ids must be unique in a pool")

    def member(self, member_id: str) -> MemberSpec:
        for member in self.members:
            if member.id == member_id:
                return member
        raise InvalidInput("member_id", f"pool {self.id} has no member {member_id}")


@dataclass(frozen=True)
class L7RuleSpec:
    """One condition of an L7 policy: the request's ``type`` (the header or cookie ``key``)
    compared with ``value``; ``invert`` negates it."""

    id: str
    type: L7RuleType
    compare_type: L7CompareType
    value: str
    key: str | None = None
    invert: bool = False

    def __post_init__(self) -> None:
        _check_id("l7rule.id", self.id)
        if self.type in ("HEADER", "COOKIE"):
            _check_token("key", self.key)
        elif self.key is not None:
            raise InvalidInput("key", "only HEADER and COOKIE rules take a key")
        if not self.value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.value):
            raise InvalidInput("value", "must be non-empty, without control characters")
        if self.compare_type == "REGEX":
            try:
                re.compile(self.value)
            except re.error as exc:
                raise InvalidInput("value", f"not a regular expression: {exc}") from None


@dataclass(frozen=True)
class L7PolicySpec:
    """When all its rules match, the request goes to ``redirect_pool_id``, is redirected to
    ``redirect_url`` (with ``redirect_http_code``) or is rejected (403). Policies are tried in
    ascending ``position``; the first that matches decides."""

    id: str
    action: L7Action
    position: int = 1
    rules: tuple[L7RuleSpec, ...] = ()
    redirect_pool_id: str | None = None
    redirect_url: str | None = None
    redirect_http_code: int = 302

    def __post_init__(self) -> None:
        _check_id("l7policy.id", self.id)
        if self.position < 1:
            raise InvalidInput("position", "must be 1 or more")
        if not self.rules:
            raise InvalidInput("rules", "a policy needs at least one rule")
        if (self.action == "REDIRECT_TO_POOL") != (self.redirect_pool_id is not None):
            raise InvalidInput("redirect_pool_id", "is required by, and only by, REDIRECT_TO_POOL")
        if (self.action == "REDIRECT_TO_URL") != (self.redirect_url is not None):
            raise InvalidInput("redirect_url", "is required by, and only by, REDIRECT_TO_URL")
        url = self.redirect_url
        if url is not None and not (_PRINTABLE.match(url) and re.match(r"^https?://", url)):
            raise InvalidInput("redirect_url", "must be an http:// or https:// URL without spaces")
        if self.redirect_http_code not in (301, 302, 303, 307, 308):
            raise InvalidInput("redirect_http_code", "must be 301, 302, 303, 307 or 308")


@dataclass(frozen=True)
class ListenerSpec:
    """A port of the VIP. Timeouts are in milliseconds (None: the defaults); ``connection_limit``
    None is unlimited. TERMINATED_HTTPS takes its certificates by reference: the default one
    (served without SNI) and those chosen by SNI, put on the load balancer by
    ``HAProxyInstance.put_certificate`` (the encrypted certificate store comes with the API).
    ``protection``: per-source limits, allow and deny lists and bans
    (:mod:`novacron.lbaas.protection`); ``qos``: bandwidth and connection-rate limits
    (:mod:`novacron.lbaas.qos`)."""

    id: str
    protocol: ListenerProtocol
    protocol_port: int
    default_pool_id: str | None = None
    connection_limit: int | None = None
    timeout_client_data: int | None = None
    timeout_member_connect: int | None = None
    timeout_member_data: int | None = None
    insert_headers: tuple[InsertHeader, ...] = ()
    l7policies: tuple[L7PolicySpec, ...] = ()
    default_tls_container_ref: str | None = None
    sni_container_refs: tuple[str, ...] = ()
    protection: ListenerProtection | None = None
    qos: ListenerQoS | None = None

    def __post_init__(self) -> None:
        _check_id("listener.id", self.id)
        _check_port("protocol_port", self.protocol_port)
        if self.connection_limit is not None and not 1 <= self.connection_limit <= 1_000_000:
            raise InvalidInput("connection_limit", "must be from 1 to 1000000 (or none)")
        for name in ("timeout_client_data", "timeout_member_connect", "timeout_member_data"):
            _check_timeout_ms(name, getattr(self, name))
        http = self.protocol in HTTP_LISTENERS
        if self.insert_headers and not http:
            raise InvalidInput("insert_headers", "only HTTP listeners can insert headers")
        if self.l7policies and not http:
            raise InvalidInput("l7policies", "only HTTP listeners have L7 policies")
        if self.protection is not None:
            self.protection.check_for(http)
        tls = self.protocol == "TERMINATED_HTTPS"
        if tls != (self.default_tls_container_ref is not None) or (self.sni_container_refs and not tls):
            raise InvalidInput("default_tls_container_ref", "is required by, and only by, TERMINATED_HTTPS")
        for ref in (self.default_tls_container_ref, *self.sni_container_refs):
            if ref is not None:
                _check_id("tls_container_ref", ref)
        ids = [p.id for p in self.l7policies]
        if len(set(ids)) != len(ids):
            raise InvalidInput("l7policies", "policy ids must be unique in a listener")
        rule_ids = [r.id for p in self.l7policies for r in p.rules]
        if len(set(rule_ids)) != len(rule_ids):
            raise InvalidInput("l7policies", "rule ids must be unique in a listener")

    @property
    def http(self) -> bool:
        return self.protocol in HTTP_LISTENERS

    def policies_in_order(self) -> list[L7PolicySpec]:
        return sorted(self.l7policies, key=lambda p: (p.position, p.id))

    def pool_ids(self) -> set[str]:
        """The pools this listener sends to: its default and those of its L7 policies."""
        ids = {p.redirect_pool_id for p in self.l7policies if p.redirect_pool_id}
        return ids | ({self.default_pool_id} if self.default_pool_id else set())


@dataclass(frozen=True)
class AmphoraSpec:
    """One side of an ACTIVE_STANDBY load balancer (Octavia's amphora): its ``role`` (MASTER has
    the higher VRRP priority), its own address on the VIP's network (``vrrp_ip``, the source and
    peer of the unicast VRRP adverts) and the interface of its namespace the VIP goes on."""

    id: str
    role: AmphoraRole
    vrrp_ip: str
    vrrp_interface: str = "eth0"

    def __post_init__(self) -> None:
        _check_id("amphora.id", self.id)
        _check_address("vrrp_ip", self.vrrp_ip)
        if not _INTERFACE.match(self.vrrp_interface):
            raise InvalidInput("vrrp_interface", "must be an interface name (1-15 letters, digits, '_.-')")

    @property
    def vrrp_priority(self) -> int:
        return ROLE_PRIORITY[self.role]


def derived_vrrp_id(loadbalancer_id: str) -> int:
    """The VRRP router id a load balancer gets unless another on its network holds it."""
    digest = hashlib.sha256(loadbalancer_id.encode()).digest()
    return VRRP_IDS[int.from_bytes(digest[:4], "big") % len(VRRP_IDS)]


def assign_vrrp_id(loadbalancer_id: str, taken: Collection[int]) -> int:
    """The load balancer's derived router id, or the next one free on its network (``taken``:
    the ids of the other ACTIVE_STANDBY load balancers there); Conflict when all 255 are taken."""
    first = derived_vrrp_id(loadbalancer_id)
    for step in range(len(VRRP_IDS)):
        candidate = VRRP_IDS[(first - 1 + step) % len(VRRP_IDS)]
        if candidate not in taken:
            return candidate
    raise Conflict("every VRRP router id (1-255) is taken on this network")


def check_unique_vrrp_ids(specs: Iterable[LoadBalancerSpec]) -> None:
    """Conflict when two ACTIVE_STANDBY load balancers of one network share a router id."""
    holders: dict[int, str] = {}
    for spec in specs:
        if spec.topology != "ACTIVE_STANDBY":
            continue
        other = holders.setdefault(spec.router_id, spec.id)
        if other != spec.id:
            raise Conflict(f"load balancers {other} and {spec.id} share VRRP router id {spec.router_id}")


@dataclass(frozen=True)
class LoadBalancerSpec:
    """One load balancer: its VIP, listeners and pools, and where its statistics are served
    (``stats_address``, local to the load balancer's namespace, for the Prometheus exporter).

    ACTIVE_STANDBY adds its two ``amphorae`` (one MASTER, one BACKUP), its VRRP router id
    (``vrrp_id``; None: :func:`derived_vrrp_id`) and the VRRP advert interval in seconds (the
    standby takes the VIP after about 3 × ``vrrp_advert_int`` without adverts)."""

    id: str
    vip_address: str
    listeners: tuple[ListenerSpec, ...] = ()
    pools: tuple[PoolSpec, ...] = ()
    stats_address: str = "127.0.0.1"
    stats_port: int = 8404
    topology: Topology = "SINGLE"
    amphorae: tuple[AmphoraSpec, ...] = ()
    vrrp_id: int | None = None
    vrrp_advert_int: float = 0.5

    def __post_init__(self) -> None:
        _check_id("loadbalancer.id", self.id)
        _check_address("vip_address", self.vip_address)
        _check_address("stats_address", self.stats_address)
        _check_port("stats_port", self.stats_port)
        self._check_topology()
        ports = [li.protocol_port for li in self.listeners]
        if len(set(ports)) != len(ports):
            raise InvalidInput("listeners", "two listeners cannot share a port")
        if self.stats_port in ports and self.stats_address == self.vip_address:
            raise InvalidInput("stats_port", "is taken by a listener")
        for kind, ids in (
            ("listeners", [li.id for li in self.listeners]),
            ("pools", [p.id for p in self.pools]),
        ):
            if len(set(ids)) != len(ids):
                raise InvalidInput(kind, "ids must be unique in a load balancer")
        for listener in self.listeners:
            self._check_listener_pools(listener)
        for pool in self.pools:
            self._check_pool_mode(pool)

    def pool(self, pool_id: str) -> PoolSpec:
        for pool in self.pools:
            if pool.id == pool_id:
                return pool
        raise InvalidInput("pool_id", f"load balancer {self.id} has no pool {pool_id}")

    @property
    def router_id(self) -> int:
        """The VRRP router id both amphorae use."""
        return derived_vrrp_id(self.id) if self.vrrp_id is None else self.vrrp_id

    def amphora(self, amphora_id: str) -> AmphoraSpec:
        for amphora in self.amphorae:
            if amphora.id == amphora_id:
                return amphora
        raise InvalidInput("amphora_id", f"load balancer {self.id} has no amphora {amphora_id}")

    def peers_of(self, amphora_id: str) -> list[AmphoraSpec]:
        self.amphora(amphora_id)
        return [a for a in self.amphorae if a.id != amphora_id]

    def _check_topology(self) -> None:
        if self.topology == "SINGLE":
            if self.amphorae or self.vrrp_id is not None:
                raise InvalidInput(
                    "amphorae", "only an ACTIVE_STANDBY load balancer has amphorae and a vrrp_id"
                )
            return
        if sorted(a.role for a in self.amphorae) != ["BACKUP", "MASTER"]:
            raise InvalidInput("amphorae", "ACTIVE_STANDBY needs two amphorae: one MASTER, one BACKUP")
        vip = ipaddress.ip_address(self.vip_address)
        addresses = {ipaddress.ip_address(a.vrrp_ip) for a in self.amphorae}
        if len(addresses) != len(self.amphorae) or vip in addresses:
            raise InvalidInput("vrrp_ip", "the amphorae need two addresses of their own, neither the VIP")
        if any(a.version != vip.version for a in addresses):
            raise InvalidInput("vrrp_ip", "must be of the VIP's address family")
        if len({a.id for a in self.amphorae}) != len(self.amphorae):
            raise InvalidInput("amphorae", "amphora ids must be unique in a load balancer")
        if self.vrrp_id is not None and self.vrrp_id not in VRRP_IDS:
            raise InvalidInput("vrrp_id", "must be from 1 to 255")
        if not 0.1 <= self.vrrp_advert_int <= 10:
            raise InvalidInput("vrrp_advert_int", "must be from 0.1 to 10 seconds")

    def listeners_of(self, pool_id: str) -> list[ListenerSpec]:
        return [li for li in self.listeners if pool_id in li.pool_ids()]

    def pool_is_http(self, pool: PoolSpec) -> bool:
        """HTTP pools are HTTP mode; PROXY pools take the mode of the listeners using them."""
        if pool.protocol in ("PROXY", "PROXYV2"):
            return any(li.http for li in self.listeners_of(pool.id))
        return pool.protocol == "HTTP"

    def _check_listener_pools(self, listener: ListenerSpec) -> None:
        for pool_id in sorted(listener.pool_ids()):
            pool = self.pool(pool_id)
            if pool.protocol not in COMPATIBLE_POOLS[listener.protocol]:
                raise InvalidInput(
                    "default_pool_id",
                    f"a {listener.protocol} listener cannot use {pool.protocol} pool {pool.id}",
                )

    def _check_pool_mode(self, pool: PoolSpec) -> None:
        modes = {li.http for li in self.listeners_of(pool.id)}
        if len(modes) > 1:
            raise InvalidInput("pools", f"pool {pool.id} is used by both HTTP and TCP listeners")
        if self.pool_is_http(pool):
            return
        if pool.lb_algorithm in HTTP_ONLY_ALGORITHMS:
            raise InvalidInput("lb_algorithm", f"{pool.lb_algorithm} needs an HTTP pool")
        persistence = pool.session_persistence
        if persistence is not None and persistence.type in HTTP_ONLY_PERSISTENCE:
            raise InvalidInput("session_persistence", f"{persistence.type} needs an HTTP pool")
