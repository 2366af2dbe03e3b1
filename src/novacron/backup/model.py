"""The chunk store's records: snapshot and disk descriptions, statistics, reports, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novacron.backup.patches import piece_ids


class SnapshotNotFound(LookupError):
    pass


class SnapshotHeld(PermissionError):
    """A legal hold protects the snapshot: nobody can delete or prune it until it is released."""


class SnapshotImmutable(PermissionError):
    """The snapshot is inside its policy's immutability window."""


@dataclass
class WriteStats:
    chunks_total: int = 0
    #: chunks read from the disk (the changed ones for an incremental backup)
    chunks_read: int = 0
    bytes_read: int = 0
    #: chunks sealed and sent to the target, and their stored size
    chunks_uploaded: int = 0
    bytes_uploaded: int = 0
    #: chunks read whose content the target already had (deduplicated)
    chunks_deduplicated: int = 0
    #: index entries copied from the parent without reading
    chunks_from_parent: int = 0
    #: index entries taken from the journal of an interrupted earlier attempt
    chunks_resumed: int = 0
    holes: int = 0
    full_read: bool = True
    #: why the whole disk was read (no parent, no change list, parent lacks the disk, size changed)
    full_read_reason: str = ""
    #: chunks re-uploaded because a garbage collection ran during the backup and removed them
    chunks_repaired: int = 0
    #: changed chunks stored as a patch of their dirty spans over the parent's chunk (patches.py)
    chunks_patched: int = 0
    #: changed chunks whose patch grew past the limit, rebuilt whole from the parent's copy
    chunks_rebuilt: int = 0
    #: objects holding the patches' pieces, many chunks' pieces each (patches.py)
    packs: int = 0
    seconds: float = 0.0


@dataclass
class DiskIndex:
    tenant_id: str
    snapshot_id: str
    disk: str
    size: int
    chunk_size: int
    digest: str
    chunks: list[str | None]
    created_at: float
    parent: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    immutable_until: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: str(chunk index) -> [[pack id, [[offset, length], ...], at], ...]: layers over the chunk (patches.py)
    patches: dict[str, list[Any]] = field(default_factory=dict)

    def referenced(self) -> set[str]:
        return {c for c in self.chunks if c} | piece_ids(self.patches)

    def stored(self) -> list[bool]:
        """Whether each chunk holds stored data (a base chunk or a patch); False: zeros."""
        return [c is not None or str(i) in self.patches for i, c in enumerate(self.chunks)]


@dataclass
class DiskInfo:
    name: str
    size: int
    chunks: int
    holes: int
    stats: dict[str, Any]


@dataclass
class SnapshotInfo:
    tenant_id: str
    snapshot_id: str
    created_at: float
    parent: str | None
    meta: dict[str, Any]
    immutable_until: float | None
    disks: dict[str, DiskInfo]
    holds: list[str] = field(default_factory=list)


@dataclass
class PruneReport:
    #: snapshot id -> the rules that keep it
    kept: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    #: snapshot id -> why it stays although no rule keeps it (legal hold, immutability window)
    protected: dict[str, str] = field(default_factory=dict)


@dataclass
class VerifyReport:
    tenant_id: str
    snapshot_id: str
    ok: bool
    chunks_checked: int
    bytes_checked: int
    #: (disk, chunk index, chunk id, reason) of every bad entry
    errors: list[tuple[str, int, str, str]]
    started_at: float
    seconds: float
