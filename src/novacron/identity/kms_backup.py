"""The tenant's KMS key as the wrapper of its backup key: what makes its backups crypto-shreddable.

A tenant's backup data key (``backup/keys.py``, stored in each target as ``keys/<tenant>.json``)
is wrapped twice: first by the tenant's ``backup`` key of the key service (``identity/kms.py``,
made on the tenant's first backup, AES-256-GCM, associated data ``backup:<tenant>``), then that
KMS ciphertext by the platform KEK (so a KEK rotation re-wraps the outer layer without touching
the tenant's key, and a target alone opens nothing). The wrapped record names the KMS key
(``kms``). Destroying that key (``novacron kms shred``, or deleting the tenant, which shreds all
of its keys) leaves every copy of the record, in every target and replica, unopenable: the
tenant's chunks and indexes, AEAD-sealed under keys derived from the data key, are noise for
ever. A record from before this layer (no ``kms``) is re-wrapped with it the next time the
control plane opens it (``TenantKeyring.key``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from novacron.db.base import Database, new_id
from novacron.db.models import KmsKey
from novacron.identity.encryption import EncryptionService
from novacron.identity.kek import KeyService
from novacron.identity.kms import KeyCrypto, KeyDestroyed, parse

if TYPE_CHECKING:
    from novacron.config import Settings

BACKUP_KEY = "backup"
_dbs: dict[str, Database] = {}
_dbs_lock = threading.Lock()


class BackupKeyShredded(PermissionError):
    """The tenant's backup key was destroyed: its backups can never be read again."""


def register(db: Database) -> None:
    """The process's database (the server's), used to reach the tenants' keys from the backup code."""
    with _dbs_lock:
        _dbs[db.url] = db


def database_for(settings: Settings) -> Database:
    with _dbs_lock:
        db = _dbs.get(settings.database_url)
        if db is None:
            db = _dbs[settings.database_url] = Database(settings.database_url)
        return db


def _aad(tenant_id: str) -> bytes:
    return f"backup:{tenant_id}".encode()


class TenantWrappedKeys(KeyService):
    """The key service of the backup keyring: the tenant's KMS key inside, the platform KEK outside."""

    #: ``TenantKeyring`` re-wraps a record without the KMS layer when it sees this
    layered = True

    def __init__(self, platform: KeyService, db: Database, enc: EncryptionService) -> None:  # noqa: D107
        self.platform, self.db, self.enc = platform, db, enc

    @property
    def current_id(self) -> str:
        return self.platform.current_id

    def _backup_key(self, tenant_id: str) -> str:
        """The id of the tenant's backup key, made on its first backup."""
        with self.db.read_session() as s:
            found = s.scalar(
                select(KmsKey.id).where(KmsKey.tenant_id == tenant_id, KmsKey.purpose == BACKUP_KEY)
            )
        if found is not None:
            return found
        with self.db.session() as s:
            key = s.scalar(select(KmsKey).where(KmsKey.tenant_id == tenant_id, KmsKey.purpose == BACKUP_KEY))
            if key is None:
                key = KmsKey(
                    id=new_id("kmk"),
                    tenant_id=tenant_id,
                    name=BACKUP_KEY,
                    description="wraps the tenant's backup data key (destroying it shreds every backup)",
                    algorithm="aes-256-gcm",
                    state="enabled",
                    purpose=BACKUP_KEY,
                )
                s.add(key)
                s.flush()
                KeyCrypto(s, self.enc).new_version(key, 1)
            key_id: str = key.id
        return key_id

    def wrap(self, key: bytes, context: str) -> dict[str, str]:
        key_id = self._backup_key(context)
        with self.db.read_session() as s:
            kms_key = s.get(KmsKey, key_id)
            if kms_key is None:  # the tenant was deleted meanwhile
                raise BackupKeyShredded(f"tenant {context} was deleted: its backup key is gone")
            inner = KeyCrypto(s, self.enc).encrypt(kms_key, key, _aad(context))
        return {**self.platform.wrap(inner.encode(), context), "kms": key_id}

    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes:
        if "kms" not in wrapped:  # a record from before the KMS layer
            return self.platform.unwrap(wrapped, context)
        outer = {k: v for k, v in wrapped.items() if k != "kms"}
        parsed = parse(self.platform.unwrap(outer, context).decode())
        with self.db.read_session() as s:
            key = s.get(KmsKey, wrapped["kms"])
            if key is None:
                raise BackupKeyShredded(
                    f"the backups of tenant {context} are unreadable: its backup key {wrapped['kms']} "
                    "was destroyed with the tenant (crypto-shredded)"
                )
            try:
                return KeyCrypto(s, self.enc).decrypt(key, parsed, _aad(context))
            except KeyDestroyed as exc:
                raise BackupKeyShredded(
                    f"the backups of tenant {context} are unreadable: {exc.detail}"
                ) from None


def backup_key_service(settings: Settings, platform: KeyService, enc: Any) -> TenantWrappedKeys:
    return TenantWrappedKeys(platform, database_for(settings), enc)
