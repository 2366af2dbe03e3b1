"""A detached ``file`` volume's own backup read (``backup/volbackup.py``) on a real qcow2 and a real
chunk store: whole the first time, then only what was written since, from the file's bitmap."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from novacron.backup import volbackup
from novacron.backup.keys import KeyService
from novacron.backup.store import ChunkStore
from novacron.backup.targets import LocalTarget
from novacron.virt import cbt
from tests.conftest import require

MiB = 1 << 20
CHUNK = MiB


def _io(path: Path, *commands: str) -> None:
    argv = ["qemu-io", "-f", "qcow2", *(a for c in commands for a in ("-c", c)), str(path)]
    subprocess.run(argv, check=True, capture_output=True)


def test_a_file_volume_is_read_whole_then_from_its_bitmap(tmp_path: Path) -> None:
    require(shutil.which("qemu-nbd") is not None, "qemu-nbd is not installed")
    vol = tmp_path / "vol-1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(vol), "32M"], check=True)
    _io(vol, "write -P 7 1M 2M")
    store = ChunkStore(
        LocalTarget(tmp_path / "repo", fsync=False), KeyService(tmp_path / "kek"), chunk_size=CHUNK
    )

    async def backup(snapshot_id: str, parent: str | None) -> dict[str, object]:
        read = await volbackup.qcow2_read(str(vol), parent)
        result = await volbackup.read_volume(read, snapshot_id, parent, CHUNK, store, "t", "vol-1")
        await cbt.commit_file(str(vol), volbackup.bitmap_name(snapshot_id), CHUNK)
        return result

    first = asyncio.run(backup("bk-a", None))
    assert first["mode"] == "full" and first["bytes_read"] == 2 * MiB, first
    _io(vol, "write -P 9 20M 64k")  # recorded by the file's persistent bitmap nc-bk-a
    second = asyncio.run(backup("bk-b", "bk-a"))
    assert second["mode"] == "incremental" and second["bytes_read"] == 64 * 1024, second
    # the incremental is logically full: restored, it is the volume
    out, raw = tmp_path / "restored.raw", tmp_path / "vol.raw"
    store.restore_to("t", "bk-b", "vol-1", out)
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vol), str(raw)], check=True)
    assert out.read_bytes() == raw.read_bytes()
