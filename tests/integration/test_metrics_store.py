"""The metrics pipeline on a real node, for both embedded engines (VictoriaMetrics, Prometheus).

Real parts: the server process, its embedded agent (simulated compute driver: what is checked is
the series flow, not QEMU; the guest test in test_metrics_guest.py uses a real one), the engine
the node starts and supervises, its Prometheus query API. The store is found through the line the
node logs when it starts it. Failure injection only: the engine is SIGKILLed, the node restarted.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from novacron.monitoring.series import HOST_CPU_MODES, HOST_SERIES, VM_SERIES
from novacron.monitoring.store import EngineConfig, embedded_engine
from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    free_port,
    import_guest_image,
    make_server,
    tenant_user,
    wait_task,
)

SIM = {"NOVACRON_COMPUTE_DRIVER": "simulated"}
SIMULATED_VM_SERIES = (
    "novacron_vm_process_cpu_seconds_total",
    "novacron_vm_process_resident_memory_bytes",
    "novacron_vm_disk_read_bytes_total",
    "novacron_vm_disk_written_bytes_total",
    "novacron_vm_disk_reads_total",
    "novacron_vm_disk_writes_total",
    "novacron_vm_network_receive_bytes_total",
    "novacron_vm_network_transmit_bytes_total",
)


def store_url(server: Server, engine: str) -> str:
    """The query URL of the store the node started last (from its log)."""
    found = re.findall(rf"metrics store: {engine} at (http://127\.0\.0\.1:\d+)", server.log_path.read_text())
    assert found, f"the node did not log its {engine} store"
    return str(found[-1])


def query(url: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": promql, **({"time": repr(at)} if at is not None else {})}
    r = httpx.get(f"{url}/api/v1/query", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def wait_query(
    url: str, promql: str, timeout_s: float = 60.0, at: float | None = None
) -> list[dict[str, Any]]:
    """The first non-empty answer (a new series takes VictoriaMetrics up to ~10 s to show)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = query(url, promql, at)
        except httpx.HTTPError:
            result = []  # the engine is restarting
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql} found nothing in {timeout_s} s")


@dataclass
class Node:
    server: Server
    engine: str
    vm_id: str
    tenant_id: str
    project_id: str
    host_id: str

    @property
    def url(self) -> str:
        return store_url(self.server, self.engine)


@pytest.fixture(scope="module", params=["victoriametrics", "prometheus"])
def node(request: pytest.FixtureRequest, guest: Guest) -> Iterator[Node]:
    engine = str(request.param)
    server = make_server(**SIM, NOVACRON_METRICS_ENGINE=engine)
    server.start(timeout_s=90)
    try:
        with server.client() as admin:
            import_guest_image(admin, guest)
            member, project_id = tenant_user(admin, server, f"mon-{engine[:4]}")
            with member:
                r = member.post(
                    "/v1/vms",
                    json={
                        "name": "watched",
                        "image": "test-guest",
                        "flavor": "tiny",
                        "project_id": project_id,
                    },
                )
                assert r.status_code == 202, r.text
                assert wait_task(member, r.json()["task_id"])["state"] == "succeeded"
                vm = member.get(f"/v1/vms/{r.json()['vm']['id']}").json()
            tenant_id = admin.get(f"/v1/projects/{project_id}").json()["tenant_id"]
        yield Node(server, engine, vm["id"], tenant_id, project_id, vm["host_id"])
    finally:
        destroy_server(server)


def test_vm_and_host_series_reach_the_store_labelled_by_the_control_plane(node: Node) -> None:
    vm = f'{{vm_id="{node.vm_id}"}}'
    wait_query(node.url, f"novacron_vm_process_cpu_seconds_total{vm}")
    found = query(node.url, f'{{__name__=~"novacron_vm_.+", vm_id="{node.vm_id}"}}')
    # the simulated driver reports every key of the contract (guest memory and vCPU time included)
    assert sorted(s["metric"]["__name__"] for s in found) == sorted(VM_SERIES.values())
    for series in found:
        labels = dict(series["metric"])
        labels.pop("__name__")
        assert labels == {
            "vm_id": node.vm_id,
            "tenant_id": node.tenant_id,
            "project_id": node.project_id,
            "host_id": node.host_id,
        }
    # counters move: the rate of CPU time is the cores the VM uses
    rate = wait_query(node.url, f"rate(novacron_vm_process_cpu_seconds_total{vm}[30s]) > 0")
    assert 0 < float(rate[0]["value"][1]) <= 1.0  # the tiny flavor has one vCPU

    host = f'{{host_id="{node.host_id}"}}'
    wait_query(node.url, f"novacron_host_cpus{host}")
    found = query(node.url, f'{{__name__=~"novacron_host_.+", host_id="{node.host_id}"}}')
    names = {s["metric"]["__name__"] for s in found}
    assert names == {name for name, _ in HOST_SERIES.values()}
    assert all("tenant_id" not in s["metric"] and s["metric"]["host"] for s in found)
    modes = {
        s["metric"]["mode"] for s in found if s["metric"]["__name__"] == "novacron_host_cpu_seconds_total"
    }
    assert modes == set(HOST_CPU_MODES)
    by_name = {s["metric"]["__name__"]: float(s["value"][1]) for s in found if "mode" not in s["metric"]}
    assert by_name["novacron_host_cpus"] == os.cpu_count()
    assert (
        0 < by_name["novacron_host_filesystem_avail_bytes"] < by_name["novacron_host_filesystem_size_bytes"]
    )
    assert by_name["novacron_host_qemu_processes"] == 0  # the simulated driver runs no QEMU
    # the node says how its writer fares (GET /metrics, the platform's own metrics)
    with node.server.client() as admin:
        text = admin.get("/metrics").text
    written = re.search(r'^novacron_metrics_writer_samples_total\{outcome="written"\} (\S+)$', text, re.M)
    assert written and float(written.group(1)) > 0, text[-2000:]
    assert re.search(r"^novacron_metrics_writer_pending \S+$", text, re.M)


def test_history_survives_a_node_restart(node: Node) -> None:
    promql = f'count_over_time(novacron_vm_process_cpu_seconds_total{{vm_id="{node.vm_id}"}}[10m])'
    deadline = time.monotonic() + 60
    while True:  # a few samples old enough that all of them have been written
        at = time.time() - 5
        before = query(node.url, promql, at)
        if before and float(before[0]["value"][1]) >= 3:
            break
        assert time.monotonic() < deadline, f"no history in the store: {before}"
        time.sleep(1)
    node.server.stop()
    node.server.start(timeout_s=90)
    after = wait_query(node.url, promql, at=at)
    assert after[0]["value"] == before[0]["value"]
    # and the host's series go on after the restart (the simulated driver's VMs do not outlive it)
    wait_query(node.url, f'novacron_host_cpus{{host_id="{node.host_id}"}}', at=time.time())


def _engine_pid(server: Server) -> int:
    marker = f"{server.state_dir}/metrics/"
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(marker in arg for arg in proc.info["cmdline"] or ()):
            return int(proc.info["pid"])
    raise AssertionError("no engine process found")


def test_samples_reported_while_the_store_is_down_arrive(node: Node) -> None:
    series = f'novacron_host_load1{{host_id="{node.host_id}"}}'
    wait_query(node.url, series, at=time.time())
    pid = _engine_pid(node.server)
    # the store hangs for a few seconds (a request in flight stalls), then dies; the node's
    # supervisor starts it again; the agent reports every second all along
    down_at = time.time()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(4)  # the outage's length, not a wait for an event
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{node.url}/api/v1/query", params={"query": "1"}, timeout=1).is_success:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError("the engine did not come back")
    back_at = time.time()
    assert _engine_pid(node.server) != pid
    # every per-second sample of the outage was queued by the writer and arrives
    window = int(back_at - down_at)
    promql = f"count_over_time({series}[{window}s])"
    deadline = time.monotonic() + 30
    count = 0.0
    while time.monotonic() < deadline:
        result = query(node.url, promql, at=down_at + window)
        count = float(result[0]["value"][1]) if result else 0.0
        if count >= window - 1:
            break
        time.sleep(0.5)
    assert count >= window - 1, f"{count} samples over the {window} s the store was down"


def test_an_external_store_gets_the_series(tmp_path: Path) -> None:
    """``external``: the node writes to any remote-write URL and starts no engine of its own (here a
    VictoriaMetrics the test runs, standing for a cluster or Mimir)."""
    port = free_port()
    engine = embedded_engine(EngineConfig("victoriametrics", tmp_path / "vm", "1d", port))
    engine.start()
    server = make_server(
        **SIM,
        NOVACRON_METRICS_ENGINE="external",
        NOVACRON_METRICS_URL=f"http://127.0.0.1:{port}",
        NOVACRON_METRICS_WRITE_URL=f"http://127.0.0.1:{port}/api/v1/write",
    )
    try:
        server.start(timeout_s=90)
        assert store_url(server, "external") == f"http://127.0.0.1:{port}"
        found = wait_query(f"http://127.0.0.1:{port}", "novacron_host_cpus")
        assert found[0]["metric"]["host"] == server.env["NOVACRON_HOST_NAME"]
        assert not (server.state_dir / "metrics").exists()
    finally:
        destroy_server(server)
        engine.stop()
