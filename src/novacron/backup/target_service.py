"""Backup targets in the catalogue: where backups go, their sealed credentials, their replicas.

A target is checked when it is made or changed: the store it names is opened once, and a local
target may only be a new or empty directory or an existing store. Credentials are sealed at rest
and write-only: callers who may edit targets see the other settings, with every credential "***".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from novacron.backup import vmstore
from novacron.backup.store import ChunkStore
from novacron.db.base import new_id
from novacron.db.models import BackupTarget
from novacron.db.resolve import Named, resolve
from novacron.errors import InvalidInput, NameTaken
from novacron.identity.encryption import MASK, encryption_for, is_secret_field, redact, scrub, secrets_set
from novacron.service import Service

#: who may see a target's settings (credentials masked) and change them
EDIT_PERMISSION = "backup-target:write"


@dataclass(frozen=True)
class TargetSpec:
    """A backup target to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    type: str
    config: dict[str, Any]
    chunk_size: int
    replicate_to: str | None = None
    replicate_every_s: int = 300


@dataclass(frozen=True)
class TargetView:
    """A target as one caller may see it: its settings only for an editor, credentials masked."""

    row: BackupTarget
    config: dict[str, Any] | None
    #: the credential fields that hold a value (their values are never shown)
    secrets_set: list[str]


class BackupTargetService(Service):
    """Create, read and reconfigure backup targets (administrators create them; all may read)."""

    def list(self) -> list[TargetView]:
        """Every target, by name (at most 500)."""
        rows = self.session.scalars(select(BackupTarget).order_by(BackupTarget.name).limit(500))
        return [self._view(t) for t in rows]

    def get(self, ref: str) -> TargetView:
        """The target of this id or name."""
        return self._view(self._row(ref))

    def create(self, spec: TargetSpec) -> TargetView:
        """A new target whose store answers; an existing store keeps the chunk size it was made with."""
        if spec.chunk_size & (spec.chunk_size - 1):
            raise InvalidInput("chunk_size", "must be a power of two")
        if self.session.scalar(select(BackupTarget.id).where(BackupTarget.name == spec.name)):
            raise NameTaken("backup target", spec.name, "name", "")
        if spec.type == "local":
            _check_local(spec.config)
        store = _check_target(spec.type, spec.config, spec.chunk_size)
        replica = None
        if spec.replicate_to is not None:
            named = Named("replicate_to")
            replica = resolve(self.session, self.principal, BackupTarget, spec.replicate_to, named=named)
            if replica.chunk_size != store.chunk_size:  # the replica is a byte copy: chunk names must agree
                why = f"its chunk size is {replica.chunk_size}, not {store.chunk_size}"
                raise InvalidInput("replicate_to", why)
        target_id = new_id("bkt")  # credentials are stored sealed, bound to the row
        config = encryption_for(self.ctx.settings).seal_fields(spec.config, vmstore.config_aad(target_id))
        target = BackupTarget(
            id=target_id, name=spec.name, type=spec.type, config=config, chunk_size=store.chunk_size,
            replica_target_id=replica.id if replica else None, replicate_every_s=spec.replicate_every_s,
        )  # fmt: skip
        self.session.add(target)
        self.session.flush()
        return self._view(target)

    def update(
        self, row: BackupTarget, config: dict[str, Any] | None, replicate_every_s: int | None
    ) -> TargetView:
        """Merge ``config`` into the target's settings (None removes one; a credential left out or
        sent as "***" keeps its value) and check the store still answers; a new replication interval."""
        if config is not None:
            enc, aad = encryption_for(self.ctx.settings), vmstore.config_aad(row.id)
            before = enc.open_fields(dict(row.config), aad)
            merged = dict(before)
            for name, value in config.items():
                if value is None:
                    merged.pop(name, None)
                elif not (is_secret_field(name) and value == MASK):
                    merged[name] = value
            if row.type == "local" and merged.get("path") != before.get("path"):
                raise InvalidInput("config.path", "a local target's path cannot change")
            _check_target(row.type, merged, row.chunk_size)
            row.config = enc.seal_fields(merged, aad)
        if replicate_every_s is not None:
            row.replicate_every_s = replicate_every_s
        self.session.flush()
        return self._view(row)

    def _row(self, ref: str) -> BackupTarget:
        return resolve(self.session, self.principal, BackupTarget, ref)

    def _view(self, t: BackupTarget) -> TargetView:
        editor = self.principal.can(EDIT_PERMISSION)
        return TargetView(
            t, redact(dict(t.config)) if editor else None, secrets_set(dict(t.config)) if editor else []
        )


def _check_target(kind: str, config: dict[str, Any], chunk_size: int) -> ChunkStore:
    """Open the target once to see that it answers; error messages never echo a credential."""
    try:
        # opening a store to check it needs no tenant key
        return ChunkStore(vmstore.target_from_config(kind, config), vmstore.HandedKey("", b""), chunk_size)
    except (KeyError, TypeError) as exc:
        why = scrub(f"missing or wrong setting for a {kind} target: {exc}", config)
        raise InvalidInput("config", why) from exc
    except Exception as exc:
        raise InvalidInput("config", scrub(f"the target does not answer: {exc}", config)) from exc


def _check_local(config: dict[str, Any]) -> None:
    """A local target is a new or empty directory, or an existing store; never any other folder."""
    path = Path(str(config.get("path", "")))
    if not path.is_absolute() or ".." in path.parts:
        raise InvalidInput("config.path", "must be an absolute path without '..'")
    if not path.parent.is_dir():
        raise InvalidInput("config.path", f"its parent {path.parent} is not a directory")
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "config.json").exists())):
        raise InvalidInput("config.path", "exists and is neither empty nor a backup store")
