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
from sqlalchemy.orm import Session

from novacron.backup import vmstore
from novacron.backup.service import deletable, delete_snapshot
from novacron.backup.store import ChunkStore
from novacron.db.base import new_id
from novacron.db.models import BackupPolicy, BackupSnapshot, BackupTarget, RestoreJob
from novacron.db.resolve import Named, resolve
from novacron.errors import Conflict, FieldError, InvalidInput, NameTaken
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
    """Create, read, reconfigure, rename and delete backup targets (administrators; all may read)."""

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
        self,
        row: BackupTarget,
        config: dict[str, Any] | None,
        replicate_every_s: int | None,
        name: str | None = None,
    ) -> TargetView:
        """Merge ``config`` into the target's settings (None removes one; a credential left out or
        sent as "***" keeps its value) and check the store still answers; a new replication interval;
        a new name (backups, schedules and replicas refer to the target by id: nothing else changes)."""
        if name is not None and name != row.name:
            taken = select(BackupTarget.id).where(BackupTarget.name == name, BackupTarget.id != row.id)
            if self.session.scalar(taken):
                raise NameTaken("backup target", name, "name", "")
            row.name = name
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

    def delete(self, row: BackupTarget, force: bool = False) -> int:
        """Delete a target nothing needs. Refused (409) while schedules or another target's
        replication use it, and while backups are stored on it, unless ``force``: then those backups
        are deleted too (from the store as well; none may be under legal hold, immutable or still
        being taken), and backups whose DR copy is on it forget that copy. Returns how many backups
        were deleted. The store itself (the directory or bucket) is left for the administrator."""
        users = refusal(self.session, row)
        if users:
            raise _in_use(row, "is in use", users)
        stored = list(self.session.scalars(select(BackupSnapshot).where(BackupSnapshot.target_id == row.id)))
        copies = list(
            self.session.scalars(select(BackupSnapshot).where(BackupSnapshot.replica_target_id == row.id))
        )
        if (stored or copies) and not force:
            held = [_count(len(stored), "backup", "backups") + " stored on it"]
            if copies:
                held.append(_count(len(copies), "DR copy", "DR copies") + " of other targets' backups")
            why = (
                f"{' and '.join(held)}: delete them first, or delete the target with force (deletes them too)"
            )
            raise _in_use(row, "holds backups", why)
        restoring = set(
            self.session.scalars(
                select(RestoreJob.snapshot_id).where(
                    RestoreJob.snapshot_id.in_([x.id for x in stored]),
                    RestoreJob.state.in_(("pending", "running")),
                )
            )
        )  # a restore reading a backup would lose it halfway
        blocked = [
            f"{s.id} ({reason})"
            for s in stored
            if (reason := "a restore from it is running" if s.id in restoring else _undeletable(s))
        ]
        if blocked:
            raise _in_use(
                row, "cannot be deleted", "these backups cannot be deleted: " + "; ".join(blocked[:5])
            )
        store = vmstore.server_store(self.ctx.settings, row) if stored else None
        for snap in stored:
            delete_snapshot(self.session, snap, store)
        for snap in copies:
            snap.replica_target_id, snap.replicated_at = None, None
        self.session.flush()
        self.session.delete(row)
        self.session.flush()
        return len(stored)

    def _row(self, ref: str) -> BackupTarget:
        return resolve(self.session, self.principal, BackupTarget, ref)

    def _view(self, t: BackupTarget) -> TargetView:
        editor = self.principal.can(EDIT_PERMISSION)
        return TargetView(
            t, redact(dict(t.config)) if editor else None, secrets_set(dict(t.config)) if editor else []
        )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _in_use(row: BackupTarget, what: str, why: str) -> Conflict:
    return Conflict(f"Backup target {row.name} {what}: {why}.", fields=[FieldError("target_id", why, "path")])


def refusal(session: Session, row: BackupTarget) -> str:
    """What uses the target besides backups (force does not undo these), or ''."""
    by_policy = select(BackupPolicy.name).where(BackupPolicy.target_id == row.id)
    policies = list(session.scalars(by_policy.order_by(BackupPolicy.name).limit(6)))
    sources = list(
        session.scalars(select(BackupTarget.name).where(BackupTarget.replica_target_id == row.id).limit(6))
    )
    uses = []
    if policies:
        uses.append(f"backup schedules ({', '.join(policies)}) write to it: delete them first")
    if sources:
        uses.append(f"targets {', '.join(sources)} replicate to it: delete them first")
    return "; ".join(uses)


def _undeletable(snap: BackupSnapshot) -> str | None:
    if snap.state in ("pending", "running"):
        return "still being taken"
    return deletable(snap)


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
