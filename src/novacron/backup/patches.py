"""Sub-chunk patches: how an incremental stores a chunk of which only a few small spans changed.

A fine-grained dirty bitmap says which 64 KiB spans of a 4 MiB chunk a guest wrote. Storing the
changed chunk whole would cost hashing, compressing and sealing 4 MiB for each scattered 64 KiB
write (and, to rebuild it without reading it from the guest, opening the parent's copy too):
measured, that is slower than reading the chunk. So an index entry may carry a patch instead:

    chunks[i]          the base chunk id (None: zeros), unchanged from the parent
    patches[str(i)]    [[pack id, [[offset, length], ...], at], ...]: the chunk's *layers*, oldest
                       first; a layer's spans' bytes (its *piece*), concatenated in span order,
                       are ``pack[at : at + their total length]``

A *pack* is an ordinary chunk object (named by the keyed digest of its plaintext, sealed, checked
against its name when opened) holding the pieces of many chunks of one backup, one after the
other, up to about a chunk's size: an incremental of scattered writes stores one object per
chunk-sized run of pieces instead of one per touched chunk (as restic's and borg's pack files
do), so it names, seals, uploads and fsyncs a hundred objects, not a thousand.

The chunk's content is the base with each layer's piece laid over its spans, oldest first. An
incremental *appends* a layer holding only its own dirty spans to the parent's layers: it neither
fetches nor stores again what earlier backups patched. Once the layers' bytes would exceed half
the chunk, or there would be more than ``MAX_LAYERS`` of them, the chunk is compacted instead:
the base and the layers are fetched and checked, laid over one another with the new spans, and
the result stored as an ordinary whole chunk (no patch). So a read of a chunk costs at most its
base plus ``MAX_LAYERS`` packs (about a chunk each, and shared by neighbouring chunks: readers
keep the last packs opened, ``PackCache``). A patch written before layers, ``[piece id, spans]``
or ``[pack id, spans, at]``, is one layer.

This module is plain standard library: nbdkit's embedded Python imports it (``nbdsource.py``).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

Spans = list[tuple[int, int]]
#: a chunk's patch, as the index stores it (JSON): [pack id, [[offset, length], ...], at]
Patch = list[Any]
#: the layers of a patch may hold at most chunk_size // COMPACT_DIVISOR bytes
COMPACT_DIVISOR = 2
#: and be at most this many (each may be in another pack)
MAX_LAYERS = 8


def layers_of(patch: Patch | None) -> list[Patch]:
    """A patch's layers, oldest first (a patch written before layers is one)."""
    if not patch:
        return []
    return [patch] if isinstance(patch[0], str) else [list(layer) for layer in patch]


def ids_of(patch: Patch | None) -> list[str]:
    """The objects (packs) a patch's layers are in."""
    return [str(layer[0]) for layer in layers_of(patch)]


def layer_bytes(patch: Patch | None) -> int:
    return sum(n for layer in layers_of(patch) for _, n in spans_of(layer))


def spans_of(patch: Patch) -> Spans:
    return [(int(at), int(n)) for at, n in patch[1]]


def overlay(chunk: bytearray, spans: Spans, piece: bytes) -> None:
    """Lay ``piece`` (the spans' bytes, concatenated) over ``chunk`` in place."""
    pos = 0
    for at, n in spans:
        chunk[at : at + n] = piece[pos : pos + n]
        pos += n
    if pos != len(piece):
        raise ValueError(f"a patch piece of {len(piece)} bytes for spans of {pos}")


def merge(
    chunk_size: int, old: tuple[Spans, bytes] | None, new: list[tuple[int, int, bytes | None]]
) -> tuple[Spans, bytes]:
    """The union of an old patch's spans and the new (offset, length, bytes or None for zeros)
    spans, newer bytes winning, and the piece holding the union's bytes (no chunk-sized buffer:
    a scattered write costs its own bytes only)."""
    segments: list[tuple[int, bytes]] = []  # (offset, bytes), later ones win
    if old is not None:
        pos = 0
        for at, n in old[0]:
            segments.append((at, old[1][pos : pos + n]))
            pos += n
        if pos != len(old[1]):
            raise ValueError(f"a patch piece of {len(old[1])} bytes for spans of {pos}")
    segments += [(at, data if data is not None else bytes(n)) for at, n, data in new]
    union: Spans = []
    for at, data in sorted(segments, key=lambda seg: seg[0]):
        if at < 0 or at + len(data) > chunk_size:
            raise ValueError(f"a span at {at} of {len(data)} bytes is outside the chunk")
        if union and at <= union[-1][0] + union[-1][1]:
            start, length = union[-1]
            union[-1] = (start, max(length, at + len(data) - start))
        else:
            union.append((at, len(data)))
    starts = [start for start, _ in union]
    bufs = [bytearray(n) for _, n in union]
    for at, data in segments:
        k = bisect.bisect_right(starts, at) - 1
        rel = at - starts[k]
        bufs[k][rel : rel + len(data)] = data
    return union, b"".join(bufs)


def too_big(old: Patch | None, spans: Spans, chunk_size: int) -> bool:
    """Whether a chunk with ``old`` layers and a new one of ``spans`` should be compacted whole."""
    if len(layers_of(old)) + 1 > MAX_LAYERS:
        return True
    return layer_bytes(old) + sum(n for _, n in spans) > chunk_size // COMPACT_DIVISOR


def piece_of(patch: Patch, fetch: Callable[[str], bytes]) -> bytes:
    """The patch's piece: its bytes in its pack (``fetch(id)`` opens a stored object, checked)."""
    at = int(patch[2]) if len(patch) > 2 else 0
    n = sum(length for _, length in spans_of(patch))
    pack = fetch(str(patch[0]))
    if at < 0 or at + n > len(pack) or (len(patch) <= 2 and n != len(pack)):
        raise ValueError(f"a patch of {n} bytes at {at} in a pack of {len(pack)}")
    return pack[at : at + n]


class PackCache:
    """The last packs opened (thread-safe): the chunks of a pack are read one after the other, often
    by several threads at once, so a pack being opened is waited for, not opened a second time."""

    def __init__(self, fetch: Callable[[str], bytes], keep: int = 16) -> None:
        self._fetch = fetch
        self._keep = keep
        self._packs: OrderedDict[str, bytes] = OrderedDict()
        self._loading: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def __call__(self, pid: str) -> bytes:
        with self._lock:
            if pid in self._packs:
                self._packs.move_to_end(pid)
                return self._packs[pid]
            loading = self._loading.get(pid)
            if loading is None:
                self._loading[pid] = threading.Event()
        if loading is not None:  # another thread opens it: wait (it may fail: then open it here)
            loading.wait()
            with self._lock:
                if pid in self._packs:
                    return self._packs[pid]
            return self._fetch(pid)
        try:
            data = self._fetch(pid)  # outside the lock: a remote target is slow
            with self._lock:
                self._packs[pid] = data
                while len(self._packs) > self._keep:
                    self._packs.popitem(last=False)
            return data
        finally:
            with self._lock:
                self._loading.pop(pid).set()


def assemble(
    base: bytes | None, length: int, patch: Patch | None, fetch: Callable[[str], bytes]
) -> bytes | None:
    """A chunk's content from its base (None: zeros) and patch; None when it is zeros throughout
    and has no patch. ``fetch(id)`` opens a stored pack (checked against its digest)."""
    if patch is None:
        return base
    chunk = bytearray(base if base is not None else bytes(length))
    for layer in layers_of(patch):
        overlay(chunk, spans_of(layer), piece_of(layer, fetch))
    return bytes(chunk)


def piece_ids(patches: dict[str, Patch]) -> set[str]:
    return {pid for p in patches.values() for pid in ids_of(p)}
