"""Tenant-scoped PromQL over the metrics store's Prometheus HTTP API.

A tenant's caller reads only series labelled with its own ``tenant_id``, whatever query it sends:

- on VictoriaMetrics the store enforces it: every request carries ``extra_label=tenant_id=<tenant>``,
  set here and never taken from the client (several ``extra_filters[]`` are OR'ed by the engine, so a
  client allowed to add one would read everything);
- on Prometheus, which has no such parameter, the query is rewritten so that every selector requires
  the tenant label (``monitoring/promql.py``).

Either way only the parameters this module names are sent to the engine (query, time, start, end,
step, timeout, match[]): nothing the client adds is forwarded. Platform administrators read every
series, or one tenant's when they name it. The engine's refusals of a query become ``InvalidInput`` on
``query``; an engine that does not answer becomes ``Unavailable``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import promql_parser as pp

from novacron.errors import Forbidden, InvalidInput, Unavailable
from novacron.monitoring.promql import TENANT_LABEL, scope_to_tenant, selector_matchers
from novacron.service import Service

if TYPE_CHECKING:
    from novacron.context import Context

VICTORIAMETRICS = "victoriametrics"
PROMETHEUS = "prometheus"
#: the longest a query may run in the engine; a client may ask for less
MAX_TIMEOUT_S = 30.0
#: points per series of a range query (Prometheus refuses more than 11,000 too)
MAX_POINTS = 11_000
#: series a series/labels lookup may return
MAX_SERIES = 10_000
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@functools.cache
def _store_client() -> httpx.Client:
    # one connection pool for every request to the store: a client per request pays for an SSL
    # context and a TCP handshake each time (about 50 ms a query here, 1 ms with the pool)
    return httpx.Client(limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))


class QueryEndpoint(Protocol):
    """Where the store answers the Prometheus HTTP API (``ctx.metrics_store`` satisfies this)."""

    @property
    def query_url(self) -> str:
        """The API's base URL, ``http://127.0.0.1:8428``."""
        ...

    @property
    def engine(self) -> str:
        """``victoriametrics`` or ``prometheus`` (Prometheus-API stores without label enforcement)."""
        ...


@dataclass(frozen=True)
class StoreEndpoint:
    """A store named by its URL and engine kind (an external store, a test's engine)."""

    query_url: str
    engine: str


@dataclass(frozen=True)
class Scope:
    """Whose series a request reads: one tenant's, or (None) every series (administrators)."""

    tenant_id: str | None


def _query_error(reason: str, field: str = "query") -> InvalidInput:
    return InvalidInput(field, reason, part="query")


def parse_time(value: str, field: str) -> float:
    """A Prometheus API time (unix seconds or RFC 3339) as unix seconds; InvalidInput on ``field``."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise _query_error("must be unix seconds or an RFC 3339 time", field) from exc
    if not math.isfinite(seconds):
        raise _query_error("must be a finite time", field)
    return seconds


def parse_seconds(value: str, field: str) -> float:
    """A duration as seconds (``15``, ``1.5``, ``30s``, ``5m``); InvalidInput on ``field``."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = pp.parse_duration(value).total_seconds()
        except ValueError as exc:
            raise _query_error("must be seconds or a duration such as 30s or 5m", field) from exc
    if not math.isfinite(seconds) or seconds <= 0:
        raise _query_error("must be a positive duration", field)
    return seconds


class PromAPI:
    """The store's Prometheus HTTP API for one scope: scoping applied, errors in domain terms."""

    def __init__(self, endpoint: QueryEndpoint, scope: Scope, timeout_s: float = MAX_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.scope = scope
        self.timeout_s = min(timeout_s, MAX_TIMEOUT_S)

    @property
    def _enforced_by_store(self) -> bool:
        return self.endpoint.engine == VICTORIAMETRICS

    def scoped_query(self, promql: str) -> str:
        """The query as the engine must run it for this scope."""
        if self.scope.tenant_id is None or self._enforced_by_store:
            return promql
        return scope_to_tenant(promql, self.scope.tenant_id)

    def scoped_matches(self, matches: list[str]) -> list[str]:
        """``match[]`` selectors for this scope; a tenant with none given matches its own series."""
        tenant = self.scope.tenant_id
        if tenant is None or self._enforced_by_store:
            return matches
        if not matches:
            return [f"{{{TENANT_LABEL}={json.dumps(tenant)}}}"]
        return [selector_matchers(m, tenant) for m in matches]

    def get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET <store>/api/v1/<path>`` with ``params`` plus the scope's enforcement: the engine's
        ``data`` (and ``warnings``) in the Prometheus API's envelope."""
        sent = [*params, ("timeout", f"{self.timeout_s:g}s")]
        if self.scope.tenant_id is not None and self._enforced_by_store:
            sent.append(("extra_label", f"{TENANT_LABEL}={self.scope.tenant_id}"))
        url = f"{self.endpoint.query_url.rstrip('/')}/api/v1/{path}"
        try:
            answer = _store_client().get(url, params=tuple(sent), timeout=self.timeout_s + 5)
        except httpx.TimeoutException as exc:
            raise _query_error(
                f"the metrics store did not answer in {self.timeout_s:g} s: narrow the time range, "
                "raise step or select fewer series"
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"The metrics store ({self.endpoint.engine}) is not answering: {exc}. The node restarts "
                "its embedded store by itself; retry in a few seconds, and if it persists check the "
                "store's log in the state directory (metrics/) or the metrics_url setting.",
                retry_after=5,
            ) from exc
        return self._answer(answer)

    def _answer(self, answer: httpx.Response) -> dict[str, Any]:
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.is_success and body.get("status") == "success":
            envelope = {"status": "success", "data": body.get("data")}
            if body.get("warnings"):
                envelope["warnings"] = body["warnings"]
            return envelope
        message = str(body.get("error") or answer.text[:500] or answer.reason_phrase)
        kind = body.get("errorType", "")
        if kind == "timeout" or (answer.status_code == 503 and "timeout" in message.lower()):
            raise _query_error(f"the query took longer than {self.timeout_s:g} s ({message}): narrow it")
        if answer.status_code in (400, 422) or kind in ("bad_data", "execution"):
            raise _query_error(message)
        raise Unavailable(
            f"The metrics store ({self.endpoint.engine}) failed with HTTP {answer.status_code}: {message}",
            retry_after=5,
        )


def store_endpoint(ctx: Context | None) -> QueryEndpoint:
    """The context's metrics store; Unavailable when this process runs none."""
    endpoint = ctx.metrics_store if ctx is not None else None
    if endpoint is None:
        raise Unavailable("No metrics store is configured on this server (setting metrics_engine).")
    return endpoint


class MetricsQueryService(Service):
    """PromQL queries and series lookups over the caller's own series (administrators: any)."""

    raises = (Unavailable,)

    def _api(self, tenant: str | None, timeout: str | None = None) -> PromAPI:
        timeout_s = parse_seconds(timeout, "timeout") if timeout is not None else MAX_TIMEOUT_S
        if self.principal.is_global:
            scope = Scope(tenant)
        elif tenant is not None and tenant != self.principal.tenant_id:
            raise Forbidden("Only platform administrators may query another tenant's metrics.")
        else:
            if self.principal.tenant_id is None:
                raise Forbidden("This caller belongs to no tenant and so has no metrics to query.")
            scope = Scope(self.principal.tenant_id)
        return PromAPI(store_endpoint(self.ctx), scope, timeout_s)

    def query(
        self, promql: str, at: str | None, timeout: str | None, tenant: str | None = None
    ) -> dict[str, Any]:
        """An instant query at ``at`` (default: now), as ``/api/v1/query`` answers it."""
        api = self._api(tenant, timeout)
        params = [("query", api.scoped_query(promql))]
        if at is not None:
            params.append(("time", f"{parse_time(at, 'time'):.3f}"))
        return api.get("query", params)

    def query_range(  # noqa: PLR0913 - the Prometheus API's own parameters
        self, promql: str, start: str, end: str, step: str, timeout: str | None, tenant: str | None = None
    ) -> dict[str, Any]:
        """A range query, as ``/api/v1/query_range`` answers it; at most MAX_POINTS steps."""
        api = self._api(tenant, timeout)
        first, last, step_s = parse_time(start, "start"), parse_time(end, "end"), parse_seconds(step, "step")
        if last < first:
            raise _query_error("must not be before start", "end")
        if (last - first) / step_s > MAX_POINTS:
            raise _query_error(
                f"gives {(last - first) / step_s:.0f} points per series, more than {MAX_POINTS}: "
                "raise step or narrow the range",
                "step",
            )
        params = [("query", api.scoped_query(promql)), ("start", f"{first:.3f}"), ("end", f"{last:.3f}")]
        return api.get("query_range", [*params, ("step", f"{step_s:g}")])

    def series(
        self, matches: list[str], start: str | None, end: str | None, tenant: str | None = None
    ) -> dict[str, Any]:
        """The series matching every ``match[]`` (at least one is required), as ``/api/v1/series``."""
        if not matches:
            raise _query_error("at least one series selector is required", "match[]")
        api = self._api(tenant)
        return api.get("series", self._lookup_params(api, matches, start, end))

    def labels(
        self, matches: list[str], start: str | None, end: str | None, tenant: str | None = None
    ) -> dict[str, Any]:
        """The label names of the caller's series (optionally of those matching ``match[]``)."""
        api = self._api(tenant)
        return api.get("labels", self._lookup_params(api, matches, start, end))

    def label_values(  # noqa: PLR0913 - the Prometheus API's own parameters
        self, name: str, matches: list[str], start: str | None, end: str | None, tenant: str | None = None
    ) -> dict[str, Any]:
        """The values of label ``name`` on the caller's series."""
        if not _LABEL_NAME.fullmatch(name):
            raise InvalidInput("name", "must be a label name ([a-zA-Z_][a-zA-Z0-9_]*)", part="path")
        api = self._api(tenant)
        return api.get(f"label/{name}/values", self._lookup_params(api, matches, start, end))

    @staticmethod
    def _lookup_params(
        api: PromAPI, matches: list[str], start: str | None, end: str | None
    ) -> list[tuple[str, str]]:
        params = [("match[]", m) for m in api.scoped_matches(matches)]
        if start is not None:
            params.append(("start", f"{parse_time(start, 'start'):.3f}"))
        if end is not None:
            params.append(("end", f"{parse_time(end, 'end'):.3f}"))
        params.append(("limit", str(MAX_SERIES)))
        return params
