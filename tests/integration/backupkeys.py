"""Settings for tests that open a backup store outside a server: a migrated database of their own
with the tenants named, since each tenant's backup data key is wrapped by its KMS key (a row)."""

from __future__ import annotations

from pathlib import Path

from novacron.config import Settings
from novacron.db.migrate import upgrade
from novacron.db.models import Tenant
from novacron.identity.kms_backup import database_for


def backup_settings(work: Path, *tenants: str) -> Settings:
    settings = Settings(state_dir=work / "state", database_url=f"sqlite:///{work / 'state.db'}")
    db = database_for(settings)
    upgrade(db)
    with db.session() as s:
        for tenant in tenants:
            s.add(Tenant(id=tenant, name=tenant))
    return settings
