"""Where probe results are written and SLOs read: the node's metrics store, behind two calls.

``series_store(ctx)`` is the one place that knows how: the node's ``ctx.metrics_store`` (remote write
in, Prometheus query API out) when the node runs one; until that is wired on every node, a
VictoriaMetrics at ``NOVACRON_METRICS_URL`` (text import in, query API out).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from novacron.errors import InvalidInput, Unavailable

if TYPE_CHECKING:
    from novacron.context import Context

#: (metric, labels, unix ms, value)
Point = tuple[str, Mapping[str, str], int, float]


class SeriesStore(Protocol):
    """What probes and SLOs need of a metrics store."""

    def write_points(self, points: Sequence[Point]) -> None:
        """Store ``points``; ``Unavailable`` when the store does not take them."""

    def query(self, promql: str, at: float | None = None) -> Any:
        """An instant query's ``data`` (``resultType``, ``result``)."""

    def query_range(self, promql: str, start: float, end: float, step: float) -> Any:
        """A range query's ``data``."""


class _NodeStore:
    """The node's metrics store (``monitoring/store.py``)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._series = importlib.import_module("novacron.monitoring.remote_write").Series

    def write_points(self, points: Sequence[Point]) -> None:
        try:
            self.store.write([(self._series(name, labels), ms, value) for name, labels, ms, value in points])
        except Unavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a refusal's class depends on the engine; all mean "not stored"
            raise Unavailable(f"The metrics store did not take the probe results: {exc}") from exc

    def query(self, promql: str, at: float | None = None) -> Any:
        return self.store.query(promql, at)

    def query_range(self, promql: str, start: float, end: float, step: float) -> Any:
        return self.store.query_range(promql, start, end, step)


class VictoriaMetricsStore:
    """A VictoriaMetrics at ``url``: Prometheus text import in, the Prometheus query API out."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        # one pooled client (a client per call costs ~50 ms of set-up); httpx clients are thread-safe
        self.client = httpx.Client(timeout=timeout_s)

    def write_points(self, points: Sequence[Point]) -> None:
        lines = []
        for name, labels, ms, value in points:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{inner}}} {value!r} {ms}")
        try:
            r = self.client.post(f"{self.url}/api/v1/import/prometheus", content="\n".join(lines) + "\n")
        except httpx.HTTPError as exc:
            raise Unavailable(f"The metrics store at {self.url} does not answer: {exc}") from exc
        if r.status_code >= 300:
            raise Unavailable(f"The metrics store refused the samples: {r.status_code} {r.text[:200]}")

    def query(self, promql: str, at: float | None = None) -> Any:
        args = {"query": promql} if at is None else {"query": promql, "time": repr(at)}
        return self._get("/api/v1/query", args)

    def query_range(self, promql: str, start: float, end: float, step: float) -> Any:
        args = {"query": promql, "start": repr(start), "end": repr(end), "step": repr(step)}
        return self._get("/api/v1/query_range", args)

    def _get(self, path: str, args: dict[str, str]) -> Any:
        try:
            r = self.client.get(self.url + path, params=args)
            answer = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"The metrics store at {self.url} does not answer: {exc}") from exc
        if answer.get("status") != "success":
            if r.status_code in (400, 422):
                raise InvalidInput("query", str(answer.get("error")))
            raise Unavailable(f"The metrics store answered {r.status_code}: {answer.get('error')}")
        return answer["data"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_store(ctx: Context) -> SeriesStore | None:
    """The store probe results go to and SLOs are read from, or None where there is none."""
    node_store = getattr(ctx, "metrics_store", None)
    if node_store is not None:
        return _NodeStore(node_store)
    url = os.environ.get("NOVACRON_METRICS_URL", "")
    if not url:
        return None
    if _fallback.get(url) is None:
        _fallback[url] = VictoriaMetricsStore(url)
    return _fallback[url]


#: the fallback store of each URL, kept for its pooled connections (a per-process cache that goes
#: with the fallback once every node has ``ctx.metrics_store``)
_fallback: dict[str, VictoriaMetricsStore] = {}


def scalar_of(data: Any) -> float | None:
    """The single value of an instant query's vector (None when it has no series)."""
    result = data.get("result") or []
    if not result:
        return None
    return float(result[0]["value"][1])
