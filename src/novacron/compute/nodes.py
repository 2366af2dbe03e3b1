"""Joining hosts: one-time join tokens, per-host credentials, revocation that applies at once.

A join token adds a new host and nothing else. Replacing an existing host's credential (its
reinstall) takes a re-key token an administrator mints for that host id; spending it makes the old
credential stop working at once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import Host, JoinToken, NodeCredential
from novacron.errors import Conflict, FieldError, Unauthenticated
from novacron.identity.principal import Principal

NODE_PREFIX = "ncn."
JOIN_PREFIX = "ncj."
AGENT_PERMISSIONS = frozenset({"agent", "image:read"})


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class JoinRefused(Conflict):
    """A join that would take over an existing host; carries that host's id for the audit record."""

    def __init__(self, host_id: str, detail: str) -> None:
        super().__init__(detail, fields=[FieldError("name", detail)])
        self.host_id = host_id


class JoinTokenRefused(Unauthenticated):
    """A join token that is unknown, expired or already used (one answer for all three)."""

    def __init__(self) -> None:
        super().__init__(
            "The join token is unknown, expired or already used; ask for a new one "
            "with 'POST /v1/hosts/join-tokens'."
        )
        self.fields = [FieldError("join_token", "unknown, expired or already used")]


def create_join_token(
    db: Database, created_by: str, ttl: timedelta, host_id: str | None = None
) -> tuple[str, JoinToken]:
    """A one-time join token: for a new host, or (``host_id``) to re-key that existing host."""
    secret = secrets.token_urlsafe(24)
    with db.session() as s:
        token = JoinToken(
            id=new_id("join"),
            secret_hash=_hash(secret),
            expires_at=utcnow() + ttl,
            created_by=created_by,
            host_id=host_id,
        )
        s.add(token)
        if host_id is not None:
            host = s.get(Host, host_id)
            events.publish(
                s, "host.rejoin_token", "host", host_id, tenant_id=None, name=host.name if host else None
            )
    return f"{JOIN_PREFIX}{token.id}.{secret}", token


def token_id_of(join_token: str) -> str | None:
    """The id part of a join token (for the audit record; never the secret)."""
    if not join_token.startswith(JOIN_PREFIX) or join_token.count(".") != 2:
        return None
    return join_token[len(JOIN_PREFIX) :].split(".", 1)[0][:40]


def _spendable(s: Session, join_token: str) -> JoinToken:
    refused = JoinTokenRefused()
    token_id = token_id_of(join_token)
    if token_id is None:
        raise refused
    secret = join_token.split(".", 2)[2]
    token = s.get(JoinToken, token_id)
    if (
        token is None
        or token.used_by_host is not None
        or token.expires_at < utcnow()
        or not hmac.compare_digest(token.secret_hash, _hash(secret))
    ):
        raise refused
    return token


def _target_host(s: Session, token: JoinToken, name: str) -> Host | None:
    """The existing host a re-key token names (checked against ``name``), or None for a new host.

    A plain join token never reaches an existing host: the name (or id) of one is refused, so a
    leaked join token cannot take over a host's identity and cut off its real agent."""
    existing = s.scalar(select(Host).where((Host.name == name) | (Host.id == name)))
    if token.host_id is None:
        if existing is not None:
            raise JoinRefused(
                existing.id,
                f"a host named '{name}' exists; a join token only adds a new host. To replace the "
                f"credential of a reinstalled host, an administrator asks for "
                f"'POST /v1/hosts/{existing.id}/rejoin-token'",
            )
        return None
    host = s.get(Host, token.host_id)
    if host is None:
        raise JoinRefused(token.host_id, "the host this token re-keys no longer exists")
    if existing is None or existing.id != host.id:
        raise JoinRefused(
            host.id, f"this token re-keys the host '{host.name}' only; join with --name {host.name}"
        )
    return host


def join(db: Database, join_token: str, name: str) -> tuple[str, str]:
    """Spend a join token: create the host ``name`` (or re-key the host the token was minted for)
    and return its id and credential. Any earlier credential of the host stops working at once."""
    credential_secret = secrets.token_urlsafe(32)
    with db.session() as s:
        token = _spendable(s, join_token)
        host = _target_host(s, token, name)
        rekeyed = host is not None
        if host is None:
            host = Host(
                id=new_id("host"),
                name=name,
                driver="unknown",
                accelerator="tcg",
                cpus=0,
                ram_mb=0,
                state="down",
            )
            s.add(host)
            s.flush()
        token.used_by_host = host.id
        credential = s.get(NodeCredential, host.id)
        if credential is None:
            credential = NodeCredential(host_id=host.id, token_hash="")
            s.add(credential)
        credential.token_hash = _hash(credential_secret)
        credential.revoked_at = None
        kind = "host.rekeyed" if rekeyed else "host.joined"
        events.publish(s, kind, "host", host.id, tenant_id=None, name=host.name, join_token=token.id)
        host_id = host.id
    return host_id, f"{NODE_PREFIX}{host_id}.{credential_secret}"


def authenticate(db: Database, token: str) -> Principal:
    refused = Unauthenticated("This node credential is unknown or revoked; join the host again.")
    host_id, _, secret = token[len(NODE_PREFIX) :].partition(".")
    with db.session() as s:
        credential = s.get(NodeCredential, host_id)
        if (
            credential is None
            or credential.revoked_at is not None
            or not hmac.compare_digest(credential.token_hash, _hash(secret))
        ):
            raise refused
        host = s.get(Host, host_id)
        assert host is not None
        return Principal(
            user_id=host.id,
            username=host.name,
            role="node",
            tenant_id=None,
            permissions=AGENT_PERMISSIONS,
            kind="node",
        )


def revoke(db: Database, host_id: str) -> bool:
    with db.session() as s:
        credential = s.get(NodeCredential, host_id)
        host = s.get(Host, host_id)
        if credential is None or host is None:
            return False
        credential.revoked_at = utcnow()
        host.state = "down"
        events.publish(s, "host.revoked", "host", host.id, tenant_id=None, name=host.name)
        return True
