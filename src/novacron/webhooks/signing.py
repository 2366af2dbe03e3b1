"""Standard Webhooks signatures (https://www.standardwebhooks.com): secrets, headers, rotation.

A secret is ``whsec_`` + base64 of 24 random bytes. A message is signed as HMAC-SHA256 over
``<webhook-id>.<webhook-timestamp>.<body>`` by the ``standardwebhooks`` library (the reference
implementation, which receivers use to verify). While a rotated-out secret has not expired, every
message carries one signature per live secret (space-separated ``v1,<base64>``), so a receiver
may switch secrets at its own pace.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot sign (None: it can)."""
    if not secret.startswith(PREFIX):
        return f"must start with '{PREFIX}' followed by base64 (as Standard Webhooks secrets do)"
    try:
        raw = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return "the part after 'whsec_' is not valid base64"
    if not 24 <= len(raw) <= 64:
        return "must hold 24 to 64 random bytes"
    return None


def headers(message_id: str, at: datetime, body: bytes, live_secrets: Iterable[str]) -> dict[str, str]:
    """The request headers of one attempt: id, timestamp and a signature per live secret."""
    signatures = " ".join(Webhook(s).sign(message_id, at, body) for s in live_secrets)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.astimezone(UTC).timestamp())),
        "webhook-signature": signatures,
    }
