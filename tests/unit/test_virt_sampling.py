"""The sampler's pieces without QEMU: balloon statistics, disk counters, the lean QMP session."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from novacron.virt.base import DriverError, MetricsSample
from novacron.virt.qmp import QmpUnavailable, qmp_session
from novacron.virt.sampling import Sampler, disk_counters, guest_memory


def test_guest_memory_from_balloon_statistics() -> None:
    answer = {
        "stats": {"stat-total-memory": 215789568, "stat-available-memory": 170860544, "stat-free-memory": -1},
        "last-update": 1796565159,
    }
    assert guest_memory(answer) == {
        "guest_mem_total_bytes": 215789568,
        "guest_mem_available_bytes": 170860544,
        "guest_mem_free_bytes": None,  # -1: the guest did not report it
    }
    # before the guest's first report QEMU shows its unsigned -1; an older guest lacks a figure
    unreported = {"stats": {"stat-total-memory": 2**64 - 1, "stat-free-memory": 2**64 - 1}, "last-update": 0}
    assert set(guest_memory(unreported).values()) == {None}
    assert set(guest_memory(None).values()) == {None}


def test_unknown_figures_are_left_out_of_the_report() -> None:
    sample = MetricsSample(1.0, 2.0, 3, 4, 5, 6, 7, 8, 9, vcpu_time_s=1.5, guest_mem_total_bytes=100)
    reported = sample.as_dict()
    assert reported["vcpu_time_s"] == 1.5 and reported["guest_mem_total_bytes"] == 100
    assert "guest_mem_available_bytes" not in reported and "guest_mem_free_bytes" not in reported
    assert all(isinstance(v, int | float) for v in reported.values())


def test_disk_counters_of_the_vm_disk() -> None:
    stats = {"rd_bytes": 1, "wr_bytes": 2, "rd_operations": 3, "wr_operations": 4}
    seed = {"device": "vdb", "stats": {"rd_bytes": 99}}
    blockstats = [seed, {"device": "", "qdev": "vda-dev", "stats": stats}]
    assert disk_counters(blockstats) == (1, 2, 3, 4)
    assert disk_counters(None) == (0, 0, 0, 0)


async def fake_qemu(
    socket_path: Path, answers: dict[str, Any], heard: list[str] | None = None
) -> asyncio.Server:
    """A monitor that greets, sends an event before each answer, and answers from ``answers``
    (the commands it hears are appended to ``heard``)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        while line := await reader.readline():
            command = json.loads(line)["execute"]
            if heard is not None:
                heard.append(command)
            writer.write(b'{"event": "RTC_CHANGE", "data": {}}\r\n')
            if command == "qmp_capabilities":
                writer.write(b'{"return": {}}\r\n')
            elif command in answers:
                writer.write(json.dumps({"return": answers[command]}).encode() + b"\r\n")
            elif command == "hang-up":
                break
            else:
                error = {"class": "CommandNotFound", "desc": f"The command {command} has not been found"}
                writer.write(json.dumps({"error": error}).encode() + b"\r\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(serve, str(socket_path))


def test_a_session_runs_several_commands_and_skips_events(tmp_path: Path) -> None:
    sock = tmp_path / "m.qmp"

    async def run() -> None:
        big = [{"device": "vda", "stats": {"rd_bytes": n}} for n in range(20000)]  # a 1 MB answer
        answers = {"query-blockstats": big, "query-status": {"status": "running"}}
        async with await fake_qemu(sock, answers), qmp_session(sock) as qmp:
            assert await qmp.execute("query-status") == {"status": "running"}
            assert await qmp.execute("query-blockstats") == big
            with pytest.raises(DriverError, match="has not been found") as refused:
                await qmp.execute("qom-get", {"path": "/nowhere", "property": "x"})
            assert not isinstance(refused.value, QmpUnavailable)
            assert await qmp.execute("query-status") == {"status": "running"}  # still usable
            with pytest.raises(QmpUnavailable, match="no answer"):
                await qmp.execute("hang-up")

    asyncio.run(run())


def test_a_session_on_a_dead_socket_is_unavailable(tmp_path: Path) -> None:
    async def run() -> None:
        with pytest.raises(QmpUnavailable):
            async with qmp_session(tmp_path / "none.qmp", timeout_s=0.5):
                pass

    asyncio.run(run())


def test_the_sampler_asks_once_per_process_what_does_not_change(tmp_path: Path) -> None:
    """vCPU thread ids and the statistics timer: asked and armed once per QEMU process (a new pid
    after a restart or a migration asks again); a process without a balloon is not asked again."""
    sock, me = tmp_path / "m.qmp", os.getpid()
    heard: list[str] = []
    stats = {"stats": {"stat-total-memory": 1000, "stat-available-memory": 600, "stat-free-memory": 500}}
    answers = {
        "query-blockstats": [],
        "query-cpus-fast": [{"thread-id": me}],
        "qom-set": {},
        "qom-get": stats,
    }
    sampler = Sampler()

    async def sample(pid: int) -> MetricsSample:
        heard.clear()
        return await sampler.sample(sock, "vm-1", pid, [])

    async def run() -> None:
        async with await fake_qemu(sock, answers, heard):
            s = await sample(me)
            assert heard == ["qmp_capabilities", "query-blockstats", "query-cpus-fast", "qom-set", "qom-get"]
            assert (s.guest_mem_total_bytes, s.guest_mem_available_bytes, s.guest_mem_free_bytes) == (
                1000,
                600,
                500,
            )
            assert 0 < s.vcpu_time_s <= s.cpu_time_s  # this process's main thread stands for the vCPU
            await sample(me)
            assert heard == ["qmp_capabilities", "query-blockstats", "qom-get"]
            await sample(os.getppid())  # a new process for the instance
            assert heard == ["qmp_capabilities", "query-blockstats", "query-cpus-fast", "qom-set", "qom-get"]
            sampler.forget("vm-1")
            del answers["qom-set"]  # a process started before VMs had a balloon: QEMU refuses
            s = await sample(me)
            assert heard[-1] == "qom-set" and s.guest_mem_total_bytes is None
            await sample(me)
            assert heard == ["qmp_capabilities", "query-blockstats"]

    asyncio.run(run())
