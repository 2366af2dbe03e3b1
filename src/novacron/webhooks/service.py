"""Webhook subscriptions as a tenant manages them: create, change, rotate the secret, pause and
resume, test, and read the delivery log.

A subscription's URL passes the egress guard (``netguard``) when it is set and again at every
delivery, so a URL that names or resolves to the platform's own or an internal address is refused
unless an administrator opened that range (``NOVACRON_EGRESS_ALLOW``). The URL and the signing
secrets are sealed at rest; a secret is shown once, in the answer that made it.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from novacron import eventbus, events, netguard
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Project, WebhookDelivery, WebhookSubscription
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import InvalidInput, NameTaken, NotFound
from novacron.identity.encryption import encryption_for
from novacron.monitoring.alerting.service import owner_tenant
from novacron.service import Service
from novacron.webhooks import outbox, signing

EVENT_PATTERN = re.compile(r"^[a-z*][a-z0-9_.*-]{0,63}$")


def publish(session: Session, kind: str, sub: WebhookSubscription, **data: Any) -> None:
    """An event about a subscription (its changes, its pause, a delivery given up), for its tenant."""
    events.publish(
        session, kind, "webhook", sub.id, tenant_id=sub.tenant_id, project_id=sub.project_id,
        name=sub.name, **data,
    )  # fmt: skip


def url_aad(subscription_id: str) -> str:
    return f"webhook_subscriptions.url:{subscription_id}"


def secret_aad(subscription_id: str) -> str:
    return f"webhook_subscriptions.secrets:{subscription_id}"


@dataclass(frozen=True)
class SubscriptionSpec:
    name: str
    url: str
    event_types: tuple[str, ...]
    resource_types: tuple[str, ...] = ()
    project: str | None = None
    secret: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class SubscriptionChange:
    """What a PATCH changes (None: unchanged)."""

    url: str | None = None
    event_types: tuple[str, ...] | None = None
    resource_types: tuple[str, ...] | None = None
    state: str | None = None


class WebhookService(Service):
    """Tenants' webhook subscriptions and their delivery logs."""

    def list(self, params: ListParams) -> tuple[builtins.list[WebhookSubscription], str | None]:
        stmt: Select[Any] = scoped(select(WebhookSubscription), WebhookSubscription, self.principal)
        return paginate(self.session, stmt, WebhookSubscription, params)

    def get(self, ref: str) -> WebhookSubscription:
        return resolve(self.session, self.principal, WebhookSubscription, ref)

    def create(self, spec: SubscriptionSpec) -> tuple[WebhookSubscription, str]:
        """A new subscription and its signing secret (given, or made here): shown only now."""
        tenant_id = owner_tenant(self.session, self.principal, spec.tenant_id)
        self._check_url(spec.url)
        _check_types(spec.event_types, spec.resource_types)
        secret = spec.secret or signing.new_secret()
        if (why := signing.secret_problem(secret)) is not None:
            raise InvalidInput("secret", why)
        project_id = self._project(spec.project, tenant_id)
        owner = (
            WebhookSubscription.tenant_id.is_(None)
            if tenant_id is None
            else WebhookSubscription.tenant_id == tenant_id
        )
        if self.session.scalar(
            select(WebhookSubscription.id).where(owner, WebhookSubscription.name == spec.name)
        ):
            raise NameTaken("webhook", spec.name, "name", scope="for this owner")
        sub_id = new_id("whk")
        enc = encryption_for(self.ctx.settings)
        sub = WebhookSubscription(
            id=sub_id,
            tenant_id=tenant_id,
            project_id=project_id,
            name=spec.name,
            url=enc.seal_text(spec.url, url_aad(sub_id)),
            url_shown=netguard.safe_url(spec.url),
            event_types=list(spec.event_types),
            resource_types=list(spec.resource_types),
            secrets=[{"secret": enc.seal_text(secret, secret_aad(sub_id)), "expires_at": None}],
            state="active",
            consecutive_failures=0,
            # only what happens from now on: a new subscription is not sent the past
            cursor_seq=events.latest_seq(self.session),
        )
        self.session.add(sub)
        self.session.flush()
        publish(self.session, "webhook.created", sub, url=sub.url_shown, event_types=sub.event_types)
        return sub, secret

    def update(self, sub: WebhookSubscription, change: SubscriptionChange) -> WebhookSubscription:
        if change.url is not None:
            self._check_url(change.url)
            sub.url = encryption_for(self.ctx.settings).seal_text(change.url, url_aad(sub.id))
            sub.url_shown = netguard.safe_url(change.url)
        if change.event_types is not None or change.resource_types is not None:
            _check_types(change.event_types or (), change.resource_types or ())
            if change.event_types is not None:
                sub.event_types = list(change.event_types)
            if change.resource_types is not None:
                sub.resource_types = list(change.resource_types)
        if change.state is not None:
            self._set_state(sub, change.state)
        self.session.flush()
        publish(self.session, "webhook.updated", sub, state=sub.state)
        return sub

    def _set_state(self, sub: WebhookSubscription, state: str) -> None:
        if state not in ("active", "paused"):
            raise InvalidInput("state", "active or paused")
        if state == "active" and sub.state != "active":
            sub.consecutive_failures, sub.paused_reason = 0, None
            # what waited while paused is sent now, not at its old retry time
            self.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.subscription_id == sub.id, WebhookDelivery.state == "pending")
                .values(next_attempt_at=utcnow())
            )
        elif state == "paused" and sub.state != "paused":
            sub.paused_reason = f"paused by {self.principal.username}"
        sub.state = state

    def rotate_secret(self, sub: WebhookSubscription, keep_previous_s: int) -> str:
        """A new secret, signing from now on; the others keep signing for ``keep_previous_s``."""
        enc = encryption_for(self.ctx.settings)
        secret = signing.new_secret()
        until = (utcnow() + timedelta(seconds=keep_previous_s)).isoformat()
        kept = [
            {**s, "expires_at": s["expires_at"] or until}
            for s in sub.secrets
            if keep_previous_s > 0 and (s["expires_at"] is None or s["expires_at"] > utcnow().isoformat())
        ]
        sub.secrets = [{"secret": enc.seal_text(secret, secret_aad(sub.id)), "expires_at": None}, *kept]
        self.session.flush()
        publish(self.session, "webhook.secret_rotated", sub, previous_kept_s=keep_previous_s)
        return secret

    def delete(self, sub: WebhookSubscription) -> None:
        publish(self.session, "webhook.deleted", sub)
        self.session.delete(sub)
        self.session.flush()

    def send_test(self, sub: WebhookSubscription) -> WebhookDelivery:
        """Queue a ``webhook.test`` message to the subscription, sent at once like any event."""
        now = utcnow()
        delivery = WebhookDelivery(
            id=outbox.message_id(),
            subscription_id=sub.id,
            tenant_id=sub.tenant_id,
            event_seq=0,
            event_type="webhook.test",
            payload={"type": "webhook.test", "timestamp": now.isoformat(), "data": {"webhook_id": sub.id}},
            state="pending",
            attempts=0,
            next_attempt_at=now,
        )
        self.session.add(delivery)
        self.session.flush()
        eventbus.announce(self.session)  # the dispatcher sends it at once, not at its next tick
        return delivery

    def deliveries(
        self, sub: WebhookSubscription, params: ListParams, state: str | None = None
    ) -> tuple[builtins.list[WebhookDelivery], str | None]:
        stmt = select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id)
        if state is not None:
            if state not in ("pending", "succeeded", "failed"):
                raise InvalidInput("state", "pending, succeeded or failed", part="query")
            stmt = stmt.where(WebhookDelivery.state == state)
        return paginate(self.session, stmt, WebhookDelivery, params)

    def retry(self, sub: WebhookSubscription, delivery_id: str) -> WebhookDelivery:
        """Send a failed (or pending) delivery again now, with its attempts counted afresh."""
        delivery = self.session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.subscription_id != sub.id:
            raise NotFound("webhook delivery", delivery_id)
        if delivery.state == "succeeded":
            raise InvalidInput("delivery_id", "this delivery already succeeded", part="path")
        delivery.state, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()
        self.session.flush()
        eventbus.announce(self.session)
        return delivery

    def _check_url(self, url: str) -> None:
        try:
            netguard.check_url(url, netguard.EgressPolicy.from_settings(self.ctx.settings))
        except netguard.EgressDenied as exc:
            raise InvalidInput("url", str(exc)) from exc

    def _project(self, ref: str | None, tenant_id: str | None) -> str | None:
        if ref is None:
            return None
        named = Named("project", missing=InvalidInput)
        project = resolve(self.session, self.principal, Project, ref, named=named)
        if tenant_id is not None and project.tenant_id != tenant_id:
            raise InvalidInput("project", "a project of the subscription's tenant")
        return project.id


def _check_types(event_types: tuple[str, ...], resource_types: tuple[str, ...]) -> None:
    for i, pattern in enumerate(event_types):
        if not EVENT_PATTERN.match(pattern):
            raise InvalidInput(f"event_types[{i}]", "an event type like vm.created, or a pattern like vm.*")
    for i, kind in enumerate(resource_types):
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", kind):
            raise InvalidInput(f"resource_types[{i}]", "a resource type like vm, volume or backup")
