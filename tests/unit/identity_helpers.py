"""A TokenService on a fresh SQLite state directory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from novacron.config import Settings
from novacron.db.base import Database, new_id
from novacron.db.models import Tenant, User
from novacron.identity.passwords import hash_password
from novacron.identity.tokens import TokenService


def make_service(tmp_path: Path, **overrides: int) -> tuple[Database, TokenService]:
    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/nc.db", embedded_agent=False)
    settings = replace(settings, **overrides)  # type: ignore[arg-type]
    db = Database(settings.database_url)
    db.create_all()
    return db, TokenService(db, settings)


def add_user(
    db: Database, username: str = "alice", role: str = "member", password: str = "pw-alice-123456"
) -> str:
    with db.session() as s:
        tenant = s.query(Tenant).filter_by(name="t1").one_or_none()
        if tenant is None:
            tenant = Tenant(id=new_id("tenant"), name="t1")
            s.add(tenant)
            s.flush()
        user = User(
            id=new_id("user"),
            username=username,
            password_hash=hash_password(password),
            role=role,
            tenant_id=None if role == "admin" else tenant.id,
        )
        s.add(user)
        return user.id


def issue(db: Database, ts: TokenService, user_id: str) -> tuple[str, str, int]:
    with db.session() as s:
        user = s.get(User, user_id)
        assert user is not None
        return ts.issue(s, user)
