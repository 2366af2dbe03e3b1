"""Fixtures shared by the multi-host integration tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import Server, destroy_server, make_server
from tests.integration.test_remote_agent import Agent


@pytest.fixture
def two_hosts() -> Iterator[tuple[Server, Agent]]:
    """The all-in-one node (its embedded agent is host A) plus a remote agent, host B (not started)."""
    server = make_server()
    server.start(timeout_s=120)  # a loaded CI machine (TCG guests of other runs) starts it slowly
    agent = Agent(server, "node-b")
    try:
        yield server, agent
    finally:
        agent.stop()
        subprocess.run(["pkill", "-9", "-f", f"{agent.state_dir}/"], check=False)
        shutil.rmtree(agent.state_dir, ignore_errors=True)
        destroy_server(server)
