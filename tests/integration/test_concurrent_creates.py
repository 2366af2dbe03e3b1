"""50 concurrent creates against hosts with room for 20: exactly 20 placed, never a host over its ratio.

Real parts: a real ``novacron-server`` (no embedded agent; on SQLite and on PostgreSQL) and two
real ``novacron agent`` processes joined to it over HTTPS with join tokens, so the creates go
through the same API, task runner, placement claims and agent host operations as any other.
SCALE SIMULATION: the agents run the simulated compute driver (``novacron agent --driver
simulated``): booting 20 real guests under TCG on this 2-core machine would take minutes and
measure QEMU, not placement. The simulated hosts report 64 CPUs; their ``cpu_allocation_ratio``
is set to 10/64 through the host PATCH API, so each takes exactly ten 1-vCPU VMs (flavor ``tiny``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import Guest, Server, destroy_server, import_guest_image, make_server, wait_task
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

CREATES = 50
PER_HOST = 10
SIM_CPUS = 64


class SimulatedAgent(Agent):
    """A real agent process whose host is simulated (see the module docstring)."""

    def start(self, join_token: str | None = None, fingerprint: str | None = None) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "novacron.cli.main", "agent", "--server", self.url, "--name", self.name]
        argv += ["--state-dir", str(self.state_dir), "--driver", "simulated"]
        if join_token:
            argv += ["--join-token", join_token, "--ca-fingerprint", fingerprint or ""]
        log = (self.state_dir / "agent.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        return self.proc


@pytest.fixture(params=["sqlite", "postgres"])
def sim_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[Server, list[SimulatedAgent]]]:
    env = {"NOVACRON_EMBEDDED_AGENT": "0"}
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres")
        env["NOVACRON_DATABASE_URL"] = pg.create_database(f"creates_{secrets.token_hex(4)}")
    server = make_server(**env)
    server.start()
    agents = [SimulatedAgent(server, f"sim-{i}") for i in (1, 2)]
    try:
        yield server, agents
    finally:
        for agent in agents:
            agent.stop()
            shutil.rmtree(agent.state_dir, ignore_errors=True)
        destroy_server(server)


def test_fifty_concurrent_creates_place_exactly_twenty(
    sim_cluster: tuple[Server, list[SimulatedAgent]], guest: Guest
) -> None:
    server, agents = sim_cluster
    with server.client() as c:
        hosts = []
        for agent in agents:
            token = c.post("/v1/hosts/join-tokens", json={}).json()
            agent.start(token["join_token"], token["ca_fingerprint"])
            try:
                hosts.append(_wait_host(c, agent.name, timeout_s=60))
            except AssertionError as exc:
                server_log = server.log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{exc}\nagent:\n{agent.log()[-1500:]}\nserver:\n{server_log}") from None
        for h in hosts:
            assert h["cpus"] == SIM_CPUS
            r = c.patch(f"/v1/hosts/{h['id']}", json={"cpu_allocation_ratio": PER_HOST / SIM_CPUS})
            assert r.status_code == 200 and r.json()["cpu_allocation_ratio"] * SIM_CPUS == PER_HOST, r.text
        import_guest_image(c, guest)
        project = host_project(c)
        token = server.token()

    def create(i: int) -> httpx.Response:
        with server.client(token) as own:
            body = {"name": f"vm-{i:02d}", "image": "test-guest", "flavor": "tiny", "project_id": project}
            return own.post("/v1/vms", json=body, timeout=120)

    with ThreadPoolExecutor(CREATES) as pool:
        answers = list(pool.map(create, range(CREATES)))

    # the API accepts every create at once (202) and places it in the create task: the ones that
    # find no room end in a failed task and a VM in 'error' saying why
    assert [r.status_code for r in answers] == [202] * CREATES, [
        r.text for r in answers if r.status_code != 202
    ]
    with server.client() as c:
        tasks = [wait_task(c, r.json()["task_id"], timeout_s=300) for r in answers]
        states = Counter(t["state"] for t in tasks)
        assert states == {"succeeded": 2 * PER_HOST, "failed": CREATES - 2 * PER_HOST}, states
        for t in tasks:
            if t["state"] == "failed":
                assert "No host can take this VM" in str(t["error"]), t["error"]
        vms = [c.get(f"/v1/vms/{r.json()['vm']['id']}").json() for r in answers]
        placed = [v for v in vms if v["host_id"] is not None]
        assert len(placed) == 2 * PER_HOST and all(v["state"] == "running" for v in placed)
        refused = [v for v in vms if v["host_id"] is None]
        assert all(v["state"] == "error" and "No host can take this VM" in v["error"] for v in refused)

        for h in hosts:
            row = c.get(f"/v1/hosts/{h['id']}").json()
            mine = [v for v in placed if v["host_id"] == h["id"]]
            assert row["vcpus_used"] <= row["cpus"] * row["cpu_allocation_ratio"]
            assert row["ram_mb_used"] <= row["ram_mb"] * row["ram_allocation_ratio"]
            assert row["vcpus_used"] == sum(v["vcpus"] for v in mine) == PER_HOST, row
            assert row["ram_mb_used"] == sum(v["ram_mb"] for v in mine), row
