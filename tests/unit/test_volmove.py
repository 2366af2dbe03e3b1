"""Which volumes a live migration copies, what a host agrees to remove, and rbd locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from novacron.virt.base import DriverError, VolumeAttachment
from novacron.virt.qemu import QemuDriver
from novacron.virt.volmove import MARKER, choose, drop, volumes_dir
from novacron.virt.volumes import blockdev, format_node, group_id, rbd_location


def _host(tmp_path: Path, name: str) -> QemuDriver:
    return QemuDriver(tmp_path / name / "instances", tmp_path / name / "run", accelerator="tcg")


def test_a_volume_is_kept_only_where_the_destination_really_reaches_it(tmp_path: Path) -> None:
    a, b = _host(tmp_path, "a"), _host(tmp_path, "b")
    in_a = volumes_dir(a) / "vol-1.qcow2"
    shared = tmp_path / "nfs" / "vol-2.qcow2"
    for path in (in_a, shared):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    (shared.parent / MARKER).write_text("store-7")
    source = {str(in_a): {"store": "", "size": 1}, str(shared): {"store": "store-7", "size": 1}}
    # b sees a's file at the same path (one machine) but it is a's host-local directory: copied
    assert choose(b, source) == {str(in_a): "local", str(shared): "shared"}
    # a reaches its own directory; a storage id that differs is another storage: copied
    assert choose(a, {**source, str(shared): {"store": "other", "size": 1}}) == {
        str(in_a): "shared",
        str(shared): "local",
    }


def test_a_host_removes_only_files_of_its_own_volumes_directory(tmp_path: Path) -> None:
    a = _host(tmp_path, "a")
    mine = volumes_dir(a) / "vol-1.qcow2"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"x")
    elsewhere = tmp_path / "pool" / "vol-1.qcow2"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    sneaky = str(volumes_dir(a) / ".." / ".." / "pool" / "vol-1.qcow2")
    assert drop(a, [str(elsewhere), sneaky, str(mine)]) == [str(mine.resolve())]
    assert elsewhere.exists() and not mine.exists()


def test_an_rbd_volume_is_a_raw_node_over_the_rbd_driver_under_its_throttle_filter() -> None:
    vol = VolumeAttachment("vol-9", "rbd", "rbd:rbd/vol-9:conf=/etc/ceph/ceph.conf", "vol-9")
    node = blockdev(vol)
    assert node["driver"] == "throttle" and node["throttle-group"] == group_id("vol-9")
    raw = node["file"]
    assert raw["driver"] == "raw" and raw["node-name"] == format_node("vol-9")
    assert raw["file"] == {"driver": "rbd", "pool": "rbd", "image": "vol-9", "conf": "/etc/ceph/ceph.conf"}
    with pytest.raises(DriverError):
        rbd_location("/var/lib/novacron/volumes/vol-9.qcow2")


def test_the_attached_files_are_read_from_the_command_line_under_their_throttle_nodes(tmp_path: Path) -> None:
    """A volume's -blockdev is throttle -> qcow2 -> file (its I/O limits): the file is found under
    the chain; an rbd volume has none (it is never copied)."""
    import json

    from novacron.virt import volmove
    from novacron.virt.volumes import argv

    a = _host(tmp_path, "a")
    files = VolumeAttachment("vol-f", "file", "/v/vol-f.qcow2", "vol-f", {"iops_total": 50})
    ceph = VolumeAttachment("vol-r", "rbd", "rbd:rbd/vol-r:conf=/etc/ceph.conf", "vol-r")
    (a.instance_dir("vm-1")).mkdir(parents=True)
    launch = {"argv": ["qemu", *argv((files, ceph))]}
    (a.instance_dir("vm-1") / "launch.json").write_text(json.dumps(launch))
    assert volmove._attached_paths(a, "vm-1") == [Path("/v/vol-f.qcow2")]


def test_a_boot_from_volume_vm_mirrors_its_boot_volume_never_a_vda_it_does_not_have() -> None:
    """The source's mirror jobs of a local (shared-nothing) migration: the root disk's ``vda`` job
    only when the VM has a root disk; a boot-from-volume VM's boot volume is a copied volume."""
    from novacron.virt.migration import MIRROR_JOB, MigrationTarget
    from novacron.virt.volumes import node_name

    copied = {"vol-boot": "/b/volumes/vol-boot.qcow2", "vol-data": "/b/volumes/vol-data.qcow2"}
    vols = [f"mirror-{node_name('vol-boot')}", f"mirror-{node_name('vol-data')}"]
    assert MigrationTarget("h", 1, 2, "local", copied).mirror_jobs() == [MIRROR_JOB, *vols]
    boot = MigrationTarget("h", 1, 2, "local", copied, root=False)
    assert not boot.mirrors_root and boot.mirror_jobs() == vols
    # its volumes all reached (shared storage): nothing to mirror, no NBD export either
    assert MigrationTarget("h", 1, 0, "local", {}, root=False).mirror_jobs() == []
    assert MigrationTarget("h", 1, 0, "shared", copied).mirror_jobs() == vols
