"""The event bus on NATS JetStream: two replicas sharing PostgreSQL and a real ``nats-server -js``.

The followers' fallback poll is a minute, so an event that reaches the other replica's follower
within a second was brought by NATS. A follower that reconnects with ``Last-Event-ID`` (SSE) or
``after`` (WebSocket) gets exactly what it missed; a replica's restart loses nothing; with NATS
killed the followers poll the log every second, and with NATS back delivery is prompt again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import Server, destroy_server, make_server, short_tmpdir
from tests.services.nats import Nats, start_nats

#: far longer than the tests wait: an event that arrives was brought by the bus, not by a poll
FALLBACK_S = "60"
#: a commit on one replica reaches the other's follower through NATS well within this
PROMPT_S = 1.0
FALLBACKS = "novacron_event_bus_fallbacks_total "

Cluster = tuple[Nats, Server, Server, str]


@pytest.fixture(scope="module")
def cluster(postgres: Any) -> Iterator[Cluster]:
    with start_nats(short_tmpdir("nats")) as nats:
        env = {
            "NOVACRON_EMBEDDED_AGENT": "0",
            "NOVACRON_NETWORK_BACKEND": "none",
            "NOVACRON_DATABASE_URL": postgres.create_database("event_bus_nats"),
            "NOVACRON_KEK_DIR": str(short_tmpdir("nck")),
            "NOVACRON_EVENT_POLL_S": FALLBACK_S,
            "NOVACRON_EVENT_DEGRADED_POLL_S": "1",
            "NOVACRON_EVENT_BUS": nats.url,
        }
        a, b = make_server(**env), make_server(**env)
        try:
            a.start()
            b.start()
            token = a.token()  # the replicas share their signing keys: one token serves both
            for server in (a, b):
                _wait_link(server, token, up=True)
            yield nats, a, b, token
        finally:
            for server in (a, b):
                # no guest, nothing to flush: a graceful stop would wait ~15 s on the followers'
                # streams still open (a follower thread ends only at its stream's next line)
                if server.proc is not None and server.proc.poll() is None:
                    server.kill9()
                destroy_server(server)
            shutil.rmtree(env["NOVACRON_KEK_DIR"], ignore_errors=True)


def _bus_up(server: Server, token: str) -> bool | None:
    """``novacron_event_bus_up{mode="nats"}`` of the replica (None: not in its metrics)."""
    with server.client(token) as c:
        text = c.get("/metrics").text
    for line in text.splitlines():
        if line.startswith('novacron_event_bus_up{mode="nats"}'):
            return float(line.split()[-1]) == 1.0
    return None


def _wait_link(server: Server, token: str, *, up: bool, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _bus_up(server, token) is not up:
        assert time.monotonic() < deadline, f"the event bus of {server.url} is not {'up' if up else 'down'}"
        time.sleep(0.1)


class Follower:
    """An SSE client of ``/v1/events/stream`` on a thread, recording (seq, arrival time)."""

    def __init__(self, server: Server, token: str, last_event_id: int | None = None) -> None:
        self.got: list[tuple[int, float]] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self._thread = threading.Thread(target=self._run, args=(server, headers), daemon=True)
        self._thread.start()
        assert self.ready.wait(15), "the stream did not open"

    def _run(self, server: Server, headers: dict[str, str]) -> None:
        url = f"{server.url}/v1/events/stream"
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", url, params={"types": "flavor.*"}, headers=headers, timeout=None) as r,
        ):
            for line in r.iter_lines():
                self.ready.set()
                if self._stop.is_set():
                    return
                if line.startswith("data: "):
                    self.got.append((json.loads(line[6:])["seq"], time.monotonic()))

    @property
    def seqs(self) -> list[int]:
        return [s for s, _ in self.got]

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.got) >= count, f"{len(self.got)} of {count} events within {timeout_s} s"

    def close(self) -> None:
        """Stop recording now (the thread ends at the stream's next line or with its server)."""
        self._stop.set()


def _flavor(server: Server, token: str, name: str) -> tuple[int, float]:
    """Create a flavor on ``server``; (the seq of its event, when the request was sent)."""
    with server.client(token) as c:
        start = time.monotonic()
        r = c.post("/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 128, "disk_gb": 1})
        assert r.status_code == 201, r.text
        page = c.get("/v1/events", params={"tail": "true", "limit": 1, "types": "flavor.*"}).json()
    return int(page["items"][-1]["seq"]), start


def _prompt(follower: Follower, sent: list[tuple[int, float]]) -> None:
    """Each event of ``sent`` reached the follower within PROMPT_S of its request's start."""
    deadline = time.monotonic() + 10
    while not {seq for seq, _ in sent} <= set(follower.seqs) and time.monotonic() < deadline:
        time.sleep(0.01)
    arrived = dict(follower.got)
    assert {seq for seq, _ in sent} <= set(arrived), f"{sent} not all in {follower.seqs}"
    late = {seq: round(arrived[seq] - start, 3) for seq, start in sent if arrived[seq] - start > PROMPT_S}
    assert not late, f"events later than {PROMPT_S} s (seq: seconds): {late}"


def test_an_event_committed_on_one_replica_reaches_the_others_follower_through_nats(
    cluster: Cluster,
) -> None:
    _, a, b, token = cluster
    on_b = Follower(b, token)
    try:
        sent = [_flavor(a, token, f"nats-{i}") for i in range(5)]
        _prompt(on_b, sent)
        assert on_b.seqs == [seq for seq, _ in sent]
    finally:
        on_b.close()


def test_a_follower_reconnecting_gets_exactly_what_it_missed_over_sse_and_websocket(
    cluster: Cluster,
) -> None:
    _, a, b, token = cluster
    first = Follower(b, token)
    try:
        sent = [_flavor(a, token, "before-drop")]
        first.wait_for(1, timeout_s=10)
    finally:
        first.close()
    cursor = first.seqs[-1]
    missed = [_flavor(a, token, f"missed-{i}")[0] for i in range(3)]
    resumed = Follower(b, token, last_event_id=cursor)
    try:
        resumed.wait_for(3, timeout_s=10)
        sent = [_flavor(a, token, "after-resume")]
        _prompt(resumed, sent)
        assert resumed.seqs == [*missed, sent[0][0]]  # no loss, no duplicate, in order
    finally:
        resumed.close()
    # the WebSocket resumes from ``after`` the same way
    url = b.url.replace("http", "ws", 1) + f"/v1/events/ws?after={cursor}&types=flavor.*"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        got = [json.loads(ws.recv(timeout=10))["seq"] for _ in range(4)]
        assert got == [*missed, sent[0][0]]
        seq, start = _flavor(a, token, "ws-live")
        assert json.loads(ws.recv(timeout=PROMPT_S))["seq"] == seq
        assert time.monotonic() - start < PROMPT_S + 0.5


def test_a_replica_restart_loses_nothing(cluster: Cluster) -> None:
    _, a, b, token = cluster
    cursor = _flavor(a, token, "before-restart")[0]
    b.kill9()
    while_down = [_flavor(a, token, f"while-down-{i}")[0] for i in range(3)]
    b.start()
    _wait_link(b, token, up=True)
    resumed = Follower(b, token, last_event_id=cursor)
    try:
        resumed.wait_for(3, timeout_s=10)
        sent = [_flavor(a, token, "after-restart")]
        _prompt(resumed, sent)
        assert resumed.seqs == [*while_down, sent[0][0]]
    finally:
        resumed.close()


def test_with_nats_down_followers_poll_and_with_nats_back_delivery_is_prompt_again(
    cluster: Cluster,
) -> None:
    nats, a, b, token = cluster
    on_b = Follower(b, token)
    try:
        nats.kill()
        try:
            _wait_link(b, token, up=False)
            _wait_link(a, token, up=False)
            # the operator is told: in the log, and in the fallback counter
            assert "event bus (nats): link to the other replicas lost" in b.log_path.read_text()
            with b.client(token) as c:
                counter = [ln for ln in c.get("/metrics").text.splitlines() if ln.startswith(FALLBACKS)]
            assert counter and float(counter[0].split()[-1]) >= 1, counter
            # the fallback: B's follower reads the log every second (the configured minute is for
            # a healthy bus)
            down = [_flavor(a, token, f"nats-down-{i}")[0] for i in range(2)]
            on_b.wait_for(2, timeout_s=8)
            assert on_b.seqs == down
        finally:
            nats.start()
        _wait_link(a, token, up=True)
        _wait_link(b, token, up=True)
        sent = [_flavor(a, token, f"nats-back-{i}") for i in range(3)]
        _prompt(on_b, sent)
        assert on_b.seqs == [*down, *(seq for seq, _ in sent)]
    finally:
        on_b.close()
