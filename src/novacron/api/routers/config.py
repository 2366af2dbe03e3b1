"""/v1/config: the live configuration (platform administrators): read, change, history, diff,
rollback. A change is validated whole (422 naming ``body.<section>.<key>`` and why), refused on
a stale ``If-Match`` (412), audited, idempotent with ``Idempotency-Key``, and applied on every
replica without a restart (``configsvc``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, etag_of
from novacron.api.deps import IdempotencyDep, service
from novacron.configsvc.schema import LiveDocument, describe
from novacron.configsvc.service import ConfigService, ConfigState

router = APIRouter(prefix="/v1/config", tags=["config"])
ConfigReader = Annotated[ConfigService, Depends(service(ConfigService, "config:read", write=False))]
ConfigWriter = Annotated[ConfigService, Depends(service(ConfigService, "config:write"))]
_ETAG = re.compile(r'^(?:W/)?"config\.v(\d+)"$')


class ConfigPatch(LiveDocument):
    """The settings to change (``null``: back to the start-up value) and why."""

    reason: str = Field(default="", max_length=500, description="why (kept in the history)")


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=0, description="the version to restore (0: the start-up values)")
    reason: str = Field(default="", max_length=500)


class SettingInfo(BaseModel):
    key: str
    type: str
    enum: list[str] | None
    minimum: float | None
    maximum: float | None
    description: str


class ConfigOut(BaseModel):
    version: int = Field(description="0: nothing set, every value from the environment")
    document: dict[str, dict[str, Any]] = Field(description="what operators set, by section")
    effective: dict[str, dict[str, Any]] = Field(description="every live setting's value in force")
    author: str
    reason: str
    created_at: datetime | None
    rollback_of: int | None
    applied_version: int = Field(description="the version the answering replica runs with")

    @classmethod
    def of(cls, state: ConfigState) -> ConfigOut:
        return cls(**vars(state))


class ConfigFull(ConfigOut):
    settings: list[SettingInfo] = Field(description="every live setting: type, bounds, description")


class HistoryOut(BaseModel):
    items: list[ConfigOut]


class ChangeOut(BaseModel):
    key: str
    old: Any
    new: Any


class DiffOut(BaseModel):
    from_version: int
    to_version: int
    changes: list[ChangeOut]


class _Tag:
    id = "config"

    def __init__(self, version: int) -> None:
        self.version = version


def _expected(request: Request) -> int | None:
    """The version ``If-Match`` names (-1: a tag of something else, which can only be stale)."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    found = _ETAG.match(header.strip())
    return int(found.group(1)) if found else -1


def _answer(state: ConfigState, idem: IdempotencyDep) -> JSONResponse:
    payload = ConfigOut.of(state).model_dump(mode="json")
    idem.remember(200, payload)
    return JSONResponse(payload, headers={"ETag": etag_of(_Tag(state.version))})


@router.get("", response_model=ConfigFull)
def get_config(config: ConfigReader, response: Response) -> ConfigFull:
    state = config.state()
    response.headers["ETag"] = etag_of(_Tag(state.version))
    return ConfigFull(**vars(state), settings=[SettingInfo(**row) for row in describe()])


@router.patch("", response_model=ConfigOut)
def change_config(
    body: ConfigPatch, request: Request, config: ConfigWriter, idem: IdempotencyDep
) -> Response:
    """Set live settings (a partial document); 412 when ``If-Match`` names an older version."""
    if (replay := idem.replay(body)) is not None:
        return replay
    expected = _expected(request)
    if expected == -1:
        check_if_match(request, _Tag(-1))  # 412, worded like every other stale If-Match
    patch = body.model_dump(exclude_unset=True, exclude={"reason"})
    return _answer(config.change(patch, reason=body.reason, expected_version=expected), idem)


@router.post("/rollback", response_model=ConfigOut)
def rollback_config(body: Rollback, config: ConfigWriter, idem: IdempotencyDep) -> Response:
    """A new version equal to ``version`` (the history keeps every version in between)."""
    if (replay := idem.replay(body)) is not None:
        return replay
    return _answer(config.rollback(body.version, reason=body.reason), idem)


@router.get("/history", response_model=HistoryOut)
def config_history(config: ConfigReader, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> HistoryOut:
    return HistoryOut(items=[ConfigOut.of(s) for s in config.history(limit)])


@router.get("/diff", response_model=DiffOut)
def config_diff(
    config: ConfigReader,
    from_version: Annotated[int, Query(alias="from", ge=0)],
    to_version: Annotated[int | None, Query(alias="to", ge=0)] = None,
) -> DiffOut:
    """The live settings whose values differ between two versions (``to``: the newest)."""
    diff = config.diff(from_version, to_version)
    return DiffOut(
        from_version=diff.old, to_version=diff.new, changes=[ChangeOut(**vars(c)) for c in diff.changes]
    )
