"""The backup's NBD source of instant restore, with real nbdkit and qemu-img (no guest).

A snapshot with never-stored (all-zero) chunks and a short last chunk is served by nbdkit straight
from the encrypted chunk store; what a client reads is the disk, the holes are reported as holes
(so a copy skips them), the tenant key file is gone once nbdkit runs, and nbdkit ends with its
last client. The overlay a VM boots from already holds those holes as its own zero clusters. The
stopped-VM path of ``stream_disk`` (``qemu-img rebase``) makes the overlay standalone and
identical. The running-VM path (``block-stream``) is in ``test_backups.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from novacron.agent.protocol import InstantRestoreDisk, StreamDisk
from novacron.backup import instant, vmstore
from novacron.backup.store import file_reader
from novacron.virt.qemu import QemuDriver
from tests.integration.backupkeys import backup_settings

MiB = 1 << 20
CHUNK = 4 * MiB
SIZE = 10 * MiB + 3 * 512  # the last 4 MiB chunk is short


def _qemu_img(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *argv], capture_output=True, text=True)


@pytest.fixture
def served(tmp_path: Path) -> tuple[QemuDriver, dict[str, Any], Path]:
    disk = tmp_path / "source.raw"
    with disk.open("wb") as f:
        f.truncate(SIZE)  # chunk 0 stays zeros: never stored
        f.seek(5 * MiB)
        f.write(os.urandom(MiB + 100))  # chunk 1
        f.seek(SIZE - 1000)
        f.write(os.urandom(1000))  # the short chunk 2
    settings = backup_settings(tmp_path, "tenant-a")
    row = SimpleNamespace(
        id="bkt-test", type="local", config={"path": str(tmp_path / "target")}, chunk_size=CHUNK
    )
    secrets = vmstore.agent_payload(settings, row, "tenant-a")  # type: ignore[arg-type]
    read, size, close = file_reader(disk)
    vmstore.agent_store(secrets).write_snapshot("tenant-a", "snap-1", "vda", read, size)
    close()
    driver = QemuDriver(tmp_path / "inst", tmp_path / "run", bridge=None)
    payload = {"snapshot_id": "snap-1", "size": SIZE, "secrets": secrets}
    return driver, payload, disk


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_nbdkit_serves_the_snapshot_with_its_holes_and_ends_with_its_last_client(
    served: tuple[QemuDriver, dict[str, Any], Path],
) -> None:
    driver, payload, disk = served
    sock = asyncio.run(instant.start_source(driver, "vm-a", InstantRestoreDisk(**payload)))
    idir = driver.instance_dir("vm-a")
    pid = int((idir / "restore-source.pid").read_text())
    assert not (idir / "restore-source.json").exists()  # the tenant key left the disk
    uri = f"nbd+unix:///?socket={sock}"
    mapped = _qemu_img("map", "--output=json", "-f", "raw", uri)
    assert mapped.returncode == 0, mapped.stderr
    assert _gone(pid, 10), "nbdkit did not exit after its last client"
    extents = json.loads(mapped.stdout)
    data = [(e["start"], e["length"]) for e in extents if e["data"]]
    assert data == [(CHUNK, SIZE - CHUNK)], extents  # chunk 0 was never stored: a hole
    assert all(e["zero"] for e in extents if not e["data"])

    sock = asyncio.run(instant.start_source(driver, "vm-a", InstantRestoreDisk(**payload)))
    compared = _qemu_img("compare", "-f", "raw", "-F", "raw", str(disk), f"nbd+unix:///?socket={sock}")
    assert compared.returncode == 0 and "identical" in compared.stdout, compared.stdout + compared.stderr


def test_a_stopped_vms_overlay_is_copied_in_standalone_and_identical(
    served: tuple[QemuDriver, dict[str, Any], Path],
) -> None:
    driver, payload, disk = served
    driver.instance_dir("vm-b").mkdir(parents=True)
    made = asyncio.run(instant.instant_restore_disk(driver, "vm-b", InstantRestoreDisk(**payload), None))
    overlay = driver.disk_path("vm-b")
    info = json.loads(_qemu_img("info", "--output=json", "-U", str(overlay)).stdout)
    assert made["size"] == SIZE and info["backing-filename"].startswith("nbd+unix://"), info
    # the never-stored chunk is a zero cluster of the overlay itself: the copy has nothing to fetch
    assert made["zero_bytes"] == CHUNK, made
    top = _qemu_img("map", "--output=json", "--image-opts", f"driver=qcow2,file.filename={overlay},backing=")
    own = [(e["start"], e["length"]) for e in json.loads(top.stdout) if e["present"] and e["zero"]]
    assert own == [(0, CHUNK)], top.stdout + top.stderr
    pid = int((driver.instance_dir("vm-b") / "restore-source.pid").read_text())

    assert asyncio.run(instant.stream_disk(driver, "vm-b", StreamDisk(**payload), None)) == {"streamed": True}
    info = json.loads(_qemu_img("info", "--output=json", str(overlay)).stdout)
    assert "backing-filename" not in info, info
    assert info["actual-size"] < 4 * MiB  # the never-stored chunk was not written as zeros
    compared = _qemu_img("compare", "-F", "raw", str(overlay), str(disk))
    assert compared.returncode == 0 and "identical" in compared.stdout, compared.stdout + compared.stderr
    assert _gone(pid, 10)
    # a second run finds the disk standalone and does nothing
    assert asyncio.run(instant.stream_disk(driver, "vm-b", StreamDisk(**payload), None)) == {
        "streamed": False
    }
