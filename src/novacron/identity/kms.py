"""The tenants' key service (KMS): keys per tenant, versioned, that never leave the control plane.

A key (``kms_keys``) has an algorithm, AES-256-GCM or ChaCha20-Poly1305 (``cryptography``), and
versions (``kms_key_versions``): 32 random bytes each, sealed at rest under the platform KEK by
the encryption service's envelope (``identity/encryption.py``, bound to the key id and version),
so the database alone opens nothing and a KEK rotation re-wraps them with every other secret
(``identity/sealing.py``).

A ciphertext is ``kms1:<key id>:<version>:<base64url(nonce | ciphertext+tag)>``: it names the key
and the version that made it, so a rotation (a new primary version) leaves every older ciphertext
readable, and re-wrap decrypts and encrypts again under the latest version inside the service,
the plaintext never going back to the caller. The AEAD's associated data is the key id, the
version and the caller's own associated data (``aad``): a ciphertext decrypts only with the same.

Life cycle: ``enabled`` <-> ``disabled`` (refuses every operation, reversible); ``pending-deletion``
(a scheduled destruction, cancellable until ``deletion_at``); ``destroyed``: the material of
every version is erased (the row's column set to NULL; SQLite's ``secure_delete`` overwrites it),
so whatever was encrypted under the key, directly or through a data key it wrapped (the tenant's
backups, ``identity/kms_backup.py``), can never be read again: crypto-shredding. Destroying is
immediate with ``shred`` and when a tenant is deleted (``shred_tenant``).
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import KmsKey, KmsKeyVersion, Tenant
from novacron.errors import Conflict, FieldError, InvalidInput, NotFound
from novacron.identity.encryption import EncryptionService, encryption_for
from novacron.identity.mfa_policy import require_step_up
from novacron.identity.principal import Principal
from novacron.identity.scoping import duplicate, flush_unique
from novacron.service import Service

ALGORITHMS = ("aes-256-gcm", "chacha20-poly1305")
PREFIX = "kms1"
STATES = ("enabled", "disabled", "pending-deletion", "destroyed")
#: the most a data key may be (bytes) and the most a plaintext may be (a KMS encrypts keys and
#: small secrets; bulk data is encrypted with a data key, envelope-style)
MAX_DATA_KEY = 64
MAX_PLAINTEXT = 64 * 1024
_CIPHERTEXT = re.compile(
    r"^kms1:(?P<key>[A-Za-z0-9_-]{1,40}):(?P<version>[0-9]{1,6}):(?P<body>[A-Za-z0-9_-]+)$"
)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def material_aad(key_id: str, version: int) -> str:
    """What a version's sealed material is bound to (a copy into another row does not open)."""
    return f"kms_key_versions.material:{key_id}:{version}"


def _aead(algorithm: str, material: bytes) -> AESGCM | ChaCha20Poly1305:
    return AESGCM(material) if algorithm == "aes-256-gcm" else ChaCha20Poly1305(material)


def _bound(key_id: str, version: int, aad: bytes) -> bytes:
    return f"{PREFIX}:{key_id}:{version}:".encode() + aad


@dataclass(frozen=True)
class Parsed:
    key_id: str
    version: int
    body: bytes


def parse(ciphertext: str, field: str = "ciphertext") -> Parsed:
    """The key id, version and body of a KMS ciphertext (``InvalidInput`` naming ``field`` if not one)."""
    m = _CIPHERTEXT.match(ciphertext)
    if m is None:
        raise InvalidInput(field, "not a KMS ciphertext (kms1:<key id>:<version>:<data>)")
    body = _unb64u(m["body"])
    if len(body) < 12 + 16:
        raise InvalidInput(field, "too short to be a KMS ciphertext")
    return Parsed(m["key"], int(m["version"]), body)


class KeyDestroyed(Conflict):
    """The key's material is gone: what it encrypted cannot be read again."""

    title = "Key destroyed"


@dataclass(frozen=True)
class KeySpec:
    name: str
    algorithm: str = "aes-256-gcm"
    description: str = ""
    #: a global caller names the tenant; a tenant's caller makes keys of its own tenant
    tenant: str | None = None


class KeyCrypto:
    """The cryptography of a tenant's keys, given a session: what the service and the backup
    wrapper share (no caller checks here; callers check who may use which key)."""

    def __init__(self, session: Session, enc: EncryptionService) -> None:
        self.session = session
        self.enc = enc

    def new_version(self, key: KmsKey, version: int) -> None:
        raw = secrets.token_bytes(32)
        sealed = self.enc.seal(raw, material_aad(key.id, version))
        self.session.add(KmsKeyVersion(id=new_id("kmv"), key_id=key.id, version=version, material=sealed))
        key.primary_version = version

    def material(self, key: KmsKey, version: int) -> bytes:
        if key.state == "destroyed":
            when = f" on {key.destroyed_at:%Y-%m-%d %H:%M} UTC" if key.destroyed_at else ""
            raise KeyDestroyed(
                f"Key '{key.name}' ({key.id}) was destroyed{when}: what it encrypted can no longer be "
                "decrypted (crypto-shredded)."
            )
        row = self.session.scalar(
            select(KmsKeyVersion).where(KmsKeyVersion.key_id == key.id, KmsKeyVersion.version == version)
        )
        if row is None or row.material is None:
            raise InvalidInput("ciphertext", f"key {key.id} has no version {version}")
        return self.enc.open(row.material, material_aad(key.id, version))

    def encrypt(self, key: KmsKey, plaintext: bytes, aad: bytes = b"") -> str:
        version = key.primary_version
        nonce = secrets.token_bytes(12)
        ct = _aead(key.algorithm, self.material(key, version)).encrypt(
            nonce, plaintext, _bound(key.id, version, aad)
        )
        return f"{PREFIX}:{key.id}:{version}:{_b64u(nonce + ct)}"

    def decrypt(self, key: KmsKey, parsed: Parsed, aad: bytes = b"") -> bytes:
        aead = _aead(key.algorithm, self.material(key, parsed.version))
        try:
            return aead.decrypt(parsed.body[:12], parsed.body[12:], _bound(key.id, parsed.version, aad))
        except InvalidTag:
            raise InvalidInput(
                "ciphertext", "does not decrypt: altered, or made with other associated data (aad)"
            ) from None

    def destroy(self, key: KmsKey) -> None:
        for row in self.session.scalars(select(KmsKeyVersion).where(KmsKeyVersion.key_id == key.id)):
            row.material = None
        key.state, key.destroyed_at, key.deletion_at = "destroyed", utcnow(), None

    def settle(self, key: KmsKey) -> KmsKey:
        """``key``, destroyed first if its scheduled deletion is due."""
        if key.state == "pending-deletion" and key.deletion_at is not None and key.deletion_at <= utcnow():
            self.destroy(key)
        return key


def shred_tenant(session: Session, enc: EncryptionService, tenant_id: str) -> int:
    """Destroy every key of a tenant (its deletion): returns how many were destroyed now."""
    crypto = KeyCrypto(session, enc)
    keys = list(session.scalars(select(KmsKey).where(KmsKey.tenant_id == tenant_id)))
    for key in keys:
        if key.state != "destroyed":
            crypto.destroy(key)
    session.flush()
    return sum(1 for k in keys if k.destroyed_at is not None)


def visible(stmt: Select[Any], principal: Principal) -> Select[Any]:
    return stmt if principal.is_global else stmt.where(KmsKey.tenant_id == principal.tenant_id)


class KmsService(Service):
    """Keys of tenants: ``kms:read`` to see them, ``kms:use`` for the cryptographic operations,
    ``kms:write`` to create, rotate, disable and destroy them."""

    @property
    def crypto(self) -> KeyCrypto:
        return KeyCrypto(self.session, encryption_for(self.ctx.settings))

    # -- reading -------------------------------------------------------------------------------

    def list(self, params: ListParams) -> tuple[list[KmsKey], str | None]:
        rows, nxt = paginate(self.session, visible(select(KmsKey), self.principal), KmsKey, params)
        return [self.crypto.settle(k) for k in rows], nxt

    def get(self, ref: str, field: str | None = None) -> KmsKey:
        """The key of this id or name (the caller's tenant's), if the caller sees it."""
        stmt = visible(select(KmsKey), self.principal)
        key = self.session.scalar(stmt.where(KmsKey.id == ref)) or self.session.scalar(
            stmt.where(KmsKey.name == ref).limit(2)
        )
        if key is None:
            if field is not None:
                raise InvalidInput(field, f"no key '{ref}' exists or it is not visible to you")
            raise NotFound("key", ref)
        return self.crypto.settle(key)

    # -- life cycle ----------------------------------------------------------------------------

    def create(self, spec: KeySpec, purpose: str = "tenant") -> KmsKey:
        if spec.algorithm not in ALGORITHMS:
            raise InvalidInput("algorithm", f"must be one of {', '.join(ALGORITHMS)}")
        tenant_id = self._tenant_of(spec.tenant)
        if self.session.scalar(
            select(KmsKey.id).where(KmsKey.tenant_id == tenant_id, KmsKey.name == spec.name)
        ):
            raise duplicate("name", spec.name, "key")
        key = KmsKey(
            id=new_id("kmk"),
            tenant_id=tenant_id,
            name=spec.name,
            description=spec.description,
            algorithm=spec.algorithm,
            state="enabled",
            purpose=purpose,
        )
        self.session.add(key)
        flush_unique(self.session, "name", spec.name, "key")
        self.crypto.new_version(key, 1)
        self._event("kms.key.created", key)
        return key

    def _tenant_of(self, tenant: str | None) -> str:
        if tenant is None:
            if self.principal.tenant_id is None:
                raise InvalidInput("tenant", "a platform administrator names the tenant the key is for")
            return self.principal.tenant_id
        if not self.principal.is_global and tenant not in (self.principal.tenant_id,):
            row = self.session.get(Tenant, self.principal.tenant_id or "")
            if row is None or tenant != row.name:
                raise InvalidInput("tenant", "you may make keys of your own tenant only")
            return row.id
        row = self.session.get(Tenant, tenant) or self.session.scalar(
            select(Tenant).where(Tenant.name == tenant)
        )
        if row is None:
            raise InvalidInput("tenant", f"no tenant '{tenant}' exists")
        return row.id

    def rotate(self, ref: str) -> KmsKey:
        """A new primary version; the older ones still decrypt. Needs a recent second factor."""
        key = self._usable(self.get(ref))
        require_step_up(self.session, self.principal, "Rotating a key")
        self.crypto.new_version(key, key.primary_version + 1)
        key.rotated_at = utcnow()
        self._event("kms.key.rotated", key, version=key.primary_version)
        return key

    def set_enabled(self, ref: str, enabled: bool) -> KmsKey:
        key = self.get(ref)
        if key.state in ("destroyed", "pending-deletion"):
            raise Conflict(
                f"Key '{key.name}' is {key.state}"
                + ("; cancel its deletion first." if key.state != "destroyed" else ".")
            )
        key.state = "enabled" if enabled else "disabled"
        self._event("kms.key.enabled" if enabled else "kms.key.disabled", key)
        return key

    def schedule_deletion(self, ref: str, days: int) -> KmsKey:
        key = self.get(ref)
        if key.state == "destroyed":
            raise Conflict(f"Key '{key.name}' is already destroyed.")
        key.state, key.deletion_at = "pending-deletion", utcnow() + timedelta(days=days)
        self._event("kms.key.deletion_scheduled", key, deletion_at=key.deletion_at.isoformat())
        return key

    def cancel_deletion(self, ref: str) -> KmsKey:
        key = self.get(ref)
        if key.state != "pending-deletion":
            raise Conflict(f"Key '{key.name}' is {key.state}, not pending deletion.")
        key.state, key.deletion_at = "disabled", None
        self._event("kms.key.deletion_cancelled", key)
        return key

    def shred(self, ref: str) -> KmsKey:
        """Destroy the key now: everything it encrypted is unreadable for ever. Needs a recent
        second factor."""
        key = self.get(ref)
        require_step_up(self.session, self.principal, "Destroying a key")
        if key.state != "destroyed":
            self.crypto.destroy(key)
            self._event("kms.key.destroyed", key)
        return key

    # -- cryptographic operations --------------------------------------------------------------

    def _usable(self, key: KmsKey) -> KmsKey:
        if key.state == "destroyed":
            self.crypto.material(key, key.primary_version)  # raises KeyDestroyed with its date
        if key.state != "enabled":
            raise Conflict(
                f"Key '{key.name}' is {key.state}: enable it (or cancel its deletion) to use it.",
                fields=[FieldError("key", f"key is {key.state}")],
            )
        return key

    def encrypt(self, ref: str, plaintext: bytes, aad: bytes = b"") -> str:
        if len(plaintext) > MAX_PLAINTEXT:
            raise InvalidInput("plaintext", f"larger than {MAX_PLAINTEXT} bytes; encrypt a data key's worth")
        return self.crypto.encrypt(self._usable(self.get(ref, "key")), plaintext, aad)

    def _key_of(self, parsed: Parsed) -> KmsKey:
        stmt = visible(select(KmsKey), self.principal).where(KmsKey.id == parsed.key_id)
        key = self.session.scalar(stmt)
        if key is None:
            raise InvalidInput(
                "ciphertext", f"its key {parsed.key_id} does not exist or is not visible to you"
            )
        return self._usable(self.crypto.settle(key))

    def decrypt(self, ciphertext: str, aad: bytes = b"") -> tuple[KmsKey, int, bytes]:
        parsed = parse(ciphertext)
        key = self._key_of(parsed)
        return key, parsed.version, self.crypto.decrypt(key, parsed, aad)

    def generate_data_key(self, ref: str, size: int, aad: bytes = b"") -> tuple[bytes, str]:
        if not 16 <= size <= MAX_DATA_KEY:
            raise InvalidInput("bytes", f"must be between 16 and {MAX_DATA_KEY}")
        plaintext = secrets.token_bytes(size)
        return plaintext, self.encrypt(ref, plaintext, aad)

    def rewrap(self, ciphertext: str, aad: bytes = b"") -> tuple[KmsKey, str]:
        """The same plaintext encrypted under the key's latest version (it never leaves here)."""
        parsed = parse(ciphertext)
        key = self._key_of(parsed)
        plaintext = self.crypto.decrypt(key, parsed, aad)
        return key, self.crypto.encrypt(key, plaintext, aad)

    def _event(self, kind: str, key: KmsKey, **data: Any) -> None:
        events.publish(self.session, kind, "kms-key", key.id, tenant_id=key.tenant_id, name=key.name, **data)
