"""Backup encryption keys: per-tenant data keys wrapped by the platform's key-encryption key.

Two levels, as in envelope encryption everywhere (KMS, restic's key files):

- The platform **key service** (:class:`KeyService`) holds key-encryption keys (KEKs): 32 random
  bytes each, one file per KEK id under ``<state_dir>/backup-keys/`` (mode 0600), and a ``current``
  file naming the one used to wrap new data keys. The KEK never leaves the control plane and never
  goes into a backup target. Rotation (:meth:`KeyService.rotate`) makes a new current KEK; older
  ones stay to unwrap until :meth:`TenantKeyring.rewrap` has re-wrapped every tenant key, after
  which :meth:`KeyService.retire` removes them. A disaster-recovery site needs a copy of this
  directory (or the DB/HSM it moves to) besides the replicated target: without a KEK the backups
  are unreadable, by design.
- A tenant's **data key** (32 random bytes) is stored *in the target*, wrapped (AES-256-GCM) by a
  KEK: ``keys/<tenant>.json``. Keeping it with the data makes a replicated store self-contained.
  From it HKDF derives the AEAD key of the tenant's chunks and indexes and the MAC key that names
  its chunks, so tenants never share chunks and a chunk name reveals nothing about its content
  to anyone without the key (a plain SHA-256 name would confirm guesses of known data).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from novacron.backup.targets import Target

_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def check_id(kind: str, value: str) -> str:
    if not _ID.match(value) or value in (".", ".."):
        raise ValueError(f"invalid {kind} {value!r}: use 1-128 of A-Z a-z 0-9 . _ -")
    return value


class KeyService:
    """Key-encryption keys kept in a directory of the control plane's state."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        if not (self.dir / "current").exists():
            self.rotate()

    @classmethod
    def for_state_dir(cls, state_dir: str | os.PathLike[str]) -> KeyService:
        return cls(Path(state_dir) / "backup-keys")

    @property
    def current_id(self) -> str:
        return (self.dir / "current").read_text().strip()

    def kek_ids(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.kek"))

    def _kek(self, kek_id: str) -> bytes:
        check_id("KEK id", kek_id)
        try:
            return (self.dir / f"{kek_id}.kek").read_bytes()
        except FileNotFoundError:
            raise KeyError(f"key-encryption key {kek_id!r} is not in {self.dir}") from None

    def rotate(self) -> str:
        """Make a new KEK the one that wraps from now on; returns its id."""
        with self._lock:
            kek_id = "kek-" + secrets.token_hex(8)
            path = self.dir / f"{kek_id}.kek"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            tmp = self.dir / "current.tmp"
            tmp.write_text(kek_id + "\n")
            os.replace(tmp, self.dir / "current")
            return kek_id

    def retire(self, kek_id: str) -> None:
        """Delete an old KEK (after every key it wrapped was re-wrapped)."""
        if kek_id == self.current_id:
            raise ValueError("the current key-encryption key cannot be retired")
        (self.dir / f"{check_id('KEK id', kek_id)}.kek").unlink(missing_ok=True)

    def wrap(self, key: bytes, context: str) -> dict[str, str]:
        """Encrypt a data key under the current KEK, bound to ``context`` (e.g. the tenant id)."""
        kek_id = self.current_id
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._kek(kek_id)).encrypt(nonce, key, context.encode())
        return {
            "kek": kek_id,
            "alg": "AES-256-GCM",
            "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(ct).decode(),
        }

    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes:
        aes = AESGCM(self._kek(wrapped["kek"]))
        return aes.decrypt(
            base64.b64decode(wrapped["nonce"]), base64.b64decode(wrapped["ct"]), context.encode()
        )


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
            master = self.kek.unwrap(record["wrapped"], tenant_id)
            record["wrapped"] = self.kek.wrap(master, tenant_id)
            self.target.put(okey, json.dumps(record).encode())
            changed += 1
        return changed
