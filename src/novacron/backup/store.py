"""The chunk store: deduplicated, compressed, encrypted, logically full snapshots of disks.

Layout inside a target (every object of a tenant under its own prefix; the catalogue is the target
itself, so a replicated copy is a complete store and no database is needed):

    config.json                               chunk size, digest, AEAD of this store
    keys/<tenant>.json                        the tenant's data key, wrapped by a platform KEK
    chunks/<tenant>/<id[:2]>/<id>             one sealed chunk, named by its keyed digest
    snapshots/<tenant>/<snapshot>/<disk>.idx  sealed index: size, chunk ids (null = hole), meta
    inflight/<tenant>/<snapshot>/<disk>/...   lease + journal of a backup being written
    holds/<tenant>/<snapshot>/<hold>.json     legal holds
    results/<tenant>/<snapshot>/<name>.json   verify and restore-test results
    gc/state.json, gc/lock                    garbage-collection generation and mutual exclusion

Every snapshot is logically full: its index lists a chunk (or a hole) for every chunk-sized span of
the disk; an incremental backup reads only the ``changed`` chunks (or only their dirty spans, kept
as a patch over the parent's chunk: patches.py) and copies the other entries from its parent's
index. Chunks the target already has are not uploaded again. A backup journals its progress under
``inflight/`` so that a second call after a crash re-reads and re-uploads nothing already done,
and so that garbage collection sees what it references (see gc.py for the protocol).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from novacron.backup import gc as gcmod
from novacron.backup import patches, retention
from novacron.backup.codec import AEADS, DIGESTS, Codec, CorruptObject
from novacron.backup.keys import KeyService, TenantKeyring, check_id
from novacron.backup.model import (
    DiskIndex,
    DiskInfo,
    PruneReport,
    SnapshotHeld,
    SnapshotImmutable,
    SnapshotInfo,
    SnapshotNotFound,
    VerifyReport,
    WriteStats,
)
from novacron.backup.retention import RetentionPolicy
from novacron.backup.targets import ObjectNotFound, Target, target_from_url
from novacron.backup.upload import ChunkUpload, DiskWrite, missing_chunks, rebuild_plan

MiB = 1 << 20
Reader = Callable[[int, int], "bytes | None"]
Writer = Callable[[int, bytes], None]


def chunks_for_ranges(ranges: Iterable[tuple[int, int]], chunk_size: int = 4 * MiB) -> set[int]:
    """The chunk indexes touched by byte ranges (offset, length), e.g. a dirty bitmap's extents."""
    out: set[int] = set()
    for offset, length in ranges:
        if length > 0:
            out.update(range(offset // chunk_size, (offset + length - 1) // chunk_size + 1))
    return out


def file_reader(path: str | os.PathLike[str]) -> tuple[Reader, int, Callable[[], None]]:
    """A thread-safe reader of a file or block device (pread), its size, and its close function."""
    fd = os.open(path, os.O_RDONLY)
    size = os.lseek(fd, 0, os.SEEK_END)
    return (lambda off, n: os.pread(fd, n, off)), size, (lambda: os.close(fd))


def _file_writer(f: BinaryIO) -> Writer:
    def write(offset: int, data: bytes) -> None:
        f.seek(offset)
        f.write(data)

    return write


def _resume(journal: gcmod.Journal, entries: list[str | None], pending: set[int], stats: WriteStats) -> None:
    """Take the chunks an interrupted earlier attempt journalled, and start this attempt's journal."""
    done = journal.open(planned=[c for i, c in enumerate(entries) if i not in pending and c])
    for i, cid in done.items():
        if i in pending:
            entries[i] = cid
            pending.discard(i)
            stats.chunks_resumed += 1


class ChunkStore:
    def __init__(
        self,
        target: Target,
        keys: KeyService,
        chunk_size: int = 4 * MiB,
        digest: str = "sha256",
        aead: str = "aes-256-gcm",
        workers: int = 4,
        compression_level: int = 3,
    ) -> None:
        if digest not in DIGESTS or aead not in AEADS:
            raise ValueError(f"unsupported digest {digest!r} or AEAD {aead!r}")
        if chunk_size < 4096 or chunk_size & (chunk_size - 1):
            raise ValueError("chunk_size must be a power of two of at least 4096")
        self.target = target
        self.keyring = TenantKeyring(keys, target)
        self.workers = max(1, workers)
        self.level = compression_level
        wanted = {"format": 1, "chunk_size": chunk_size, "digest": digest, "aead": aead}
        try:
            existing = json.loads(target.get("config.json"))
        except ObjectNotFound:
            target.put_if_absent("config.json", json.dumps(wanted).encode())
            existing = json.loads(target.get("config.json"))
        # an existing store keeps its parameters: chunk names depend on them
        self.chunk_size: int = existing["chunk_size"]
        self.digest: str = existing["digest"]
        self.aead: str = existing["aead"]
        self._codecs: dict[str, Codec] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, state_dir: str | os.PathLike[str], **options: Any) -> ChunkStore:
        """The store at a target URL (see ``target_from_url``), keyed by the platform KEKs of
        ``state_dir``. Options for the store (chunk_size, digest, aead, workers) are taken out;
        the rest go to the target."""
        store_opts = {k: options.pop(k) for k in ("chunk_size", "digest", "aead", "workers") if k in options}
        return cls(target_from_url(url, **options), KeyService.for_state_dir(state_dir), **store_opts)

    # --- naming -------------------------------------------------------------------------------

    def codec(self, tenant_id: str) -> Codec:
        with self._lock:
            codec = self._codecs.get(tenant_id)
        if codec is None:
            codec = Codec(self.keyring.key(tenant_id), self.digest, self.aead, self.level)
            with self._lock:
                self._codecs[tenant_id] = codec
        return codec

    @staticmethod
    def chunk_key(tenant_id: str, chunk_id: str) -> str:
        return f"chunks/{tenant_id}/{chunk_id[:2]}/{chunk_id}"

    @staticmethod
    def index_key(tenant_id: str, snapshot_id: str, disk: str) -> str:
        return f"snapshots/{tenant_id}/{snapshot_id}/{disk}.idx"

    @staticmethod
    def _check(tenant_id: str, snapshot_id: str, disk: str | None = None) -> None:
        check_id("tenant id", tenant_id)
        check_id("snapshot id", snapshot_id)
        if disk is not None:
            check_id("disk name", disk)

    # --- indexes ------------------------------------------------------------------------------

    def load_index(self, tenant_id: str, snapshot_id: str, disk: str) -> DiskIndex:
        self._check(tenant_id, snapshot_id, disk)
        key = self.index_key(tenant_id, snapshot_id, disk)
        try:
            blob = self.target.get(key)
        except ObjectNotFound:
            raise SnapshotNotFound(f"snapshot {snapshot_id!r} has no disk {disk!r}") from None
        return DiskIndex(**self.codec(tenant_id).open_record(key, blob))

    def _save_index(self, index: DiskIndex) -> None:
        key = self.index_key(index.tenant_id, index.snapshot_id, index.disk)
        self.target.put(key, self.codec(index.tenant_id).seal_record(key, asdict(index)))

    def disks(self, tenant_id: str, snapshot_id: str) -> list[str]:
        self._check(tenant_id, snapshot_id)
        prefix = f"snapshots/{tenant_id}/{snapshot_id}/"
        return sorted(k[len(prefix) : -4] for k in self.target.list(prefix) if k.endswith(".idx"))

    def tenants(self) -> list[str]:
        return self.keyring.tenants()

    def snapshot_ids(self, tenant_id: str) -> list[str]:
        check_id("tenant id", tenant_id)
        prefix = f"snapshots/{tenant_id}/"
        return sorted(
            {k[len(prefix) :].split("/", 1)[0] for k in self.target.list(prefix) if k.endswith(".idx")}
        )

    def get_snapshot(self, tenant_id: str, snapshot_id: str) -> SnapshotInfo:
        disks = self.disks(tenant_id, snapshot_id)
        if not disks:
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r} for tenant {tenant_id!r}")
        indexes = [self.load_index(tenant_id, snapshot_id, d) for d in disks]
        first = min(indexes, key=lambda i: i.created_at)
        return SnapshotInfo(
            tenant_id=tenant_id,
            snapshot_id=snapshot_id,
            created_at=first.created_at,
            parent=first.parent,
            meta=first.meta,
            immutable_until=max((i.immutable_until or 0.0 for i in indexes), default=0.0) or None,
            disks={
                i.disk: DiskInfo(i.disk, i.size, len(i.chunks), i.stored().count(False), i.stats)
                for i in indexes
            },
            holds=sorted(self.holds(tenant_id, snapshot_id)),
        )

    def list_snapshots(self, tenant_id: str) -> list[SnapshotInfo]:
        """The tenant's snapshots, oldest first."""
        infos = [self.get_snapshot(tenant_id, s) for s in self.snapshot_ids(tenant_id)]
        return sorted(infos, key=lambda i: (i.created_at, i.snapshot_id))

    # --- writing ------------------------------------------------------------------------------

    def write_snapshot(  # noqa: PLR0913  (the store's one write: a disk and its lineage; options keyword-only)
        self,
        tenant_id: str,
        snapshot_id: str,
        disk_name: str,
        reader: Reader,
        size: int,
        changed: Iterable[int] | None = None,
        parent: str | None = None,
        meta: dict[str, Any] | None = None,
        *,
        created_at: float | None = None,
        immutable_until: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        dirty: dict[int, list[tuple[int, int]]] | None = None,
    ) -> SnapshotInfo:
        """Back up one disk of a snapshot.

        ``reader(offset, length)`` returns the disk's bytes (None: the span reads as zeros); it is
        called from this thread only, in increasing offsets. ``changed`` lists the chunk indexes to
        read; every other entry comes from ``parent``'s index of the same disk (if the parent lacks
        the disk or the disk changed size, everything is read, and the stats say why). Calling it
        again after a crash resumes from the journal; calling it for a finished disk returns it.
        ``progress(done, total)`` is called as chunks complete. ``dirty`` gives each changed chunk's
        dirty (start, end) byte spans: such a chunk is rebuilt from the parent's copy and only its
        spans are read (see upload.py).
        """
        self._check(tenant_id, snapshot_id, disk_name)
        if size < 0:
            raise ValueError("size must not be negative")
        if self.target.has(self.index_key(tenant_id, snapshot_id, disk_name)):
            return self.get_snapshot(tenant_id, snapshot_id)
        started = time.monotonic()
        codec = self.codec(tenant_id)
        n = (size + self.chunk_size - 1) // self.chunk_size
        stats = WriteStats(chunks_total=n)
        entries: list[str | None] = [None] * n
        base = self._parent_index(tenant_id, parent, disk_name, stats)
        pending = self._take_from_parent(base, changed, size, entries, stats)
        kept = {k: p for k, p in base.patches.items() if int(k) not in pending} if base else {}
        journal = gcmod.Journal(self.target, tenant_id, snapshot_id, disk_name)
        _resume(journal, entries, pending, stats)
        disk = DiskWrite(tenant_id, reader, size, entries, stats, journal, kept)
        known = set(base.referenced()) if base else set()
        known.update(c for c in entries if c)
        plan = rebuild_plan(base, dirty, pending, size) if base and dirty and not stats.full_read else {}
        ChunkUpload(self, codec, disk, known, progress).run(sorted(pending), plan)
        self._gc_fence(codec, disk)
        stats.seconds = round(time.monotonic() - started, 3)
        index = DiskIndex(
            tenant_id=tenant_id,
            snapshot_id=snapshot_id,
            disk=disk_name,
            size=size,
            chunk_size=self.chunk_size,
            digest=self.digest,
            chunks=entries,
            created_at=created_at if created_at is not None else time.time(),
            parent=parent,
            meta=dict(meta or {}),
            immutable_until=immutable_until,
            stats=asdict(stats),
            patches=disk.patches,
        )
        self._save_index(index)
        journal.close()
        return self.get_snapshot(tenant_id, snapshot_id)

    def _parent_index(
        self, tenant_id: str, parent: str | None, disk_name: str, stats: WriteStats
    ) -> DiskIndex | None:
        """The parent's index of the disk when an incremental can build on it; else why not, in ``stats``."""
        base: DiskIndex | None = None
        if parent is not None:
            check_id("snapshot id", parent)
            try:
                base = self.load_index(tenant_id, parent, disk_name)
            except SnapshotNotFound:
                stats.full_read_reason = f"parent {parent} has no disk {disk_name}"
        if base is not None and base.chunk_size != self.chunk_size:
            base, stats.full_read_reason = None, "parent uses another chunk size"
        return base

    def _take_from_parent(
        self,
        base: DiskIndex | None,
        changed: Iterable[int] | None,
        size: int,
        entries: list[str | None],
        stats: WriteStats,
    ) -> set[int]:
        """Copy the unchanged entries from the parent's index; the chunk indexes left to read."""
        pending = set(range(len(entries)))
        if base is not None and changed is not None:
            keep = set(range(min(len(entries), len(base.chunks)))) - set(changed)
            if base.size != size:  # the old last chunk was short: read it again
                keep.discard(min(base.size, size) // self.chunk_size)
            for i in keep:
                entries[i] = base.chunks[i]
            pending -= keep
            stats.chunks_from_parent = len(keep)
            stats.full_read = False
        elif not stats.full_read_reason:
            stats.full_read_reason = "no parent" if base is None else "no change list (change tracking lost)"
        return pending

    def _gc_fence(self, codec: Codec, disk: DiskWrite) -> None:
        """If a garbage collection ran while we worked, what we rely on may be gone: upload it again."""
        while True:
            generation = disk.journal.wait_for_quiet_gc()
            if generation is None:
                break
            layers = [patches.ids_of(disk.patches.get(str(i))) for i in range(len(disk.entries))]
            missing = missing_chunks(self, disk.tenant_id, disk.entries)
            for k in range(max(map(len, layers), default=0)):
                pieces = [ids[k] if k < len(ids) else None for ids in layers]
                missing |= missing_chunks(self, disk.tenant_id, pieces)
            for i in missing:  # read whole again: a patch is dropped with what it relied on
                disk.patches.pop(str(i), None)
            if missing:
                disk.stats.chunks_repaired += len(missing)
                ChunkUpload(self, codec, disk, set(), None).run(sorted(missing))
            disk.journal.accept_generation(generation)

    # --- reading ------------------------------------------------------------------------------

    def read_chunks(self, tenant_id: str, snapshot_id: str, disk: str) -> Iterator[tuple[int, bytes | None]]:
        """(offset, data) of every chunk in order; data None for a hole. Fetches ahead in parallel."""
        index = self.load_index(tenant_id, snapshot_id, disk)
        stored = index.stored()
        packs = self.pack_cache(tenant_id)

        def fetch(i: int) -> bytes | None:
            return self.chunk_of(index, i, packs)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool:
            window: list[tuple[int, Future[bytes | None] | None]] = []
            for i in range(len(index.chunks)):
                window.append((i, pool.submit(fetch, i) if stored[i] else None))
                if len(window) > self.workers * 2:
                    j, fut = window.pop(0)
                    yield j * index.chunk_size, fut.result() if fut else None
            for j, fut in window:
                yield j * index.chunk_size, fut.result() if fut else None

    def open_object(self, tenant_id: str, cid: str) -> bytes:
        """A stored chunk or pack, checked against its digest."""
        return self.codec(tenant_id).open_chunk(cid, self.target.get(self.chunk_key(tenant_id, cid)))

    def pack_cache(self, tenant_id: str) -> patches.PackCache:
        """Keeps the last packs opened, for a reader of many chunks (they share packs)."""
        return patches.PackCache(lambda cid: self.open_object(tenant_id, cid))

    def chunk_of(self, index: DiskIndex, i: int, packs: patches.PackCache | None = None) -> bytes | None:
        """Chunk ``i`` of a snapshot's disk, its base and patch checked against their digests."""
        tenant = index.tenant_id
        cid, cs = index.chunks[i], index.chunk_size
        length = min(cs, index.size - i * cs)
        base = self.open_object(tenant, cid) if cid else None
        return patches.assemble(base, length, index.patches.get(str(i)), packs or self.pack_cache(tenant))

    def read_snapshot(self, tenant_id: str, snapshot_id: str, disk: str, offset: int, length: int) -> bytes:
        """Random access into a snapshot's disk (file-level browsing, instant restore)."""
        index = self.load_index(tenant_id, snapshot_id, disk)
        end = min(offset + length, index.size)
        out = bytearray()
        cs = index.chunk_size
        packs = self.pack_cache(tenant_id)
        pos = offset
        while pos < end:
            i, within = divmod(pos, cs)
            take = min(cs - within, end - pos)
            data = self.chunk_of(index, i, packs)
            out += bytes(take) if data is None else data[within : within + take]
            pos += take
        return bytes(out)

    def restore_to(
        self, tenant_id: str, snapshot_id: str, disk: str, dest: str | os.PathLike[str] | Writer | BinaryIO
    ) -> dict[str, Any]:
        """Write a disk back: to a path (created sparse, or a block device overwritten with zeros
        for holes) or to ``writer(offset, data)`` (called for every chunk, holes as zero bytes)."""
        started = time.monotonic()
        index = self.load_index(tenant_id, snapshot_id, disk)
        written = 0
        if isinstance(dest, (str, os.PathLike)):
            path = Path(dest)
            is_block = path.exists() and path.is_block_device()
            fd = os.open(path, os.O_WRONLY | (0 if is_block else os.O_CREAT | os.O_TRUNC), 0o600)
            try:
                if not is_block:
                    os.ftruncate(fd, index.size)
                for off, data in self.read_chunks(tenant_id, snapshot_id, disk):
                    if data is None:
                        if is_block:
                            os.pwrite(fd, bytes(min(index.chunk_size, index.size - off)), off)
                        continue
                    os.pwrite(fd, data, off)
                    written += len(data)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            write: Writer = dest if callable(dest) else _file_writer(dest)
            for off, data in self.read_chunks(tenant_id, snapshot_id, disk):
                payload = data if data is not None else bytes(min(index.chunk_size, index.size - off))
                write(off, payload)
                written += len(payload)
        return {"size": index.size, "bytes_written": written, "seconds": round(time.monotonic() - started, 3)}

    # --- verification -------------------------------------------------------------------------

    def verify(self, tenant_id: str, snapshot_id: str, record: bool = True) -> VerifyReport:
        """Re-read every chunk of every disk of the snapshot and check it opens and matches its name."""
        started_at, t0 = time.time(), time.monotonic()
        codec = self.codec(tenant_id)
        errors: list[tuple[str, int, str, str]] = []
        checked = nbytes = 0
        by_chunk: dict[str, list[tuple[str, int]]] = {}
        for disk in self.disks(tenant_id, snapshot_id):
            index = self.load_index(tenant_id, snapshot_id, disk)
            pieces = [(int(k), pid) for k, p in index.patches.items() for pid in patches.ids_of(p)]
            for i, cid in [*enumerate(index.chunks), *pieces]:
                if cid:
                    by_chunk.setdefault(cid, []).append((disk, i))
        if not by_chunk and not self.disks(tenant_id, snapshot_id):
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r} for tenant {tenant_id!r}")

        def check(cid: str) -> tuple[str, int, str | None]:
            key = self.chunk_key(tenant_id, cid)
            try:
                data = codec.open_chunk(cid, self.target.get(key))
                return cid, len(data), None
            except ObjectNotFound:
                return cid, 0, "missing"
            except CorruptObject as e:
                # out of the way, as Proxmox Backup Server does: a backup that dedups against a damaged
                # chunk would be damaged too; the next full backup of the disk uploads it again
                try:
                    self.target.delete(key)
                except Exception as exc:  # an immutable target keeps it: the report says so
                    return cid, 0, f"{e} (could not be removed: {exc})"
                return cid, 0, f"{e} (removed: the next full backup uploads it again)"

        with ThreadPoolExecutor(self.workers, thread_name_prefix="verify") as pool:
            for cid, n, err in pool.map(check, by_chunk):
                checked += 1
                nbytes += n
                if err:
                    errors.extend((disk, i, cid, err) for disk, i in by_chunk[cid])
        report = VerifyReport(
            tenant_id,
            snapshot_id,
            not errors,
            checked,
            nbytes,
            errors,
            started_at,
            round(time.monotonic() - t0, 3),
        )
        if record:
            self.record_result(tenant_id, snapshot_id, "verify", asdict(report))
        return report

    def record_result(self, tenant_id: str, snapshot_id: str, kind: str, result: dict[str, Any]) -> None:
        """Keep a verify or restore-test result with the snapshot (the newest per kind)."""
        self._check(tenant_id, snapshot_id)
        check_id("result kind", kind)
        key = f"results/{tenant_id}/{snapshot_id}/{kind}.json"
        self.target.put(
            key, self.codec(tenant_id).seal_record(key, {"kind": kind, "at": time.time(), **result})
        )

    def results(self, tenant_id: str, snapshot_id: str) -> dict[str, dict[str, Any]]:
        self._check(tenant_id, snapshot_id)
        out = {}
        for key in self.target.list(f"results/{tenant_id}/{snapshot_id}/"):
            out[key.rsplit("/", 1)[1][:-5]] = self.codec(tenant_id).open_record(key, self.target.get(key))
        return out

    # --- holds, immutability, deletion --------------------------------------------------------

    def holds(self, tenant_id: str, snapshot_id: str) -> dict[str, dict[str, Any]]:
        self._check(tenant_id, snapshot_id)
        prefix = f"holds/{tenant_id}/{snapshot_id}/"
        return {k[len(prefix) : -5]: json.loads(self.target.get(k)) for k in self.target.list(prefix)}

    def place_hold(self, tenant_id: str, snapshot_id: str, hold_id: str, reason: str, placed_by: str) -> None:
        """Put a legal hold on a snapshot (the caller checked the compliance role)."""
        self.get_snapshot(tenant_id, snapshot_id)
        check_id("hold id", hold_id)
        record = {"reason": reason, "placed_by": placed_by, "placed_at": time.time()}
        self.target.put(f"holds/{tenant_id}/{snapshot_id}/{hold_id}.json", json.dumps(record).encode())

    def release_hold(self, tenant_id: str, snapshot_id: str, hold_id: str, released_by: str) -> None:
        """Release a legal hold (the caller checked the compliance role)."""
        self._check(tenant_id, snapshot_id)
        key = f"holds/{tenant_id}/{snapshot_id}/{check_id('hold id', hold_id)}.json"
        if not self.target.has(key):
            raise LookupError(f"snapshot {snapshot_id!r} has no hold {hold_id!r}")
        self.target.delete(key)

    def deletable(self, info: SnapshotInfo, now: float | None = None) -> str | None:
        """Why the snapshot may not be deleted now, or None."""
        if info.holds:
            return f"legal hold {', '.join(info.holds)}"
        now = time.time() if now is None else now
        if info.immutable_until and now < info.immutable_until:
            return f"immutable until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(info.immutable_until))}"
        return None

    def delete_snapshot(self, tenant_id: str, snapshot_id: str, now: float | None = None) -> None:
        """Remove the snapshot's indexes and results; its chunks go at the next garbage collection."""
        info = self.get_snapshot(tenant_id, snapshot_id)
        why = self.deletable(info, now)
        if why and info.holds:
            raise SnapshotHeld(f"snapshot {snapshot_id} is under {why}")
        if why:
            raise SnapshotImmutable(f"snapshot {snapshot_id} is {why}")
        for disk in info.disks:
            self.target.delete(self.index_key(tenant_id, snapshot_id, disk))
        for key in list(self.target.list(f"results/{tenant_id}/{snapshot_id}/")):
            self.target.delete(key)

    def prune(
        self,
        tenant_id: str,
        policy: RetentionPolicy,
        group: Callable[[SnapshotInfo], str] = lambda info: str(info.meta.get("vm_id", "")),
        now: float | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Apply a retention policy to each group (by default: VM) of the tenant's snapshots.
        Held and immutable snapshots are never removed; the report says which the policy would
        have removed and why they stay."""
        report = PruneReport()
        groups: dict[str, list[SnapshotInfo]] = {}
        for info in self.list_snapshots(tenant_id):
            groups.setdefault(group(info), []).append(info)
        for infos in groups.values():
            keep = retention.select([(i.snapshot_id, i.created_at) for i in infos], policy)
            for info in infos:
                if info.snapshot_id in keep:
                    report.kept[info.snapshot_id] = keep[info.snapshot_id]
                elif why := self.deletable(info, now):
                    report.protected[info.snapshot_id] = why
                else:
                    if not dry_run:
                        self.delete_snapshot(tenant_id, info.snapshot_id, now)
                    report.removed.append(info.snapshot_id)
        return report

    def collect_garbage(self, grace_s: float = 3600.0, now: float | None = None) -> gcmod.GCReport:
        return gcmod.collect(self, grace_s, now)
