"""Reading a disk's chunks and uploading those the store lacks, ``workers`` at a time.

``ChunkStore.write_snapshot`` decides which chunks to read (the changed ones, or every one, less
what a crashed earlier attempt journalled); a ``ChunkUpload`` reads them on the caller's thread in
increasing offsets, seals and uploads each distinct chunk once in the store's worker threads, and
journals what is done so that a second call after a crash resumes after it.

An incremental backup that knows each changed chunk's dirty byte spans (a fine-grained dirty
bitmap) does not read that chunk whole: it reads only the dirty spans from the disk and stores
them as a patch over the parent's chunk (patches.py), on top of the parent's patch of that chunk
if it had one; past half a chunk of spans (or too many layers), a worker compacts it: the
parent's chunk and layers are fetched, checked against their digests, the spans laid over them,
and the result stored as a whole chunk. A
chunk whose every byte is dirty is simply read. The patches' pieces are gathered, in chunk order,
into packs of about a chunk each, and each pack is stored as one object; a chunk's new piece is a
layer added over the parent's layers of it, not merged into them (patches.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from novacron.backup import gc as gcmod
from novacron.backup import patches as patchmod
from novacron.backup.codec import Codec
from novacron.backup.model import WriteStats

if TYPE_CHECKING:
    from novacron.backup.model import DiskIndex
    from novacron.backup.store import ChunkStore, Reader

#: journal a backup's progress after this many chunks (and at the end)
JOURNAL_EVERY = 32
#: a patched chunk i journals its layers' packs and its base under keys -(i * STRIDE + 1) and below
JOURNAL_STRIDE = patchmod.MAX_LAYERS + 2

Spans = list[tuple[int, int]]
#: chunk index -> (the parent's chunk id or None for zeros, its patch, the dirty (start, end) spans)
Rebuilds = dict[int, tuple[str | None, "patchmod.Patch | None", Spans]]
#: what a worker answers for chunk i: (i, chunk id or None for zeros, patch or None)
Done = tuple[int, str | None, "patchmod.Patch | None"]


@dataclass(frozen=True)
class Piece:
    """A chunk's merged patch before it is packed: its base, spans and their bytes."""

    i: int
    base: str | None
    spans: Spans
    data: bytes
    #: the parent's layers of the chunk, kept under the new one
    layers: list[Any]


#: what a future of the pass answers: a chunk done, a piece to pack, or a stored pack's chunks
Result = Done | Piece | list[Done]


def rebuild_plan(parent: DiskIndex, dirty: dict[int, Spans], pending: set[int], size: int) -> Rebuilds:
    """The pending chunks to patch over the parent's: those with a parent entry of the same length
    that are not dirty throughout (those are read whole)."""
    plan: Rebuilds = {}
    cs = parent.chunk_size
    for i in pending:
        spans = dirty.get(i)
        length = min(cs, size - i * cs)
        if spans is None or i >= len(parent.chunks) or length != cs or parent.size != size:
            continue
        if sum(end - start for start, end in spans) < length:
            plan[i] = (parent.chunks[i], parent.patches.get(str(i)), spans)
    return plan


@dataclass(frozen=True)
class DiskWrite:
    """One disk being written: where its bytes come from, and its index entries so far."""

    tenant_id: str
    reader: Reader
    size: int
    #: the chunk id of each chunk-sized span (None: a hole, or not read yet)
    entries: list[str | None]
    stats: WriteStats
    journal: gcmod.Journal
    #: str(chunk index) -> patch, for the chunks stored as a patch over their base (patches.py)
    patches: dict[str, Any] = field(default_factory=dict)


class ChunkUpload:
    """One pass over the chunks ``todo`` of a disk: read, skip holes, seal and upload the new ones."""

    def __init__(
        self,
        store: ChunkStore,
        codec: Codec,
        disk: DiskWrite,
        known: set[str],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.store = store
        self.codec = codec
        self.disk = disk
        #: chunk ids the target is known to hold: not even asked for
        self.known = known
        self.progress = progress
        self._lock = threading.Lock()
        self._claimed: set[str] = set()  # ids being uploaded by this pass: one upload per distinct chunk
        self._finished: dict[int, str | None] = {}
        self._inflight: list[Future[Result]] = []
        self._completed = 0
        self._base_done = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pack: list[Piece] = []  # pieces waiting for their pack, in chunk order
        self._pack_bytes = 0
        #: the parent's packs, opened once for the several chunks whose old patch each holds
        self._packs = patchmod.PackCache(self._open)

    def run(self, todo: list[int], rebuild: Rebuilds | None = None) -> None:
        """Read the chunks ``todo`` (only the dirty spans of those in ``rebuild``) and upload those the
        target lacks; journal them as they finish."""
        disk, stats, cs = self.disk, self.disk.stats, self.store.chunk_size
        zero = bytes(cs)
        rebuild = rebuild or {}
        self._base_done = len(disk.entries) - len(todo)
        plan = getattr(disk.reader, "plan", None)
        if plan is not None:  # a reader that reads ahead (virt/nbdread.py) is told what comes next
            plan(self._reads(todo, rebuild))
        with ThreadPoolExecutor(self.store.workers, thread_name_prefix="backup") as pool:
            self._pool = pool
            for i in todo:
                if i in rebuild:
                    base, patch, spans = rebuild[i]
                    pieces = [(s - i * cs, e - s, self._read(s, e - s)) for s, e in spans]
                    self._inflight.append(pool.submit(self._patch, i, base, patch, pieces))
                    self._drain(self.store.workers * 2)
                    continue
                offset = i * cs
                length = min(cs, disk.size - offset)
                data = disk.reader(offset, length)
                stats.chunks_read += 1
                if data is not None and len(data) != length:
                    raise OSError(f"short read at offset {offset}: {len(data)} of {length} bytes")
                stats.bytes_read += length
                if data is None or (data == zero if length == cs else not data.strip(b"\0")):
                    stats.holes += 1
                    disk.entries[i] = None
                    self._finished[i] = None
                    self._completed += 1
                    continue
                self._inflight.append(pool.submit(self._seal_and_store, i, data))
                self._drain(self.store.workers * 2)
            self._drain(0)
            self._add_piece(None, flush=True)
            self._drain(0)
        if self._finished:
            disk.journal.record(self._finished)
        if self.progress:
            self.progress(len(disk.entries), len(disk.entries))

    def _reads(self, todo: list[int], rebuild: Rebuilds) -> list[tuple[int, int]]:
        """The (offset, length) reads ``run`` will make, in order."""
        cs, size = self.store.chunk_size, self.disk.size
        reads: list[tuple[int, int]] = []
        for i in todo:
            if i in rebuild:
                reads += [(s, e - s) for s, e in rebuild[i][2]]
            else:
                reads.append((i * cs, min(cs, size - i * cs)))
        return reads

    def _read(self, offset: int, length: int) -> bytes | None:
        data = self.disk.reader(offset, length)
        if data is not None and len(data) != length:
            raise OSError(f"short read at offset {offset}: {len(data)} of {length} bytes")
        self.disk.stats.bytes_read += length
        return data

    def _open(self, cid: str) -> bytes:
        """A stored chunk or piece, checked against its digest."""
        return self.codec.open_chunk(
            cid, self.store.target.get(self.store.chunk_key(self.disk.tenant_id, cid))
        )

    def _patch(
        self, i: int, base: str | None, old: patchmod.Patch | None, new: list[tuple[int, int, bytes | None]]
    ) -> Done | Piece:
        """Chunk i as its base, its old layers and a new layer of the dirty ``new`` spans (offset
        in the chunk, length, bytes or None for zeros) to pack; compacted into a whole chunk past
        the limits (patches.py)."""
        cs = self.store.chunk_size
        spans, piece = patchmod.merge(cs, None, new)
        if patchmod.too_big(old, spans, cs):
            whole = patchmod.assemble(self._open(base) if base else None, cs, old, self._packs)
            chunk = bytearray(whole if whole is not None else bytes(cs))
            patchmod.overlay(chunk, spans, piece)
            with self._lock:
                self.disk.stats.chunks_rebuilt += 1
            if not chunk.strip(b"\0"):
                return i, None, None
            return self._seal_and_store(i, bytes(chunk))
        with self._lock:
            self.disk.stats.chunks_patched += 1
        return Piece(i, base, spans, piece, patchmod.layers_of(old))

    def _add_piece(self, piece: Piece | None, flush: bool = False) -> None:
        """Put a piece in the current pack; once it holds a chunk's worth (or ``flush``), store it."""
        if piece is not None:
            self._pack.append(piece)
            self._pack_bytes += len(piece.data)
        if self._pack and (flush or self._pack_bytes >= self.store.chunk_size):
            members, self._pack, self._pack_bytes = self._pack, [], 0
            assert self._pool is not None
            self._inflight.append(self._pool.submit(self._store_pack, members))

    def _store_pack(self, members: list[Piece]) -> list[Done]:
        """Store the pieces as one pack object; each member chunk's patch names it and its place."""
        _, pid, _ = self._seal_and_store(-1, b"".join(m.data for m in members))
        done: list[Done] = []
        at = 0
        for m in members:
            done.append((m.i, m.base, [*m.layers, [pid, [list(span) for span in m.spans], at]]))
            at += len(m.data)
        with self._lock:
            self.disk.stats.packs += 1
        return done

    def _seal_and_store(self, i: int, data: bytes) -> Done:
        stats, lock = self.disk.stats, self._lock
        cid = self.codec.chunk_id(data)
        with lock:
            fresh = cid not in self.known and cid not in self._claimed
            self._claimed.add(cid)
        if fresh:
            key = self.store.chunk_key(self.disk.tenant_id, cid)
            if self.store.target.has(key):
                with lock:
                    stats.chunks_deduplicated += 1
            else:
                blob = self.codec.seal(cid, data)
                self.store.target.put(key, blob)
                with lock:
                    stats.chunks_uploaded += 1
                    stats.bytes_uploaded += len(blob)
        else:
            with lock:
                stats.chunks_deduplicated += 1
        return i, cid, None

    def _drain(self, limit: int) -> None:
        """Wait for uploads until at most ``limit`` are in flight, recording each in order."""
        while len(self._inflight) > limit:
            result = self._inflight.pop(0).result()
            if isinstance(result, Piece):
                self._add_piece(result)
                continue
            for done in result if isinstance(result, list) else [result]:
                self._record(done)

    def _record(self, done: Done) -> None:
        """A chunk is stored (whole, a hole, or as a patch in a stored pack): note and journal it."""
        entries = self.disk.entries
        i, cid, patch = done
        entries[i] = cid
        if patch is not None:
            # the garbage collector keeps what the journal names; a resumed attempt redoes patches
            self.disk.patches[str(i)] = patch
            for k, pid in enumerate(patchmod.ids_of(patch)):  # negative keys: never resumed from
                self._finished[-(i * JOURNAL_STRIDE + k + 1)] = pid
            self._finished[-(i + 1) * JOURNAL_STRIDE] = cid
        else:
            self.disk.patches.pop(str(i), None)
            self._finished[i] = cid
            self.disk.stats.holes += cid is None
        self._completed += 1
        if len(self._finished) >= JOURNAL_EVERY * (JOURNAL_STRIDE if self.disk.patches else 1):
            self.disk.journal.record(self._finished)
            self._finished.clear()
        if self.progress:
            self.progress(self._base_done + self._completed, len(entries))


def missing_chunks(store: ChunkStore, tenant_id: str, entries: list[str | None]) -> set[int]:
    """The indexes of ``entries`` whose chunk the target no longer holds."""
    ids = {c for c in entries if c}
    with ThreadPoolExecutor(store.workers) as pool:
        present = dict(
            zip(ids, pool.map(lambda c: store.target.has(store.chunk_key(tenant_id, c)), ids), strict=True)
        )
    return {i for i, c in enumerate(entries) if c and not present[c]}
