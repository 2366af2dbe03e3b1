"""Every backup target passes the same contract, against the real services' APIs (emulators), and
the chunk store works end to end through each of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novacron.backup.keys import KeyService
from novacron.backup.store import ChunkStore
from novacron.backup.targets import LocalTarget, ObjectNotFound, Target, target_from_url

KINDS = ["local", "s3", "azure", "gcs"]
CHUNK = 64 * 1024


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "local":
        yield LocalTarget(tmp_path / "repo")
        return
    emulator = request.getfixturevalue(f"{request.param}_emulator")
    yield emulator.target()


def test_object_contract(target: Target) -> None:
    assert not target.has("chunks/t1/ab/abc")
    with pytest.raises(ObjectNotFound):
        target.get("chunks/t1/ab/abc")
    target.put("chunks/t1/ab/abc", b"one")
    target.put("chunks/t1/cd/cde", b"two" * 1000)
    target.put("snapshots/t1/s1/vda.idx", b"")
    assert target.has("chunks/t1/ab/abc")
    assert target.get("chunks/t1/ab/abc") == b"one"
    assert target.get("snapshots/t1/s1/vda.idx") == b""
    target.put("chunks/t1/ab/abc", b"replaced")
    assert target.get("chunks/t1/ab/abc") == b"replaced"
    assert sorted(target.list("chunks/t1/")) == ["chunks/t1/ab/abc", "chunks/t1/cd/cde"]
    assert sorted(target.list("chunks/t1/c")) == ["chunks/t1/cd/cde"]
    assert sorted(target.list("snap")) == ["snapshots/t1/s1/vda.idx"]
    assert list(target.list("nothing/")) == []
    scanned = {k: (m, s) for k, m, s in target.scan("chunks/")}
    assert set(scanned) == {"chunks/t1/ab/abc", "chunks/t1/cd/cde"}
    assert scanned["chunks/t1/cd/cde"][1] == 3000 and scanned["chunks/t1/ab/abc"][0] > 1.6e9
    assert target.put_if_absent("keys/t1.json", b"first") is True
    assert target.put_if_absent("keys/t1.json", b"second") is False
    assert target.get("keys/t1.json") == b"first"
    target.delete("chunks/t1/ab/abc")
    target.delete("chunks/t1/ab/abc")  # deleting a missing object is fine
    assert not target.has("chunks/t1/ab/abc")
    assert sorted(target.list("chunks/")) == ["chunks/t1/cd/cde"]
    with pytest.raises(ValueError):
        target.put("../escape", b"x")


def _disk(path: Path, blocks: int) -> bytes:
    """A disk image with random data, a zero run (holes) and a short tail."""
    data = os.urandom(CHUNK * 3) + bytes(CHUNK * 2) + os.urandom(CHUNK * (blocks - 5)) + os.urandom(1000)
    path.write_bytes(data)
    return data


def test_store_round_trip(target: Target, tmp_path: Path) -> None:
    store = ChunkStore(target, KeyService(tmp_path / "kek"), chunk_size=CHUNK)
    disk = bytearray(_disk(tmp_path / "disk", 12))
    reads: list[int] = []

    def reader(off: int, n: int) -> bytes:
        reads.append(off // CHUNK)
        return bytes(disk[off : off + n])

    full = store.write_snapshot("tenant-a", "s1", "vda", reader, len(disk), meta={"vm_id": "vm1"})
    st = full.disks["vda"].stats
    assert st["holes"] == 2 and st["chunks_uploaded"] == 11 and st["full_read"]

    disk[7 * CHUNK + 5 : 7 * CHUNK + 10] = b"XXXXX"
    reads.clear()
    inc = store.write_snapshot("tenant-a", "s2", "vda", reader, len(disk), changed=[7], parent="s1")
    assert reads == [7]
    assert (
        inc.disks["vda"].stats["chunks_uploaded"] == 1 and inc.disks["vda"].stats["chunks_from_parent"] == 12
    )

    out = tmp_path / "restored"
    store.restore_to("tenant-a", "s2", "vda", out)
    assert out.read_bytes() == bytes(disk)
    assert store.read_snapshot("tenant-a", "s2", "vda", 7 * CHUNK, 16) == bytes(
        disk[7 * CHUNK : 7 * CHUNK + 16]
    )
    assert [s.snapshot_id for s in store.list_snapshots("tenant-a")] == ["s1", "s2"]
    assert store.verify("tenant-a", "s2").ok

    # a flipped byte in one stored chunk is found by verify, naming the disk and chunk
    first = store.load_index("tenant-a", "s1", "vda").chunks[0]
    assert first is not None
    victim = store.chunk_key("tenant-a", first)
    blob = bytearray(target.get(victim))
    blob[-1] ^= 0x01
    target.put(victim, bytes(blob))
    report = store.verify("tenant-a", "s1")
    assert not report.ok and {e[2] for e in report.errors} == {victim.rsplit("/", 1)[1]}
    assert store.results("tenant-a", "s1")["verify"]["ok"] is False


def test_targets_from_urls(s3_emulator: Any, azure_emulator: Any, gcs_emulator: Any, tmp_path: Path) -> None:
    from tests.services.object_stores import AZURITE_KEY

    s3_bucket = s3_emulator.target().bucket  # a bucket that exists
    targets = [
        target_from_url(f"file://{tmp_path}/repo"),
        target_from_url(
            f"s3://{s3_bucket}/region-a",
            endpoint_url=s3_emulator.endpoint,
            region_name="us-east-1",
            aws_access_key_id="k",
            aws_secret_access_key="s",
        ),
        target_from_url(
            "azure://dr-site/store",
            connection_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={azure_emulator.endpoint}/devstoreaccount1;",
        ),
        target_from_url("gs://nc-url-bucket/store", endpoint=gcs_emulator.endpoint, create=True),
    ]
    for t in targets:
        t.put("keys/x.json", b"{}")
        assert list(t.list("keys/")) == ["keys/x.json"], t.describe()
    with pytest.raises(ValueError):
        target_from_url("ftp://host/x")
