"""Global names (a tenant's) and the CIDR → region table (the platform's), and their publication.

Every change renders the whole zone from the tables, inside the change's transaction (so the
zone is the one this transaction commits), and hands it to the DNS provider once the transaction
has committed (a refused or failed change publishes nothing). Writers are serialised by the
database, and each zone carries a generation taken inside its transaction: the provider drops a
publication older than the one it serves, so two changes committed at once cannot leave the
older zone served.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.config import Settings
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import GslbName, GslbRegion, LbListener, LoadBalancer
from novacron.db.resolve import resolve, scoped
from novacron.errors import InvalidInput, NameTaken, NotFound, Unavailable
from novacron.gslb import model
from novacron.gslb.model import GlobalName, RegionRule, Site, ZoneSpec
from novacron.gslb.powerdns import PowerDNSServer
from novacron.gslb.provider import DnsProvider
from novacron.lbaas.loadbalancers import floating_ip_of
from novacron.netguard import EgressPolicy
from novacron.service import Service

log = logging.getLogger(__name__)
#: a load balancer's id as the platform makes them (``lb-`` and 16 hex digits)
_LB_ID = re.compile(r"[a-z]{1,8}-[0-9a-f]{16}")


@dataclass(frozen=True)
class SiteSpec:
    """One site of a global name as the caller gave it: an address, or one of the tenant's load
    balancers (its address then follows the load balancer's, see ``lb_target``)."""

    address: str | None
    port: int
    region: str
    weight: int = 1
    monitor_path: str | None = None
    loadbalancer_id: str | None = None


@dataclass(frozen=True)
class LbTarget:
    """Where a site naming a load balancer is: its floating IP when it has one, else its VIP;
    and the ports its listeners listen on."""

    address: str
    ports: frozenset[int]


#: the load balancer of this id of the name's tenant as a site (None: no such load balancer of it)
LbLookup = Callable[[str], LbTarget | None]


def lb_target(session: Session, tenant_id: str, lb_id: str) -> LbTarget | None:
    """The site the tenant's load balancer ``lb_id`` is now; None when the tenant has none of that id
    (another tenant's is as absent)."""
    stmt = select(LoadBalancer).where(LoadBalancer.id == lb_id, LoadBalancer.tenant_id == tenant_id)
    lb = session.scalar(stmt)
    if lb is None:
        return None
    ports = session.scalars(select(LbListener.protocol_port).where(LbListener.loadbalancer_id == lb.id))
    return LbTarget(floating_ip_of(session, lb) or lb.vip_address, frozenset(ports))


@dataclass(frozen=True)
class NameSpec:
    """A global name as the caller gave it: the DNS name, its answers' TTL and its sites."""

    name: str
    ttl: int
    sites: list[SiteSpec]


def provider(settings: Settings) -> DnsProvider:
    """This node's DNS server for the platform's zone (files under ``<state_dir>/gslb``)."""
    return PowerDNSServer(
        settings.state_dir / "gslb",
        settings.gslb_dns_address,
        settings.gslb_dns_port,
        settings.gslb_health_interval_s,
    )


def zone_of(settings: Settings) -> str:
    """The platform's GSLB zone, absolute; Unavailable when none is configured."""
    if not settings.gslb_zone:
        raise Unavailable("Global load balancing is not configured on this platform (NOVACRON_GSLB_ZONE).")
    return model.fqdn("zone", settings.gslb_zone)


def _site(row: dict[str, Any]) -> Site:
    return Site(row["address"], row["port"], row["region"], row["weight"], row.get("monitor_path"))


def _served(session: Session, egress: EgressPolicy, name: GslbName) -> tuple[Site, ...]:
    """The name's sites as they are now: a load balancer's at its current address (a floating IP
    added or changed since is answered), left out once it is gone (its address may be another's
    by then) or when its address no longer passes the egress guard."""
    out = []
    for row in name.sites:
        site = _site(row)
        if row.get("loadbalancer_id") is not None:
            target = lb_target(session, name.tenant_id, row["loadbalancer_id"])
            if target is None or egress.refusal(ipaddress.ip_address(target.address)) is not None:
                continue
            try:
                site = replace(site, address=model.address("address", target.address))
            except InvalidInput:  # an address no client could reach: left out, the zone still published
                continue
        out.append(site)
    return tuple(out)


def zone_spec(session: Session, settings: Settings) -> ZoneSpec:
    """Everything the DNS server is to answer, from the tables (every tenant's names)."""
    names = session.scalars(select(GslbName).order_by(GslbName.name))
    rules = session.scalars(select(GslbRegion).order_by(GslbRegion.cidr))
    egress = EgressPolicy.from_settings(settings)
    return ZoneSpec(
        zone=zone_of(settings),
        names=tuple(GlobalName(n.name, n.ttl, _served(session, egress, n)) for n in names),
        regions=tuple(RegionRule(r.cidr, r.region) for r in rules),
        serial=int(time.time()),
        generation=time.time_ns(),
    )


def publish_after_commit(session: Session, settings: Settings) -> None:
    """Render the zone now (this transaction's view) and publish it once the transaction commits."""
    if not settings.gslb_zone:
        return
    spec = zone_spec(session, settings)

    def publish(_session: Session) -> None:
        # the change is committed: if this publication fails, the node's next re-publication
        # (gslb/sync.py) serves it
        try:
            provider(settings).publish(spec)
        except (OSError, sqlite3.Error) as exc:
            log.warning("global names committed but not published: %s", exc)

    event.listen(session, "after_commit", publish, once=True)


def publish_tables(session: Session, settings: Settings, dns: DnsProvider) -> None:
    """Have ``dns`` serve what the tables hold."""
    dns.publish(zone_spec(session, settings))


def _address(n: int, given: SiteSpec, lookup: LbLookup) -> tuple[str, str]:
    """The site's address and the field it came from: the given one, or its load balancer's
    (whose listeners must listen on the site's port)."""
    if given.loadbalancer_id is None:
        if given.address is None:
            raise InvalidInput(f"sites.{n}.address", "an address, or a loadbalancer_id of yours")
        return given.address, "address"
    field = f"sites.{n}.loadbalancer_id"
    if not _LB_ID.fullmatch(given.loadbalancer_id):
        raise InvalidInput(field, "a load balancer's id")
    target = lookup(given.loadbalancer_id)
    if target is None:
        raise InvalidInput(field, f"you have no load balancer {given.loadbalancer_id}")
    if given.address is not None and model.address(f"sites.{n}.address", given.address) != target.address:
        reason = f"the load balancer's address is {target.address}: give that or none"
        raise InvalidInput(f"sites.{n}.address", reason)
    if given.port not in target.ports:
        ports = ", ".join(str(p) for p in sorted(target.ports)) or "none yet"
        raise InvalidInput(f"sites.{n}.port", f"one of the load balancer's listeners' ports ({ports})")
    return target.address, "loadbalancer_id"


def check_sites(sites: list[SiteSpec], egress: EgressPolicy, lookup: LbLookup) -> tuple[dict[str, Any], ...]:
    """The sites as stored, each value checked (InvalidInput names ``sites.N.field``); a site
    naming a load balancer (found by ``lookup``) is stored with its current address. PowerDNS
    connects to every site from this node on the tenant's behalf, so a site's address passes the
    egress guard: without it a tenant could probe the platform's own and internal ports."""
    if not 1 <= len(sites) <= model.MAX_SITES:
        raise InvalidInput("sites", f"from 1 to {model.MAX_SITES} sites")
    out = []
    seen: set[tuple[str, int]] = set()
    for n, given in enumerate(sites):
        address, source = _address(n, given, lookup)
        site = Site.checked(f"sites.{n}", address, given.port, given.region, given.weight, given.monitor_path)
        if (why := egress.refusal(ipaddress.ip_address(site.address))) is not None:
            why = why if source == "address" else f"its address {site.address}: {why}"
            raise InvalidInput(f"sites.{n}.{source}", f"{why}: sites are checked only at public addresses")
        if (site.address, site.port) in seen:
            raise InvalidInput(f"sites.{n}.{source}", "this address and port are already a site of this name")
        seen.add((site.address, site.port))
        out.append(
            {
                "address": site.address,
                "port": site.port,
                "region": site.region,
                "weight": site.weight,
                "monitor_path": site.monitor_path,
                "loadbalancer_id": given.loadbalancer_id,
            }
        )
    return tuple(out)


class GslbNameService(Service):
    """A tenant's global names: list, read, create, replace, delete; each change is published."""

    raises = (Unavailable,)

    def _mine(self) -> Any:
        return scoped(select(GslbName), GslbName, self.principal)

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[GslbName], str | None]:
        """One page of the global names the caller sees."""
        wanted = None if name is None else model.fqdn("name", name)
        return paginate(self.session, where_equal(self._mine(), (GslbName.name, wanted)), GslbName, params)

    def get(self, ref: str) -> GslbName:
        """The caller's global name of this id or DNS name; NotFound for another tenant's."""
        return resolve(self.session, self.principal, GslbName, ref)

    def _checked(self, spec: NameSpec, tenant_id: str) -> tuple[str, tuple[dict[str, Any], ...]]:
        name = model.name_in_zone("name", spec.name, zone_of(self.ctx.settings))
        model.bounded("ttl", spec.ttl, model.MIN_TTL, model.MAX_TTL)
        egress = EgressPolicy.from_settings(self.ctx.settings)
        return name, check_sites(spec.sites, egress, lambda lb_id: lb_target(self.session, tenant_id, lb_id))

    def _name_free(self, name: str) -> None:
        if self.session.scalar(select(GslbName.id).where(GslbName.name == name)) is not None:
            raise NameTaken("global name", name, "name", scope="on this platform")

    def create(self, spec: NameSpec) -> GslbName:
        """A new global name of the caller's tenant, served once committed."""
        if self.principal.tenant_id is None:
            raise InvalidInput("name", "a global name belongs to a tenant: create it as a user of one")
        name, sites = self._checked(spec, self.principal.tenant_id)
        self._name_free(name)
        row = GslbName(
            id=new_id("gsl"), tenant_id=self.principal.tenant_id, name=name, ttl=spec.ttl, sites=list(sites)
        )
        self.session.add(row)
        self.session.flush()
        events.publish(
            self.session, "gslb.name.created", "gslb_name", row.id, tenant_id=row.tenant_id, name=name
        )
        publish_after_commit(self.session, self.ctx.settings)
        return row

    def replace(self, row: GslbName, spec: NameSpec) -> GslbName:
        """New DNS name, TTL and sites for one of the caller's global names."""
        name, sites = self._checked(spec, row.tenant_id)
        if name != row.name:
            self._name_free(name)
        row.name, row.ttl, row.sites = name, spec.ttl, list(sites)
        self.session.flush()
        events.publish(
            self.session, "gslb.name.updated", "gslb_name", row.id, tenant_id=row.tenant_id, name=name
        )
        publish_after_commit(self.session, self.ctx.settings)
        return row

    def delete(self, row: GslbName) -> None:
        """Delete one of the caller's global names: no longer answered once committed."""
        events.publish(
            self.session, "gslb.name.deleted", "gslb_name", row.id, tenant_id=row.tenant_id, name=row.name
        )
        self.session.delete(row)
        self.session.flush()
        publish_after_commit(self.session, self.ctx.settings)


class GslbRegionService(Service):
    """The platform's CIDR → region table: read by everyone, written by platform administrators."""

    raises = (Unavailable,)

    def list(self, params: ListParams, *, region: str | None = None) -> tuple[list[GslbRegion], str | None]:
        """One page of the table."""
        stmt = where_equal(select(GslbRegion), (GslbRegion.region, region))
        return paginate(self.session, stmt, GslbRegion, params)

    def get(self, rule_id: str) -> GslbRegion:
        row = self.session.get(GslbRegion, rule_id)
        if row is None:
            raise NotFound("region rule", rule_id)
        return row

    def create(self, cidr: str, region: str) -> GslbRegion:
        """Clients in ``cidr`` are nearest to ``region`` from now on."""
        network = model.cidr("cidr", cidr)
        model.region("region", region)
        if self.session.scalar(select(GslbRegion.id).where(GslbRegion.cidr == network)) is not None:
            raise NameTaken("region rule", network, "cidr", scope="in the region table")
        row = GslbRegion(id=new_id("gsr"), cidr=network, region=region)
        self.session.add(row)
        self.session.flush()
        events.publish(
            self.session, "gslb.region.created", "gslb_region", row.id, tenant_id=None, cidr=network
        )
        publish_after_commit(self.session, self.ctx.settings)
        return row

    def delete(self, rule_id: str) -> None:
        """Remove one rule of the table."""
        row = self.get(rule_id)
        events.publish(
            self.session, "gslb.region.deleted", "gslb_region", row.id, tenant_id=None, cidr=row.cidr
        )
        self.session.delete(row)
        self.session.flush()
        publish_after_commit(self.session, self.ctx.settings)
