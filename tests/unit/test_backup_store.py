"""The chunk store on a real filesystem target: incremental and logically full snapshots, dedup,
tenant separation, resume after a crash, garbage collection racing backups, holds, keys."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from novacron.backup.codec import CorruptObject
from novacron.backup.keys import KeyService
from novacron.backup.model import SnapshotHeld, SnapshotImmutable
from novacron.backup.retention import RetentionPolicy
from novacron.backup.store import ChunkStore, chunks_for_ranges
from novacron.backup.targets import LocalTarget

CHUNK = 64 * 1024


class CountingTarget(LocalTarget):
    """Failure injection and accounting only: counts chunk uploads, can fail after N of them."""

    def __init__(self, root: Path, fail_after: int | None = None) -> None:
        super().__init__(root, fsync=False)
        self.chunk_puts = 0
        self.fail_after = fail_after

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("chunks/"):
            if self.fail_after is not None and self.chunk_puts >= self.fail_after:
                raise ConnectionError("injected: target unreachable")
            self.chunk_puts += 1
        super().put(key, data)


def reader_of(disk: bytearray, log: list[int] | None = None, hook: Callable[[int], None] | None = None):  # type: ignore[no-untyped-def]
    def read(off: int, n: int) -> bytes:
        if log is not None:
            log.append(off // CHUNK)
        if hook:
            hook(off // CHUNK)
        return bytes(disk[off : off + n])

    return read


@pytest.fixture
def kek(tmp_path: Path) -> KeyService:
    return KeyService(tmp_path / "kek")


def test_incremental_snapshot_is_logically_full_and_vms_share_chunks(tmp_path: Path, kek: KeyService) -> None:
    target = CountingTarget(tmp_path / "repo")
    store = ChunkStore(target, kek, chunk_size=CHUNK)
    image = bytearray(os.urandom(CHUNK * 16))
    vm1, vm2 = bytearray(image), bytearray(image)
    store.write_snapshot("t", "vm1-a", "vda", reader_of(vm1), len(vm1), meta={"vm_id": "vm1"})
    assert target.chunk_puts == 16
    # a second VM from the same image: every chunk is already there
    second = store.write_snapshot("t", "vm2-a", "vda", reader_of(vm2), len(vm2), meta={"vm_id": "vm2"})
    assert target.chunk_puts == 16 and second.disks["vda"].stats["chunks_deduplicated"] == 16

    vm1[3 * CHUNK + 100 : 3 * CHUNK + 200] = os.urandom(100)
    vm1[9 * CHUNK - 10 : 9 * CHUNK + 10] = os.urandom(20)  # straddles chunks 8 and 9
    changed = chunks_for_ranges([(3 * CHUNK + 100, 100), (9 * CHUNK - 10, 20)], CHUNK)
    assert changed == {3, 8, 9}
    reads: list[int] = []
    inc = store.write_snapshot("t", "vm1-b", "vda", reader_of(vm1, reads), len(vm1), changed, parent="vm1-a")
    assert sorted(reads) == [3, 8, 9] and target.chunk_puts == 19
    assert not inc.disks["vda"].stats["full_read"]
    for sid, want in (("vm1-a", image), ("vm1-b", vm1), ("vm2-a", image)):
        store.restore_to("t", sid, "vda", tmp_path / sid)
        assert (tmp_path / sid).read_bytes() == bytes(want), sid

    # lost change tracking: a parent but no change list reads everything and says why
    reads.clear()
    full = store.write_snapshot("t", "vm1-c", "vda", reader_of(vm1, reads), len(vm1), None, parent="vm1-b")
    assert len(reads) == 16 and full.disks["vda"].stats["full_read_reason"].startswith("no change list")
    assert target.chunk_puts == 19


def test_tenants_never_share_or_open_each_others_chunks(tmp_path: Path, kek: KeyService) -> None:
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, kek, chunk_size=CHUNK, digest="blake3")
    data = bytearray(os.urandom(CHUNK * 2))
    store.write_snapshot("alpha", "s1", "vda", reader_of(data), len(data))
    store.write_snapshot("beta", "s1", "vda", reader_of(data), len(data))
    a = {k.rsplit("/", 1)[1] for k in target.list("chunks/alpha/")}
    b = {k.rsplit("/", 1)[1] for k in target.list("chunks/beta/")}
    assert len(a) == len(b) == 2 and not a & b
    # a chunk of alpha copied into beta's namespace does not open under beta's key
    akey = sorted(target.list("chunks/alpha/"))[0]
    with pytest.raises(CorruptObject):
        store.codec("beta").open_chunk(akey.rsplit("/", 1)[1], target.get(akey))
    assert bytes(data[:64]) not in target.get(akey) and bytes(data[CHUNK : CHUNK + 64]) not in target.get(
        akey
    )


def test_interrupted_backup_resumes_without_rereading_or_reuploading(tmp_path: Path, kek: KeyService) -> None:
    target = CountingTarget(tmp_path / "repo", fail_after=40)
    store = ChunkStore(target, kek, chunk_size=CHUNK, workers=1)
    disk = bytearray(os.urandom(CHUNK * 100))
    with pytest.raises(ConnectionError):
        store.write_snapshot("t", "s1", "vda", reader_of(disk), len(disk))
    assert store.snapshot_ids("t") == []  # no half snapshot is visible
    uploaded_before = target.chunk_puts
    target.fail_after = None
    reads: list[int] = []
    info = store.write_snapshot("t", "s1", "vda", reader_of(disk, reads), len(disk))
    st = info.disks["vda"].stats
    # the journal (every 32 chunks) spares re-reading; has() spares re-uploading the rest
    assert st["chunks_resumed"] == 32 and len(reads) == 68
    assert target.chunk_puts - uploaded_before == 100 - uploaded_before
    assert st["chunks_deduplicated"] == uploaded_before - 32
    store.restore_to("t", "s1", "vda", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == bytes(disk)
    assert list(target.list("inflight/")) == []


def test_gc_sweeps_garbage_but_never_a_running_backups_chunks(tmp_path: Path, kek: KeyService) -> None:
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, kek, chunk_size=CHUNK, workers=2)
    old = bytearray(os.urandom(CHUNK * 8))
    store.write_snapshot("t", "old", "vda", reader_of(old), len(old))
    garbage = bytearray(os.urandom(CHUNK * 4))
    store.write_snapshot("t", "gone", "vda", reader_of(garbage), len(garbage))
    store.delete_snapshot("t", "gone")
    # the new backup re-uses the 4 garbage chunks (dedup by has()) and adds 6 of its own
    new = garbage + bytearray(os.urandom(CHUNK * 6))
    reports = []

    def gc_mid_backup(i: int) -> None:
        if i == 8:  # after the dedup hits, before the backup has journaled them
            reports.append(store.collect_garbage(grace_s=3600))  # a realistic grace: nothing young goes
            reports.append(store.collect_garbage(grace_s=0, now=time.time() + 1))  # worst case

    info = store.write_snapshot("t", "new", "vda", reader_of(new, hook=gc_mid_backup), len(new))
    # the garbage and the backup's fresh uploads are all younger than the grace period
    assert reports[0].chunks_removed == 0 and reports[0].chunks_young >= 4
    # the aggressive pass swept the 4 garbage chunks the backup had found present; the fence saw
    # the collection and put them back before writing the index
    assert reports[1].chunks_removed >= 4
    assert info.disks["vda"].stats["chunks_repaired"] == reports[1].chunks_removed
    assert store.verify("t", "new").ok and store.verify("t", "old").ok
    store.restore_to("t", "new", "vda", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == bytes(new)
    # once nothing runs, a collection keeps exactly what the snapshots reference
    final = store.collect_garbage(grace_s=0, now=time.time() + 1)
    assert final.chunks_removed == 0 and final.chunks_total == 8 + 10


def test_gc_loop_racing_a_writer_thread(tmp_path: Path, kek: KeyService) -> None:
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, kek, chunk_size=CHUNK, workers=2)
    base = bytearray(os.urandom(CHUNK * 30))
    disks = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(6):
                d = bytearray(base)
                d[n * CHUNK : (n + 3) * CHUNK] = os.urandom(3 * CHUNK)
                disks.append(d)
                store.write_snapshot(
                    "t", f"s{n}", "vda", reader_of(d, hook=lambda _i: time.sleep(0.002)), len(d)
                )
                if n >= 2:  # churn: the oldest goes, leaving garbage shared with newer ones
                    store.delete_snapshot("t", f"s{n - 2}")
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    collections = 0
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not stop.is_set():
            store.collect_garbage(grace_s=0, now=time.time() + 1)
            collections += 1
            time.sleep(0.05)  # back to back, a collection would starve the writer's fence
    finally:
        thread.join(120)
    assert not errors and collections > 3
    for n in (4, 5):
        assert store.verify("t", f"s{n}").ok
        store.restore_to("t", f"s{n}", "vda", tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == bytes(disks[n])


def test_legal_hold_and_immutability_block_delete_and_prune(tmp_path: Path, kek: KeyService) -> None:
    store = ChunkStore(LocalTarget(tmp_path / "repo", fsync=False), kek, chunk_size=CHUNK)
    disk = bytearray(os.urandom(CHUNK))
    day = 86400.0
    t0 = 1_700_000_000.0
    for n in range(4):
        store.write_snapshot(
            "t",
            f"s{n}",
            "vda",
            reader_of(disk),
            len(disk),
            meta={"vm_id": "vm1"},
            created_at=t0 + n * day,
            immutable_until=t0 + n * day + 2 * day,
        )
    store.place_hold("t", "s0", "case-42", "litigation", placed_by="compliance-officer")
    with pytest.raises(SnapshotHeld):
        store.delete_snapshot("t", "s0", now=t0 + 100 * day)
    with pytest.raises(SnapshotImmutable):
        store.delete_snapshot("t", "s2", now=t0 + 3 * day)
    report = store.prune("t", RetentionPolicy(keep_last=1), now=t0 + 3.5 * day)
    assert report.kept == {"s3": ["keep_last"]}
    assert set(report.protected) == {"s0", "s2"} and "legal hold case-42" in report.protected["s0"]
    assert report.removed == ["s1"]
    assert store.snapshot_ids("t") == ["s0", "s2", "s3"]
    store.release_hold("t", "s0", "case-42", released_by="compliance-officer")
    report = store.prune("t", RetentionPolicy(keep_last=1), now=t0 + 10 * day)
    assert sorted(report.removed) == ["s0", "s2"] and store.snapshot_ids("t") == ["s3"]


def test_kek_rotation_rewraps_tenant_keys(tmp_path: Path) -> None:
    kek = KeyService(tmp_path / "kek")
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, kek, chunk_size=CHUNK)
    disk = bytearray(os.urandom(CHUNK * 2))
    store.write_snapshot("t", "s1", "vda", reader_of(disk), len(disk))
    old = kek.current_id
    new = kek.rotate()
    assert store.keyring.rewrap() == 1 and store.keyring.rewrap() == 0
    kek.retire(old)
    assert kek.kek_ids() == [new]
    fresh = ChunkStore(target, KeyService(tmp_path / "kek"))  # a new process: reads with the new KEK
    assert fresh.read_snapshot("t", "s1", "vda", 0, 10) == bytes(disk[:10])
    with pytest.raises(KeyError):  # another platform's key service cannot unwrap the tenant key
        ChunkStore(target, KeyService(tmp_path / "other")).read_snapshot("t", "s1", "vda", 0, 10)


def test_chacha20_store_restores_through_a_writer_and_keeps_its_parameters(
    tmp_path: Path, kek: KeyService
) -> None:
    target = LocalTarget(tmp_path / "repo", fsync=False)
    store = ChunkStore(target, kek, chunk_size=CHUNK, digest="blake3", aead="chacha20-poly1305")
    disk = bytearray(os.urandom(CHUNK * 3 + 17)) + bytearray(CHUNK)
    policy = RetentionPolicy(keep_daily=7, immutable_days=30)
    store.write_snapshot(
        "t",
        "s1",
        "vda",
        reader_of(disk),
        len(disk),
        created_at=1000.0,
        immutable_until=policy.immutable_until(1000.0),
    )
    assert store.get_snapshot("t", "s1").immutable_until == 1000.0 + 30 * 86400
    got = bytearray(len(disk))

    def writer(off: int, data: bytes) -> None:
        got[off : off + len(data)] = data

    store.restore_to("t", "s1", "vda", writer)
    assert got == disk
    # reopening with other parameters keeps the store's own: chunk names depend on them
    again = ChunkStore(target, kek, chunk_size=4 * CHUNK, digest="sha256")
    assert (again.chunk_size, again.digest, again.aead) == (CHUNK, "blake3", "chacha20-poly1305")
    assert again.verify("t", "s1").ok


def test_gc_keeps_a_live_journal_and_clears_a_dead_one(tmp_path: Path, kek: KeyService) -> None:
    target = CountingTarget(tmp_path / "repo", fail_after=5)
    store = ChunkStore(target, kek, chunk_size=CHUNK, workers=1)
    disk = bytearray(os.urandom(CHUNK * 40))
    with pytest.raises(ConnectionError):  # dies after 5 uploads, before any journal entry
        store.write_snapshot("t", "s1", "vda", reader_of(disk), len(disk))
    target.fail_after = 36
    with pytest.raises(ConnectionError):  # second attempt journals 32 chunks, then dies
        store.write_snapshot("t", "s1", "vda", reader_of(disk), len(disk))
    # a collection now (even with no grace) keeps the journaled chunks of the interrupted backup
    report = store.collect_garbage(grace_s=0, now=time.time() + 1)
    assert report.leases_active == 1 and report.chunks_referenced == 32 and report.chunks_removed == 4
    target.fail_after = None
    reads: list[int] = []
    info = store.write_snapshot("t", "s1", "vda", reader_of(disk, reads), len(disk))
    assert info.disks["vda"].stats["chunks_resumed"] == 32 and len(reads) == 8
    assert store.verify("t", "s1").ok
    # a backup dead for longer than the lease TTL loses its journal and its chunks
    target.fail_after = target.chunk_puts + 3
    with pytest.raises(ConnectionError):
        store.write_snapshot("t", "s2", "vda", reader_of(bytearray(os.urandom(CHUNK * 4))), CHUNK * 4)
    report = store.collect_garbage(grace_s=0, now=time.time() + 8 * 86400)
    assert report.leases_stale == 1 and report.chunks_removed == 3 and list(target.list("inflight/")) == []
    assert store.verify("t", "s1").ok


def test_open_by_url_with_the_state_dirs_key_service(tmp_path: Path) -> None:
    store = ChunkStore.open(f"file://{tmp_path}/repo", tmp_path / "state", chunk_size=CHUNK, digest="blake3")
    disk = bytearray(os.urandom(CHUNK + 5))
    store.write_snapshot("t", "a", "vda", reader_of(disk), len(disk))
    again = ChunkStore.open(str(tmp_path / "repo"), tmp_path / "state")
    assert (again.chunk_size, again.digest) == (CHUNK, "blake3")
    assert again.read_snapshot("t", "a", "vda", 0, len(disk)) == bytes(disk)
    assert [p.stem for p in (tmp_path / "state" / "kek").glob("*.kek")] == again.keyring.kek.kek_ids()
