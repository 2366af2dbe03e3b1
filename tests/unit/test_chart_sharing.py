"""Viewers of one chart share its drawing for a second; other scopes and subjects never do."""

from __future__ import annotations

from typing import Any

import pytest

from novacron.monitoring import charts
from novacron.monitoring.query import PromAPI, Scope, StoreEndpoint


class CountingAPI(PromAPI):
    """A store answering every range query with one CPU line, counting the queries."""

    calls = 0

    def get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        CountingAPI.calls += 1
        line = {"metric": {"chart_line": "cpu"}, "values": [[1.0, "0.5"]]}
        return {"status": "success", "data": {"resultType": "matrix", "result": [line]}}


def _draw(tenant: str, vm: str) -> charts.Chart:
    api = CountingAPI(StoreEndpoint("http://127.0.0.1:1", "victoriametrics"), Scope(tenant))
    return charts.draw(api, charts.VM_PLOTS, vm, f'{{vm_id="{vm}"}}', "5m", 1.0)


def test_one_query_per_second_for_every_viewer_of_a_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charts, "_recent", charts._RecentCharts())
    now = [1000.2]
    monkeypatch.setattr("novacron.monitoring.charts.time.time", lambda: now[0])
    CountingAPI.calls = 0
    first = _draw("t-1", "vm-1")
    assert [_draw("t-1", "vm-1") for _ in range(50)] == [first] * 50
    assert CountingAPI.calls == 1
    _draw("t-2", "vm-1")  # another tenant's scope draws its own
    _draw("t-1", "vm-2")  # and another VM
    assert CountingAPI.calls == 3
    now[0] = 1001.2  # the next step's chart is drawn again
    _draw("t-1", "vm-1")
    assert CountingAPI.calls == 4
