"""The QEMU driver against real QEMU (TCG here): boot, console, QMP control, disks, re-attach.

One guest VM is shared by the tests of the lifecycle section (they run in file order);
boot takes 2-6 s under TCG.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from novacron.virt import netdev
from novacron.virt.base import DriverError, InstanceSpec, InvalidImage, PowerState
from novacron.virt.qemu import QemuDriver

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "guest" / "out"
MARKER = "novacron-marker-" + secrets.token_hex(4)
USER_DATA = f"""#!/bin/sh
echo "script says hello"
printf '{MARKER}\\n' > /dev/vda
sync
"""


@dataclass(frozen=True)
class Env:
    base: Path
    bridge: str
    kernel: Path
    initrd: Path
    disk: Path
    cmdline: str

    def driver(self) -> QemuDriver:
        return QemuDriver(self.base / "inst", self.base / "run", accelerator="auto", bridge=self.bridge)

    def spec(self, instance_id: str, name: str, user_data: str = "", disk_gb: int = 1) -> InstanceSpec:
        mac = "52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3))
        return InstanceSpec(
            id=instance_id,
            name=name,
            vcpus=1,
            ram_mb=256,
            disk_gb=disk_gb,
            image_path=self.disk,
            image_format="qcow2",
            mac=mac,
            kernel_path=self.kernel,
            initrd_path=self.initrd,
            kernel_cmdline=self.cmdline,
            user_data=user_data,
        )


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    for tool in ("qemu-system-x86_64", "qemu-img"):
        assert shutil.which(tool), f"{tool} is not installed (apt-get install qemu-system-x86 qemu-utils)"
    subprocess.run([sys.executable, str(ROOT / "guest" / "build.py")], check=True, capture_output=True)
    base = Path(tempfile.mkdtemp(prefix="ncq", dir="/tmp"))
    bridge = "ncqbr" + secrets.token_hex(3)
    e = Env(
        base,
        bridge,
        OUT / "vmlinux",
        OUT / "initrd.img",
        OUT / "disk.qcow2",
        (OUT / "cmdline").read_text().strip(),
    )
    try:
        yield e
    finally:
        drv = e.driver()
        errors = []
        for iid in drv.list_instances():
            try:
                asyncio.run(drv.destroy(iid))
            except Exception as err:  # keep cleaning; report at the end
                errors.append(f"{iid}: {err}")
        netdev.delete_link(bridge)
        shutil.rmtree(base, ignore_errors=True)
        assert not errors, errors


def wait_console(path: Path, pattern: str, timeout_s: float = 60.0, count: int = 1) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        matches = list(re.finditer(pattern, text, re.M))
        if len(matches) >= count:
            return matches[count - 1]
        if time.monotonic() > deadline:
            tail = text[-1500:]
            raise AssertionError(f"{pattern!r} (x{count}) not on the console after {timeout_s} s:\n{tail}")
        time.sleep(0.05)


def gone(pid: int | None) -> bool:
    """The process has exited (a zombie waiting for PID 1 to reap it counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def read_disk_head(disk: Path, n: int = 4096) -> bytes:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        raw = Path(d) / "disk.raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], check=True)
        with open(raw, "rb") as fh:
            return fh.read(n)


# ---- lifecycle of one shared VM ---------------------------------------------------------------

VM = "vm-" + secrets.token_hex(4)
BOOT: dict[str, float] = {}


def test_boot_prints_hostname_and_user_data(env: Env) -> None:
    drv = env.driver()
    spec = env.spec(VM, "guest-one", USER_DATA)
    asyncio.run(drv.prepare(spec))
    assert drv.disk_path(VM).exists() and drv.seed_path(VM).exists()
    t0 = time.monotonic()
    asyncio.run(drv.launch(spec))
    asyncio.run(drv.launch(spec))  # idempotent: already running
    log = drv.console_log(VM)
    wait_console(log, r"^NOVACRON-GUEST-UP hostname=guest-one\b")
    BOOT["first_line_s"] = time.monotonic() - t0
    wait_console(log, r"^user-data: echo \"script says hello\"$")
    wait_console(log, rf"^user-data: printf '{MARKER}")
    wait_console(log, r"^script says hello$")
    wait_console(log, r"^NOVACRON-GUEST-READY")
    print(f"boot to first console line: {BOOT['first_line_s']:.2f} s")
    assert len(str(drv.qmp_socket(VM))) < 107


def test_observe_and_sample_running(env: Env) -> None:
    drv = env.driver()
    obs = asyncio.run(drv.observe(VM))
    assert obs.power_state == PowerState.RUNNING and obs.status == "running"
    assert obs.pid and Path(f"/proc/{obs.pid}").exists()
    s = asyncio.run(drv.sample(VM))
    assert s is not None
    assert s.cpu_time_s > 0.5 and s.rss_bytes > 50 << 20
    assert 0 < s.vcpu_time_s < s.cpu_time_s  # the guest's own CPU: its vCPU threads
    assert s.disk_write_bytes > 0 and s.disk_write_ops > 0  # the user-data wrote /dev/vda
    tap = drv.tap_name(VM)
    assert tap and Path(f"/sys/class/net/{tap}/master").resolve().name == env.bridge
    # the guest's DHCP discover leaves through its NIC: guest tx (the tap's host-side rx) grows
    deadline = time.monotonic() + 15
    while (s := asyncio.run(drv.sample(VM))) and s.net_tx_bytes == 0:
        assert time.monotonic() < deadline, "no traffic counted from the guest NIC"
        time.sleep(0.2)
    assert VM in drv.list_instances()


def test_pause_and_resume(env: Env) -> None:
    drv = env.driver()
    asyncio.run(drv.pause(VM))
    obs = asyncio.run(drv.observe(VM))
    assert obs.power_state == PowerState.PAUSED and obs.status == "paused"
    cpu1 = asyncio.run(drv.sample(VM))
    time.sleep(0.5)
    cpu2 = asyncio.run(drv.sample(VM))
    assert cpu1 and cpu2 and cpu2.cpu_time_s - cpu1.cpu_time_s < 0.3  # vCPUs stopped
    asyncio.run(drv.resume(VM))
    assert asyncio.run(drv.observe(VM)).power_state == PowerState.RUNNING


def test_serial_console_is_interactive(env: Env) -> None:
    drv = env.driver()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(drv.console_socket(VM)))
        s.settimeout(0.5)
        s.sendall(b"\necho hi-$$\n")
        buf = b""
        deadline = time.monotonic() + 20
        while not re.search(rb"\nhi-\d+", buf):
            assert time.monotonic() < deadline, f"no echo from the console shell: {buf!r}"
            with contextlib.suppress(TimeoutError):
                buf += s.recv(4096)
    # what went through the socket is also in the persistent log
    wait_console(drv.console_log(VM), r"^hi-\d+", 5)


def test_reboot_restarts_the_guest(env: Env) -> None:
    drv = env.driver()
    old_pid = drv.pid(VM)
    asyncio.run(drv.reboot(VM))
    wait_console(drv.console_log(VM), r"^NOVACRON-GUEST-READY", count=2)
    assert asyncio.run(drv.observe(VM)).power_state == PowerState.RUNNING
    assert drv.pid(VM) != old_pid and gone(old_pid)  # a cold restart of the QEMU process


def test_snapshot_of_running_vm_is_refused(env: Env) -> None:
    with pytest.raises(DriverError, match="running"):
        asyncio.run(env.driver().snapshot_disk(VM, env.base / "nope.qcow2"))


def test_reattach_from_new_driver_and_acpi_shutdown(env: Env) -> None:
    """A new driver object (as after an agent restart) finds the VM and powers it off via ACPI."""
    first = env.driver()
    pid = asyncio.run(first.observe(VM)).pid
    del first
    second = env.driver()
    obs = asyncio.run(second.observe(VM))
    assert obs.power_state == PowerState.RUNNING and obs.pid == pid
    t0 = time.monotonic()
    assert asyncio.run(second.shutdown(VM, 30)) is True
    assert time.monotonic() - t0 < 30
    assert pid and gone(pid)
    wait_console(second.console_log(VM), r"NOVACRON-GUEST-POWEROFF", 5)
    assert asyncio.run(second.observe(VM)).power_state == PowerState.SHUTOFF
    assert asyncio.run(second.sample(VM)) is None
    assert asyncio.run(second.shutdown(VM, 1)) is True  # idempotent


def test_guest_write_is_in_the_overlay(env: Env) -> None:
    drv = env.driver()
    head = read_disk_head(drv.disk_path(VM))
    assert head.startswith(MARKER.encode() + b"\n")
    # an overlay has a backing file, so it is never accepted as an image itself
    with pytest.raises(InvalidImage, match="backing"):
        drv.inspect_image(drv.disk_path(VM))


def test_snapshot_disk_of_stopped_vm(env: Env) -> None:
    drv = env.driver()
    dest = env.base / "snap" / "snap.qcow2"
    info = asyncio.run(drv.snapshot_disk(VM, dest))
    assert info.format == "qcow2" and info.virtual_size_bytes == 1 << 30
    out = subprocess.run(["qemu-img", "info", "--output=json", str(dest)], capture_output=True, text=True)
    assert out.returncode == 0 and '"backing-filename"' not in out.stdout
    assert drv.inspect_image(dest).format == "qcow2"  # usable as a new image
    assert read_disk_head(dest).startswith(MARKER.encode())


def test_relaunch_keeps_console_log(env: Env) -> None:
    drv = env.driver()
    asyncio.run(drv.launch(env.spec(VM, "guest-one", USER_DATA)))
    wait_console(drv.console_log(VM), r"^NOVACRON-GUEST-UP hostname=guest-one", count=3)
    asyncio.run(drv.power_off(VM))
    assert asyncio.run(drv.observe(VM)).power_state == PowerState.SHUTOFF


def test_destroy_removes_everything(env: Env) -> None:
    drv = env.driver()
    other = "vm-" + secrets.token_hex(4)
    asyncio.run(drv.launch(env.spec(other, "guest-two")))  # launch prepares on its own
    pid = drv.pid(other)
    assert pid and asyncio.run(drv.observe(other)).power_state == PowerState.RUNNING
    tap = netdev.tap_name(other)
    for iid in (other, VM):
        paths = [drv.instance_dir(iid), drv.qmp_socket(iid), drv.console_socket(iid), drv.pidfile(iid)]
        asyncio.run(drv.destroy(iid))
        asyncio.run(drv.destroy(iid))  # idempotent
        assert not any(p.exists() for p in paths), [p for p in paths if p.exists()]
        assert asyncio.run(drv.observe(iid)).power_state == PowerState.ABSENT
        assert iid not in drv.list_instances()
    assert gone(pid)
    assert not netdev.link_exists(tap)


def test_guest_panic_is_observed_as_crashed(env: Env) -> None:
    drv = env.driver()
    iid = "vm-" + secrets.token_hex(4)
    asyncio.run(drv.launch(env.spec(iid, "panicky", "#!/bin/sh\necho c > /proc/sysrq-trigger\n")))
    deadline = time.monotonic() + 60
    while (obs := asyncio.run(drv.observe(iid))).power_state != PowerState.CRASHED:
        assert time.monotonic() < deadline, f"panic not observed: {obs}"
        time.sleep(0.2)
    assert obs.status == "guest-panicked" and obs.pid
    asyncio.run(drv.destroy(iid))
    assert asyncio.run(drv.observe(iid)).power_state == PowerState.ABSENT


def test_live_migration_between_two_drivers(env: Env) -> None:
    """Two state dirs stand for two hosts; user networking, since both would want one tap name."""
    src = QemuDriver(env.base / "a" / "i", env.base / "a" / "r", accelerator="auto", bridge=None)
    dst = QemuDriver(env.base / "b" / "i", env.base / "b" / "r", accelerator="auto", bridge=None)
    iid = "vm-" + secrets.token_hex(4)
    mark = "migrated-" + secrets.token_hex(4)
    spec = env.spec(iid, "mover", f"#!/bin/sh\nprintf '{mark}\\n' > /dev/vda\nsync\n")
    try:
        asyncio.run(src.launch(spec))
        wait_console(src.console_log(iid), r"^NOVACRON-GUEST-READY")
        target = asyncio.run(dst.migrate_receive(spec))
        assert asyncio.run(dst.observe(iid)).status == "inmigrate"
        stats = asyncio.run(src.migrate_send(iid, target, timeout_s=120))
        assert stats.total_time_ms > 0 and stats.transferred_bytes > 0
        assert asyncio.run(src.observe(iid)).status == "postmigrate"
        asyncio.run(dst.migrate_finish(iid))
        assert asyncio.run(dst.observe(iid)).power_state == PowerState.RUNNING
        asyncio.run(src.destroy(iid))
        # the guest lives on: its shell answers on the destination's console
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(dst.console_socket(iid)))
            s.settimeout(0.5)
            s.sendall(b"\necho moved-$$\n")
            buf, deadline = b"", time.monotonic() + 20
            while not re.search(rb"\nmoved-\d+", buf):
                assert time.monotonic() < deadline, buf
                with contextlib.suppress(TimeoutError):
                    buf += s.recv(4096)
        # the destination's new process reports the guest's memory too (its statistics timer armed)
        deadline = time.monotonic() + 30
        while (sample := asyncio.run(dst.sample(iid))) and sample.guest_mem_total_bytes is None:
            assert time.monotonic() < deadline, f"no guest memory statistics after the migration: {sample}"
            time.sleep(0.2)
        assert asyncio.run(dst.shutdown(iid, 30)) is True
        assert read_disk_head(dst.disk_path(iid)).startswith(mark.encode())  # the disk came along
    finally:
        for d in (src, dst):
            asyncio.run(d.destroy(iid))


# ---- images ----------------------------------------------------------------------------------


def test_invalid_images_are_refused(env: Env) -> None:
    drv = env.driver()
    text = env.base / "notes.txt"
    text.write_text("this is not a disk image\n" * 40)
    with pytest.raises(InvalidImage, match="raw"):
        drv.inspect_image(text)
    vmdk = env.base / "disk.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "16M"], check=True)
    with pytest.raises(InvalidImage, match=r"'vmdk'.*raw or qcow2"):
        drv.inspect_image(vmdk)
    overlay = env.base / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(env.disk), "-F", "qcow2", str(overlay)],
        check=True,
    )
    with pytest.raises(InvalidImage, match="backing"):
        drv.inspect_image(overlay)
    with pytest.raises(InvalidImage):
        drv.inspect_image(env.base / "missing.img")
    raw = env.base / "blank.raw"
    with open(raw, "wb") as fh:
        fh.truncate(8 << 20)
    assert drv.inspect_image(raw).format == "raw"
    assert drv.inspect_image(env.disk).format == "qcow2"
    spec = env.spec("vm-bad", "bad")
    bad = InstanceSpec(**{**spec.__dict__, "image_path": vmdk, "image_format": "vmdk"})
    with pytest.raises(InvalidImage):
        asyncio.run(drv.prepare(bad))
    asyncio.run(drv.destroy("vm-bad"))


def test_launch_failure_is_reported(env: Env) -> None:
    drv = env.driver()
    iid = "vm-" + secrets.token_hex(4)
    bad = InstanceSpec(**{**env.spec(iid, "nokernel").__dict__, "kernel_path": env.base / "no-such-kernel"})
    with pytest.raises(DriverError, match="QEMU failed to start"):
        asyncio.run(drv.launch(bad))
    assert asyncio.run(drv.observe(iid)).power_state == PowerState.SHUTOFF
    asyncio.run(drv.destroy(iid))


def test_host_facts(env: Env) -> None:
    facts = env.driver().host_facts()
    assert facts.cpus == os.cpu_count()
    assert facts.ram_mb > 256 and facts.disk_gb > 0
    assert facts.accelerator in ("kvm", "tcg")
    if not facts.cpu_flags & {"vmx", "svm"}:
        assert facts.accelerator == "tcg"
