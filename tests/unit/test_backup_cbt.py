"""Change-block tracking decisions (which chunks changed, when a bitmap can be trusted) and the NBD reader."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from novacron.virt import cbt, nbdread
from tests.conftest import require

MiB = 1 << 20


def test_dirty_chunks_come_from_dirty_extents_only() -> None:
    # (start, length, flags) as the qemu:dirty-bitmap meta context answers: flag 1 is dirty
    extents = [
        (0, 8 * MiB, 0),
        (8 * MiB, 4 * MiB, nbdread.DIRTY),
        (12 * MiB, 88 * MiB, 0),
        (100 * MiB, 8 * MiB, nbdread.DIRTY),
        (108 * MiB, 148 * MiB, 0),
    ]
    assert nbdread.dirty_chunks(extents, 4 * MiB) == [2, 25, 26]
    assert nbdread.dirty_chunks(extents, 64 * MiB) == [0, 1]


def test_extent_across_chunk_boundary_marks_both() -> None:
    assert nbdread.dirty_chunks([(3 * MiB, 2 * MiB, nbdread.DIRTY)], 4 * MiB) == [0, 1]
    # the spans are split at the chunk boundary, adjacent dirty extents merged
    extents = [
        (3 * MiB, MiB, nbdread.DIRTY),
        (4 * MiB, MiB, nbdread.DIRTY),
        (9 * MiB, 64 << 10, nbdread.DIRTY),
    ]
    assert nbdread.dirty_spans(extents, 4 * MiB) == {
        0: [(3 * MiB, 4 * MiB)],
        1: [(4 * MiB, 5 * MiB)],
        2: [(9 * MiB, 9 * MiB + (64 << 10))],
    }


def test_reader_answers_zero_spans_without_reading(tmp_path: Path) -> None:
    require(shutil.which("qemu-nbd") is not None, "qemu-nbd is not installed")
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    writes = ["-c", "write -P 7 9M 1M", "-c", "write -z 20M 4M", "-c", "write -P 0 40M 1M"]
    subprocess.run(["qemu-io", "-f", "qcow2", *writes, str(disk)], check=True, capture_output=True)
    argv = ["qemu-nbd", "--read-only", "--format=qcow2", f"--export-name={nbdread.EXPORT}", str(disk)]
    reader, changed = nbdread.open_reader(64 * MiB, 4 * MiB, None, argv=argv)
    try:
        assert changed is None
        got = {i: reader.read(i * 4 * MiB, 4 * MiB) for i in range(16)}
        # chunk 2 holds data; chunk 10 was written as zeros, so it is read (only the server knows)
        assert {i for i, data in got.items() if data is not None} == {2, 10}
        assert got[2] == bytes(MiB) + bytes([7]) * MiB + bytes(2 * MiB)
        assert reader.bytes_read == 8 * MiB
    finally:
        reader.close()


def test_bitmap_trust() -> None:
    good = {"name": "nc-x", "persistent": True, "recording": True, "granularity": 4 * MiB}
    assert cbt._usable(good, 4 * MiB) is None
    assert "no change-tracking bitmap" in str(cbt._usable(None, 4 * MiB))
    assert "inconsistent" in str(cbt._usable({**good, "inconsistent": True}, 4 * MiB))
    assert "granularity" in str(cbt._usable(good, MiB))
    # a 64 KiB bitmap (today's) and a chunk-sized one (older backups') both drive a 4 MiB store
    assert cbt._usable({**good, "granularity": cbt.granularity(4 * MiB)}, 4 * MiB) is None
    assert cbt.granularity(4 * MiB) == 64 << 10 and cbt.granularity(16 << 10) == 16 << 10
    assert "not persistent" in str(cbt._usable({**good, "persistent": False}, 4 * MiB))
