"""/v1/webhooks: a tenant's URLs that receive its events, signed (Standard Webhooks), retried, logged.

A subscription's signing secret is in the answer that made it (create, rotate-secret) and never
again; a retry of that request with its Idempotency-Key answers ``secret: null``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import WebhookDelivery, WebhookSubscription
from novacron.webhooks.service import SubscriptionChange, SubscriptionSpec, WebhookService

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Reader = Annotated[WebhookService, Depends(service(WebhookService, "webhook:read", write=False))]
Writer = Annotated[WebhookService, Depends(service(WebhookService, "webhook:write"))]
Listing = Annotated[ListParams, Depends(list_query(("name", "created_at"), "created_at"))]
DeliveryListing = Annotated[ListParams, Depends(list_query(("created_at", "next_attempt_at"), "-created_at"))]

EventType = Annotated[str, Field(min_length=1, max_length=64, description="vm.created, or a pattern: vm.*")]
ResourceType = Annotated[str, Field(min_length=1, max_length=32)]
URL_HELP = "http(s) URL; checked by the egress guard"


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="1-64 lowercase letters, digits, . _ -"
    )
    url: str = Field(min_length=8, max_length=2048, description=URL_HELP)
    event_types: list[EventType] = Field(min_length=1, max_length=32)
    #: only events about these kinds of resource (vm, volume, backup...); empty: any
    resource_types: list[ResourceType] = Field(default_factory=list, max_length=32)
    #: only the events of this project (id or name)
    project: str | None = Field(default=None, max_length=64)
    #: a Standard Webhooks secret (``whsec_`` + base64 of 24-64 bytes); omitted: one is made
    secret: str | None = Field(default=None, min_length=20, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=40, description="administrators: the owner")


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, min_length=8, max_length=2048, description=URL_HELP)
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=32)
    resource_types: list[ResourceType] | None = Field(default=None, max_length=32)
    #: pause or resume deliveries (resuming sends what waited at once)
    state: Literal["active", "paused"] | None = None


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: how long the previous secrets keep signing beside the new one (0: stop now)
    keep_previous_s: int = Field(default=86400, ge=0, le=7 * 86400)


class WebhookOut(BaseModel):
    id: str
    tenant_id: str | None
    project_id: str | None
    name: str
    url: str = Field(description="without credentials or query (the whole URL is sealed at rest)")
    event_types: list[str]
    resource_types: list[str]
    #: active or paused
    state: str
    paused_reason: str | None
    consecutive_failures: int
    #: secrets signing now (more than one during a rotation)
    signing_secrets: int
    created_at: datetime
    version: int

    @classmethod
    def of(cls, w: WebhookSubscription) -> WebhookOut:
        return cls(
            id=w.id,
            tenant_id=w.tenant_id,
            project_id=w.project_id,
            name=w.name,
            url=w.url_shown,
            event_types=list(w.event_types),
            resource_types=list(w.resource_types),
            state=w.state,
            paused_reason=w.paused_reason,
            consecutive_failures=w.consecutive_failures,
            signing_secrets=len(w.secrets),
            created_at=w.created_at,
            version=w.version,
        )


class WebhookWithSecret(WebhookOut):
    #: the signing secret: shown in this answer only, so store it now
    secret: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header, the same at every attempt")
    event_type: str
    event_seq: int
    #: pending, succeeded or failed
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    last_response: str | None
    last_duration_ms: int | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, d: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=d.id,
            event_type=d.event_type,
            event_seq=d.event_seq,
            state=d.state,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.state == "pending" else None,
            last_status=d.last_status,
            last_error=d.last_error,
            last_response=d.last_response,
            last_duration_ms=d.last_duration_ms,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )


def _with_secret(idem: Any, status: int, sub: WebhookSubscription, secret: str) -> JSONResponse:
    out = WebhookOut.of(sub).model_dump(mode="json")
    idem.remember(status, {**out, "secret": None})  # the secret is never stored for a replay
    return JSONResponse({**out, "secret": secret}, status_code=status)


@router.post("", status_code=201, response_model=WebhookWithSecret)
def create_webhook(body: WebhookCreate, hooks: Writer, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    spec = SubscriptionSpec(
        body.name, body.url, tuple(body.event_types), tuple(body.resource_types), body.project,
        body.secret, body.tenant_id,
    )  # fmt: skip
    sub, secret = hooks.create(spec)
    return _with_secret(idem, 201, sub, secret)


@router.get("", response_model=Page[WebhookOut])
def list_webhooks(hooks: Reader, page: Listing) -> Page[WebhookOut]:
    rows, nxt = hooks.list(page)
    return Page[WebhookOut](items=[WebhookOut.of(w) for w in rows], next_cursor=nxt)


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: str, response: Response, hooks: Reader) -> WebhookOut:
    sub = hooks.get(webhook_id)
    set_etag(response, sub)
    return WebhookOut.of(sub)


@router.patch("/{webhook_id}", response_model=WebhookOut)
def update_webhook(
    webhook_id: str, body: WebhookUpdate, request: Request, response: Response, hooks: Writer
) -> WebhookOut:
    sub = hooks.get(webhook_id)
    check_if_match(request, sub)
    change = SubscriptionChange(
        url=body.url,
        event_types=tuple(body.event_types) if body.event_types is not None else None,
        resource_types=tuple(body.resource_types) if body.resource_types is not None else None,
        state=body.state,
    )
    sub = hooks.update(sub, change)
    set_etag(response, sub)
    return WebhookOut.of(sub)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, request: Request, hooks: Writer) -> Response:
    """Delete the subscription and its delivery log; nothing more is sent."""
    sub = hooks.get(webhook_id)
    check_if_match(request, sub)
    hooks.delete(sub)
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
def rotate_webhook_secret(
    webhook_id: str, body: RotateSecret, hooks: Writer, idem: IdempotencyDep
) -> Response:
    """A new signing secret; the previous ones keep signing beside it for ``keep_previous_s``."""
    if (replay := idem.replay(body)) is not None:
        return replay
    sub = hooks.get(webhook_id)
    secret = hooks.rotate_secret(sub, body.keep_previous_s)
    return _with_secret(idem, 200, sub, secret)


@router.post("/{webhook_id}/test", status_code=202, response_model=DeliveryOut)
def test_webhook(webhook_id: str, hooks: Writer, idem: IdempotencyDep) -> Response:
    """Queue a ``webhook.test`` message, sent at the dispatcher's next round like any event."""
    if (replay := idem.replay({})) is not None:
        return replay
    delivery = hooks.send_test(hooks.get(webhook_id))
    out = DeliveryOut.of(delivery).model_dump(mode="json")
    idem.remember(202, out)
    return JSONResponse(out, status_code=202)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut])
def list_webhook_deliveries(
    webhook_id: str,
    hooks: Reader,
    page: DeliveryListing,
    state: Annotated[str | None, Query(description="pending, succeeded or failed")] = None,
) -> Page[DeliveryOut]:
    rows, nxt = hooks.deliveries(hooks.get(webhook_id), page, state)
    return Page[DeliveryOut](items=[DeliveryOut.of(d) for d in rows], next_cursor=nxt)


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry", status_code=202, response_model=DeliveryOut)
def retry_webhook_delivery(webhook_id: str, delivery_id: str, hooks: Writer) -> DeliveryOut:
    """Send a failed delivery again now (its attempts counted afresh); retrying twice is harmless."""
    return DeliveryOut.of(hooks.retry(hooks.get(webhook_id), delivery_id))
