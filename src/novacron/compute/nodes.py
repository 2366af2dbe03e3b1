"""Joining hosts: one-time join tokens, per-host credentials, revocation that applies at once.

A join token adds a new host and nothing else. Replacing an existing host's credential (its
reinstall) takes a re-key token an administrator mints for that host id; spending it makes the old
credential stop working at once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute.hosts import host_by_ref
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import Host, JoinToken, NodeCredential
from novacron.errors import Conflict, FieldError, Unauthenticated
from novacron.identity.principal import Principal
from novacron.service import Service

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
    """The host principal of a node credential; Unauthenticated if unknown or revoked."""
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


@dataclass(frozen=True)
class JoinGrant:
    """A join token, and the command an operator runs on the host to spend it."""

    join_token: str
    expires_at: datetime
    ca_fingerprint: str
    command: str
    #: set on a re-key token: the only host it can join as
    host_id: str | None = None


class NodeService(Service):
    """Operators' side of joining hosts: join tokens, re-key tokens, revocation."""

    def join_token(self, ttl_s: int) -> JoinGrant:
        """A one-time token that adds a new host (an existing host's name is refused)."""
        return self._grant(ttl_s)

    def rejoin_token(self, host_ref: str, ttl_s: int) -> JoinGrant:
        """A one-time token that re-keys this host (after a reinstall): the agent joining with it
        gets the host's identity and a new credential, and the old credential stops working."""
        host = host_by_ref(self.session, self.principal, host_ref)
        if self.session.get(NodeCredential, host.id) is None:
            # the embedded agent runs inside the server and has no credential to replace: a token
            # for its host would let a remote process pose as it
            raise Conflict(f"Host '{host.name}' has no agent credential (the embedded agent has none).")
        return self._grant(ttl_s, host)

    def revoke(self, host_ref: str) -> None:
        """The host's credential stops working at once, and the host is down."""
        host = host_by_ref(self.session, self.principal, host_ref)
        credential = self.session.get(NodeCredential, host.id)
        if credential is None:
            raise Conflict(f"Host '{host_ref}' has no agent credential (the embedded agent has none).")
        credential.revoked_at = utcnow()
        host.state = "down"
        events.publish(self.session, "host.revoked", "host", host.id, tenant_id=None, name=host.name)

    def _grant(self, ttl_s: int, host: Host | None = None) -> JoinGrant:
        """A join token (bound to ``host`` when re-keying it) and the command that spends it."""
        secret = secrets.token_urlsafe(24)
        token = JoinToken(
            id=new_id("join"),
            secret_hash=_hash(secret),
            expires_at=utcnow() + timedelta(seconds=ttl_s),
            created_by=self.principal.user_id,
            host_id=host.id if host is not None else None,
        )
        self.session.add(token)
        if host is not None:
            events.publish(self.session, "host.rejoin_token", "host", host.id, tenant_id=None, name=host.name)
        join_token = f"{JOIN_PREFIX}{token.id}.{secret}"
        listener = self.ctx.agent_listener
        fingerprint = listener.ca_fingerprint if listener is not None else ""
        server = listener.url if listener is not None else "https://<server>:8443"
        named = f" --name {host.name}" if host is not None else ""
        return JoinGrant(
            join_token=join_token,
            expires_at=token.expires_at,
            ca_fingerprint=fingerprint,
            command=f"novacron agent --server {server}{named} --join-token {join_token} "
            f"--ca-fingerprint {fingerprint}",
            host_id=token.host_id,
        )
