"""The event bus across two replicas on PostgreSQL: an event committed on one replica reaches a
follower of the other at once (LISTEN/NOTIFY), though the followers' fallback poll is set to a
minute; a follower that reconnects resumes from its cursor, and a replica's restart loses nothing."""

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

from tests.conftest import Server, destroy_server, make_server, short_tmpdir

#: far longer than the test waits: an event that arrives was brought by the bus, not by a poll
FALLBACK_S = "60"


@pytest.fixture(scope="module")
def replicas(postgres: Any) -> Iterator[tuple[Server, Server]]:
    env = {
        "NOVACRON_EMBEDDED_AGENT": "0",
        "NOVACRON_NETWORK_BACKEND": "none",
        "NOVACRON_DATABASE_URL": postgres.create_database("event_bus"),
        "NOVACRON_KEK_DIR": str(short_tmpdir("nck")),
        "NOVACRON_EVENT_POLL_S": FALLBACK_S,
    }
    a, b = make_server(**env), make_server(**env)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        destroy_server(a)
        destroy_server(b)
        shutil.rmtree(env["NOVACRON_KEK_DIR"], ignore_errors=True)


class Follower:
    """An SSE client of ``/v1/events/stream`` on a thread, recording (seq, type, arrival time)."""

    def __init__(self, server: Server, token: str, after: int | None = None) -> None:
        self.got: list[tuple[int, str, float]] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        params = {"types": "flavor.*", **({"after": str(after)} if after is not None else {})}
        self._thread = threading.Thread(target=self._run, args=(server, token, params), daemon=True)
        self._thread.start()
        assert self.ready.wait(15), "the stream did not open"

    def _run(self, server: Server, token: str, params: dict[str, str]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{server.url}/v1/events/stream"
        # the stream ends with its server (a kill -9, the module's teardown): nothing to report then
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", url, params=params, headers=headers, timeout=None) as r,
        ):
            for line in r.iter_lines():
                self.ready.set()
                if self._stop.is_set():
                    return
                if line.startswith("data: "):
                    e = json.loads(line[6:])
                    self.got.append((e["seq"], e["type"], time.monotonic()))

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.got) >= count, f"{len(self.got)} of {count} events within {timeout_s} s"

    def close(self) -> None:
        self._stop.set()


def _flavor(client: httpx.Client, name: str) -> float:
    start = time.monotonic()
    r = client.post("/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 128, "disk_gb": 1})
    assert r.status_code == 201, r.text
    return start


def test_an_event_committed_on_one_replica_reaches_the_others_followers_at_once(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    token = a.token()  # the replicas share their signing keys: one token serves both
    on_b, on_a = Follower(b, token), Follower(a, token)
    try:
        with a.client() as admin_a:
            for i in range(5):
                _flavor(admin_a, f"bus-{i}")
            # 5 events, each brought within seconds by NOTIFY (the fallback poll would take 60 s)
            on_b.wait_for(5, timeout_s=10)
            on_a.wait_for(5, timeout_s=10)
        assert [t for _, t, _ in on_b.got] == ["flavor.created"] * 5
        assert [s for s, _, _ in on_b.got] == sorted(s for s, _, _ in on_b.got)
        last_seen = on_b.got[-1][0]
    finally:
        on_b.close()
        on_a.close()
    # replica B restarts; events committed meanwhile on A are read from B's log by a follower
    # that resumes from its cursor, nothing lost, nothing twice
    b.kill9()
    with a.client() as admin_a:
        for i in range(3):
            _flavor(admin_a, f"while-down-{i}")
    b.start()
    resumed = Follower(b, token, after=last_seen)
    try:
        resumed.wait_for(3, timeout_s=10)
        with a.client() as admin_a:
            _flavor(admin_a, "after-restart")
        resumed.wait_for(4, timeout_s=10)
        seqs = [s for s, _, _ in resumed.got]
        assert len(seqs) == len(set(seqs)) == 4 and min(seqs) > last_seen
    finally:
        resumed.close()


def _token_lifetime(server: Server, password: str) -> int:
    body = {"username": "admin", "password": password}
    r = httpx.post(f"{server.url}/v1/tokens", json=body, timeout=10, verify=server.verify)
    assert r.status_code == 200, r.text
    return int(r.json()["expires_in"])


def _applied(client: httpx.Client, version: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/v1/config").json()["applied_version"] != version:
        assert time.monotonic() < deadline, f"version {version} not applied within {timeout_s}s"
        time.sleep(0.1)


def test_a_live_configuration_change_is_applied_on_every_replica(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    token, password = a.token(), a.admin_password  # the bootstrap ran on A; B shares the database
    with a.client(token) as admin_a, b.client(token) as admin_b:
        r = admin_a.patch("/v1/config", json={"tokens": {"access_token_ttl_s": 240}, "reason": "shorter"})
        assert r.status_code == 200, r.text
        version = r.json()["version"]
        # B applies it within seconds though its fallback poll is a minute: the bus brought it
        _applied(admin_b, version, timeout_s=10)
        assert _token_lifetime(a, password) == _token_lifetime(b, password) == 240
        # a rollback made on B is applied on A the same way
        r = admin_b.post("/v1/config/rollback", json={"version": version - 1, "reason": "undo"})
        assert r.status_code == 200, r.text
        _applied(admin_a, r.json()["version"], timeout_s=10)
        assert _token_lifetime(a, password) == _token_lifetime(b, password) == 900
