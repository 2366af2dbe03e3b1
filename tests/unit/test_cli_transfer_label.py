"""The CLI's progress line reads a task's transfer detail: a migration's RAM and disk mirror, and
a backup's or restore's disk by name (the detail of a VM backup with volumes names each disk)."""

from __future__ import annotations

from novacron.cli.watch import transfer_label

MIB = 1 << 20


def test_a_migration_shows_ram_and_disk_mirrored() -> None:
    detail = {
        "ram": {"total": 256 * MIB, "remaining": 244 * MIB},
        "disk": {"offset": 3 * MIB, "len": 40 * MIB},
    }
    assert transfer_label({"progress": detail}) == "RAM 12.0/256.0 MiB, disk 3.0/40.0 MiB"


def test_a_backup_and_a_restore_name_their_disk() -> None:
    backup = {"phase": "read", "disk": "vdb", "bytes_read": 12 * MIB, "chunks_done": 3, "chunks_to_do": 9}
    assert transfer_label({"progress": backup}) == "vdb, read 12.0 MiB, chunks 3/9"
    restore = {"phase": "restore", "disk": "vda", "bytes_written": 5 * MIB, "fraction": 0.5}
    assert transfer_label({"progress": restore}) == "vda, written 5.0 MiB"
    assert transfer_label({"progress": "not a dict"}) == "" and transfer_label(None) == ""
