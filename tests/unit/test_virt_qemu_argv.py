"""The QEMU command line the driver builds (no QEMU started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from novacron.virt.base import DriverError, InstanceSpec, Nic
from novacron.virt.netdev import argv_taps
from novacron.virt.qemu import QemuDriver


def spec(**kw: object) -> InstanceSpec:
    base: dict[str, object] = dict(
        id="0f8c2d1e-1111-4222-8333-444455556666",
        name="web 1",
        vcpus=2,
        ram_mb=512,
        disk_gb=4,
        image_path=Path("/img/base.qcow2"),
        image_format="qcow2",
        mac="52:54:00:aa:bb:cc",
    )
    base.update(kw)
    return InstanceSpec(**base)  # type: ignore[arg-type]


def test_argv_has_the_essentials(tmp_path: Path) -> None:
    d = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg", bridge="novacron0")
    s = spec(kernel_path=Path("/k/vmlinux"), initrd_path=Path("/k/initrd"), kernel_cmdline="console=ttyS0")
    argv = d._argv(s)
    line = " ".join(argv)
    assert "-daemonize" in argv and "-no-reboot" in argv and "-nodefaults" in argv
    assert "pc,accel=tcg" in line and "-cpu max" in line and "-smp 2" in line and "-m 512" in line
    assert f"-pidfile {d.pidfile(s.id)}" in line
    assert f"unix:{d.qmp_socket(s.id)},server=on,wait=off" in line
    assert f"logfile={d.console_log(s.id)},logappend=on" in line
    assert "id=vda,node-name=vda-disk,format=qcow2" in line and "id=vdb,format=raw,readonly=on" in line
    assert f"ifname={d.tap_name(s.id)}" in line and "mac=52:54:00:aa:bb:cc" in line
    assert "-kernel /k/vmlinux -initrd /k/initrd -append console=ttyS0" in line
    assert "web-1" in line  # the name is sanitised for -name
    # the balloon (guest memory statistics), then the VGA come last: the others keep their PCI slots
    devices = [argv[n + 1] for n, arg in enumerate(argv) if arg == "-device"]
    assert devices[-1] == "VGA,id=vga0" and devices[-2] == "virtio-balloon-pci,id=balloon0"
    assert devices[-3].startswith("virtio-net-pci")
    # the screen's VNC server: a unix socket in the private run dir, never a TCP port
    assert argv[argv.index("-vnc") + 1] == f"unix:{d.vnc_socket(s.id)}"
    assert d.vnc_socket(s.id).parent == d.run_dir
    assert argv.count("-vnc") == 1 and "-display none" in line
    for p in (d.pidfile(s.id), d.qmp_socket(s.id), d.console_socket(s.id), d.vnc_socket(s.id)):
        assert len(str(p)) < 107


def test_without_bridge_uses_user_networking(tmp_path: Path) -> None:
    d = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg", bridge=None)
    argv = d._argv(spec())
    assert "user,id=net0" in argv and "-kernel" not in argv
    assert d.tap_name("x") is None


def test_rejects_bad_ids_and_long_run_dirs(tmp_path: Path) -> None:
    d = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg")
    with pytest.raises(DriverError):
        d.instance_dir("../etc")
    with pytest.raises(DriverError, match="too long"):
        QemuDriver(tmp_path / "i", Path("/tmp/" + "x" * 100), accelerator="tcg")


def test_commas_in_paths_are_escaped(tmp_path: Path) -> None:
    d = QemuDriver(tmp_path / "a,b" / "i", tmp_path / "r", accelerator="tcg")
    line = " ".join(d._argv(spec()))
    assert "a,,b/i/" in line and "a,b/i/" not in line.replace("a,,b", "")


def test_one_tap_nic_per_port_instead_of_the_default(tmp_path: Path) -> None:
    d = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg", bridge="novacron0")
    nics = (
        Nic("port-1", "52:54:00:00:00:01", "tp000001", "net-1"),
        Nic("port-2", "52:54:00:00:00:02", "tp000002", "net-2"),
    )
    argv = d._argv(spec(nics=nics))
    line = " ".join(argv)
    assert "tap,id=net0,ifname=tp000001,script=no,downscript=no" in line
    assert "virtio-net-pci,netdev=net0,id=net0-dev,mac=52:54:00:00:00:01" in line
    assert "tap,id=net1,ifname=tp000002" in line and "mac=52:54:00:00:00:02" in line
    assert f"ifname={d.tap_name(spec().id)}" not in line  # no NIC on the default bridge
    assert argv_taps(argv) == ["tp000001", "tp000002"]


def test_a_port_type_this_host_cannot_give_is_refused(tmp_path: Path) -> None:
    d = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg", bridge="novacron0")
    with pytest.raises(DriverError, match="vnic_type direct"):
        d._argv(spec(nics=(Nic("port-1", "52:54:00:00:00:01", "tp000001", "net-1", "direct"),)))


def test_forget_runs_inside_an_event_loop(tmp_path: Path) -> None:
    # pyroute2 runs its own event loop: called on the agent's loop thread it raised "This event
    # loop is already running", and every delete of a VM on a remote agent failed
    import asyncio

    d = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg", bridge="novacron0")
    asyncio.run(d.forget("vm-that-never-ran"))
    assert not d.pidfile("vm-that-never-ran").exists()


def test_an_isolated_vm_gets_no_nic_at_all(tmp_path: Path) -> None:
    """A DR dry run's VM: neither the default bridge's tap nor user networking."""
    for bridge in ("novacron0", None):
        d = QemuDriver(tmp_path / "i", tmp_path / "r", accelerator="tcg", bridge=bridge)
        line = " ".join(d._argv(spec(isolated=True)))
        assert "-netdev" not in line and "virtio-net" not in line and "-nodefaults" in line
