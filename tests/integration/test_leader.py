"""Replicas on one PostgreSQL: the task runner runs on the leader only; kill it and another takes over.

Two server replicas (no embedded agent, their own state dirs and ports, one shared image store as a
cluster has on shared storage) and one remote agent host joined through replica B. Replica A starts
first and leads. A create is held in flight (the agent is paused with SIGSTOP, so the task waits at
its ``prepare`` step on A), A is killed with SIGKILL, and B must take the task queue over within
15 s and finish the create, with the VM running exactly once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    make_server,
    short_tmpdir,
    wait_task,
)
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

TAKEOVER_LIMIT_S = 15.0


def _leader(server: Server) -> bool | None:
    try:
        return bool(httpx.get(f"{server.url}/healthz", timeout=1).json()["leader"])
    except httpx.HTTPError:
        return None


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout_s}s"
        time.sleep(0.1)


def _qemu_processes(vm_id: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and b"qemu-system" in argv[0] and any(vm_id.encode() in a for a in argv):
                pids.append(int(entry.name))
    return pids


@pytest.fixture
def replicas(postgres: Any) -> Iterator[tuple[Server, Server, Agent, str]]:
    url = postgres.create_database("leader_takeover")
    images = short_tmpdir("nci")
    env = {
        "NOVACRON_EMBEDDED_AGENT": "0",
        "NOVACRON_DATABASE_URL": url,
        "NOVACRON_IMAGES_DIR": str(images),
        # replicas open the same sealed secrets (signing keys, CA key): they share the KEKs
        "NOVACRON_KEK_DIR": str(short_tmpdir("nck")),
    }
    a, b = make_server(**env), make_server(**env)
    agent: Agent | None = None
    try:
        a.start()
        _wait(lambda: _leader(a), 15, "replica A leading")
        b.start()
        agent = Agent(b, "node-l")
        yield a, b, agent, url
    finally:
        if agent is not None:
            if agent.proc is not None and agent.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.proc.pid, signal.SIGCONT)
            agent.stop()
            subprocess.run(["pkill", "-9", "-f", f"{agent.state_dir}/"], check=False)
            shutil.rmtree(agent.state_dir, ignore_errors=True)
        destroy_server(a)
        destroy_server(b)
        shutil.rmtree(images, ignore_errors=True)


def test_kill_the_leader_replica_and_another_finishes_the_task_in_flight(
    replicas: tuple[Server, Server, Agent, str], guest: Guest
) -> None:
    a, b, agent, url = replicas
    engine = create_engine(url)

    def lease(task_id: str) -> tuple[str, int, str | None, int]:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT state, step_index, lease_owner, attempts FROM tasks WHERE id = :id"),
                {"id": task_id},
            ).one()
        return str(row[0]), int(row[1]), row[2], int(row[3])

    try:
        time.sleep(2.5)  # B has campaigned a few times meanwhile
        assert _leader(a) is True and _leader(b) is False

        password = a.admin_password  # one database: one admin, whose password A wrote on first start
        with b.client(b.token(password=password)) as cb:
            join = cb.post("/v1/hosts/join-tokens", json={"ttl_s": 600}).json()
            # one CA for the cluster: an agent that joined through B trusts A as well
            with a.client(a.token(password=password)) as ca:
                join_a = ca.post("/v1/hosts/join-tokens", json={"ttl_s": 60}).json()
            assert join_a["ca_fingerprint"] == join["ca_fingerprint"]
            a_agent_port = int(a.env["NOVACRON_AGENT_PORT"])
            pinned = ssl.create_default_context(cafile=str(b.state_dir / "pki" / "ca.crt"))
            assert httpx.get(f"https://127.0.0.1:{a_agent_port}/healthz", verify=pinned).status_code == 200
            agent.start(join["join_token"], join["ca_fingerprint"])
            _wait_host(cb, "node-l")
            import_guest_image(cb, guest)  # lands in the shared image store
            project = host_project(cb)
            # a first VM, created by A, fetches the image into the agent's cache
            r = cb.post(
                "/v1/vms",
                json={"name": "first", "image": "test-guest", "flavor": "tiny", "project_id": project},
            )
            assert r.status_code == 202, r.text
            first_id = r.json()["vm"]["id"]
            assert wait_task(cb, r.json()["task_id"], 90)["state"] == "succeeded"

            # hold a create in flight on A: the agent is paused, so the task waits at 'prepare'
            assert agent.proc is not None
            os.kill(agent.proc.pid, signal.SIGSTOP)
            r = cb.post(
                "/v1/vms",
                json={"name": "inflight", "image": "test-guest", "flavor": "tiny", "project_id": project},
            )
            assert r.status_code == 202, r.text
            vm_id, task_id = r.json()["vm"]["id"], r.json()["task_id"]
            assert a.proc is not None and b.proc is not None
            a_pid, b_pid = f":{a.proc.pid}:", f":{b.proc.pid}:"
            _wait(lambda: lease(task_id)[1] >= 2, 30, "the create at its prepare step")
            state, step, owner, _ = lease(task_id)
            assert state == "running" and owner is not None and a_pid in owner, (state, owner)

            a.kill9()
            killed_at = time.monotonic()
            os.kill(agent.proc.pid, signal.SIGCONT)
            # a task queued while nobody leads is picked up too
            r2 = cb.delete(f"/v1/vms/{first_id}")
            assert r2.status_code == 202, r2.text

            _wait(lambda: _leader(b), TAKEOVER_LIMIT_S, "replica B leading")
            leader_after = time.monotonic() - killed_at

            def taken_over() -> bool:
                owner = lease(task_id)[2]
                return lease(task_id)[0] == "succeeded" or (owner is not None and b_pid in owner)

            _wait(taken_over, TAKEOVER_LIMIT_S - leader_after, "the task taken over by B")
            takeover_after = time.monotonic() - killed_at
            done = wait_task(cb, task_id, 60)
            done_after = time.monotonic() - killed_at
            print(
                f"\nleader after {leader_after:.2f}s, task taken over after {takeover_after:.2f}s, "
                f"create succeeded {done_after:.2f}s after the kill"
            )
            assert done["state"] == "succeeded", done
            assert takeover_after < TAKEOVER_LIMIT_S
            assert done_after < TAKEOVER_LIMIT_S + 15  # the rest of the create: image fetch, launch
            state, step, owner, attempts = lease(task_id)
            assert step == 5 and owner is None and attempts == 2

            queued = wait_task(cb, r2.json()["task_id"], 60)
            assert queued["state"] == "succeeded", queued["error"]
            assert _qemu_processes(first_id) == []
            vm = cb.get(f"/v1/vms/{vm_id}").json()
            assert vm["state"] == "running" and vm["host_id"] is not None
            # exactly once: one QEMU process for the VM, and it keeps being the only one
            assert len(_qemu_processes(vm_id)) == 1
            time.sleep(2)
            assert len(_qemu_processes(vm_id)) == 1
            assert "this runner leads" in b.log_path.read_text()
    finally:
        engine.dispose()


def test_a_busy_thread_pool_does_not_cost_the_leader_its_lock(postgres: Any) -> None:
    """The leader's check runs on its own thread: with the loop's shared pool full of slow work (a
    busy replica), it still answers in time and the replica keeps leading (bench/bench_scale.py
    saw leaders of two busy replicas give their locks up every few seconds)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from novacron.tasks.leader import PostgresAdvisoryLock

    url = postgres.create_database("leader_busy_pool")

    async def run() -> list[bool]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        lead = PostgresAdvisoryLock("novacron.test-busy", url, check_s=0.1, timeout_s=0.5)
        campaign = asyncio.create_task(lead.run())
        try:
            async with asyncio.timeout(10):
                while not lead.is_leader:
                    await asyncio.sleep(0.05)
            # the shared pool busy for 2 s: 6 jobs of 0.6 s on its 2 workers
            busy = [asyncio.ensure_future(asyncio.to_thread(time.sleep, 0.6)) for _ in range(6)]
            seen: list[bool] = []
            for _ in range(40):
                await asyncio.sleep(0.05)
                seen.append(lead.is_leader)
            await asyncio.gather(*busy)
            return seen
        finally:
            campaign.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await campaign

    seen = asyncio.run(run())
    assert all(seen), f"leadership lost while the shared pool was busy: {seen}"
