"""Sub-chunk patches: how an incremental stores a chunk of which only a few small spans changed.

A fine-grained dirty bitmap says which 64 KiB spans of a 4 MiB chunk a guest wrote. Storing the
changed chunk whole would cost hashing, compressing and sealing 4 MiB for each scattered 64 KiB
write (and, to rebuild it without reading it from the guest, opening the parent's copy too):
measured, that is slower than reading the chunk. So an index entry may carry a patch instead:

    chunks[i]          the base chunk id (None: zeros), unchanged from the parent
    patches[str(i)]    [piece id, [[offset, length], ...]]: the spans' bytes, concatenated in
                       span order, stored as one ordinary chunk object named by its digest

The chunk's content is the base with the piece's bytes laid over the spans. A chunk has at most
one patch: a later incremental merges its new spans into the old patch (the old piece is fetched
and checked against its digest). When the merged spans exceed half the chunk, the chunk is
compacted: the base is fetched and checked, the spans laid over it, and the result stored as an
ordinary whole chunk (no patch). So a read of a chunk costs at most its base plus half a chunk.

This module is plain standard library: nbdkit's embedded Python imports it (``nbdsource.py``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

Spans = list[tuple[int, int]]
#: a chunk's patch, as the index stores it (JSON): [piece id, [[offset, length], ...]]
Patch = list[Any]
#: the merged spans of a patch may cover at most chunk_size // COMPACT_DIVISOR bytes
COMPACT_DIVISOR = 2


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


def too_big(spans: Spans, chunk_size: int) -> bool:
    """Whether a patch of these spans should be compacted into a whole chunk."""
    return sum(n for _, n in spans) > chunk_size // COMPACT_DIVISOR


def assemble(
    base: bytes | None, length: int, patch: Patch | None, fetch: Callable[[str], bytes]
) -> bytes | None:
    """A chunk's content from its base (None: zeros) and patch; None when it is zeros throughout
    and has no patch. ``fetch(id)`` opens a stored piece (checked against its digest)."""
    if patch is None:
        return base
    chunk = bytearray(base if base is not None else bytes(length))
    overlay(chunk, spans_of(patch), fetch(str(patch[0])))
    return bytes(chunk)


def piece_ids(patches: dict[str, Patch]) -> set[str]:
    return {str(p[0]) for p in patches.values()}
