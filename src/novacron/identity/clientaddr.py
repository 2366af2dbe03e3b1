"""The client address of a request: the TCP peer, or what a trusted reverse proxy says it is.

``X-Forwarded-For`` and ``Forwarded`` are written by whoever sends the request, so they are
believed only when the peer is one of ``NOVACRON_TRUSTED_PROXIES`` (none by default), and
then read from the right: each trusted proxy appends the address it saw, so the first
address from the right that is not a trusted proxy is the client; anything left of it was
written by the client and is ignored. Only one header is read (``NOVACRON_PROXY_HEADER``),
since a proxy that sets one passes the other through as the client wrote it.

This module reads plain values (a peer address, header pairs); ``api/clientaddr.py`` applies it
to each request at the edge. Uvicorn's own ``proxy_headers`` is off (``server.py``): by default it
believes these headers from 127.0.0.1, which let any local client forge its address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """The networks of ``cidrs`` (host bits allowed)."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def parse_address(text: str) -> Address | None:
    """``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``, quoted or not; None for anything else
    (``unknown``, obfuscated ``_hidden`` names, garbage). An IPv4-mapped IPv6 address is the IPv4
    address it carries: that is the client, whichever socket family it came in on."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _hops(headers: Sequence[tuple[bytes, bytes]], header: str) -> list[str]:
    """The addresses in every instance of ``header``, leftmost (the farthest hop) first."""
    name = header.encode()
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    hops: list[str] = []
    for element in ",".join(values).split(","):
        if header == "forwarded":
            pairs = (p.split("=", 1) for p in element.split(";") if "=" in p)
            element = next((v for k, v in pairs if k.strip().lower() == "for"), "")
        hops.append(element)
    return hops


def _trusted(addr: Address, proxies: Sequence[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in proxies)


def resolve_client(
    peer: str | None, headers: Sequence[tuple[bytes, bytes]], proxies: Sequence[Network], header: str
) -> str | None:
    """The client's address: ``peer`` unless it is a trusted proxy, then read from ``header``."""
    if peer is None or not proxies:
        return peer
    addr = parse_address(peer)
    if addr is None or not _trusted(addr, proxies):
        return peer
    for hop in reversed(_hops(headers, header)):
        seen = parse_address(hop)
        if seen is None:  # a hop we cannot read: the last trusted proxy's word is all there is
            break
        addr = seen
        if not _trusted(seen, proxies):
            break
    return str(addr)
