"""The tenants' key service (``identity/kms.py``): keys, their versions' sealed material, and the
tenants' secrets encrypted under them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime


class KmsKey(Timestamped, Base):
    """A tenant's key: a name, an algorithm, the version that encrypts, its life-cycle state."""

    __tablename__ = "kms_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255), default="")
    #: ``aes-256-gcm`` or ``chacha20-poly1305``
    algorithm: Mapped[str] = mapped_column(String(32))
    #: ``enabled``, ``disabled``, ``pending-deletion`` or ``destroyed``
    state: Mapped[str] = mapped_column(String(20), default="enabled")
    #: the version new ciphertexts are made with (the latest)
    primary_version: Mapped[int] = mapped_column(Integer, default=1)
    #: ``tenant`` (made through the API) or ``backup`` (the wrapper of the tenant's backup key)
    purpose: Mapped[str] = mapped_column(String(16), default="tenant")
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: when a key pending deletion is destroyed
    deletion_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class KmsKeyVersion(Timestamped, Base):
    """One version of a key: its material sealed under the platform KEK; NULL once destroyed."""

    __tablename__ = "kms_key_versions"
    __table_args__ = (UniqueConstraint("key_id", "version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("kms_keys.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    material: Mapped[str | None] = mapped_column(Text, nullable=True)


class TenantSecret(Timestamped, Base):
    """A tenant's secret value, encrypted under one of its keys; write-only in the API."""

    __tablename__ = "tenant_secrets"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("kms_keys.id", ondelete="CASCADE"), index=True)
    #: the KMS ciphertext (``kms1:...``) of the value, bound to the secret's id
    ciphertext: Mapped[str] = mapped_column(Text)
    #: where the guest finds it (a ``write_files`` path) when a VM asks for it
    path: Mapped[str] = mapped_column(String(255))


class VmSecret(Base):
    """A secret a VM was created with: written into its guest by cloud-init at every boot."""

    __tablename__ = "vm_secrets"
    vm_id: Mapped[str] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    secret_id: Mapped[str] = mapped_column(
        ForeignKey("tenant_secrets.id", ondelete="CASCADE"), primary_key=True, index=True
    )
