"""Load balancers' TLS certificates (issue 14, "TLS"): what tenants upload or have issued by ACME.

A certificate row keeps the public part readable (the chain and the facts parsed from it) and its
private key sealed (``identity/encryption.py``, bound to the row's id), never returned by the API.
An ACME account is one tenant's account on one ACME directory; its key is sealed the same way.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned


class LbCertificate(Timestamped, Versioned, Base):
    """A TLS certificate with its chain and (sealed) key that listeners reference by id or name.

    ``source`` is ``upload`` or ``acme``. ``status``: ``PENDING`` (an ACME certificate not issued
    yet), ``ACTIVE`` (servable), ``ERROR`` (its first issuance failed: ``last_error`` says why).
    A failed renewal leaves an ACTIVE certificate serving, with ``last_error`` set.
    """

    __tablename__ = "lb_certificates"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255), default="")
    source: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE", index=True)
    #: the leaf then its intermediates, PEM (public)
    certificate_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the private key's PEM, sealed (bound to ``private_key_aad(id)``)
    private_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the DNS names a client's SNI selects it by (subject alternative names)
    names: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str | None] = mapped_column(String(512), nullable=True)
    issuer: Mapped[str | None] = mapped_column(String(512), nullable=True)
    serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    #: ACME: the names ordered, the directory, and the load balancer that answers HTTP-01
    acme_names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    acme_directory_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    acme_loadbalancer_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: when the renewal controller renews it (not_after minus the renewal window)
    renew_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    #: the last issuance or renewal failure (None after a success)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AcmeAccount(Timestamped, Base):
    """One tenant's account on one ACME directory: its key (EC P-256), sealed."""

    __tablename__ = "acme_accounts"
    __table_args__ = (UniqueConstraint("tenant_id", "directory_url"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    directory_url: Mapped[str] = mapped_column(String(512))
    #: the account key's PEM, sealed (bound to ``account_key_aad(id)``)
    key_pem: Mapped[str] = mapped_column(Text)
