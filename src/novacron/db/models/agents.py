"""Node agents: join tokens, per-host credentials, and the operations queued for each host."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime


class JoinToken(Timestamped, Base):
    """A short-lived secret an operator hands to a new host so its agent can join."""

    __tablename__ = "join_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    used_by_host: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: set: the token re-keys this existing host (its reinstall) and nothing else; None: it joins a
    #: new host and never takes over an existing one
    host_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class CertificateAuthority(Timestamped, Base):
    """The platform CA, kept in the database so every server replica signs with the same one.

    Agents pin this CA's fingerprint at join; a replica with a CA of its own would be refused by
    every agent that joined through another replica. The key is stored like the JWT signing keys.
    """

    __tablename__ = "certificate_authorities"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    cert_pem: Mapped[str] = mapped_column(Text)
    key_pem: Mapped[str] = mapped_column(Text)


class NodeCredential(Timestamped, Base):
    """The secret a joined agent presents on every request; revoking it locks the host out at once."""

    __tablename__ = "node_credentials"
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HostOperation(Timestamped, Base):
    """One driver call a task step asks of the agent of one host.

    The id is derived from the task, step and operation, so a step that runs again after a crash
    finds the operation it queued before instead of queuing a second one.
    """

    __tablename__ = "host_operations"
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    op: Mapped[str] = mapped_column(String(32))
    instance_id: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: pending, running, done, failed
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the W3C trace context of the step that queued it: the agent continues that trace
    traceparent: Mapped[str | None] = mapped_column(String(64), nullable=True)
