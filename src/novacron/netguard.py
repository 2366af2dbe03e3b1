"""The egress guard: every outbound connection the platform makes on a tenant's behalf passes here.

A URL (or host and port) is checked once: only http/https, the host resolved once with
``getaddrinfo`` (so every spelling libc accepts, ``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``,
is judged by the address it really means), and every address it resolves to must be allowed:
not loopback, link-local, private, shared (CGNAT), unspecified, multicast, reserved, documentation
or benchmark space, nor an address of this host or of the platform's own listeners. An
administrator may open given ranges (``NOVACRON_EGRESS_ALLOW``); the host's own addresses stay
closed whatever the list says.

The connection then goes to the address that was checked (the name is not resolved again, so a DNS
answer that changes between the check and the connection, "DNS rebinding", changes nothing), with
the ``Host`` header, TLS SNI and certificate check still on the name. Redirects are followed by
hand, each one checked the same way, at most ``MAX_REDIRECTS``.

Errors are of two kinds. ``EgressDenied`` says why a target is refused and is safe to show before
any connection is made. ``FetchFailed`` is one message for every connection or read error (refused,
reset, timeout, TLS, a redirect to a refused target): a tenant must not learn from it whether a
port is open, so the detail goes to the server log only.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx

if TYPE_CHECKING:
    from novacron.config import Settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
#: what a tenant is told about any failure to connect or read (never which kind it was)
FETCH_FAILED = "could not download from the URL"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: ranges Python's ``is_global`` still calls global but no tenant should reach through us
_ALSO_DENIED = tuple(
    ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "fec0::/10")
)


class EgressDenied(ValueError):
    """The target is not one the platform connects to; the message says why (no connection made)."""


class FetchFailed(Exception):
    """A connection or read failed; ``str()`` is the one generic message, the cause is logged."""

    def __init__(self) -> None:
        super().__init__(FETCH_FAILED)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``10.0.5.0/24, 2001:db8::/32`` -> networks; ValueError naming the bad entry."""
    nets = []
    for item in (p.strip() for p in text.split(",")):
        if item:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"NOVACRON_EGRESS_ALLOW: {item!r} is not an address range") from exc
    return tuple(nets)


_own_cache: dict[str, Any] = {"at": 0.0, "addrs": frozenset()}
_own_lock = threading.Lock()


def host_addresses(max_age_s: float = 10.0) -> frozenset[IPAddress]:
    """Every address on this host's interfaces (netlink), cached briefly: they rarely change."""
    with _own_lock:
        if time.monotonic() - _own_cache["at"] < max_age_s:
            return frozenset(_own_cache["addrs"])
        from pyroute2 import IPRoute

        addrs: set[IPAddress] = set()
        with IPRoute() as ipr:
            for msg in ipr.get_addr():
                for attr in ("IFA_ADDRESS", "IFA_LOCAL"):
                    value = msg.get_attr(attr)
                    if value:
                        addrs.add(ipaddress.ip_address(value.split("%")[0]))
        _own_cache.update(at=time.monotonic(), addrs=frozenset(addrs))
        return frozenset(addrs)


def _literal(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """What may be reached: ``allow`` opens ranges; ``own`` (this host, the platform's listeners)
    is closed always. ``host_interfaces`` adds the interfaces' addresses at each check."""

    allow: tuple[IPNetwork, ...] = ()
    own: frozenset[IPAddress] = frozenset()
    host_interfaces: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        configured = (settings.listen_host, settings.migration_address, settings.underlay_ip)
        own = {a for a in (_literal(x) for x in configured if x) if a is not None}
        return cls(allow=settings.egress_allow, own=frozenset(own))

    def own_addresses(self) -> frozenset[IPAddress]:
        return self.own | host_addresses() if self.host_interfaces else self.own

    def refusal(self, addr: IPAddress, own: Iterable[IPAddress] | None = None) -> str | None:
        """Why ``addr`` may not be reached, or None when it may."""
        own_set = set(self.own_addresses() if own is None else own)
        mapped = _embedded_v4(addr)
        if addr in own_set or (mapped is not None and mapped in own_set) or addr.is_unspecified:
            return "an address of the platform itself"
        if any(addr in net for net in self.allow if net.version == addr.version):
            return None
        if mapped is not None:
            return self.refusal(mapped, own_set)
        return _category(addr)


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4, Teredo), which is what is reached."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


def _category(addr: IPAddress) -> str | None:
    checks = (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_unspecified", "an unspecified address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private or reserved address"),
        ("is_reserved", "a reserved address"),
    )
    for attr, why in checks:
        if getattr(addr, attr):
            return why
    if any(addr in net for net in _ALSO_DENIED if net.version == addr.version):
        return "a shared or reserved address"
    if not addr.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to ``address``, present ``host`` (Host header, SNI, certificate)."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress
    addresses: tuple[IPAddress, ...] = field(default=())

    def pinned_url(self) -> httpx.URL:
        return httpx.URL(self.url).copy_with(host=str(self.address))


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` stands for (literals in any form libc accepts), deduplicated."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for info in infos:
        addr = _literal(str(info[4][0]))
        if addr is not None and addr not in out:
            out.append(addr)
    return out


def check_host(host: str, port: int, policy: EgressPolicy) -> tuple[IPAddress, tuple[IPAddress, ...]]:
    """Resolve once and check every answer: (the address to connect to, all of them)."""
    host = host.strip("[]")
    literal = _literal(host)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        log.info("egress: %r does not resolve: %s", host, exc)
        addresses = []
    own = policy.own_addresses()
    refusals = [(a, policy.refusal(a, own)) for a in addresses]
    bad = [(a, why) for a, why in refusals if why is not None]
    if literal is not None and (not addresses or bad):
        why = bad[0][1] if bad else policy.refusal(literal, own) or "not an address"
        raise EgressDenied(f"{host} is {why}; the platform connects only to public addresses")
    if not addresses or bad:
        # do not say what an internal name resolves to (or whether it does): no DNS oracle
        log.info("egress: %r refused: %s", host, bad or "no address")
        raise EgressDenied(
            f"{host} does not resolve to a public address; the platform connects only to public addresses"
        )
    return addresses[0], tuple(addresses)


def check_url(url: str, policy: EgressPolicy) -> Target:
    """The URL's target, checked (blocking: resolves the name). EgressDenied says why not."""
    try:
        parts = urlsplit(str(url))
        port = parts.port
    except ValueError as exc:
        raise EgressDenied(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise EgressDenied("only http and https URLs are accepted")
    if not parts.hostname:
        raise EgressDenied("the URL names no host")
    port = port or (443 if scheme == "https" else 80)
    address, addresses = check_host(parts.hostname, port, policy)
    return Target(str(url), scheme, parts.hostname, port, address, addresses)


def safe_url(url: str | httpx.URL) -> str:
    """``url`` as it may be logged or stored in clear: no user:password, no query (a signed URL's
    signature, a token), so what is sealed at rest does not reappear in a log or a task's error."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme}://{netloc}{parts.path}" + ("?***" if parts.query else "")


async def _check_async(url: str, policy: EgressPolicy) -> Target:
    import asyncio

    return await asyncio.to_thread(check_url, url, policy)


async def send_to(  # noqa: PLR0913 - a request is all of these
    target: Target,
    method: str,
    timeout: float,
    json: Any = None,
    verify: ssl.SSLContext | bool = True,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[httpx.AsyncClient, httpx.Response]:
    """One request to the checked address (a client per hop: no connection is reused for another
    name). ``content`` and ``headers``: a body sent byte for byte (a signed one). The caller closes
    both. httpx errors propagate."""
    url = httpx.URL(target.url)
    headers = {**(headers or {}), "Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    # trust_env=False: a proxy from the environment would resolve the name again, elsewhere
    client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify)
    try:
        request = client.build_request(
            method, target.pinned_url(), headers=headers, json=json, content=content, extensions=extensions
        )
        return client, await client.send(request, stream=True)
    except BaseException:
        await client.aclose()
        raise


@asynccontextmanager
async def request(  # noqa: PLR0913 - a request is all of these
    method: str,
    url: str,
    policy: EgressPolicy,
    *,
    json: Any = None,
    timeout: float = 60.0,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """The response (streamed) to ``method url``, every hop checked and pinned.

    EgressDenied for the first URL; FetchFailed for any later refusal (a redirect to a refused
    target) or connection error. Read errors of the body are the caller's (httpx.HTTPError)."""
    target = await _check_async(url, policy)
    for hop in range(MAX_REDIRECTS + 1):
        try:
            client, response = await send_to(target, method, timeout, json, content=content, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("egress: %s %s (%s) failed: %r", method, safe_url(target.url), target.address, exc)
            raise FetchFailed() from exc
        try:
            location = response.headers.get("location")
            if not (response.is_redirect and location and method in ("GET", "HEAD")):
                yield response
                return
            if hop == MAX_REDIRECTS:
                log.warning("egress: more than %d redirects from %s", MAX_REDIRECTS, safe_url(url))
                raise FetchFailed()
            try:
                target = await _check_async(urljoin(target.url, location), policy)
            except EgressDenied as exc:
                log.warning(
                    "egress: redirect from %s to %s refused: %s",
                    safe_url(target.url),
                    safe_url(location),
                    exc,
                )
                raise FetchFailed() from exc
        finally:
            await response.aclose()
            await client.aclose()


async def open_tcp(host: str, port: int, policy: EgressPolicy, timeout: float) -> None:
    """Connect to ``host:port`` (checked, pinned) and close at once: a TCP health check.

    EgressDenied when the target is refused; FetchFailed (logged) when nothing answers."""
    import asyncio

    address, _ = await asyncio.to_thread(check_host, host, port, policy)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(str(address), port), timeout)
    except (OSError, TimeoutError) as exc:
        log.info("egress: tcp %s:%d (%s) failed: %r", host, port, address, exc)
        raise FetchFailed() from exc
    writer.close()
