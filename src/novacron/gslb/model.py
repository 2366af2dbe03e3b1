"""The desired state of global load balancing: names, their sites, and the CIDR → region table.

Everything here is checked where it is built, raising ``InvalidInput`` naming the field, because
each value is later written into a PowerDNS LUA record (a Lua program): an address is re-printed
from its parsed form, numbers are ints, a region and a URL path match strict whitelists. Nothing
a caller typed reaches the program unparsed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from novacron.errors import InvalidInput

#: one DNS label: letters, digits and inner hyphens (RFC 1123), lower case
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
#: a region's name: what operators call a site's location ("eu-west", "us1")
_REGION = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
#: the path a URL monitor fetches: no quotes, backslashes, spaces, query or fragment
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
MAX_NAME = 253
MIN_TTL, MAX_TTL = 5, 3600
MIN_WEIGHT, MAX_WEIGHT = 1, 1000
MAX_SITES = 16


def fqdn(field: str, value: str) -> str:
    """``value`` as an absolute lower-case DNS name ending in a dot, or InvalidInput on ``field``."""
    name = value.strip().lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > MAX_NAME - 1 or len(labels) < 2:
        raise InvalidInput(field, "a DNS name of at least two labels, at most 253 characters")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise InvalidInput(
                field, f"label {label!r}: letters, digits and inner hyphens, 1 to 63 characters"
            )
    return name + "."


def name_in_zone(field: str, value: str, zone: str) -> str:
    """``value`` as an absolute name strictly below ``zone`` (both absolute)."""
    name = fqdn(field, value)
    if not name.endswith("." + zone):
        raise InvalidInput(field, f"must be a name under the platform's zone {zone}")
    return name


def region(field: str, value: str) -> str:
    if not _REGION.fullmatch(value):
        raise InvalidInput(
            field, "a region: a lower-case letter, then letters, digits or hyphens (at most 32)"
        )
    return value


def address(field: str, value: str) -> str:
    """A unicast address, re-printed in its canonical form."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidInput(field, "an IPv4 or IPv6 address") from None
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_link_local:
        raise InvalidInput(field, "a unicast address a client can reach")
    return str(ip)


def cidr(field: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        raise InvalidInput(field, f"a network in CIDR form ({exc})") from None


def path(field: str, value: str) -> str:
    if not _PATH.fullmatch(value):
        raise InvalidInput(field, "an absolute path of letters, digits and . _ ~ / - (no query)")
    return value


def bounded(field: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(field, f"an integer from {low} to {high}")
    return value


@dataclass(frozen=True)
class Site:
    """One place that serves a global name: a load balancer's VIP (address and port) in a region,
    with its share of answers and how its health is checked (a TCP connect to the port, or an HTTP
    GET of ``monitor_path`` there that must answer 200)."""

    address: str
    port: int
    region: str
    weight: int = 1
    monitor_path: str | None = None

    @classmethod
    def checked(
        cls, prefix: str, address_: str, port: int, region_: str, weight: int, monitor_path: str | None
    ) -> Site:
        return cls(
            address=address(f"{prefix}.address", address_),
            port=bounded(f"{prefix}.port", port, 1, 65535),
            region=region(f"{prefix}.region", region_),
            weight=bounded(f"{prefix}.weight", weight, MIN_WEIGHT, MAX_WEIGHT),
            monitor_path=None if monitor_path is None else path(f"{prefix}.monitor_path", monitor_path),
        )

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True)
class RegionRule:
    """Clients in ``cidr`` (their address, or the EDNS client subnet their resolver sends) are
    nearest to ``region``."""

    cidr: str
    region: str


@dataclass(frozen=True)
class GlobalName:
    """An absolute DNS name answered from its sites."""

    name: str
    ttl: int
    sites: tuple[Site, ...]


@dataclass(frozen=True)
class ZoneSpec:
    """Everything the DNS server answers: the platform's zone, its names and the region table."""

    zone: str
    names: tuple[GlobalName, ...]
    regions: tuple[RegionRule, ...]
    #: the SOA's serial (32 bits, seconds): grows with the publications
    serial: int
    #: orders publications (nanoseconds, taken in the writing transaction): an older one is dropped
    generation: int = 0
