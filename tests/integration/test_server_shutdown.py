"""A node stops promptly and cleanly while clients hold event streams open (the dashboard always
does): it gives open requests ``SHUTDOWN_GRACE_S``, then closes them, and exits by itself rather
than being killed."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from novacron.server import SHUTDOWN_GRACE_S
from tests.conftest import destroy_server, make_server


def test_a_node_with_open_event_streams_stops_within_its_grace_period() -> None:
    server = make_server(NOVACRON_EMBEDDED_AGENT="0")
    server.start()
    ended: list[float] = []
    try:
        token = server.token()
        opened = threading.Event()

        def follow() -> None:
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            try:
                with httpx.stream("GET", f"{server.url}/v1/events/stream", headers=headers, timeout=60) as r:
                    assert r.status_code == 200
                    opened.set()
                    for _ in r.iter_bytes():
                        pass
            except httpx.HTTPError:
                pass
            ended.append(time.monotonic())

        streams = [threading.Thread(target=follow, daemon=True) for _ in range(3)]
        for stream in streams:
            stream.start()
        assert opened.wait(15), "the event stream did not open"
        time.sleep(0.5)  # all three connected
        assert server.proc is not None
        stopping = time.monotonic()
        server.proc.terminate()
        code = server.proc.wait(SHUTDOWN_GRACE_S + 20)
        took = time.monotonic() - stopping
        # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean stop
        assert code in (0, -signal.SIGTERM), f"the node exited with {code}"
        assert took < SHUTDOWN_GRACE_S + 10, took
        print(f"stopped in {took:.1f} s with 3 event streams open")
        for stream in streams:
            stream.join(10)
        assert len(ended) == 3 and max(ended) - stopping < SHUTDOWN_GRACE_S + 10
    finally:
        destroy_server(server)
