"""Replication of a chunk store across targets (regions/clouds), through the emulators:
one-to-one, fan-out, chained; only missing chunks move; lag; resume after an interruption."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from novacron.backup.keys import KeyService
from novacron.backup.model import SnapshotHeld
from novacron.backup.replication import Replicator
from novacron.backup.store import ChunkStore
from novacron.backup.targets import LocalTarget, Target

CHUNK = 64 * 1024


class FlakyTarget(Target):
    """Failure injection only: passes through to a real target, failing chunk puts after N."""

    def __init__(self, inner: Target, fail_after: int | None) -> None:
        self.inner, self.fail_after, self.chunk_puts = inner, fail_after, 0
        self.kind = inner.kind

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("chunks/"):
            if self.fail_after is not None and self.chunk_puts >= self.fail_after:
                raise ConnectionError("injected: link to the other region dropped")
            self.chunk_puts += 1
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def has(self, key: str) -> bool:
        return self.inner.has(key)

    def list(self, prefix: str = "") -> Any:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def scan(self, prefix: str = "") -> Any:
        return self.inner.scan(prefix)


def _backup(
    store: ChunkStore, sid: str, disk: bytearray, parent: str | None = None, changed: Any = None
) -> None:
    store.write_snapshot(
        "t1",
        sid,
        "vda",
        lambda o, n: bytes(disk[o : o + n]),
        len(disk),
        changed,
        parent,
        meta={"vm_id": "vm1"},
    )


def _restored(store: ChunkStore, sid: str, tmp: Path) -> bytes:
    out = tmp / f"restore-{sid}-{time.monotonic_ns()}"
    store.restore_to("t1", sid, "vda", out)
    return out.read_bytes()


@pytest.fixture
def source(tmp_path: Path) -> tuple[ChunkStore, KeyService]:
    kek = KeyService(tmp_path / "kek")
    return ChunkStore(LocalTarget(tmp_path / "region-a", fsync=False), kek, chunk_size=CHUNK), kek


def test_one_to_one_moves_only_missing_chunks_and_resumes(
    source: Any, s3_emulator: Any, tmp_path: Path
) -> None:
    store, kek = source
    disk = bytearray(os.urandom(CHUNK * 40))
    _backup(store, "s1", disk)
    dest = FlakyTarget(s3_emulator.target(), fail_after=15)
    rep = Replicator(store, dest)
    assert rep.lag().snapshots_behind == 1 and rep.lag().seconds_behind >= 0
    with pytest.raises(ConnectionError):
        rep.run_once()
    assert rep.lag().snapshots_behind == 1 and "ConnectionError" in (rep.lag().last_error or "")
    replica = ChunkStore(dest, kek)
    assert replica.snapshot_ids("t1") == []  # no index arrives before its chunks
    dest.fail_after = None
    report = rep.run_once()
    assert report.chunks_copied == 25 and report.chunks_already_there == 15 and dest.chunk_puts == 40
    assert rep.lag().snapshots_behind == 0 and rep.lag().seconds_behind == 0
    assert _restored(replica, "s1", tmp_path) == bytes(disk)

    disk[5 * CHUNK : 5 * CHUNK + 10] = b"0123456789"
    _backup(store, "s2", disk, parent="s1", changed=[5])
    lag = rep.lag()
    assert lag.snapshots_behind == 1 and lag.per_tenant == {"t1": 1}
    report = rep.run_once()
    assert report.chunks_copied == 1 and report.snapshots_copied == 1 and dest.chunk_puts == 41
    assert _restored(replica, "s2", tmp_path) == bytes(disk)
    assert replica.verify("t1", "s2").ok
    assert rep.run_once().chunks_copied == 0  # in sync: nothing moves

    # deletes follow the source, except where the replica holds the snapshot
    replica.place_hold("t1", "s2", "dr-audit", "kept at the DR site", placed_by="compliance")
    store.delete_snapshot("t1", "s1")
    store.delete_snapshot("t1", "s2")
    report = rep.run_once()
    assert report.snapshots_deleted == 1 and replica.snapshot_ids("t1") == ["s2"]
    with pytest.raises(SnapshotHeld):
        replica.delete_snapshot("t1", "s2")


def test_fan_out_and_chained(source: Any, azure_emulator: Any, gcs_emulator: Any, tmp_path: Path) -> None:
    store, kek = source
    disk = bytearray(os.urandom(CHUNK * 12))
    _backup(store, "s1", disk)
    # fan-out: region A -> Azure and region A -> local region B
    azure = azure_emulator.target()
    region_b = LocalTarget(tmp_path / "region-b", fsync=False)
    fan = [Replicator(store, azure), Replicator(store, region_b)]
    # chain: region B -> GCS (region C), replicating the replica
    gcs = gcs_emulator.target()
    chain = Replicator(ChunkStore(region_b, kek), gcs)
    for r in fan:
        r.start(interval_s=0.5)
    chain.start(interval_s=0.5)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(r.lag().snapshots_behind == 0 for r in [*fan, chain]) and ChunkStore(
                gcs, kek
            ).snapshot_ids("t1"):
                break
            time.sleep(0.5)
        disk[0:4] = b"abcd"
        _backup(store, "s2", disk, parent="s1", changed=[0])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ChunkStore(gcs, kek).snapshot_ids("t1") != ["s1", "s2"]:
            time.sleep(0.5)
    finally:
        for r in [*fan, chain]:
            r.stop()
    for target in (azure, region_b, gcs):
        replica = ChunkStore(target, kek)
        assert replica.snapshot_ids("t1") == ["s1", "s2"], target.describe()
        assert _restored(replica, "s2", tmp_path) == bytes(disk)
        assert len(list(target.list("chunks/t1/"))) == 13  # 12 + the one changed chunk, each once
    assert all(r.lag().snapshots_behind == 0 and r.lag().last_success for r in [*fan, chain])
