"""Delivery: what the platform does with a notification Alertmanager hands it.

``state`` notifications (every alert, ungrouped) keep each alert's last state and put
``alert.firing`` / ``alert.resolved`` on the event stream, once per change, scoped to the alert's
tenant (a platform rule's alerts are the administrators'). A receiver's notifications are
delivered by its kind: a webhook is POSTed through the egress guard with an HMAC-SHA256 signature
over ``<timestamp>.<body>`` in ``NovaCron-Signature: t=<timestamp>,v1=<hex>`` (as Stripe signs), an
email goes to the configured SMTP server. A failure is raised, so Alertmanager retries.

No database write is open while a delivery waits on the network: the receiver is read in a read
session, the state is written in a short one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from novacron import events, netguard
from novacron.db.base import utcnow
from novacron.db.models import Alert, AlertReceiver
from novacron.identity.encryption import encryption_for
from novacron.monitoring.alerting.rules import RECEIVERS, RULE_ID, SCOPE, TENANT

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.db.base import Database

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "NovaCron-Signature"
DELIVERY_TIMEOUT_S = 10.0
#: how long a resolved alert's last state is kept
KEEP_RESOLVED = timedelta(days=7)


class DeliveryFailed(RuntimeError):
    """A notification could not be delivered; Alertmanager will retry it."""


def signing_secret_aad(receiver_id: str) -> str:
    """What a receiver's sealed signing secret is bound to."""
    return f"alert_receivers.signing_secret:{receiver_id}"


def webhook_url_aad(receiver_id: str) -> str:
    """What a receiver's sealed webhook URL is bound to."""
    return f"alert_receivers.url:{receiver_id}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``NovaCron-Signature`` header value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _when(text: str | None) -> datetime | None:
    """Alertmanager's timestamps; its "zero time" (year 1) means none."""
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def alert_tenant(labels: dict[str, str]) -> str | None:
    """The tenant an alert belongs to: its rule's, or None for a platform rule's."""
    return labels.get(TENANT) if labels.get(SCOPE) == "tenant" else None


def public_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """One alert as a receiver sees it (the platform's routing labels left out)."""
    labels = {k: v for k, v in (alert.get("labels") or {}).items() if k not in (RECEIVERS, SCOPE)}
    return {
        "name": labels.get("alertname", ""),
        "status": alert.get("status"),
        "severity": labels.get("severity", ""),
        "rule_id": labels.get(RULE_ID),
        "fingerprint": alert.get("fingerprint"),
        "labels": labels,
        "annotations": alert.get("annotations") or {},
        "starts_at": alert.get("startsAt"),
        "ends_at": alert.get("endsAt") if alert.get("status") == "resolved" else None,
    }


def record_states(session: Session, payload: dict[str, Any]) -> int:
    """Store each alert's notified state and publish an event for each change; returns how many.
    Alerts resolved longer than ``KEEP_RESOLVED`` ago are forgotten (the events stay)."""
    session.execute(
        delete(Alert).where(Alert.state == "resolved", Alert.updated_at < utcnow() - KEEP_RESOLVED)
    )
    changed = 0
    for alert in payload.get("alerts") or []:
        labels: dict[str, str] = alert.get("labels") or {}
        state = "resolved" if alert.get("status") == "resolved" else "firing"
        fingerprint = str(alert.get("fingerprint"))
        row = session.get(Alert, fingerprint)
        if row is not None and row.state == state:
            continue
        starts = _when(alert.get("startsAt")) or datetime.now(UTC)
        if row is None:
            row = Alert(fingerprint=fingerprint, starts_at=starts)
            session.add(row)
        tenant_id = alert_tenant(labels)
        row.tenant_id, row.rule_id, row.state = tenant_id, labels.get(RULE_ID), state
        row.name, row.severity = labels.get("alertname", "")[:64], labels.get("severity", "")[:16]
        row.labels, row.annotations = public_alert(alert)["labels"], alert.get("annotations") or {}
        row.starts_at = starts
        row.ends_at = _when(alert.get("endsAt")) if state == "resolved" else None
        events.publish(
            session,
            f"alert.{state}",
            "alert",
            fingerprint,
            tenant_id=tenant_id,
            name=row.name,
            severity=row.severity,
            rule_id=row.rule_id,
            labels=row.labels,
            annotations=row.annotations,
            starts_at=alert.get("startsAt"),
            ends_at=alert.get("endsAt") if state == "resolved" else None,
        )
        changed += 1
    return changed


@dataclass(frozen=True)
class Delivery:
    """A receiver as delivery needs it (its secret opened)."""

    id: str
    name: str
    kind: str
    tenant_id: str | None
    url: str | None
    email_to: str | None
    secret: str | None


def load_delivery(db: Database, settings: Settings, receiver_id: str) -> Delivery | None:
    """The receiver to deliver to, or None if it was deleted meanwhile."""
    with db.read_session() as s:
        row = s.get(AlertReceiver, receiver_id)
        if row is None:
            return None
        enc = encryption_for(settings)
        secret = enc.open_text(row.signing_secret, signing_secret_aad(row.id)) if row.signing_secret else None
        url = enc.open_text(row.url, webhook_url_aad(row.id)) if row.url else None
        return Delivery(row.id, row.name, row.kind, row.tenant_id, url, row.email_to, secret)


def message_of(receiver: Delivery, payload: dict[str, Any]) -> dict[str, Any]:
    """The document a receiver is sent: its alerts and the group they were sent as."""
    return {
        "receiver": receiver.name,
        "status": payload.get("status"),
        "tenant_id": receiver.tenant_id,
        "group_labels": payload.get("groupLabels") or {},
        "alerts": [public_alert(a) for a in payload.get("alerts") or []],
    }


async def _post(url: str, body: bytes, headers: dict[str, str], policy: netguard.EgressPolicy) -> int:
    async with netguard.request(
        "POST", url, policy, content=body, headers=headers, timeout=DELIVERY_TIMEOUT_S
    ) as response:
        return response.status_code


def send_webhook(receiver: Delivery, message: dict[str, Any], settings: Settings) -> None:
    """POST the signed message (the egress guard checks and pins the address)."""
    if receiver.url is None or receiver.secret is None:
        raise DeliveryFailed(f"receiver {receiver.id} has no URL or secret")
    body = json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(receiver.secret, int(time.time()), body),
        "NovaCron-Event": f"alert.{message['status']}",
    }
    policy = netguard.EgressPolicy.from_settings(settings)
    try:
        status = asyncio.run(_post(receiver.url, body, headers, policy))
    except (netguard.EgressDenied, netguard.FetchFailed) as exc:
        raise DeliveryFailed(f"webhook {netguard.safe_url(receiver.url)}: {exc}") from exc
    if status >= 300:
        raise DeliveryFailed(f"webhook {netguard.safe_url(receiver.url)} answered HTTP {status}")


def email_text(message: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain-text body of an alert email."""
    alerts = message["alerts"]
    names = sorted({a["name"] for a in alerts})
    subject = f"[{str(message['status']).upper()}] {', '.join(names)} ({len(alerts)} alert(s))"
    lines = []
    for a in alerts:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
        lines.append(f"{a['status'].upper()} {a['name']} since {a['starts_at']}\n  {labels}")
        lines += [f"  {k}: {v}" for k, v in sorted(a["annotations"].items())]
    return subject, "\n".join(lines) + "\n"


def send_email(receiver: Delivery, message: dict[str, Any], settings: Settings) -> None:
    """Hand the message to the configured SMTP server."""
    if not settings.smtp_host or receiver.email_to is None:
        raise DeliveryFailed("no SMTP server is configured (NOVACRON_SMTP_HOST)")
    subject, text = email_text(message)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = settings.smtp_from, receiver.email_to, subject
    mail.set_content(text)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=DELIVERY_TIMEOUT_S) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"email to {receiver.email_to}: {exc}") from exc


def deliver(db: Database, settings: Settings, receiver_name: str, payload: dict[str, Any]) -> None:
    """Act on one Alertmanager notification addressed to ``receiver_name``."""
    if receiver_name == "state":
        with db.session() as s:
            record_states(s, payload)
        return
    receiver = load_delivery(db, settings, receiver_name)
    if receiver is None:
        log.info("alerting: a notification for deleted receiver %s dropped", receiver_name)
        return
    message = message_of(receiver, payload)
    if receiver.kind == "webhook":
        send_webhook(receiver, message, settings)
    elif receiver.kind == "email":
        send_email(receiver, message, settings)
