"""SR-IOV (direct) and DPDK (vhost-user) NICs: the host traits, the virtual functions handed out and
the QEMU command line. Generated configuration only: neither an SR-IOV NIC nor a DPDK switch exists
on these machines, so nothing boots with it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from novacron.virt.base import DriverError, InstanceSpec, Nic
from novacron.virt.nics import assign_vfs, memory_args, nic_args
from novacron.virt.qemu import QemuDriver

VFS = ("0000:3b:02.1", "0000:3b:02.2")


def nic(vnic_type: str, port: str = "p-0123456789abcdef", pci: str = "") -> Nic:
    return Nic(port_id=port, mac="52:54:00:12:34:56", device="tap0123", network_id="n", vnic_type=vnic_type,
               pci_address=pci)  # fmt: skip


def spec(vm_id: str, *nics: Nic) -> InstanceSpec:
    return InstanceSpec(id=vm_id, name=vm_id, vcpus=1, ram_mb=256, disk_gb=1, image_path=Path("/img"),
                        image_format="qcow2", mac="52:54:00:aa:bb:cc", nics=nics)  # fmt: skip


@pytest.fixture
def driver(tmp_path: Path) -> QemuDriver:
    return QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg", sriov_vfs=VFS,
                      vhost_user_dir=tmp_path / "vhu")  # fmt: skip


@pytest.fixture
def running(driver: QemuDriver) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Stand-ins for running QEMUs: processes whose command line names their instance's pidfile."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def start(driver: QemuDriver, s: InstanceSpec, running: list[subprocess.Popen[bytes]]) -> list[str]:
    argv = driver._launch_argv(s)
    driver.instance_dir(s.id).mkdir(parents=True)
    (driver.instance_dir(s.id) / "launch.json").write_text(json.dumps({"argv": argv}))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(driver.pidfile(s.id))])
    running.append(proc)
    driver.pidfile(s.id).write_text(str(proc.pid))
    while driver.pid(s.id) is None:  # until the child has exec'd into its command line
        time.sleep(0.01)
    return argv


def test_a_host_reports_the_nic_hardware_it_was_given(driver: QemuDriver, tmp_path: Path) -> None:
    assert driver.host_facts().nic_traits == ("sriov", "dpdk")
    assert QemuDriver(tmp_path / "j", tmp_path / "s", accelerator="tcg").host_facts().nic_traits == ()


def test_normal_nic_is_a_tap_with_virtio_net() -> None:
    assert nic_args(nic("normal"), 1) == [
        "-netdev", "tap,id=net1,ifname=tap0123,script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=net1,id=net1-dev,mac=52:54:00:12:34:56",
    ]  # fmt: skip
    assert memory_args([nic("normal")], 512) == []


def test_direct_nics_get_distinct_free_virtual_functions_through_vfio(
    driver: QemuDriver, running: list[subprocess.Popen[bytes]]
) -> None:
    first = start(driver, spec("vm-a", nic("direct", "p-a"), nic("normal", "p-b")), running)
    assert "vfio-pci,host=0000:3b:02.1,id=net0-dev" in first
    assert first[first.index("-netdev") + 1].startswith("tap,id=net1,ifname=tap0123")
    second = start(driver, spec("vm-b", nic("direct", "p-c")), running)
    assert "vfio-pci,host=0000:3b:02.2,id=net0-dev" in second
    with pytest.raises(DriverError, match="no free SR-IOV virtual function"):
        driver._launch_argv(spec("vm-c", nic("direct", "p-d")))
    gone = running.pop(0)  # vm-a's QEMU ends: its virtual function is free again
    gone.kill()
    gone.wait()
    assert driver._free_vfs() == ["0000:3b:02.1"]
    assert "vfio-pci,host=0000:3b:02.1,id=net0-dev" in start(
        driver, spec("vm-c", nic("direct", "p-d")), running
    )


def test_vhost_user_nic_needs_the_switch_socket_and_shared_guest_memory(driver: QemuDriver) -> None:
    argv = driver._argv(spec("vm-d", nic("vhost-user")))
    sock = driver.vhost_user_dir / "vhup-0123456789.sock"  # type: ignore[operator]
    assert f"socket,id=chr0,path={sock},server=off,reconnect=1" in argv
    assert "vhost-user,id=net0,chardev=chr0,vhostforce=on" in argv
    assert "virtio-net-pci,netdev=net0,id=net0-dev,mac=52:54:00:12:34:56" in argv
    assert "memory-backend-file,id=mem0,size=256M,mem-path=/dev/hugepages,share=on" in argv
    assert argv[argv.index("-numa") + 1] == "node,memdev=mem0"


def test_a_host_without_the_hardware_refuses_with_the_reason(tmp_path: Path) -> None:
    plain = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg")
    with pytest.raises(DriverError, match="NOVACRON_VHOST_USER_DIR is not set"):
        plain._argv(spec("vm-e", nic("vhost-user")))
    with pytest.raises(DriverError, match="no free SR-IOV virtual function"):
        assign_vfs([nic("direct")], plain._free_vfs())
