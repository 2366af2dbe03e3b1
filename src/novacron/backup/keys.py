"""Backup encryption keys: per-tenant data keys wrapped by the platform's key-encryption key.

Two levels, as in envelope encryption everywhere (KMS, restic's key files):

- The platform's one **KEK service** (:class:`KeyService`, ``identity/kek.py``) holds the
  key-encryption keys: files under ``<state_dir>/kek/`` (mode 0600) by default, or a PKCS#11
  token or Vault transit. The KEK never leaves the control plane and never goes into a backup
  target. Rotation (``identity/sealing.rotate``) makes a new current KEK, re-wraps the database's
  sealed values and, through :meth:`TenantKeyring.rewrap`, every tenant key of every target, then
  retires the old KEKs. A disaster-recovery site needs the same KEKs (a copy of the directory,
  or access to the HSM/Vault) besides the replicated target: without a KEK the backups are
  unreadable, by design.
- A tenant's **data key** (32 random bytes) is stored *in the target*, wrapped (AES-256-GCM) by a
  KEK: ``keys/<tenant>.json``. Keeping it with the data makes a replicated store self-contained.
  From it HKDF derives the AEAD key of the tenant's chunks and indexes and the MAC key that names
  its chunks, so tenants never share chunks and a chunk name reveals nothing about its content
  to anyone without the key (a plain SHA-256 name would confirm guesses of known data).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from novacron.backup.targets import Target
from novacron.identity.kek import KeyService, check_id

__all__ = ["KeyService", "TenantKey", "TenantKeyring", "check_id"]


@dataclass(frozen=True)
class TenantKey:
    tenant_id: str
    #: AEAD key of the tenant's chunks and indexes
    enc_key: bytes
    #: MAC key naming the tenant's chunks (HMAC-SHA256 or keyed BLAKE3)
    id_key: bytes


def _derive(master: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"novacron-backup/" + label).derive(
        master
    )


class TenantKeyring:
    """The per-tenant data keys of one target, unwrapped on demand and cached."""

    def __init__(self, kek: KeyService, target: Target) -> None:
        self.kek = kek
        self.target = target
        self._cache: dict[str, TenantKey] = {}
        self._lock = threading.Lock()

    @staticmethod
    def object_key(tenant_id: str) -> str:
        return f"keys/{check_id('tenant id', tenant_id)}.json"

    def key(self, tenant_id: str, create: bool = True) -> TenantKey:
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached:
                return cached
            okey = self.object_key(tenant_id)
            if create and not self.target.has(okey):
                blob = json.dumps(
                    {"tenant": tenant_id, "wrapped": self.kek.wrap(secrets.token_bytes(32), tenant_id)}
                )
                # two first backups of a tenant racing: only one key may ever exist, the loser adopts it
                self.target.put_if_absent(okey, blob.encode())
            record = json.loads(self.target.get(okey))
            master = self.kek.unwrap(record["wrapped"], tenant_id)
            if getattr(self.kek, "layered", False) and "kms" not in record["wrapped"]:
                # a key from before the tenant's KMS key wrapped it: wrapped by it now, so that
                # destroying the tenant's keys shreds these backups too (identity/kms_backup.py)
                record["wrapped"] = self.kek.wrap(master, tenant_id)
                self.target.put(okey, json.dumps(record).encode())
            key = TenantKey(tenant_id, _derive(master, b"enc"), _derive(master, b"id"))
            self._cache[tenant_id] = key
            return key

    def tenants(self) -> list[str]:
        return sorted(
            k[len("keys/") : -len(".json")] for k in self.target.list("keys/") if k.endswith(".json")
        )

    def rewrap(self) -> int:
        """Re-wrap every tenant key of this target under the current KEK; returns how many changed."""
        current = self.kek.current_id
        changed = 0
        for tenant_id in self.tenants():
            okey = self.object_key(tenant_id)
            record = json.loads(self.target.get(okey))
            if record["wrapped"]["kek"] == current:
                continue
            # the outer layer only: under the tenant's KMS key (``kms``) it stays as it is
            inner = self.kek.unwrap(record["wrapped"], tenant_id)
            kms = {k: v for k, v in record["wrapped"].items() if k == "kms"}
            record["wrapped"] = {**self.kek.wrap(inner, tenant_id), **kms}
            self.target.put(okey, json.dumps(record).encode())
            changed += 1
        return changed

    def keks(self) -> set[str]:
        """The KEKs this target's tenant keys are wrapped under now (read again from the target)."""
        return {json.loads(self.target.get(self.object_key(t)))["wrapped"]["kek"] for t in self.tenants()}
