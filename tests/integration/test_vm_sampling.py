"""What the QEMU driver samples of a real guest: memory as the guest sees it (virtio-balloon
statistics) against the guest's own /proc/meminfo, guest CPU from the vCPU threads against a busy
loop, and the sample reaching the control plane's metrics feed unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from novacron.virt.base import InstanceSpec, MetricsSample
from novacron.virt.qemu import QemuDriver
from tests.conftest import Guest, Server, default_project, import_guest_image, wait_task
from tests.integration.test_qemu_driver import wait_console

pytestmark = pytest.mark.qemu

RAM_MB = 256


@dataclasses.dataclass(frozen=True)
class Vm:
    driver: QemuDriver
    id: str

    def sample(self) -> MetricsSample:
        s = asyncio.run(self.driver.sample(self.id))
        assert s is not None, "the VM is not running"
        return s

    def reported(self, timeout_s: float = 60.0) -> MetricsSample:
        """The first sample carrying the guest's memory figures (the guest reports every second)."""
        deadline = time.monotonic() + timeout_s
        while (s := self.sample()).guest_mem_total_bytes is None:
            assert time.monotonic() < deadline, f"the guest reported no memory statistics: {s}"
            time.sleep(0.2)
        return s

    def console(self, command: str, timeout_s: float = 30.0) -> str:
        """Run ``command`` in the guest's console shell and return its output."""
        tag = "nc" + secrets.token_hex(4)
        found = re.compile(rf"\n{tag}-begin\r?\n(.*?){tag}-end\r?\n".encode(), re.S)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.driver.console_socket(self.id)))
            s.settimeout(0.5)
            s.sendall(f"\necho {tag}-begin; {command}; echo {tag}-end\n".encode())
            buf, deadline = b"", time.monotonic() + timeout_s
            while not (m := found.search(buf)):
                assert time.monotonic() < deadline, f"{command!r}: no answer: {buf[-2000:]!r}"
                with contextlib.suppress(TimeoutError):
                    buf += s.recv(65536)
        return m.group(1).decode(errors="replace").replace("\r", "").rstrip("\n")

    def vcpu_use(self, seconds: float = 3.0) -> tuple[float, float]:
        """Cores used by the guest's vCPUs and by the whole QEMU process over ``seconds``."""
        first = self.sample()
        time.sleep(seconds)  # a rate needs a window
        last = self.sample()
        span = last.time - first.time
        return (last.vcpu_time_s - first.vcpu_time_s) / span, (last.cpu_time_s - first.cpu_time_s) / span


@pytest.fixture(scope="module")
def vm() -> Iterator[Vm]:
    out = Path(__file__).resolve().parents[2] / "guest" / "out"
    assert shutil.which("qemu-system-x86_64"), "qemu-system-x86_64 is not installed"
    base = Path(tempfile.mkdtemp(prefix="ncs", dir="/tmp"))
    driver = QemuDriver(base / "inst", base / "run", bridge=None)
    spec = InstanceSpec(
        id="vm-" + secrets.token_hex(4),
        name="sampled",
        vcpus=1,
        ram_mb=RAM_MB,
        disk_gb=1,
        image_path=out / "disk.qcow2",
        image_format="qcow2",
        mac="52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3)),
        kernel_path=out / "vmlinux",
        initrd_path=out / "initrd.img",
        kernel_cmdline=(out / "cmdline").read_text().strip(),
    )
    try:
        asyncio.run(driver.launch(spec))
        wait_console(driver.console_log(spec.id), r"^NOVACRON-GUEST-READY")
        yield Vm(driver, spec.id)
    finally:
        asyncio.run(driver.destroy(spec.id))
        shutil.rmtree(base, ignore_errors=True)


def meminfo_bytes(text: str) -> dict[str, int]:
    """/proc/meminfo's ``Name: N kB`` lines, in bytes."""
    return {m[1]: int(m[2]) * 1024 for m in re.finditer(r"^(\w+):\s+(\d+) kB$", text, re.M)}


def test_guest_memory_matches_the_guests_meminfo(vm: Vm) -> None:
    before = vm.reported()
    meminfo = meminfo_bytes(vm.console("cat /proc/meminfo"))
    after = vm.sample()
    print(f"balloon: {after}\nmeminfo: {meminfo}")
    for stat, name in (("MemTotal", "guest_mem_total_bytes"), ("MemAvailable", "guest_mem_available_bytes")):
        # the guest's report is at most a second old: its figure just before or just after is within 10 %
        want, reported = meminfo[stat], (getattr(before, name), getattr(after, name))
        assert any(abs(got - want) <= 0.1 * want for got in reported), (stat, want, reported)
    assert after.guest_mem_free_bytes is not None and 0 < after.guest_mem_free_bytes <= meminfo["MemTotal"]
    assert meminfo["MemTotal"] <= RAM_MB << 20  # the kernel keeps some of the RAM for itself


def test_guest_cpu_follows_a_busy_loop(vm: Vm) -> None:
    idle_vcpu, idle_process = vm.vcpu_use()
    busy = re.search(r"busy=(\d+)", vm.console("sh -c 'while :; do :; done' >/dev/null 2>&1 & echo busy=$!"))
    assert busy, "the busy loop did not start"
    try:
        busy_vcpu, busy_process = vm.vcpu_use()
    finally:
        vm.console(f"kill {busy[1]}")
    calm_vcpu, _ = vm.vcpu_use()
    print(
        f"cores used by the vCPU (process): idle {idle_vcpu:.3f} ({idle_process:.3f}), "
        f"busy {busy_vcpu:.3f} ({busy_process:.3f}), after {calm_vcpu:.3f}"
    )
    assert idle_vcpu < 0.25 and calm_vcpu < 0.25
    # a spinning vCPU gets what the host's other load leaves it of a core (a quarter, on 2 cores
    # shared with 8 test runs): many times its idle use, and most of what its process uses
    assert busy_vcpu > 5 * max(idle_vcpu, calm_vcpu, 0.01)
    assert busy_vcpu > 0.8 * busy_process
    s = vm.sample()
    assert 0 < s.vcpu_time_s < s.cpu_time_s  # the guest's CPU is part of its emulator's


def test_guest_memory_reported_again_after_a_restart(vm: Vm) -> None:
    """A restart is a new QEMU process: the statistics timer is armed again by the next sample."""
    old_pid = vm.driver.pid(vm.id)
    asyncio.run(vm.driver.reboot(vm.id))
    assert vm.driver.pid(vm.id) != old_pid
    s = vm.reported()
    assert s.guest_mem_total_bytes and s.guest_mem_total_bytes <= RAM_MB << 20
    assert 0 <= s.vcpu_time_s < s.cpu_time_s


def test_the_sample_reaches_the_metrics_feed_unchanged(server: Server, guest: Guest) -> None:
    with server.client() as c:
        import_guest_image(c, guest)
        vm = {"name": "fed", "image": "test-guest", "flavor": "tiny", "project_id": default_project(c)}
        r = c.post("/v1/vms", json=vm)
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        ram_mb = c.get(f"/v1/vms/{vm_id}").json()["ram_mb"]
        deadline = time.monotonic() + 90
        while not (
            samples := [
                s for s in c.get(f"/v1/vms/{vm_id}/metrics").json()["samples"] if "guest_mem_total_bytes" in s
            ]
        ):
            assert time.monotonic() < deadline, "no sample with the guest's memory reached the control plane"
            time.sleep(0.5)
        sample = samples[-1]
        # every field of the driver's sample, as the agent reported it (as_dict: plain numbers)
        assert set(sample) == {f.name for f in dataclasses.fields(MetricsSample)}
        assert 0 < sample["guest_mem_available_bytes"] <= sample["guest_mem_total_bytes"] <= ram_mb << 20
        assert 0 <= sample["vcpu_time_s"] < sample["cpu_time_s"]
