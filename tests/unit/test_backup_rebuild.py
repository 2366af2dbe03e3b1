"""Incremental backups from fine-grained dirty spans: only the spans are read, each touched chunk is
kept as a patch over the parent's chunk (compacted into a whole chunk past half a chunk), and the
snapshot stays logically full, restorable, deduplicated and verifiable."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from novacron.backup import nbdsource, patches
from novacron.backup.codec import CorruptObject
from novacron.backup.keys import KeyService
from novacron.backup.store import ChunkStore
from novacron.backup.targets import LocalTarget
from novacron.virt import cbt, nbdread
from tests.conftest import require

KiB, MiB = 1 << 10, 1 << 20
CHUNK = 256 * KiB
GRAIN = 4 * KiB


def _reader(disk: bytearray, log: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    def read(off: int, n: int) -> bytes:
        log.append((off, n))
        return bytes(disk[off : off + n])

    return read


def _spans(writes: list[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
    """What a dirty bitmap of GRAIN would report for the writes (offset, length)."""
    grains = [(off // GRAIN * GRAIN, -(-(off + n) // GRAIN) * GRAIN) for off, n in writes]
    extents = [(start, end - start, nbdread.DIRTY) for start, end in grains]
    return nbdread.dirty_spans(sorted(extents), CHUNK)


def test_incremental_reads_only_dirty_spans_and_patches_chunks(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, KeyService(tmp_path / "kek"), chunk_size=CHUNK)
    disk = bytearray(os.urandom(CHUNK * 12))
    disk[5 * CHUNK : 6 * CHUNK] = bytes(CHUNK)  # a hole in the parent
    original = bytes(disk)
    store.write_snapshot("t", "s1", "vda", _reader(disk, []), len(disk))
    writes = [
        (CHUNK + 100, 10),  # scattered small writes in chunk 1
        (CHUNK + 9 * GRAIN, GRAIN),
        (3 * CHUNK - 50, 100),  # straddles chunks 2 and 3
        (5 * CHUNK + GRAIN, 2 * GRAIN),  # into the parent's hole
        (7 * CHUNK, CHUNK),  # chunk 7 rewritten whole: read, not rebuilt
        (9 * CHUNK + 2 * GRAIN, 3 * GRAIN),  # chunk 9 zeroed there
    ]
    for off, n in writes[:-1]:
        disk[off : off + n] = os.urandom(n)
    disk[9 * CHUNK + 2 * GRAIN : 9 * CHUNK + 5 * GRAIN] = bytes(3 * GRAIN)
    dirty = _spans(writes)
    reads: list[tuple[int, int]] = []
    changed = sorted(dirty)
    inc = store.write_snapshot(
        "t", "s2", "vda", _reader(disk, reads), len(disk), changed, parent="s1", dirty=dirty
    )
    stats = inc.disks["vda"].stats
    assert changed == [1, 2, 3, 5, 7, 9]
    assert stats["chunks_patched"] == 5 and stats["chunks_read"] == 1 and not stats["full_read"]
    assert stats["packs"] == 1  # the five chunks' pieces are in one object
    # only the dirty granules were read from the disk, never a whole chunk but the rewritten one
    assert sum(n for _, n in reads) == stats["bytes_read"] == sum(e - s for v in dirty.values() for s, e in v)
    assert stats["bytes_read"] == 9 * GRAIN + CHUNK
    assert store.collect_garbage(grace_s=0).chunks_removed == 0  # the patches' pieces are referenced
    for sid, want in (("s1", original), ("s2", bytes(disk))):
        store.restore_to("t", sid, "vda", tmp_path / sid)
        assert (tmp_path / sid).read_bytes() == want, sid
        assert (
            store.read_snapshot("t", sid, "vda", CHUNK - 10, 2 * CHUNK) == want[CHUNK - 10 : 3 * CHUNK - 10]
        )
    assert store.verify("t", "s2").ok
    # instant restore's nbdkit source serves the patched chunks, a patched hole as data
    source = nbdsource.SnapshotSource(store, "t", "s2", 2)
    served = bytearray(len(disk))
    source.read_into(memoryview(served), 0)
    assert served == disk and source.extents(CHUNK, 5 * CHUNK, 3) == [(5 * CHUNK, CHUNK, 0)]

    # the next incremental adds a layer over chunk 1's patch, in one new pack, without fetching the old
    before = set(target.list("chunks/t/"))
    disk[CHUNK + 20 * GRAIN : CHUNK + 21 * GRAIN] = os.urandom(GRAIN)
    dirty = _spans([(CHUNK + 20 * GRAIN, 1)])
    again = store.write_snapshot("t", "s3", "vda", _reader(disk, []), len(disk), [1], "s2", dirty=dirty)
    assert len(set(target.list("chunks/t/")) - before) == 1 and again.disks["vda"].stats["packs"] == 1
    layers = patches.layers_of(store.load_index("t", "s3", "vda").patches["1"])
    parent_layers = patches.layers_of(store.load_index("t", "s2", "vda").patches["1"])
    assert len(layers) == 2 and [layers[0]] == parent_layers
    assert store.read_snapshot("t", "s3", "vda", 0, len(disk)) == bytes(disk)

    # more than half of chunk 1 dirty in scattered granules: compacted into a whole chunk
    grains = [(CHUNK + g * GRAIN, GRAIN) for g in range(0, 64, 2)] + [(CHUNK + 3 * GRAIN, GRAIN)]
    for off, n in grains:
        disk[off : off + n] = os.urandom(n)
    big = store.write_snapshot(
        "t", "s4", "vda", _reader(disk, []), len(disk), [1], "s3", dirty=_spans(grains)
    )
    assert big.disks["vda"].stats["chunks_rebuilt"] == 1
    index = store.load_index("t", "s4", "vda")
    assert "1" not in index.patches and {"2", "3", "5", "9"} <= set(index.patches)
    store.restore_to("t", "s4", "vda", tmp_path / "s4")
    assert (tmp_path / "s4").read_bytes() == bytes(disk)
    assert store.verify("t", "s4").ok


def test_a_corrupted_patch_is_found_by_verify_and_a_full_backup_mends_it(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, KeyService(tmp_path / "kek"), chunk_size=CHUNK)
    disk = bytearray(os.urandom(CHUNK * 4))
    store.write_snapshot("t", "s1", "vda", _reader(disk, []), len(disk))
    disk[2 * CHUNK : 2 * CHUNK + GRAIN] = os.urandom(GRAIN)
    dirty = _spans([(2 * CHUNK, GRAIN)])
    store.write_snapshot("t", "s2", "vda", _reader(disk, []), len(disk), [2], "s1", dirty=dirty)
    piece = patches.ids_of(store.load_index("t", "s2", "vda").patches["2"])[0]
    key = store.chunk_key("t", piece)
    blob = bytearray(target.get(key))
    blob[-1] ^= 1
    target.put(key, bytes(blob))
    with pytest.raises(CorruptObject):  # a read of the chunk opens its layers' packs
        store.read_snapshot("t", "s2", "vda", 2 * CHUNK, 1)
    report = store.verify("t", "s2")
    assert not report.ok and [(e[1], e[2]) for e in report.errors] == [(2, piece)]
    assert store.verify("t", "s1").ok
    assert not target.has(key)  # removed, as a damaged chunk: nothing deduplicates against it
    # lost change tracking (no change list): read whole, no patch, and sound again
    full = store.write_snapshot("t", "s4", "vda", _reader(disk, []), len(disk), parent="s2")
    assert full.disks["vda"].stats["full_read_reason"].startswith("no change list")
    assert not store.load_index("t", "s4", "vda").patches and store.verify("t", "s4").ok


def test_qemu_bitmap_at_64k_drives_a_byte_identical_incremental(tmp_path: Path) -> None:
    """A real qcow2 with a persistent 64 KiB dirty bitmap, exported by qemu-nbd with it: the store
    reads the dirty 64 KiB granules, and the restore is what ``qemu-img compare`` calls identical."""
    require(shutil.which("qemu-nbd") is not None, "qemu-nbd is not installed")
    img = tmp_path / "d.qcow2"

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    run("qemu-img", "create", "-q", "-f", "qcow2", str(img), "32M")
    run("qemu-io", "-f", "qcow2", "-c", "write -P 3 0 20M", str(img))
    store = ChunkStore(LocalTarget(tmp_path / "repo", fsync=False), KeyService(tmp_path / "kek"))
    argv = ["qemu-nbd", "--read-only", "--format=qcow2", f"--export-name={nbdread.EXPORT}", str(img)]
    reader, _ = nbdread.open_reader(32 * MiB, store.chunk_size, None, argv=argv)
    try:
        store.write_snapshot("t", "s1", "vda", reader.read, 32 * MiB)
    finally:
        reader.close()
    run("qemu-img", "bitmap", "--add", "-g", str(cbt.granularity(store.chunk_size)), str(img), "nc-s1")
    writes = ["write -P 9 1000 10", "write -P 7 9M 64k", "write -z 13M 128k", "write -P 5 24M 1M"]
    run("qemu-io", "-f", "qcow2", *(a for w in writes for a in ("-c", w)), str(img))
    # the reader itself (not its read method): the store plans its reads, issued ahead over NBD
    reader, dirty = nbdread.open_reader(32 * MiB, store.chunk_size, "nc-s1", argv=[*argv, "--bitmap=nc-s1"])
    try:
        assert dirty is not None and sorted(dirty) == [0, 2, 3, 6]
        inc = store.write_snapshot(
            "t", "s2", "vda", reader, 32 * MiB, sorted(dirty), parent="s1", dirty=dirty
        )
    finally:
        reader.close()
    stats = inc.disks["vda"].stats
    # chunk 6 (24-28 MiB) was a hole in the parent: a patch over zeros, not read whole
    assert stats["chunks_patched"] == 4 and stats["bytes_read"] == 64 * KiB * 4 + MiB
    raw = tmp_path / "restored.raw"
    store.restore_to("t", "s2", "vda", raw)
    compare = subprocess.run(
        ["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(img), str(raw)],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr


def test_patch_merge_keeps_the_newest_bytes_of_overlapping_spans() -> None:
    spans, piece = patches.merge(64, ([(0, 4), (8, 4)], b"aaaabbbb"), [(2, 4, b"cccc"), (20, 2, None)])
    assert spans == [(0, 6), (8, 4), (20, 2)] and piece == b"aacccc" + b"bbbb" + b"\0\0"
    with pytest.raises(ValueError, match="outside the chunk"):
        patches.merge(64, None, [(62, 4, b"dddd")])


def test_layers_are_compacted_past_the_limit_and_restore_identically(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, KeyService(tmp_path / "kek"), chunk_size=CHUNK)
    disk = bytearray(os.urandom(CHUNK * 2))
    store.write_snapshot("t", "s0", "vda", _reader(disk, []), len(disk))
    for n in range(1, patches.MAX_LAYERS + 2):
        disk[CHUNK + n * GRAIN : CHUNK + n * GRAIN + 10] = os.urandom(10)
        dirty = _spans([(CHUNK + n * GRAIN, 10)])
        read = _reader(disk, [])
        info = store.write_snapshot("t", f"s{n}", "vda", read, len(disk), [1], f"s{n - 1}", dirty=dirty)
        layers = patches.layers_of(store.load_index("t", f"s{n}", "vda").patches.get("1"))
        assert len(layers) == (n if n <= patches.MAX_LAYERS else 0), n
        assert info.disks["vda"].stats["chunks_rebuilt"] == (n > patches.MAX_LAYERS)
        assert store.read_snapshot("t", f"s{n}", "vda", 0, len(disk)) == bytes(disk)
    assert store.verify("t", f"s{patches.MAX_LAYERS}").ok
