"""Live migration of an idle 256 MiB guest: through the platform against the same move by hand.

REAL PARTS: QEMU (TCG on machines without KVM) and the test guest of guest/ (Debian kernel,
busybox initramfs), idle after boot.

Platform: a real ``novacron-server`` (its embedded agent is host A) and a second agent process
(host B) joined with a join token, both on this machine. A VM of a 1 vCPU/256 MiB flavor is created
through the API and moved back and forth with ``POST /v1/vms/{id}/migrate`` ``--runs`` times; each
run is timed from the POST to the task seen ``succeeded`` (polled every 20 ms), and QEMU's own
``downtime`` and ``total-time`` come from the task result, with the guest's real pause
(``guest_pause_ms``: source stopped -> destination running; QEMU's downtime ends at the source, before
the destination is told to run). Two storage modes:
  local   disk mirrored over NBD (drive-mirror sync=top) while RAM moves
  shared  both hosts on one NOVACRON_SHARED_STORAGE_DIR: the destination opens the same disk

By hand: two QEMU processes started with the same command line as the platform's (the QEMU driver
builds it), then only raw QMP: for local, nbd-server-start/block-export-add on the destination,
drive-mirror on the source until ready, migrate over tcp, block-job-cancel, cont; for shared,
migrate and cont. Timed from the first QMP command to the destination running.

Printed: per mode, downtime, guest pause and total time (median/min/max) of both, the platform's
time per task step, and the platform/by-hand ratios. Goal: downtime < 50 ms.

Both sides run with the same downtime-limit (``--max-downtime``, default the platform's 30 ms).

Run: .venv/bin/python bench/bench_migration.py [--runs 5] [--modes local,shared] [--max-downtime MS]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

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
)

from novacron.compute.migration import DEFAULT_MAX_DOWNTIME_MS
from novacron.virt.base import InstanceSpec
from novacron.virt.cidata import render_meta_data, write_cidata_iso
from novacron.virt.qemu import QemuDriver
from novacron.virt.qmp import qmp_call

GOAL_DOWNTIME_MS = 50.0
INCOMING = ["-incoming", "defer", "-S"]


# ---------------------------------------------------------------- the platform


def _kill_qemus(run_dir: Path) -> None:
    for pidfile in run_dir.glob("*.pid") if run_dir.is_dir() else []:
        text = pidfile.read_text().strip()
        if text.isdigit() and str(pidfile).encode() in Path(f"/proc/{text}/cmdline").read_bytes():
            kill_pid(int(text))


@contextmanager
def platform(shared: Path | None) -> Iterator[tuple[Server, httpx.Client]]:
    env = {"NOVACRON_SHARED_STORAGE_DIR": str(shared)} if shared else {}
    with running_server(**env) as srv, srv.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        state = srv.state_dir / "agent-b"
        argv = [
            sys.executable,
            "-m",
            "novacron.cli.main",
            "agent",
            "--server",
            f"https://127.0.0.1:{srv.env['NOVACRON_AGENT_PORT']}",
            "--name",
            "bench-b",
            "--state-dir",
            str(state),
            "--join-token",
            token["join_token"],
            "--ca-fingerprint",
            token["ca_fingerprint"],
        ]
        log = (srv.state_dir / "agent-b.log").open("ab")
        agent = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**srv.env, **env})
        try:
            deadline = time.monotonic() + 60
            while sum(h["state"] == "up" for h in c.get("/v1/hosts").json()["items"]) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"agent B did not come up: {(srv.state_dir / 'agent-b.log').read_text()}"
                    )
                time.sleep(0.3)
            yield srv, c
        finally:
            kill_pid(agent.pid)
            _kill_qemus(state / "run")


def _wait_task(c: httpx.Client, task_id: str, timeout_s: float = 600, poll_s: float = 0.5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        task: dict[str, Any] = c.get(f"/v1/tasks/{task_id}").json()
        if task["state"] in ("succeeded", "failed", "cancelled"):
            if task["state"] != "succeeded":
                raise RuntimeError(f"task {task_id} {task['state']}: {task['error']}")
            return task
        if time.monotonic() > deadline:
            raise RuntimeError(f"task {task_id} still {task['state']}")
        time.sleep(poll_s)


def via_platform(guest: Guest, mode: str, runs: int, downtime_ms: int | None) -> list[dict[str, float]]:
    shared = Path(tempfile.mkdtemp(prefix="ncbs", dir="/tmp")) if mode == "shared" else None
    try:
        with platform(shared) as (_srv, c):
            import_guest_image(c, guest, name="bench-guest")
            c.post("/v1/flavors", json={"name": "bench256", "vcpus": 1, "ram_mb": 256, "disk_gb": 1})
            r = c.post(
                "/v1/vms",
                json={
                    "name": "mig",
                    "image": "bench-guest",
                    "flavor": "bench256",
                    "project_id": default_project(c),
                },
            )
            vm_id = r.json()["vm"]["id"]
            _wait_task(c, r.json()["task_id"])
            deadline = time.monotonic() + 180
            while "NOVACRON-GUEST-READY" not in c.get(f"/v1/vms/{vm_id}/console-log").text:
                if time.monotonic() > deadline:
                    raise RuntimeError("the guest did not boot")
                time.sleep(0.5)
            time.sleep(3)  # idle
            body: dict[str, Any] = {"storage": mode}
            if downtime_ms is not None:
                body["max_downtime_ms"] = downtime_ms
            # a warm-up round trip: the first move to a host makes its agent fetch the image
            for _ in range(2):
                _wait_task(c, c.post(f"/v1/vms/{vm_id}/migrate", json=body).json()["task_id"])
            out = []
            last_seq = 0
            for _ in range(runs):
                started = time.monotonic()
                r = c.post(f"/v1/vms/{vm_id}/migrate", json=body)
                task = _wait_task(c, r.json()["task_id"], poll_s=0.02)
                wall_ms = (time.monotonic() - started) * 1000
                res = task["result"]
                row = {
                    "downtime_ms": res["downtime_ms"],
                    "guest_pause_ms": res["guest_pause_ms"],
                    "qemu_total_ms": res["total_time_ms"],
                    "wall_ms": wall_ms,
                }
                last_seq, steps = _step_times(c, task["id"], last_seq)
                out.append({**row, **steps})
                print(
                    f"  platform {mode}: " + ", ".join(f"{k} {v:.0f}" for k, v in out[-1].items()), flush=True
                )
                time.sleep(2)
            return out
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)


def _step_times(c: httpx.Client, task_id: str, after: int) -> tuple[int, dict[str, float]]:
    """Where the platform's time went: each step's duration, from the task's events."""
    items = c.get("/v1/events", params={"after": after, "types": "task.*", "limit": 1000}).json()["items"]
    mine = [e for e in items if e["resource_id"] == task_id]
    steps: dict[str, float] = {}
    previous = next((e["time"] for e in mine if e["type"] == "task.started"), None)
    for e in mine:
        if e["type"] == "task.progress" and previous is not None:
            steps[f"step {e['data']['step']} ms"] = (_ts(e["time"]) - _ts(previous)) * 1000
            previous = e["time"]
    return max([after, *(e["seq"] for e in items)]), steps


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- by hand over QMP


async def _wait_status(drv: QemuDriver, iid: str, wanted: tuple[str, ...], timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = str((await qmp_call(drv.qmp_socket(iid), "query-status")).get("status"))
        if status in wanted:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"{iid} stays {status}")
        await asyncio.sleep(0.02)


async def _one_by_hand(
    src: QemuDriver, dst: QemuDriver, spec: InstanceSpec, mode: str, downtime_ms: int | None
) -> dict[str, float]:
    iid = spec.id
    if mode == "shared":  # the destination's own seed; the disk is the very same file
        dst.instance_dir(iid).mkdir(parents=True, exist_ok=True)
        meta = render_meta_data({"instance-id": iid}, iid, spec.name)
        await asyncio.to_thread(write_cidata_iso, dst.seed_path(iid), meta, "", None)
    else:
        await dst.prepare(spec)
    await dst._start(iid, dst._argv(spec) + INCOMING)
    s, d = src.qmp_socket(iid), dst.qmp_socket(iid)
    ram_port = _port()
    started = time.monotonic()
    if mode == "local":
        nbd_port = _port()
        await qmp_call(
            d,
            "nbd-server-start",
            {"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(nbd_port)}}},
        )
        await qmp_call(
            d,
            "block-export-add",
            {"type": "nbd", "id": "vda-disk", "node-name": "vda-disk", "writable": True},
        )
    await qmp_call(d, "migrate-incoming", {"uri": f"tcp:127.0.0.1:{ram_port}"})
    if mode == "local":
        await qmp_call(
            s,
            "drive-mirror",
            {
                "job-id": "m",
                "device": "vda",
                "target": f"nbd://127.0.0.1:{nbd_port}/vda-disk",
                "format": "raw",
                "sync": "top",
                "mode": "existing",
            },
        )
        while not all(j.get("ready") for j in await qmp_call(s, "query-block-jobs")):
            await asyncio.sleep(0.02)
    params: dict[str, Any] = {"max-bandwidth": 1 << 30}
    if downtime_ms is not None:
        params["downtime-limit"] = downtime_ms
    await qmp_call(s, "migrate-set-parameters", params)
    asked_at = time.time()
    await qmp_call(s, "migrate", {"uri": f"tcp:127.0.0.1:{ram_port}"})
    while (info := await qmp_call(s, "query-migrate")).get("status") != "completed":
        if info.get("status") in ("failed", "cancelled"):
            raise RuntimeError(f"migration {info}")
        await asyncio.sleep(0.02)
    # as the platform reads it: QEMU's own times from the start, the earliest the guest stopped
    stopped_at = asked_at + (info["total-time"] - info["downtime"]) / 1000
    if mode == "local":
        await qmp_call(s, "block-job-cancel", {"device": "m"})
        while await qmp_call(s, "query-block-jobs"):
            await asyncio.sleep(0.02)
    await _wait_status(dst, iid, ("paused", "running"))
    if mode == "local":
        await qmp_call(d, "block-export-del", {"id": "vda-disk"})
        await qmp_call(d, "nbd-server-stop")
    await qmp_call(d, "cont")
    pause_ms = (time.time() - stopped_at) * 1000
    wall_ms = (time.monotonic() - started) * 1000
    if mode == "shared":
        await src.forget(iid)  # the disk stays: the destination runs on it
    else:
        await src.destroy(iid)
    return {
        "downtime_ms": info["downtime"],
        "guest_pause_ms": pause_ms,
        "qemu_total_ms": info["total-time"],
        "wall_ms": wall_ms,
    }


def _port() -> int:
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return int(so.getsockname()[1])


def by_hand(guest: Guest, mode: str, runs: int, downtime_ms: int | None) -> list[dict[str, float]]:
    base = Path(tempfile.mkdtemp(prefix="ncbh", dir="/tmp"))
    shared = base / "shared" if mode == "shared" else None
    a = QemuDriver(base / "a" / "i", base / "a" / "r", bridge=None, shared_dir=shared)
    b = QemuDriver(base / "b" / "i", base / "b" / "r", bridge=None, shared_dir=shared)
    iid = "vm-" + secrets.token_hex(4)
    spec = InstanceSpec(
        id=iid,
        name="byhand",
        vcpus=1,
        ram_mb=256,
        disk_gb=1,
        image_path=guest.disk,
        image_format="qcow2",
        mac="52:54:00:12:34:56",
        kernel_path=guest.kernel,
        initrd_path=guest.initrd,
        kernel_cmdline=guest.cmdline,
    )
    try:
        asyncio.run(a.launch(spec))
        deadline = time.monotonic() + 180
        while "NOVACRON-GUEST-READY" not in a.console_log(iid).read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("the guest did not boot")
            time.sleep(0.5)
        time.sleep(3)
        out = []
        src, dst = a, b
        for _ in range(runs):
            out.append(asyncio.run(_one_by_hand(src, dst, spec, mode, downtime_ms)))
            print(f"  by hand {mode}: {out[-1]}", flush=True)
            src, dst = dst, src
            time.sleep(2)
        return out
    finally:
        for drv in (a, b):
            asyncio.run(drv.destroy(iid))
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- report


def _stats(rows: list[dict[str, float]], key: str) -> str:
    xs = [r[key] for r in rows]
    return f"median {statistics.median(xs):8.1f} ms  min {min(xs):8.1f}  max {max(xs):8.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", default="local,shared")
    ap.add_argument(
        "--max-downtime",
        type=int,
        default=DEFAULT_MAX_DOWNTIME_MS,
        help=f"downtime-limit on both sides, ms (default {DEFAULT_MAX_DOWNTIME_MS}, the platform's)",
    )
    args = ap.parse_args()
    if not (GUEST_OUT / "vmlinux").exists():
        subprocess.run([sys.executable, str(GUEST_OUT.parent / "build.py")], check=True)
    guest = Guest(
        kernel=GUEST_OUT / "vmlinux",
        initrd=GUEST_OUT / "initrd.img",
        disk=GUEST_OUT / "disk.qcow2",
        cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
    )
    print(machine())
    print(f"before: {load()}")
    results = {}
    for mode in args.modes.split(","):
        results[mode] = (
            by_hand(guest, mode, args.runs, args.max_downtime),
            via_platform(guest, mode, args.runs, args.max_downtime),
        )
    print(f"after: {load()}")
    print(
        f"\nidle 1 vCPU / 256 MiB guest, {args.runs} runs per row, downtime-limit {args.max_downtime} ms, "
        f"goal downtime < {GOAL_DOWNTIME_MS:.0f} ms"
    )
    for mode, (hand, plat) in results.items():
        print(f"\n[{mode}]")
        for name, rows in (("by hand ", hand), ("platform", plat)):
            print(f"  {name} downtime    {_stats(rows, 'downtime_ms')}")
            print(f"  {name} guest pause {_stats(rows, 'guest_pause_ms')}")
            print(f"  {name} qemu total  {_stats(rows, 'qemu_total_ms')}")
            print(f"  {name} wall        {_stats(rows, 'wall_ms')}")
        for key in [k for k in plat[-1] if k.startswith("step ")]:
            xs = [r[key] for r in plat if key in r]
            print(f"  platform {key[5:-3]:<15} median {statistics.median(xs):8.1f} ms")
        for key in ("downtime_ms", "guest_pause_ms", "qemu_total_ms", "wall_ms"):
            ratio = statistics.median(r[key] for r in plat) / max(
                statistics.median(r[key] for r in hand), 1e-9
            )
            print(f"  ratio platform/by hand, median {key}: {ratio:.2f}")
        worst = max(r["downtime_ms"] for r in plat)
        print(
            f"  goal downtime < {GOAL_DOWNTIME_MS:.0f} ms: {'met' if worst < GOAL_DOWNTIME_MS else 'NOT met'}"
            f" (platform worst {worst:.0f} ms)"
        )


if __name__ == "__main__":
    main()
