"""Live VM and host charts pushed as server-sent events by a real server (uvicorn, the in-process app)
from a real VictoriaMetrics: the whole chart, then new points each second; the VM's tenant only;
one drawing loop however many viewers follow a VM."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from novacron.context import Context
from novacron.monitoring.livecharts import LiveCharts
from tests.conftest import free_port, in_process_app
from tests.integration.metrics_engines import (
    Series,
    attach,
    login,
    tenant_viewer,
    victoriametrics,
    vm_and_host,
)

MIB = 1 << 20
#: the store holds samples until this long after the fixture starts: the stream's charts, drawn
#: each second up to "now", keep finding new points as time passes
AHEAD_S = 180


@dataclass
class World:
    url: str
    ctx: Context
    admin: dict[str, str]
    viewer: dict[str, str]
    stranger: dict[str, str]

    @property
    def hub(self) -> LiveCharts:
        return self.ctx.live_charts


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a loopback port in a thread (a test client buffers a whole
    response, so it cannot read a stream that never ends); its lifespan already ran."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _samples(tenant_id: str) -> list[Series]:
    """1 s samples from 10 minutes ago to ``AHEAD_S`` from now: a VM using half a core and 64 of its
    128 MiB; its host at load 0.75."""
    now = round(time.time())
    stamps = [float(t) for t in range(now - 600, now + AHEAD_S)]
    vm = {"vm_id": "vm-1", "tenant_id": tenant_id, "project_id": "p", "host_id": "h-1"}
    host = {"host_id": "h-1", "host": "node-1"}
    return [
        Series("novacron_vm_cpu_seconds_total", vm, [(t, 0.5 * (t - stamps[0])) for t in stamps]),
        Series("novacron_vm_guest_memory_total_bytes", vm, [(t, 128 * MIB) for t in stamps]),
        Series("novacron_vm_guest_memory_available_bytes", vm, [(t, 64 * MIB) for t in stamps]),
        Series("novacron_host_load1", host, [(t, 0.75) for t in stamps]),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("live-charts")
    with ExitStack() as stack:
        client, password, db = stack.enter_context(in_process_app(tmp / "state"))
        admin = login(client, "admin", password)
        tenant_id, viewer = tenant_viewer(client, admin, "alpha")
        _beta, stranger = tenant_viewer(client, admin, "beta")
        vm_and_host(client, admin, db, tenant_id)
        (tmp / "vm").mkdir()
        store = stack.enter_context(victoriametrics(tmp / "vm", _samples(tenant_id)))
        app = cast(FastAPI, client.app)
        attach(app.state.ctx, store)
        url = stack.enter_context(served(app))
        yield World(url, app.state.ctx, admin, viewer, stranger)


class Frames:
    """The server-sent events of one open stream, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> tuple[str, dict[str, Any]]:
        """The next event (comments skipped): its name and its data."""
        event, data = "", ""
        for line in self._lines:
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and event:
                return event, json.loads(data)
        raise AssertionError("the stream ended")


@contextmanager
def follow(world: World, path: str, who: dict[str, str]) -> Iterator[Frames]:
    with (
        httpx.Client(base_url=world.url, headers=who, timeout=httpx.Timeout(30)) as client,
        client.stream("GET", path) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Frames(response)


def _lines(chart: dict[str, Any]) -> dict[str, list[list[float]]]:
    return {line["name"]: line["points"] for line in chart["series"]}


def test_a_viewer_gets_the_chart_then_new_points_each_second(world: World) -> None:
    with follow(world, "/v1/vms/vm-1/metrics/live", world.viewer) as frames:
        event, chart = frames.next()
        polled = httpx.get(f"{world.url}/v1/vms/vm-1/metrics?range=5m", headers=world.viewer).json()
        assert event == "chart"
        # the same chart as the chart API answers
        assert set(chart) == set(polled) and (chart["id"], chart["range"], chart["step_s"]) == (
            "vm-1",
            "5m",
            1.0,
        )
        assert [(s["name"], s["title"], s["unit"]) for s in chart["series"]] == [
            (s["name"], s["title"], s["unit"]) for s in polled["series"]
        ]
        cpu = _lines(chart)["cpu"]
        assert len(cpu) >= 250 and all(v == pytest.approx(0.5, rel=0.02) for _t, v in cpu)
        newer: list[list[float]] = []
        deadline = time.monotonic() + 15
        while not newer:
            assert time.monotonic() < deadline, "no point newer than the chart within 15 s"
            event, delta = frames.next()
            assert event == "points" and set(delta) == {"id", "range", "start", "end", "series"}
            assert delta["end"] > chart["end"] and delta["start"] == delta["end"] - 300
            newer = [p for p in _lines(delta).get("cpu", []) if p[0] > chart["end"]]
        assert newer[-1][0] <= delta["end"] and newer[-1][1] == pytest.approx(0.5, rel=0.02)
        memory = _lines(delta)["guest_memory_used"]
        assert memory[-1] == [delta["end"], 64 * MIB]


def test_the_stream_is_the_vms_tenants_and_hosts_are_administrators(world: World) -> None:
    with httpx.Client(base_url=world.url, timeout=httpx.Timeout(30)) as client:
        r = client.get("/v1/vms/vm-1/metrics/live", headers=world.stranger)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert client.get("/v1/vms/vm-nope/metrics/live", headers=world.viewer).status_code == 404
        assert client.get("/v1/hosts/h-1/metrics/live", headers=world.viewer).status_code == 403
        assert client.get("/v1/vms/vm-1/metrics/live").status_code == 401
    with follow(world, "/v1/hosts/h-1/metrics/live", world.admin) as frames:
        event, chart = frames.next()
        assert event == "chart" and _lines(chart)["load1"][-1][1] == pytest.approx(0.75)


def _until_no_loop(hub: LiveCharts) -> None:
    deadline = time.monotonic() + 10
    while hub.stats().loops:
        assert time.monotonic() < deadline, "a drawing loop outlived its viewers"
        time.sleep(0.05)


def test_viewers_of_one_vm_share_one_drawing_loop(world: World) -> None:
    viewers = 6
    _until_no_loop(world.hub)
    before = world.hub.stats()
    path = "/v1/vms/vm-1/metrics/live"
    with ExitStack() as stack:
        streams = [stack.enter_context(follow(world, path, world.viewer)) for _ in range(viewers)]
        started = time.monotonic()
        firsts = [frames.next() for frames in streams]
        assert {event for event, _chart in firsts} == {"chart"}
        now = world.hub.stats()
        assert (now.loops_started - before.loops_started, now.loops, now.subscribers) == (1, 1, viewers)
        # a few steps on, every viewer is sent the very same frame
        target = max(chart["end"] for _event, chart in firsts) + 3
        seen = []
        for frames in streams:
            while (frame := frames.next())[1]["end"] < target:
                pass
            seen.append(frame)
        assert seen == [seen[0]] * viewers and seen[0][0] == "points"
        drawn = world.hub.stats().draws - before.draws
        # one draw a second for all of them (plus the first), not one per viewer
        assert drawn <= time.monotonic() - started + 2, drawn
    _until_no_loop(world.hub)
