"""Joining hosts: one-time join tokens, per-host credentials, revocation that applies at once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select

from novacron import events
from novacron.api.errors import Problem
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import Host, JoinToken, NodeCredential
from novacron.identity.principal import Principal

NODE_PREFIX = "ncn."
JOIN_PREFIX = "ncj."
AGENT_PERMISSIONS = frozenset({"agent", "image:read"})


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_join_token(db: Database, created_by: str, ttl: timedelta) -> tuple[str, JoinToken]:
    secret = secrets.token_urlsafe(24)
    with db.session() as s:
        token = JoinToken(
            id=new_id("join"), secret_hash=_hash(secret), expires_at=utcnow() + ttl, created_by=created_by
        )
        s.add(token)
    return f"{JOIN_PREFIX}{token.id}.{secret}", token


def join(db: Database, join_token: str, name: str) -> tuple[str, str]:
    """Spend a join token: create (or re-key) the host ``name`` and return its id and credential."""
    refused = Problem(
        401,
        "Unauthorized",
        "The join token is unknown, expired or already used; ask for a new one "
        "with 'POST /v1/hosts/join-tokens'.",
        errors=[{"field": "body.join_token", "reason": "unknown, expired or already used"}],
    )
    if not join_token.startswith(JOIN_PREFIX) or join_token.count(".") != 2:
        raise refused
    token_id, secret = join_token[len(JOIN_PREFIX) :].split(".", 1)
    credential_secret = secrets.token_urlsafe(32)
    with db.session() as s:
        token = s.get(JoinToken, token_id)
        if (
            token is None
            or token.used_by_host is not None
            or token.expires_at < utcnow()
            or not hmac.compare_digest(token.secret_hash, _hash(secret))
        ):
            raise refused
        host = s.scalar(select(Host).where(Host.name == name))
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
        events.publish(s, "host.joined", "host", host.id, tenant_id=None, name=name)
        host_id = host.id
    return host_id, f"{NODE_PREFIX}{host_id}.{credential_secret}"


def authenticate(db: Database, token: str) -> Principal:
    refused = Problem(401, "Unauthorized", "This node credential is unknown or revoked; join the host again.")
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
