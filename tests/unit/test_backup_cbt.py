"""Change-block tracking decisions: which chunks changed, and when a bitmap can be trusted."""

from __future__ import annotations

from novacron.virt import cbt

MiB = 1 << 20


def test_changed_chunks_come_from_present_extents_only() -> None:
    # as ``qemu-img map`` shows the scratch image of an incremental backup job
    extents = [
        {"start": 0, "length": 10 * MiB, "present": False},
        {"start": 10 * MiB, "length": 64 << 10, "present": True, "data": True},
        {"start": (10 * MiB) + (64 << 10), "length": MiB - (64 << 10), "present": True, "zero": True},
        {"start": 11 * MiB, "length": 89 * MiB, "present": False},
        # a run the guest zeroed still changed: it is present (as zeros)
        {"start": 100 * MiB, "length": MiB, "present": True, "zero": True, "data": False},
        {"start": 101 * MiB, "length": 155 * MiB, "present": False},
    ]
    assert cbt.changed_chunks(extents, 4 * MiB) == [2, 25]
    assert cbt.changed_chunks(extents, MiB) == [10, 100]


def test_extent_across_chunk_boundary_marks_both() -> None:
    assert cbt.changed_chunks([{"start": 3 * MiB, "length": 2 * MiB, "present": True}], 4 * MiB) == [0, 1]


def test_bitmap_trust() -> None:
    good = {"name": "nc-x", "persistent": True, "recording": True, "granularity": 4 * MiB}
    assert cbt._usable(good, 4 * MiB) is None
    assert "no change-tracking bitmap" in str(cbt._usable(None, 4 * MiB))
    assert "inconsistent" in str(cbt._usable({**good, "inconsistent": True}, 4 * MiB))
    assert "granularity" in str(cbt._usable(good, MiB))
    assert "not persistent" in str(cbt._usable({**good, "persistent": False}, 4 * MiB))
