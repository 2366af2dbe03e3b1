"""Default quota limits of a new tenant: every registered resource has one.

A fresh install used to give new tenants no limit at all, so one tenant could take the whole
cluster. The built-in quota template ``default-tenant`` (the default template for tenant nodes,
``applies_to=tenant``) carries these limits; ``ensure_nodes`` copies it onto each tenant's node
when the node is created (the tenant's first write). Operators change the defaults with
``NOVACRON_TENANT_QUOTA_DEFAULTS`` (``vms=20,vcpus=40``: those resources overridden, the rest kept;
``none``: no default limits), or through the API by making another template the default
(``POST /v1/quota/templates`` with ``applies_to=tenant``), which this start-up step leaves alone.
The operator's own ``default`` tenant keeps no limits: its node is created before the template.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from novacron.db.base import Database, new_id
from novacron.db.models import QuotaTemplate, Tenant
from novacron.quota.registry import RESOURCES
from novacron.quota.tree import NodeSpec, ensure_nodes, tenant_node

log = logging.getLogger(__name__)

TEMPLATE_NAME = "default-tenant"
#: per tenant, about what OpenStack gives a new project (10 instances, 20 cores, 50 GiB RAM)
DEFAULT_TENANT_LIMITS: dict[str, int] = {
    "vms": 10,
    "vcpus": 20,
    "ram_mb": 51200,
    "disk_gb": 1000,
    "snapshots": 20,
    "networks": 10,
    "ports": 100,
    "floating_ips": 10,
    "backup_storage_gb": 2000,
    "load_balancers": 5,
    "volumes": 10,
    "volume_gb": 1000,
    "volume_snapshots": 50,
}


class QuotaDefaultsError(ValueError):
    """``NOVACRON_TENANT_QUOTA_DEFAULTS`` is not ``none`` nor ``resource=N,...``."""


def parse_spec(spec: str) -> dict[str, int] | None:
    """The default limits ``spec`` asks for (None: no defaults); unlisted resources keep theirs."""
    spec = spec.strip()
    if spec.lower() == "none":
        return None
    limits = {r: DEFAULT_TENANT_LIMITS.get(r, 0) for r in RESOURCES}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in RESOURCES:
            raise QuotaDefaultsError(
                f"NOVACRON_TENANT_QUOTA_DEFAULTS: {item!r}: expected RESOURCE=N with a resource of "
                f"{', '.join(sorted(RESOURCES))}"
            )
        try:
            limits[name] = int(value)
        except ValueError:
            raise QuotaDefaultsError(
                f"NOVACRON_TENANT_QUOTA_DEFAULTS: {item!r}: not a whole number"
            ) from None
        if limits[name] < 0:
            raise QuotaDefaultsError(f"NOVACRON_TENANT_QUOTA_DEFAULTS: {item!r}: must be 0 or more")
    return limits


def ensure_tenant_defaults(db: Database, spec: str, exempt_tenant: str = "default") -> None:
    """Make the built-in template match ``spec`` (idempotent; safe from several replicas)."""
    limits = parse_spec(spec)
    try:
        with db.session() as s:
            own = s.scalar(select(Tenant.id).where(Tenant.name == exempt_tenant))
            if own is not None:  # created now, before any default applies: it keeps no limits
                ensure_nodes(s, [NodeSpec(tenant_node(own), "tenant", "system", own, own, 1)])
            builtin = s.scalar(select(QuotaTemplate).where(QuotaTemplate.name == TEMPLATE_NAME))
            if builtin is None:
                if limits is None:
                    return
                other = s.scalar(
                    select(QuotaTemplate.id).where(
                        QuotaTemplate.applies_to == "tenant", QuotaTemplate.is_default.is_(True)
                    )
                )
                s.add(
                    QuotaTemplate(
                        id=new_id("qtpl"),
                        name=TEMPLATE_NAME,
                        applies_to="tenant",
                        is_default=other is None,
                        limits=limits,
                    )
                )
            elif limits is None:
                builtin.is_default = False
            elif builtin.limits != limits:
                builtin.limits = limits
    except IntegrityError:
        log.info("another replica seeded the default tenant quota at the same time")
