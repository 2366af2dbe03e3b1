"""First start: the platform administrator and the default tenant and project.

``ensure_bootstrap`` creates, when no user exists yet, the user ``admin`` (role admin, no
tenant) with a generated password, plus tenant ``default`` with project ``default``. The
plaintext password is returned once (the server prints it with the URL) and written to
``<state_dir>/admin-password`` with mode 0600 so the operator and ``novacron setup`` can
read it; delete that file after changing the password.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from novacron.db.base import Database, new_id
from novacron.db.models import Project, Tenant, User
from novacron.identity.passwords import PasswordPolicyError, check_policy, hash_password

log = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
DEFAULT_TENANT = "default"
DEFAULT_PROJECT = "default"
PASSWORD_FILE = "admin-password"


def admin_password_path(state_dir: Path) -> Path:
    return Path(state_dir) / PASSWORD_FILE


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by the owner only (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def generate_password() -> str:
    """A random password (144 bits) that passes the password policy like any other."""
    while True:
        password = secrets.token_urlsafe(18)
        try:
            check_policy(password, username=ADMIN_USERNAME)
        except PasswordPolicyError:  # e.g. contains "admin" by chance: draw again
            continue
        return password


def ensure_bootstrap(db: Database, state_dir: Path | None = None) -> str | None:
    """Create the first admin and the default tenant/project if missing.

    Returns the admin's plaintext password only when the admin was created by this call.
    The password file goes to ``state_dir``; without one, next to a SQLite database file
    (the default layout puts it at ``<state_dir>/novacron.db``); PostgreSQL without a
    ``state_dir`` writes no file.
    Safe to call on every start and from several processes at once (the loser of a race
    sees the unique constraint and returns None).
    """
    password: str | None = None
    try:
        with db.session() as session:
            tenant = session.scalar(select(Tenant).where(Tenant.name == DEFAULT_TENANT))
            if tenant is None and session.scalar(select(func.count()).select_from(Tenant)) == 0:
                tenant = Tenant(id=new_id("tenant"), name=DEFAULT_TENANT, description="Default tenant")
                session.add(tenant)
                session.flush()
                session.add(
                    Project(
                        id=new_id("project"),
                        tenant_id=tenant.id,
                        name=DEFAULT_PROJECT,
                        description="Default project",
                    )
                )
            if session.scalar(select(User.id).where(User.username == ADMIN_USERNAME)) is None and (
                session.scalar(select(func.count()).select_from(User).where(User.role == "admin")) == 0
            ):
                password = generate_password()
                session.add(
                    User(
                        id=new_id("user"),
                        username=ADMIN_USERNAME,
                        password_hash=hash_password(password),
                        role="admin",
                        tenant_id=None,
                    )
                )
    except IntegrityError:
        log.info("bootstrap raced with another process; it created the initial records")
        return None
    if state_dir is None:
        state_dir = _sqlite_dir(db.url)
    if password is not None and state_dir is not None:
        try:
            write_secret(admin_password_path(state_dir), password)
        except OSError:
            log.exception("could not write %s", admin_password_path(state_dir))
    return password


def _sqlite_dir(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url[len(prefix) :].split("?", 1)[0]).parent
