"""VM boot: ``POST /v1/vms`` to the guest's first console line, against the same QEMU run by hand.

Platform: a real ``novacron-server`` (QEMU driver, TCG on this machine). The clock starts before
``POST /v1/vms`` (flavor tiny, the test guest of guest/out) and stops when ``NOVACRON-GUEST-UP``
appears in ``<state_dir>/instances/<vm_id>/console.log``, polled directly every 5 ms (so API
polling adds nothing). The VM is deleted (and its delete task awaited) after each run.

Peer (raw QEMU): the exact argv the platform executed (the driver's ``launch.json``), in a copy of
the instance dir: fresh qcow2 overlay on the same image, the same seed ISO, and the pidfile, QMP,
serial-socket, console-log and tap names rewritten so nothing collides (QEMU creates the tap itself;
it is not on a bridge). The clock starts at exec of ``qemu-system-x86_64`` and stops at the same
console line. The two are alternated (and which goes first alternates) to spread load effects.

Also printed: the platform's time from POST to its exec of QEMU (``launch.json`` records the wall
time just before exec) and from that exec to the console line, so overhead can be told apart from
a slower boot.

Run: .venv/bin/python bench/bench_boot.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    GUEST_OUT,
    Guest,
    Server,
    default_project,
    import_guest_image,
    kill_pid,
    load,
    machine,
    running_server,
    summary,
)

NEEDLE = b"NOVACRON-GUEST-UP"
POLL_S = 0.005
TIMEOUT_S = 120.0


def wait_console(path: Path, timeout_s: float = TIMEOUT_S) -> float:
    """Poll the console log file until the needle shows; return time.time() when seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if NEEDLE in path.read_bytes():
                return time.time()
        except FileNotFoundError:
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"{NEEDLE.decode()} not in {path} after {timeout_s}s")


def wait_task(client: httpx.Client, task_id: str, timeout_s: float = TIMEOUT_S) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task: dict[str, object] = client.get(f"/v1/tasks/{task_id}").json()
        if task["state"] in ("succeeded", "failed", "cancelled"):
            return task
        time.sleep(0.05)
    raise TimeoutError(f"task {task_id} did not finish in {timeout_s}s")


@dataclass(frozen=True)
class Template:
    """What the raw runs copy from the first platform-launched VM."""

    argv: list[str]
    idir: Path
    run_prefix: str
    tap: str | None
    seed: bytes
    backing: str
    backing_fmt: str
    size: int


def capture_template(srv: Server, vm_id: str) -> Template:
    import hashlib

    idir = srv.state_dir / "instances" / vm_id
    argv = [str(a) for a in json.loads((idir / "launch.json").read_text())["argv"]]
    key = hashlib.sha256(vm_id.encode()).hexdigest()[:16]
    run_prefix = str(srv.state_dir / "run" / key)
    tap = None
    for a in argv:
        if a.startswith("tap,") and "ifname=" in a:
            tap = a.split("ifname=", 1)[1].split(",", 1)[0]
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "--force-share", str(idir / "disk.qcow2")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    backing = info.get("full-backing-filename") or info["backing-filename"]
    return Template(
        argv,
        idir,
        run_prefix,
        tap,
        (idir / "seed.iso").read_bytes(),
        backing,
        info.get("backing-filename-format", "qcow2"),
        int(info["virtual-size"]),
    )


def platform_run(srv: Server, image_id: str, project_id: str, i: int) -> tuple[float, float, str]:
    """(POST -> console line, POST -> QEMU exec) in seconds; the VM id."""
    with srv.client() as c:
        t0 = time.time()
        r = c.post(
            "/v1/vms",
            json={"name": f"boot{i}", "image": image_id, "flavor": "tiny", "project_id": project_id},
        )
        r.raise_for_status()
        body = r.json()
        vm_id = str(body["vm"]["id"])
        idir = srv.state_dir / "instances" / vm_id
        t_up = wait_console(idir / "console.log")
        exec_at = float(json.loads((idir / "launch.json").read_text())["time"])
        task = wait_task(c, str(body["task_id"]))
        if task["state"] != "succeeded":
            raise RuntimeError(f"create task {task['state']}: {task.get('error')}")
    return t_up - t0, exec_at - t0, vm_id


def delete_vm(srv: Server, vm_id: str) -> None:
    with srv.client() as c:
        r = c.delete(f"/v1/vms/{vm_id}")
        r.raise_for_status()
        task = wait_task(c, str(r.json()["task_id"]))
        if task["state"] != "succeeded":
            raise RuntimeError(f"delete task {task['state']}: {task.get('error')}")


def raw_run(tpl: Template, i: int) -> float:
    """Exec of the platform's argv (paths rewritten) -> console line, in seconds."""
    d = Path(tempfile.mkdtemp(prefix="ncraw", dir="/tmp"))
    try:
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                tpl.backing,
                "-F",
                tpl.backing_fmt,
                str(d / "disk.qcow2"),
                str(tpl.size),
            ],
            check=True,
        )
        (d / "seed.iso").write_bytes(tpl.seed)
        new_tap = f"ncraw{i % 1000:03d}x"
        argv = []
        for a in tpl.argv:
            a = a.replace(tpl.run_prefix, str(d / "r")).replace(str(tpl.idir), str(d))
            if tpl.tap:
                a = a.replace(f"ifname={tpl.tap},", f"ifname={new_tap},")
            argv.append(a)
        assert not any(str(tpl.idir) in a or tpl.run_prefix in a for a in argv), argv
        with open(d / "qemu.log", "wb") as err:
            t0 = time.time()
            rc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=d,
                start_new_session=True,
            ).returncode
        if rc != 0:
            raise RuntimeError(f"raw QEMU exited {rc}: {(d / 'qemu.log').read_text()[-2000:]}")
        try:
            t_up = wait_console(d / "console.log")
        finally:
            pid_text = (d / "r.pid").read_text().strip() if (d / "r.pid").exists() else ""
            if pid_text.isdigit():
                kill_pid(int(pid_text))
        return t_up - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="measured runs of each (default 7, min 1)")
    args = parser.parse_args()
    if not (GUEST_OUT / "vmlinux").exists():
        subprocess.run(["python3", str(GUEST_OUT.parent / "build.py")], check=True)
    guest = Guest(
        kernel=GUEST_OUT / "vmlinux",
        initrd=GUEST_OUT / "initrd.img",
        disk=GUEST_OUT / "disk.qcow2",
        cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
    )
    print(f"bench_boot: {machine()}")
    print(f"start: {load()}")
    plat: list[float] = []
    pre_exec: list[float] = []
    raw: list[float] = []
    with running_server() as srv:
        with srv.client() as c:
            image_id = import_guest_image(c, guest, name="bench-guest")
            project_id = default_project(c)
            host = c.get("/v1/hosts").json()["items"][0]
        print(f"host: driver={host['driver']} accelerator={host['accelerator']} cpus={host['cpus']}")
        # warm-up (not counted): page cache, first-use paths; also gives the raw argv template
        _, _, vm_id = platform_run(srv, image_id, project_id, 0)
        tpl = capture_template(srv, vm_id)
        delete_vm(srv, vm_id)
        raw_run(tpl, 0)
        print("argv (platform, from launch.json):", " ".join(tpl.argv))
        for i in range(1, args.runs + 1):
            order = ("platform", "raw") if i % 2 else ("raw", "platform")
            for which in order:
                if which == "platform":
                    total, before_exec, vm_id = platform_run(srv, image_id, project_id, i)
                    delete_vm(srv, vm_id)
                    plat.append(total)
                    pre_exec.append(before_exec)
                    print(f"run {i} platform: {total:6.3f} s (POST->exec {before_exec:5.3f} s)  [{load()}]")
                else:
                    t = raw_run(tpl, i)
                    raw.append(t)
                    print(f"run {i} raw QEMU: {t:6.3f} s  [{load()}]")
    boot_under_platform = [p - e for p, e in zip(plat, pre_exec, strict=True)]
    print()
    print(f"platform  POST -> NOVACRON-GUEST-UP : {summary(plat)}")
    print(f"  of which POST -> QEMU exec         : {summary(pre_exec)}")
    print(f"  of which QEMU exec -> console line : {summary(boot_under_platform)}")
    print(f"raw QEMU  exec -> NOVACRON-GUEST-UP : {summary(raw)}")
    ratio = statistics.median(plat) / statistics.median(raw)
    paired = statistics.median(p / r for p, r in zip(plat, raw, strict=True))
    print(
        f"ratio platform/raw (medians): {ratio:.3f}  ({(ratio - 1) * 100:+.1f}%; goal < +15%: "
        f"{'met' if ratio < 1.15 else 'NOT met'})"
    )
    print(f"median of the per-pair ratios (same load window): {paired:.3f} ({(paired - 1) * 100:+.1f}%)")
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
