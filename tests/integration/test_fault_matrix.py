"""Issue 20's fault matrix on real processes: each fault is injected, then what was lost is checked
(the answer must be: nothing).

One module-wide fleet (all faults share it, in this order): a PostgreSQL server of the module's own
(it is restarted by a test, so not the session's), a ``novacron-server`` on it with no embedded
agent, a real QEMU agent (``node-q``) and a real agent process on the simulated driver (``node-s``).
SCALE SIMULATION, on ``node-s`` only: 100 real QEMU guests under TCG on this 2-core machine would
take minutes and measure QEMU, not the control plane's crash recovery; the creates aimed at
``node-q`` (host labels) are real QEMU processes with their disks, and the orphan checks of
processes and disks are made there. Hosts' capacities are capped through their allocation ratios,
so some creates also end in the "no host" rollback while the fault happens.

1. kill -9 of the server during 100 concurrent creates, then a restart.
2. kill -9 of the QEMU agent with its VMs running, then a restart.
3. PostgreSQL stopped at once (``-m immediate``) and started again in the middle of creates.
4. The state directory of an agent full (a tmpfs with ``size=`` as its state dir): a create fails
   naming the disk space, nothing half-made; once space is freed a create succeeds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.conftest import Guest, Server, destroy_server, import_guest_image, make_server, wait_task
from tests.integration.test_remote_agent import Agent, _wait_host, host_project
from tests.services.postgres import PostgresServer, PostgresUnavailable, start_postgres

CREATES = 100
#: creates aimed at the QEMU host, and how many it has room for (the others: "no host" rollbacks)
REAL_CREATES, REAL_ROOM = 6, 4
#: creates under way while PostgreSQL restarts (on the simulated host)
PG_CREATES = 20


class FleetAgent(Agent):
    """A real agent process with its own driver and environment; its log lives outside its state
    dir (a full state dir must not take the log with it)."""

    def __init__(self, server: Server, name: str, driver: str = "qemu", **env: str) -> None:
        super().__init__(server, name)
        self.driver = driver
        self.env = env
        self.log_path = Path(f"{self.state_dir}.log")

    def start(self, join_token: str | None = None, fingerprint: str | None = None) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "novacron.cli.main", "agent", "--server", self.url, "--name", self.name]
        argv += ["--state-dir", str(self.state_dir), "--driver", self.driver]
        if join_token:
            argv += ["--join-token", join_token, "--ca-fingerprint", fingerprint or ""]
        log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def destroy(self) -> None:
        self.stop()
        subprocess.run(["pkill", "-9", "-f", f"{self.state_dir}/"], check=False)
        subprocess.run(["umount", "-l", str(self.state_dir)], check=False, capture_output=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


@dataclass
class Fleet:
    pg: PostgresServer
    db: Engine
    server: Server
    real: FleetAgent
    sim: FleetAgent
    hosts: dict[str, dict[str, Any]]
    project: str


def _join(c: httpx.Client, agent: FleetAgent, labels: dict[str, str], room: int) -> dict[str, Any]:
    token = c.post("/v1/hosts/join-tokens", json={}).json()
    agent.start(token["join_token"], token["ca_fingerprint"])
    try:
        host = _wait_host(c, agent.name, timeout_s=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nagent:\n{agent.log()[-2000:]}") from None
    r = c.patch(
        f"/v1/hosts/{host['id']}", json={"labels": labels, "cpu_allocation_ratio": room / host["cpus"]}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def fleet(guest: Guest) -> Iterator[Fleet]:
    try:
        pg = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL could not start: {exc}")
    name = f"faults_{secrets.token_hex(4)}"
    url = pg.create_database(name)
    # the suite's PostgreSQL acknowledges commits before their WAL is written (fast, fine for a
    # server that never crashes); this database is crashed, so it commits as a production one does
    with contextlib.closing(psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=name)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
    server = make_server(NOVACRON_EMBEDDED_AGENT="0", NOVACRON_DATABASE_URL=url)
    real = FleetAgent(server, "node-q")
    sim = FleetAgent(server, "node-s", driver="simulated", NOVACRON_NETWORK_BACKEND="none")
    db = create_engine(url, pool_pre_ping=True)
    try:
        server.start(timeout_s=300)  # migrations on PostgreSQL, on a machine other runs load
        with server.client() as c:
            hosts = {
                "real": _join(c, real, {"fault": "real"}, REAL_ROOM),
                "sim": _join(c, sim, {"fault": "sim"}, CREATES - REAL_CREATES + PG_CREATES + 1),
            }
            import_guest_image(c, guest)
            yield Fleet(pg, db, server, real, sim, hosts, host_project(c))
    finally:
        db.dispose()
        for agent in (real, sim):
            agent.destroy()
        destroy_server(server)
        pg.stop()


# -- what exists, seen from every side ----------------------------------------------------------


def _wait(what: str, check: Callable[[], Any], timeout_s: float, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(poll_s)


def _qemus(agent: FleetAgent) -> dict[str, list[int]]:
    """The QEMU processes of ``agent``'s instances, by VM id (from their command lines)."""
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not argv or b"qemu-system" not in argv[0]:
                continue
            marker = f"{agent.state_dir}/instances/".encode()
            for arg in argv:
                if marker in arg:
                    vm_id = arg.split(marker, 1)[1].split(b"/", 1)[0].decode()
                    found.setdefault(vm_id, []).append(int(entry.name))
                    break
    return found


def _instance_dirs(agent: FleetAgent) -> set[str]:
    instances = agent.state_dir / "instances"
    return {p.name for p in instances.iterdir()} if instances.is_dir() else set()


def _all_vms(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.get("/v1/vms", params={"limit": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _unfinished_tasks(f: Fleet) -> int:
    with f.db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM tasks WHERE state NOT IN ('succeeded', 'failed')")
            ).scalar_one()
        )


def _assert_nothing_lost(f: Fleet, c: httpx.Client) -> list[dict[str, Any]]:
    """Every VM running exactly once on its host or its create rolled back (``error``, no host),
    no orphan process, disk, claim, operation or quota charge; returns the VMs."""
    vms = _all_vms(c)
    for vm in vms:
        assert vm["task_state"] is None, vm
        if vm["state"] == "running":
            assert vm["host_id"] in (f.hosts["real"]["id"], f.hosts["sim"]["id"]), vm
        else:
            assert vm["state"] in ("error", "stopped"), vm
            if vm["state"] == "error":
                assert vm["host_id"] is None and vm["error"], vm
    on_real = {v["id"] for v in vms if v["host_id"] == f.hosts["real"]["id"] and v["state"] == "running"}
    qemus = _qemus(f.real)
    assert {vm_id: len(pids) for vm_id, pids in qemus.items()} == dict.fromkeys(on_real, 1)
    stopped_real = {v["id"] for v in vms if v["host_id"] == f.hosts["real"]["id"] and v["state"] == "stopped"}
    assert _instance_dirs(f.real) == on_real | stopped_real  # no disk of a rolled-back create
    for key, host in f.hosts.items():
        row = c.get(f"/v1/hosts/{host['id']}").json()
        mine = [v for v in vms if v["host_id"] == host["id"]]
        assert row["vcpus_used"] == sum(v["vcpus"] for v in mine), (key, row)
        assert row["ram_mb_used"] == sum(v["ram_mb"] for v in mine), (key, row)
    with f.db.connect() as conn:
        open_ops = conn.execute(
            text("SELECT count(*) FROM host_operations WHERE state IN ('pending', 'running')")
        )
        assert open_ops.scalar_one() == 0
    # quota: the project's counters are what exists (a VM in error from a failed create holds none)
    holding = [v for v in vms if v["state"] != "error"]
    bars = {
        b["resource"]: b["used"]
        for b in c.get("/v1/quota", params={"project_id": f.project}).json()["resources"]
    }
    assert bars["vms"] == len(holding) and bars["vcpus"] == sum(v["vcpus"] for v in holding), bars
    drift = c.post("/v1/quota/reconcile", json={"repair": False}).json()
    assert drift["drift"] is False, drift
    return vms


# -- 1. kill -9 of the server during 100 concurrent creates ---------------------------------------


def _create_body(f: Fleet, i: int) -> dict[str, Any]:
    where = "real" if i < REAL_CREATES else "sim"
    return {
        "name": f"fault-{i:03d}",
        "image": "test-guest",
        "flavor": "tiny",
        "project_id": f.project,
        "placement": {"labels": {"fault": where}},
    }


def test_server_killed_during_100_concurrent_creates_loses_nothing(fleet: Fleet) -> None:
    f = fleet
    token = f.server.token()
    keys = [secrets.token_hex(8) for _ in range(CREATES)]
    answers: dict[int, httpx.Response | Exception] = {}
    lock = threading.Lock()

    def create(i: int) -> None:
        try:
            with f.server.client(token) as own:
                r = own.post(
                    "/v1/vms", json=_create_body(f, i), headers={"Idempotency-Key": keys[i]}, timeout=60
                )
        except httpx.HTTPError as exc:  # the server died under it
            r = exc  # type: ignore[assignment]
        with lock:
            answers[i] = r

    with ThreadPoolExecutor(CREATES) as pool:
        for i in range(CREATES):
            pool.submit(create, i)

        # kill when half the creates are in (their tasks under way) and the rest still arriving
        def half_in() -> bool:
            with f.db.connect() as conn:
                made = conn.execute(text("SELECT count(*) FROM tasks WHERE kind = 'vm.create'")).scalar_one()
            return int(made) >= CREATES // 2

        _wait("half of the creates accepted", half_in, 120, poll_s=0.05)
        running_at_kill = _unfinished_tasks(f)
        f.server.kill9()
        killed = time.monotonic()
    lost = sorted(i for i, r in answers.items() if not isinstance(r, httpx.Response))
    print(f"killed with {running_at_kill} tasks unfinished and {len(lost)} answers lost")
    assert running_at_kill > 0

    f.server.start(timeout_s=300)
    with f.server.client(token) as c:
        # a client whose answer was lost retries with its key: the VM is made once, whatever happened
        for i in lost:
            r = c.post("/v1/vms", json=_create_body(f, i), headers={"Idempotency-Key": keys[i]})
            assert r.status_code == 202, r.text
            answers[i] = r
        assert all(isinstance(r, httpx.Response) and r.status_code == 202 for r in answers.values())
        ids = {i: r.json()["vm"]["id"] for i, r in answers.items() if isinstance(r, httpx.Response)}
        tasks = [wait_task(c, r.json()["task_id"], 180) for r in answers.values()]  # type: ignore[union-attr]
        print(f"all creates ended {time.monotonic() - killed:.1f}s after the kill")
        failed = [t for t in tasks if t["state"] == "failed"]
        for t in failed:
            print("rolled back:", t["resource_id"], t["current_step"], str(t["error"])[:300])
        vms = _assert_nothing_lost(f, c)
        assert sorted(v["name"] for v in vms) == [f"fault-{i:03d}" for i in range(CREATES)]
        assert {v["id"] for v in vms} == set(ids.values())
        # each create ran to the end or was rolled back: VMs beyond the QEMU host's room (the kill
        # may roll back a create whose step failed while the server was gone: still nothing lost)
        states = Counter((v["host_id"] == f.hosts["real"]["id"], v["state"]) for v in vms)
        print("outcome:", dict(states))
        assert 1 <= states[(True, "running")] <= REAL_ROOM, states
        assert states[(False, "error")] == len(failed) >= REAL_CREATES - REAL_ROOM, states
        assert states[(False, "running")] + states[(True, "running")] + len(failed) == CREATES, states


# -- 2. kill -9 of an agent with VMs running ------------------------------------------------------


def test_agent_killed_with_vms_running_restarts_none_and_manages_all(fleet: Fleet) -> None:
    f = fleet
    before = _qemus(f.real)
    assert before, "the first test left VMs running on node-q"
    with f.server.client() as c:
        beat = c.get(f"/v1/hosts/{f.hosts['real']['id']}").json()["last_heartbeat"]
        assert f.real.proc is not None
        f.real.proc.kill()
        f.real.proc.wait()
        assert _qemus(f.real) == before  # QEMU outlives its agent
        f.real.start()
        _wait(
            "the restarted agent reports",
            lambda: c.get(f"/v1/hosts/{f.hosts['real']['id']}").json()["last_heartbeat"] != beat,
            60,
        )
        # no VM restarted: the very same QEMU processes, and the platform shows them running
        assert _qemus(f.real) == before
        for vm_id in before:
            assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "running"
        # all managed again: a stop of each works (the processes go), and a start of one
        for vm_id in before:
            r = c.post(f"/v1/vms/{vm_id}/actions/stop", json={"force": True})
            assert r.status_code == 202, r.text
            assert wait_task(c, r.json()["task_id"], 60)["state"] == "succeeded"
            assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "stopped"
        assert _qemus(f.real) == {}
        first = sorted(before)[0]
        r = c.post(f"/v1/vms/{first}/actions/start")
        assert wait_task(c, r.json()["task_id"], 120)["state"] == "succeeded"
        assert len(_qemus(f.real)[first]) == 1
        _assert_nothing_lost(f, c)


# -- 3. PostgreSQL restarted in the middle of creates ---------------------------------------------


def _wait_task_through_outage(c: httpx.Client, task_id: str, timeout_s: float) -> dict[str, Any]:
    """``wait_task``, where an answer while the database is away must be a clear 503 problem."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = c.get(f"/v1/tasks/{task_id}")
        if r.status_code != 200:
            assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", r.text
            assert "database could not be reached" in r.json()["detail"] and r.headers["Retry-After"]
            print("503 while the database was away:", r.json()["title"])
        elif r.json()["state"] in ("succeeded", "failed"):
            return dict(r.json())
        assert time.monotonic() < deadline, f"task {task_id} not done in {timeout_s}s: {r.text}"
        time.sleep(0.2)


def test_postgres_restarted_during_creates_loses_nothing(fleet: Fleet) -> None:
    f = fleet
    n = PG_CREATES
    with f.server.client() as c:
        answers = []
        for i in range(n):
            body = {**_create_body(f, CREATES), "name": f"pg-{i:02d}"}
            r = c.post("/v1/vms", json=body)
            assert r.status_code == 202, r.text
            answers.append(r.json())
        f.pg.restart()  # every session dropped, mid-transaction for some
        restarted = time.monotonic()
        # the API answers again at once (the pool checks a connection before handing it out)
        _wait("API answers", lambda: c.get("/v1/vms", params={"limit": 1}).status_code == 200, 30)
        tasks = [_wait_task_through_outage(c, a["task_id"], 120) for a in answers]
        print(f"creates ended {time.monotonic() - restarted:.1f}s after the restart")
        assert [t["state"] for t in tasks] == ["succeeded"] * n, [t["error"] for t in tasks]
        _assert_nothing_lost(f, c)
        # and a create after it works like any other
        r = c.post("/v1/vms", json={**_create_body(f, CREATES), "name": "pg-after"})
        assert wait_task(c, r.json()["task_id"], 60)["state"] == "succeeded"


# -- 4. the state directory's filesystem full -----------------------------------------------------


def test_full_state_dir_fails_a_create_clearly_and_resumes_once_freed(fleet: Fleet, guest: Guest) -> None:
    f = fleet
    full = FleetAgent(f.server, "node-full")
    # the agent's whole state dir is a small filesystem of its own: images, instances, sockets
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m,mode=0700", "ncfull", str(full.state_dir)], check=True
    )
    try:
        with f.server.client() as c:
            host = _join(c, full, {"fault": "full"}, 2)
            # fill it: what is left cannot hold the image's files
            filler = full.state_dir / "filler"
            subprocess.run(["fallocate", "-l", "90m", str(filler)], check=True)
            body = {**_create_body(f, CREATES), "name": "full-1", "placement": {"labels": {"fault": "full"}}}
            r = c.post("/v1/vms", json=body)
            assert r.status_code == 202, r.text
            vm_id = r.json()["vm"]["id"]
            task = wait_task(c, r.json()["task_id"], 120)
            assert task["state"] == "failed", task
            assert "No space left on device" in str(task["error"]) or "disk space" in str(task["error"]), task
            vm = c.get(f"/v1/vms/{vm_id}").json()
            assert vm["state"] == "error" and vm["host_id"] is None, vm
            # nothing half-made: no instance, no partial image file, no process, no claim
            assert not _qemus(full)
            assert not _instance_dirs(full)
            # an image part fetched before the disk filled is a whole, checked copy; none is partial
            whole = {p.read_bytes() for p in (guest.disk, guest.initrd)}
            for part in (full.state_dir / "images").rglob("*"):
                assert not part.is_file() or part.read_bytes() in whole, part
            row = c.get(f"/v1/hosts/{host['id']}").json()
            assert row["vcpus_used"] == 0 and row["state"] == "up", row
            # space freed: the same host takes a create and runs it
            filler.unlink()
            r = c.post("/v1/vms", json={**body, "name": "full-2"})
            assert wait_task(c, r.json()["task_id"], 180)["state"] == "succeeded"
            assert len(_qemus(full)[r.json()["vm"]["id"]]) == 1
            for vm in (vm_id, r.json()["vm"]["id"]):
                d = c.delete(f"/v1/vms/{vm}")
                assert wait_task(c, d.json()["task_id"], 60)["state"] == "succeeded"
    finally:
        full.destroy()
