"""How the VM side reaches the chunk store: targets from their catalogue rows, and what an agent needs.

The agent of the VM's host reads the disk and writes chunks straight to the target (no second
hop through the control plane). The control plane unwraps the tenant's data key with its
key-encryption key (which never leaves it) and sends the agent, in the operation's payload
under ``secrets``, the target's type and configuration and that one tenant's data key.
``hostops.complete`` drops ``secrets`` from the operation row once the agent answered, so the
key does not linger in the database.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from novacron.backup.keys import KeyService, TenantKeyring
from novacron.backup.store import ChunkStore
from novacron.backup.targets import Target, target_from_url
from novacron.identity.encryption import encryption_for
from novacron.identity.kek import key_service as platform_key_service

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.db.models import BackupTarget

DIGEST = "sha256"
#: zstd level of VM disk chunks: level 1 compresses a 4 MiB chunk of filesystem data about 4x
#: faster than the store's default 3 for ~6 % larger output (measured on an ext4 of /usr/share);
#: the agent's read is CPU-bound, so time wins. Reading is the same for any level.
VM_ZSTD_LEVEL = 1
#: target type -> URL scheme of ``targets.target_from_url``
SCHEMES = {"local": "file", "s3": "s3", "azure": "azure", "gcs": "gs"}


def target_from_config(kind: str, config: dict[str, Any]) -> Target:
    """A target from its type and configuration (as stored on ``backup_targets``).

    ``{"url": ...}`` plus options works for every type; otherwise local takes ``path``, s3 and
    gcs ``bucket`` (and ``prefix``), azure ``container``; other keys are the options of
    ``targets.target_from_url`` (credentials, endpoints).
    """
    c = dict(config)
    if kind not in SCHEMES:
        raise ValueError(f"unknown target type {kind!r}; use one of {', '.join(SCHEMES)}")
    if "url" in c:
        return target_from_url(str(c.pop("url")), **c)
    if kind == "local":
        return target_from_url(str(c.pop("path")), **c)
    where = c.pop("container") if kind == "azure" else c.pop("bucket")
    prefix = str(c.pop("prefix", ""))
    return target_from_url(f"{SCHEMES[kind]}://{where}/{prefix}", **c)


class HandedKey(KeyService):
    """Stands in for the key service on an agent: it holds the one tenant key it was handed."""

    def __init__(self, tenant_id: str, master: bytes) -> None:  # no directory: nothing is kept
        self.tenant_id = tenant_id
        self.master = master

    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes:
        if context != self.tenant_id:
            raise PermissionError(f"this operation holds no key of tenant {context}")
        return self.master

    def wrap(self, key: bytes, context: str) -> dict[str, str]:
        raise PermissionError("an agent cannot make tenant keys; the control plane does")


def key_service(settings: Settings) -> KeyService:
    """What wraps the tenants' data keys: each tenant's ``backup`` KMS key inside the platform's
    one KEK service (``identity/kms_backup.py``), so destroying the tenant's keys shreds its backups."""
    from novacron.identity.kms_backup import backup_key_service

    return backup_key_service(settings, platform_key_service(settings), encryption_for(settings))


def config_aad(target_id: str) -> str:
    """What a target's sealed credentials are bound to (a copy into another row does not open)."""
    return f"backup_targets.config:{target_id}"


def target_config(settings: Settings, row: BackupTarget) -> dict[str, Any]:
    """A target's configuration with its credentials opened (they are stored sealed)."""
    return encryption_for(settings).open_fields(dict(row.config), config_aad(row.id))


def open_target(settings: Settings, row: BackupTarget) -> Target:
    return target_from_config(row.type, target_config(settings, row))


def server_store(settings: Settings, row: BackupTarget) -> ChunkStore:
    """The store as the control plane opens it (verify, delete, holds, DR reads)."""
    return ChunkStore(open_target(settings, row), key_service(settings), row.chunk_size, DIGEST)


def agent_payload(settings: Settings, row: BackupTarget, tenant_id: str) -> dict[str, Any]:
    """What an agent needs to open the store for one tenant (sent under ``secrets``, which
    ``hostops`` keeps sealed in the database until the agent claims the operation)."""
    config = target_config(settings, row)
    target = target_from_config(row.type, config)
    kek = key_service(settings)
    ring = TenantKeyring(kek, target)
    ring.key(tenant_id)  # made and stored wrapped in the target if it is the tenant's first backup
    record = json.loads(target.get(TenantKeyring.object_key(tenant_id)))
    master = kek.unwrap(record["wrapped"], tenant_id)
    return {
        "target": {"type": row.type, "config": config},
        "chunk_size": row.chunk_size,
        "tenant_id": tenant_id,
        "key": base64.b64encode(master).decode(),
    }


def agent_store(secrets: dict[str, Any]) -> ChunkStore:
    """The store as an agent opens it from ``agent_payload``."""
    keys = HandedKey(str(secrets["tenant_id"]), base64.b64decode(secrets["key"]))
    target = target_from_config(secrets["target"]["type"], dict(secrets["target"]["config"]))
    return ChunkStore(target, keys, int(secrets["chunk_size"]), DIGEST, compression_level=VM_ZSTD_LEVEL)


def verify_outcome(report: Any) -> dict[str, Any]:
    """A verify report as kept with the snapshot in the catalogue."""
    bad = sorted({e[1] for e in report.errors})
    return {
        "ok": bool(report.ok),
        "chunks_checked": int(report.chunks_checked),
        "bytes_checked": int(report.bytes_checked),
        "bad_chunks": len(bad),
        "bad_chunk_indexes": bad[:100],
        "errors": [f"{e[0]} chunk {e[1]}: {e[3]}" for e in report.errors[:20]],
    }
