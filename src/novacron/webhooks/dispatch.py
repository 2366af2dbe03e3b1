"""The webhook dispatcher (leader only): fills the outbox from the event log and sends what is due.

A round runs when an event a subscription may want commits on any replica (``wake.py``: the event
bus), when a retry falls due, and at the latest every ``webhook_tick_s`` (the fallback). Each round:
``outbox.fill``; then the due deliveries of active subscriptions are read with their
URL and live secrets opened, sent concurrently (at most ``CONCURRENCY``, each bounded by
``TIMEOUT_S``) with no database transaction open, and their outcomes written in one short one.
A 2xx answer is success; anything else (another status, a redirect, a refused or failed connection)
is a failed attempt, retried after ``backoff`` until ``webhook_max_attempts``; a subscription whose
last ``webhook_pause_after`` attempts all failed is paused, with the reason, and an event says so.
Delivery is at least once: a leader lost between a send and its record sends it again, under the
same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from novacron import netguard
from novacron.db.base import utcnow
from novacron.db.models import WebhookDelivery, WebhookSubscription
from novacron.identity.encryption import encryption_for
from novacron.tasks.controller import Job
from novacron.webhooks import outbox, signing
from novacron.webhooks.service import publish, secret_aad, url_aad
from novacron.webhooks.wake import BusWokenLoop, Interest

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.context import Context

WEBHOOK_CONTROLLER = "novacron.webhooks"
TIMEOUT_S = 10.0
CONCURRENCY = 8
#: deliveries sent per round
ROUND = 64
MAX_DELAY_S = 3600.0
#: how much of a receiver's answer is kept in the delivery log
RESPONSE_KEPT = 512


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    url: str
    secrets: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    response: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def backoff(attempts: int, base_s: float, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt: doubling from ``base_s``, capped, the upper half jittered
    (receivers that failed together are not retried together)."""
    delay = min(MAX_DELAY_S, base_s * 2.0 ** max(attempts - 1, 0))
    jitter: float = (rng or random).random()
    return delay / 2 + jitter * delay / 2


class WebhookDispatcher:
    """The controller: on a bus wake-up, a retry due or the fallback tick, fill the outbox and send
    the due deliveries."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._next_due: float | None = None
        self.loop = BusWokenLoop(
            "webhook dispatcher",
            [Job("outbox", self._fill), Job("deliver", self._deliver)],
            tick_s=ctx.settings.webhook_tick_s,
            db=ctx.db,
            next_due=lambda: self._next_due,
        )

    def _fill(self) -> None:
        with self.ctx.db.session() as s:
            subs = outbox.subscriptions(s)
            self.loop.interests = tuple(Interest.of(sub) for sub in subs)
            outbox.fill(s, subs)

    def _deliver(self) -> None:
        with self.ctx.db.read_session() as s:
            attempts = due(s, self.ctx.settings)
        if attempts:
            policy = netguard.EgressPolicy.from_settings(self.ctx.settings)
            outcomes = asyncio.run(_send_all(attempts, policy))
            with self.ctx.db.session() as s:
                for attempt, outcome in zip(attempts, outcomes, strict=True):
                    record(s, attempt.delivery_id, outcome, self.ctx.settings)
        with self.ctx.db.read_session() as s:
            self._next_due = next_due(s)


def next_due(session: Session) -> float | None:
    """When (``time.monotonic``) the earliest pending delivery of an active subscription is due."""
    at = session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at))
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.state == "pending", WebhookSubscription.state == "active")
    )
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return time.monotonic() + (at - utcnow()).total_seconds()


def due(session: Session, settings: Settings, limit: int = ROUND) -> list[Attempt]:
    """The deliveries to send now, each with its URL and live secrets opened."""
    now = utcnow()
    rows = session.execute(
        select(WebhookDelivery, WebhookSubscription)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(
            WebhookDelivery.state == "pending",
            WebhookDelivery.next_attempt_at <= now,
            WebhookSubscription.state == "active",
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    ).all()
    enc = encryption_for(settings)
    out = []
    for delivery, sub in rows:
        live = tuple(
            enc.open_text(s["secret"], secret_aad(sub.id))
            for s in sub.secrets
            if s["expires_at"] is None or s["expires_at"] > now.isoformat()
        )
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        out.append(Attempt(delivery.id, enc.open_text(sub.url, url_aad(sub.id)), live, body))
    return out


async def _send_all(attempts: list[Attempt], policy: netguard.EgressPolicy) -> list[Outcome]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(attempt: Attempt) -> Outcome:
        async with gate:
            return await send(attempt, policy)

    return list(await asyncio.gather(*(one(a) for a in attempts)))


async def send(attempt: Attempt, policy: netguard.EgressPolicy) -> Outcome:
    """POST one signed message to the checked, pinned address (no redirect is followed)."""
    start = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - start) * 1000)

    headers = signing.headers(attempt.delivery_id, utcnow(), attempt.body, attempt.secrets)
    try:
        target = await asyncio.to_thread(netguard.check_url, attempt.url, policy)
        client, response = await netguard.send_to(
            target, "POST", TIMEOUT_S, content=attempt.body, headers=headers
        )
        try:
            head = await _head(response)
        finally:
            await response.aclose()
            await client.aclose()
    except netguard.EgressDenied as exc:
        return Outcome(None, str(exc), None, took())
    except Exception:  # noqa: BLE001 - every connection failure is one message (netguard's rule)
        return Outcome(None, netguard.FETCH_FAILED, None, took())
    status = response.status_code
    error = None if 200 <= status < 300 else f"the receiver answered HTTP {status}"
    if 300 <= status < 400:
        error = f"the receiver answered HTTP {status}: redirects are not followed; give the final URL"
    return Outcome(status, error, head, took())


async def _head(response: object) -> str:
    data = b""
    async for chunk in response.aiter_bytes():  # type: ignore[attr-defined]
        data += chunk
        if len(data) >= RESPONSE_KEPT:
            break
    return data[:RESPONSE_KEPT].decode(errors="replace")


def record(session: Session, delivery_id: str, outcome: Outcome, settings: Settings) -> None:
    """Write an attempt's outcome: success, a retry later, or failed; pause a failing subscription."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:  # its subscription was deleted meanwhile
        return
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status, delivery.last_error = outcome.status, outcome.error
    delivery.last_response, delivery.last_duration_ms = outcome.response, outcome.duration_ms
    sub = session.get(WebhookSubscription, delivery.subscription_id)
    if sub is None:
        return
    if outcome.ok:
        delivery.state, delivery.delivered_at = "succeeded", now
        outbox.set_fields(session, sub.id, consecutive_failures=0)
        return
    if delivery.attempts >= settings.webhook_max_attempts:
        delivery.state = "failed"
        publish(session, "webhook.delivery_failed", sub, delivery_id=delivery.id, error=outcome.error)
    else:
        delay = backoff(delivery.attempts, settings.webhook_retry_base_s)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    failures = sub.consecutive_failures + 1
    if failures >= settings.webhook_pause_after and sub.state == "active":
        reason = f"{failures} failed attempts in a row; the last: {outcome.error}"
        outbox.set_fields(
            session, sub.id, consecutive_failures=failures, state="paused", paused_reason=reason, bump=True
        )
        publish(session, "webhook.paused", sub, reason=reason)
    else:
        outbox.set_fields(session, sub.id, consecutive_failures=failures)
