"""Default tenant quotas (issue 11 finding 15) on a real SQLite database migrated to head: every
registered resource has a default, the operator's setting overrides it, the operator's own tenant
keeps no limit, and a template an operator made the default through the API is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from novacron.db.base import Database, new_id
from novacron.db.migrate import upgrade
from novacron.db.models import QuotaLimit, QuotaTemplate, Tenant
from novacron.quota import tree
from novacron.quota.defaults import (
    DEFAULT_TENANT_LIMITS,
    TEMPLATE_NAME,
    QuotaDefaultsError,
    ensure_tenant_defaults,
    parse_spec,
)
from novacron.quota.registry import RESOURCES


def test_every_registered_resource_has_a_default() -> None:
    assert set(DEFAULT_TENANT_LIMITS) == set(RESOURCES)
    assert parse_spec("") == DEFAULT_TENANT_LIMITS


def test_the_setting_overrides_some_limits_or_turns_them_off() -> None:
    assert parse_spec("vms=3, vcpus=6") == {**DEFAULT_TENANT_LIMITS, "vms": 3, "vcpus": 6}
    assert parse_spec("none") is None
    for bad in ("vms", "gpus=1", "vms=lots", "vms=-1"):
        with pytest.raises(QuotaDefaultsError, match="NOVACRON_TENANT_QUOTA_DEFAULTS"):
            parse_spec(bad)


def _tenant(db: Database, name: str) -> str:
    with db.session() as s:
        t = Tenant(id=new_id("tenant"), name=name)
        s.add(t)
        return t.id


def _limits(db: Database, tenant_id: str) -> dict[str, int]:
    with db.session() as s:
        node = tree.node_for_ref(s, tenant_id=tenant_id)
        rows = s.scalars(select(QuotaLimit).where(QuotaLimit.node_id == node))
        return {r.resource: r.limit for r in rows}


def test_new_tenants_get_the_defaults_the_operators_own_tenant_does_not(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/nc.db")
    upgrade(db)
    own = _tenant(db, "default")
    ensure_tenant_defaults(db, "vms=4")
    ensure_tenant_defaults(db, "vms=4")  # every start: idempotent
    assert _limits(db, own) == {}
    assert _limits(db, _tenant(db, "acme")) == {**DEFAULT_TENANT_LIMITS, "vms": 4}
    # the setting changes: tenants from now on get the new defaults
    ensure_tenant_defaults(db, "vms=7")
    assert _limits(db, _tenant(db, "later"))["vms"] == 7
    # an operator's own default template (API) wins over the built-in one
    with db.session() as s:
        for t in s.scalars(select(QuotaTemplate)):
            t.is_default = False
        s.add(
            QuotaTemplate(
                id=new_id("qtpl"), name="mine", applies_to="tenant", is_default=True, limits={"vms": 1}
            )
        )
    ensure_tenant_defaults(db, "vms=7")
    assert _limits(db, _tenant(db, "newest")) == {"vms": 1}
    ensure_tenant_defaults(db, "none")
    with db.session() as s:
        builtin = s.scalar(select(QuotaTemplate).where(QuotaTemplate.name == TEMPLATE_NAME))
        assert builtin is not None and not builtin.is_default
