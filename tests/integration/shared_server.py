"""One server per test module, for modules whose tests change nothing another one checks (a server
start and stop cost each test ~6 s): ``from tests.integration.shared_server import server`` puts
this module-scoped ``server`` in place of the suite's per-test one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Server, started_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from started_server()
