"""Live resize on real QEMU guests: one vCPU and 128 MiB hot-added and the root disk grown while
the guest runs, each seen by the guest itself (its sysfs and /proc/meminfo, read on its serial
console); the limits shown on the VM and the refusals of a shrink or of a size over them; the new
size kept by a restart and by a live migration (the destination's command line has the DIMM)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from novacron.virt.base import InstanceSpec, LiveSize
from novacron.virt.qemu import QemuDriver
from tests.conftest import (
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    type_on_console,
    wait_console,
    wait_task,
)
from tests.integration.test_cli import Cli

pytestmark = pytest.mark.qemu

GIB_SECTORS = (1 << 30) // 512
#: what the guest reports: its online CPUs, its memory (kB) and its root disk (512-byte sectors)
LOOK = (
    "$(cat /sys/devices/system/cpu/online):$(sed -n 's/MemTotal: *//p' /proc/meminfo)"
    ":$(cat /sys/block/vda/size)"
)


@dataclass
class Env:
    server: Server
    c: httpx.Client
    vm: str


@pytest.fixture(scope="module")
def env(guest: Guest) -> Iterator[Env]:
    server = make_server()
    server.start(timeout_s=180)
    try:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            import_guest_image(c, guest)
            body = {
                "name": "grow",
                "image": "test-guest",
                "flavor": "small",
                "project_id": default_project(c),
            }
            r = c.post("/v1/vms", json=body)
            assert r.status_code == 202, r.text
            done = wait_task(c, r.json()["task_id"], timeout_s=300)
            assert done["state"] == "succeeded", done["error"]
            vm = r.json()["vm"]["id"]
            wait_console(c, vm, "NOVACRON-GUEST-READY", timeout_s=180)
            yield Env(server, c, vm)
    finally:
        destroy_server(server)


_calls = iter(range(1000, 10**6))


def _look(env: Env) -> tuple[str, int, int]:
    """(online CPUs, MemTotal kB, root disk sectors) as the guest sees them now."""
    n = next(_calls)
    type_on_console(env.server, env.c, env.vm, f"echo SEE={LOOK}=E$(({n}-1+1))E", f"=E{n}E")
    found = re.findall(rf"SEE=(.*?)=E{n}E", wait_console(env.c, env.vm, f"=E{n}E"))
    assert found, f"no answer on the console of {env.vm}"
    cpus, mem, disk = str(found[-1]).strip().split(":")
    return cpus, int(mem.split()[0]), int(disk)


def _until(env: Env, want: object, timeout_s: float = 30) -> tuple[str, int, int]:
    """The guest's view once ``want(view)`` holds (it onlines what it got a moment after the plug)."""
    deadline = time.monotonic() + timeout_s
    while not want(seen := _look(env)):  # type: ignore[operator]
        assert time.monotonic() < deadline, f"the guest still sees {seen}"
        time.sleep(0.5)
    return seen


def _used(c: httpx.Client, project: str, resource: str) -> int:
    node = c.get("/v1/quota", params={"project_id": project}).json()
    return int(next((r["used"] for r in node["resources"] if r["resource"] == resource), 0))


def _settled(c: httpx.Client, vm: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while (got := c.get(f"/v1/vms/{vm}").json())["task_state"] is not None:
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    return dict(got)


def test_live_resize_hot_adds_cpu_memory_and_grows_the_disk(env: Env) -> None:
    c = env.c
    vm = c.get(f"/v1/vms/{env.vm}").json()
    assert vm["vcpus"] == 1 and vm["ram_mb"] == 512 and vm["disk_gb"] == 4
    # the ceiling is shown: within the host's CPUs (4 x 1 at most) and 4 x its memory
    assert 2 <= vm["max_vcpus"] <= 4 and vm["max_ram_mb"] == 2048, vm
    cpus, mem_kb, disk = _look(env)
    assert (cpus, disk) == ("0", 4 * GIB_SECTORS)

    # refusals name the field: a shrink (stop it first), a size over the ceiling, a partial section
    r = c.patch(f"/v1/vms/{env.vm}", json={"ram_mb": 64})
    assert r.status_code == 409 and "ram_mb" in r.text and "stop the VM first" in r.text, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = c.patch(f"/v1/vms/{env.vm}", json={"vcpus": vm["max_vcpus"] + 1})
    assert r.status_code == 422 and "vcpus" in r.text and f"at most {vm['max_vcpus']}" in r.text, r.text
    r = c.patch(f"/v1/vms/{env.vm}", json={"ram_mb": 4096})
    assert r.status_code == 422 and "ram_mb" in r.text and "at most 2048 MiB" in r.text, r.text
    r = c.patch(f"/v1/vms/{env.vm}", json={"ram_mb": 600})
    assert r.status_code == 422 and "multiple of 128" in r.text, r.text

    charged = {k: _used(c, vm["project_id"], k) for k in ("vcpus", "ram_mb", "disk_gb")}
    r = c.patch(f"/v1/vms/{env.vm}", json={"vcpus": 2, "ram_mb": 640, "disk_gb": 5})
    assert r.status_code == 200 and r.json()["task_state"] == "resizing", r.text
    got = _settled(c, env.vm)
    assert (got["vcpus"], got["ram_mb"], got["disk_gb"], got["state"], got["error"]) == (
        2,
        640,
        5,
        "running",
        None,
    )
    cpus, grown_kb, disk = _until(env, lambda v: v[0] == "0-1" and v[1] > mem_kb)
    assert disk == 5 * GIB_SECTORS
    assert 120 * 1024 <= grown_kb - mem_kb <= 128 * 1024, (mem_kb, grown_kb)
    # the project's quota is charged the difference
    grown = {"vcpus": 1, "ram_mb": 128, "disk_gb": 1}
    assert {k: _used(c, vm["project_id"], k) - v for k, v in charged.items()} == grown
    kinds = [e["type"] for e in c.get("/v1/events", params={"types": "vm.*", "limit": 500}).json()["items"]]
    assert "vm.resized" in kinds

    # a restart of its process keeps the new size (the command line has the CPU and the DIMM)
    done = wait_task(c, c.post(f"/v1/vms/{env.vm}/actions/reboot").json()["task_id"])
    assert done["state"] == "succeeded", done["error"]
    deadline = time.monotonic() + 120
    while c.get(f"/v1/vms/{env.vm}/console-log").text.count("NOVACRON-GUEST-READY") < 2:
        assert time.monotonic() < deadline, "no second boot"
        time.sleep(0.3)
    assert _until(env, lambda v: v[0] == "0-1" and v[1] >= grown_kb - 1024)[2] == 5 * GIB_SECTORS


def _console(drv: QemuDriver, iid: str, command: str, answer: str, timeout_s: float = 30) -> str:
    """Type ``command`` on the instance's serial console; the first match of ``answer`` after it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(drv.console_socket(iid)))
        s.settimeout(0.5)
        s.sendall(f"\n{command}\n".encode())
        buf, deadline = b"", time.monotonic() + timeout_s
        while not (m := re.search(answer.encode(), buf)):
            assert time.monotonic() < deadline, buf[-500:]
            with contextlib.suppress(TimeoutError):
                buf += s.recv(4096)
        return m.group(1).decode()


def test_hot_added_cpu_and_memory_move_with_a_live_migration(guest: Guest) -> None:
    """The destination's command line, built from the resized spec, has the CPU and the DIMM."""
    base = Path(tempfile.mkdtemp(prefix="nclr", dir="/tmp"))
    src = QemuDriver(base / "a" / "i", base / "a" / "r", bridge=None)
    dst = QemuDriver(base / "b" / "i", base / "b" / "r", bridge=None)
    iid = "vm-" + secrets.token_hex(4)
    spec = InstanceSpec(
        id=iid, name="mover", vcpus=1, ram_mb=512, disk_gb=1, image_path=guest.disk, image_format="qcow2",
        mac="52:54:00:12:34:57", kernel_path=guest.kernel, initrd_path=guest.initrd,
        kernel_cmdline=guest.cmdline, max_vcpus=2, max_ram_mb=1024,
    )  # fmt: skip
    try:
        asyncio.run(src.launch(spec))
        deadline = time.monotonic() + 120
        while "NOVACRON-GUEST-READY" not in src.console_log(iid).read_text(errors="replace"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        look = "echo MIG=$(cat /sys/devices/system/cpu/online):$(sed -n 's/MemTotal: *//p' /proc/meminfo)=END"
        answer = r"MIG=([0-9,-]+:[0-9]+) kB=END"
        base_kb = int(_console(src, iid, look, answer).split(":")[1])
        asyncio.run(src.resize_live(iid, LiveSize(2, (128,))))
        deadline = time.monotonic() + 30
        while True:  # the guest onlines them a moment after the plug
            cpus, mem = _console(src, iid, look, answer).split(":")
            if cpus == "0-1" and int(mem) - base_kb >= 120 * 1024:
                break
            assert time.monotonic() < deadline, (base_kb, cpus, mem)
            time.sleep(0.5)
        resized = replace(spec, vcpus=2, ram_mb=640, hot_vcpus=1, dimms_mb=(128,))
        target = asyncio.run(dst.migrate_receive(resized))
        asyncio.run(src.migrate_send(iid, target, timeout_s=120))
        asyncio.run(dst.migrate_finish(iid))
        asyncio.run(src.destroy(iid))
        # the guest runs on at the destination with the CPU and the memory it was given
        assert _console(dst, iid, look, answer) == f"{cpus}:{mem}"
        devices = asyncio.run(dst.qmp(iid, "query-memory-devices"))
        assert [d["data"]["id"] for d in devices] == ["hpdimm0"]
    finally:
        for d in (src, dst):
            asyncio.run(d.destroy(iid))


def test_cli_shows_the_limits_and_resizes_the_running_vm(env: Env, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "novacron" / "credentials.json", env.server)
    login = ("login", "--server", env.server.url, "--username", "admin", "--password-stdin")
    cli.ok(*login, stdin=env.server.admin_password + "\n")
    shown = cli.ok("vm", "show", "grow")
    assert re.search(r"max_ram_mb\s+2048", shown.out), shown.out
    before = env.c.get(f"/v1/vms/{env.vm}").json()
    grown = cli.ok("vm", "resize", "grow", "--ram", str(before["ram_mb"] + 128))
    assert re.search(rf"ram_mb\s+{before['ram_mb'] + 128}\b", grown.out), grown.out
    assert "resizing" not in grown.out, grown.out  # it waited for the hot-add
    refused = cli("vm", "resize", "grow", "--ram", "256")
    assert refused.code != 0 and "stop the VM first" in refused.out + refused.err, refused.out + refused.err
