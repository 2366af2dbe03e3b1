"""/v1/metrics: PromQL over the caller's own series, answering as the Prometheus HTTP API does, so that
Grafana-style clients can use ``<server>/v1/metrics`` as a Prometheus data source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from novacron.api.deps import service
from novacron.monitoring.charts import RANGES, Chart, ChartService, RangeName
from novacron.monitoring.query import MetricsQueryService

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
F = TypeVar("F", bound=Callable[..., Any])

MetricsReader = Annotated[
    MetricsQueryService, Depends(service(MetricsQueryService, "metrics:read", write=False))
]

Promql = Annotated[str, Query(min_length=1, max_length=20_000, description="a PromQL expression")]
Timeout = Annotated[str | None, Query(description="how long the query may run (at most 30 s), e.g. 10s")]
Tenant = Annotated[
    str | None, Query(max_length=64, description="platform administrators: read only this tenant's series")
]
Matches = Annotated[
    list[str], Query(alias="match[]", max_length=20, description='series selectors, e.g. up{job="x"}')
]
SomeMatches = Annotated[
    list[str] | None, Query(alias="match[]", max_length=20, description="series selectors")
]
Start = Annotated[str | None, Query(description="unix seconds or RFC 3339")]
End = Annotated[str | None, Query(description="unix seconds or RFC 3339")]


ChartReader = Annotated[ChartService, Depends(service(ChartService, "metrics:read", write=False))]
ChartRange = Annotated[
    RangeName | None,
    Query(
        alias="range",
        description=f"a chart over this range ({', '.join(RANGES)}) instead of the raw recent samples",
    ),
]


class ChartSeriesOut(BaseModel):
    name: str
    title: str
    unit: str = Field(description="cores, bytes, bytes/s, ops/s, load, processes")
    points: list[tuple[float, float]] = Field(description="(unix time, value) pairs")


class ChartOut(BaseModel):
    """A chart: the range, the step between points (the store aggregates each step) and the lines."""

    id: str
    range: str
    start: float
    end: float
    step_s: float
    series: list[ChartSeriesOut]

    @classmethod
    def of(cls, chart: Chart) -> ChartOut:
        return cls(
            id=chart.subject_id,
            range=chart.range,
            start=chart.start,
            end=chart.end,
            step_s=chart.step_s,
            series=[
                ChartSeriesOut(name=s.name, title=s.title, unit=s.unit, points=s.points) for s in chart.series
            ],
        )

    @classmethod
    def response(cls, chart: Chart) -> Response:
        """The chart as its JSON answer, serialized once by pydantic: FastAPI's own path (validate
        the returned model, dump it to Python objects, encode those) costs ten times as much for a
        chart's 3,300 points, which a thousand live viewers pay every few seconds."""
        return Response(cls.of(chart).model_dump_json(), media_type="application/json")


#: how the live chart streams are documented: server-sent events, not JSON
LIVE_CHART_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}


def live_chart_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    """A live chart's server-sent events (``monitoring/livecharts.py``): never cached, and not
    buffered by a proxy that honours ``X-Accel-Buffering``."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)


def prometheus_path(path: str) -> Callable[[F], F]:
    """Also answer at ``/v1/metrics/api/v1<path>``, where a Prometheus client configured with
    ``<server>/v1/metrics`` as its base URL (Grafana's data source) asks; the same operation, so it
    is documented once."""
    return router.get(
        f"/api/v1{path}",
        response_model=PromResponse,
        response_model_exclude_none=True,
        include_in_schema=False,
    )


class PromResponse(BaseModel):
    """The Prometheus HTTP API's envelope: ``data`` is as ``/api/v1/<endpoint>`` documents it."""

    status: str
    data: Any
    warnings: list[str] | None = None


@router.get("/query", response_model=PromResponse, response_model_exclude_none=True)
@prometheus_path("/query")
def instant_query(
    metrics: MetricsReader,
    query: Promql,
    time: Annotated[str | None, Query(description="evaluation time; default now")] = None,
    timeout: Timeout = None,
    tenant: Tenant = None,
) -> PromResponse:
    """An instant query over the caller's series (``/api/v1/query``)."""
    return PromResponse(**metrics.query(query, time, timeout, tenant))


@router.get("/query_range", response_model=PromResponse, response_model_exclude_none=True)
@prometheus_path("/query_range")
def range_query(  # noqa: PLR0913 - the Prometheus API's own parameters
    metrics: MetricsReader,
    query: Promql,
    start: Annotated[str, Query(description="unix seconds or RFC 3339")],
    end: Annotated[str, Query(description="unix seconds or RFC 3339")],
    step: Annotated[str, Query(description="seconds or a duration (15s, 1m)")],
    timeout: Timeout = None,
    tenant: Tenant = None,
) -> PromResponse:
    """A range query over the caller's series (``/api/v1/query_range``), at most 11,000 points."""
    return PromResponse(**metrics.query_range(query, start, end, step, timeout, tenant))


@router.get("/series", response_model=PromResponse, response_model_exclude_none=True)
@prometheus_path("/series")
def series(
    metrics: MetricsReader, match: Matches, start: Start = None, end: End = None, tenant: Tenant = None
) -> PromResponse:
    """The caller's series matching ``match[]`` (``/api/v1/series``)."""
    return PromResponse(**metrics.series(match, start, end, tenant))


@router.get("/labels", response_model=PromResponse, response_model_exclude_none=True)
@prometheus_path("/labels")
def labels(
    metrics: MetricsReader,
    match: SomeMatches = None,
    start: Start = None,
    end: End = None,
    tenant: Tenant = None,
) -> PromResponse:
    """The label names of the caller's series (``/api/v1/labels``)."""
    return PromResponse(**metrics.labels(match or [], start, end, tenant))


@router.get("/label/{name}/values", response_model=PromResponse, response_model_exclude_none=True)
@prometheus_path("/label/{name}/values")
def label_values(  # noqa: PLR0913 - the Prometheus API's own parameters
    metrics: MetricsReader,
    name: Annotated[str, Path(max_length=128)],
    match: SomeMatches = None,
    start: Start = None,
    end: End = None,
    tenant: Tenant = None,
) -> PromResponse:
    """The values of label ``name`` on the caller's series (``/api/v1/label/<name>/values``)."""
    return PromResponse(**metrics.label_values(name, match or [], start, end, tenant))
