"""/v1/silences and /v1/alerts: muting alerts for a while, and the alerts pending, firing or resolved."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.api.routers.alerts import Matcher
from novacron.monitoring.alerting.silences import (
    AlertService,
    AlertView,
    Silence,
    SilenceService,
    SilenceSpec,
)

router = APIRouter(tags=["alerts"])
SilenceReader = Annotated[SilenceService, Depends(service(SilenceService, "alert:read", write=False))]
SilenceWriter = Annotated[SilenceService, Depends(service(SilenceService, "alert:write"))]
AlertReader = Annotated[AlertService, Depends(service(AlertService, "alert:read", write=False))]


class SilenceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: list[Matcher] = Field(
        max_length=16, description="alerts it mutes; a tenant's is always confined to its own alerts"
    )
    duration_s: int = Field(ge=1, le=366 * 86400)
    comment: str = Field(min_length=1, max_length=1000)
    starts_at: AwareDatetime | None = None
    tenant_id: str | None = Field(
        default=None, max_length=40, description="administrators: one tenant's alerts"
    )


class SilenceOut(BaseModel):
    id: str
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    state: str
    tenant_id: str | None

    @classmethod
    def of(cls, s: Silence) -> SilenceOut:
        return cls(
            id=s.id,
            matchers=[Matcher.model_validate(m) for m in s.matchers],
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            comment=s.comment,
            created_by=s.created_by,
            state=s.state,
            tenant_id=s.tenant_id,
        )


class SilenceList(BaseModel):
    items: list[SilenceOut]


@router.post("/v1/silences", status_code=201, response_model=SilenceOut)
def create_silence(body: SilenceCreate, silences: SilenceWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    silence = silences.create(
        SilenceSpec(
            matchers=[m.model_dump() for m in body.matchers],
            duration_s=body.duration_s,
            comment=body.comment,
            starts_at=body.starts_at,
            tenant_id=body.tenant_id,
        )
    )
    return idem.created(SilenceOut.of(silence), silence)


@router.get("/v1/silences", response_model=SilenceList)
def list_silences(silences: SilenceReader) -> SilenceList:
    return SilenceList(items=[SilenceOut.of(s) for s in silences.list()])


@router.get("/v1/silences/{silence_id}", response_model=SilenceOut)
def get_silence(silence_id: str, silences: SilenceReader) -> SilenceOut:
    return SilenceOut.of(silences.get(silence_id))


@router.delete("/v1/silences/{silence_id}", status_code=204)
def expire_silence(silence_id: str, silences: SilenceWriter) -> Response:
    silences.expire(silence_id)
    return Response(status_code=204)


class AlertOut(BaseModel):
    name: str
    state: Literal["pending", "firing", "resolved"]
    severity: str
    rule_id: str | None
    tenant_id: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: datetime | None
    ends_at: datetime | None
    value: float | None

    @classmethod
    def of(cls, a: AlertView) -> AlertOut:
        return cls.model_validate(a, from_attributes=True)


class AlertList(BaseModel):
    items: list[AlertOut]


@router.get("/v1/alerts", response_model=AlertList)
def list_alerts(
    alerts: AlertReader, state: Literal["pending", "firing", "resolved"] | None = None
) -> AlertList:
    return AlertList(items=[AlertOut.of(a) for a in alerts.list(state)])
